"""The official ``openai`` SDK as a test client of the standalone fake LLM server on 127.0.0.1.

If the SDK reads a behaviour as a real provider's answer of that kind (the proper exception class,
a parsed stream, usage present), the fakes stay faithful to the protocol the backends are written
against. The server runs as its own process (``python -m pytest_guards.faults.fake_llm_server``), each
behaviour set through its control plane in the scenario files' data format.

real-time: a real process on a real port, and the SDK has no virtual clock; its timeout is a second,
the server holds a ``timeout`` at most 3 s, and start-up is polled for at most 10 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from server_process import standalone_server

pytestmark = pytest.mark.network

MESSAGES: list[Any] = [{"role": "system", "content": "Answer JSON."}, {"role": "user", "content": "a rainy forest"}]
#: the SDK's timeout (seconds): short, so timeouts and stalls cost about a second each
SDK_TIMEOUT = 1.0
TOKEN = "sdk-test-token"


@dataclass
class Standalone:
    """The fake LLM server process: its URL and a client of its control plane."""

    url: str
    control: httpx.Client

    def base_url(self, model: str) -> str:
        return f"{self.url}/{model}/v1"

    def set(self, model: str, behaviours: Any) -> None:
        response = self.control.put(f"/_control/models/{model}", json=behaviours)
        assert response.status_code == 200, response.text

    def calls(self, model: str) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = self.control.get(f"/_control/models/{model}/calls").json()["calls"]
        return calls


@pytest.fixture(scope="module")
def server() -> Iterator[Standalone]:
    with (
        standalone_server("--models", "qwen,mistral", "--max-hold", "3", "--control-token", TOKEN) as (url, _),
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5) as control,
    ):
        yield Standalone(url, control)


@pytest.fixture
def client(server: Standalone) -> Iterator[openai.OpenAI]:
    assert server.control.post("/_control/reset").status_code == 200
    # max_retries=0: one request per call, so the fake's script and the SDK's view line up
    with openai.OpenAI(base_url=server.base_url("qwen"), api_key="sk-fake", max_retries=0, timeout=SDK_TIMEOUT) as sdk:
        yield sdk


def ask(client: openai.OpenAI, **extra: Any) -> Any:
    return client.chat.completions.create(model="qwen", messages=MESSAGES, max_tokens=20, **extra)


def read_stream(client: openai.OpenAI) -> tuple[str, str | None, Any]:
    """Text, finish reason and usage of a streamed answer, as the SDK parses it."""
    parts: list[str] = []
    finish: str | None = None
    usage = None
    for chunk in ask(client, stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    return "".join(parts), finish, usage


@pytest.mark.parametrize(
    ("behaviour", "finish"),
    [
        ("valid", "stop"),
        ("invalid_json", "stop"),
        ("schema_violation", "stop"),
        ("fenced", "stop"),
        ("prose", "stop"),
        ("truncated", "length"),
        ("empty", "stop"),
        ("finish_length", "length"),
        ({"stall": 0.01}, "stop"),
    ],
    ids=["valid", "invalid_json", "schema_violation", "fenced", "prose", "truncated", "empty", "finish_length", "stall"],
)
def test_answers_parse_as_chat_completions_with_usage(
    server: Standalone, client: openai.OpenAI, behaviour: Any, finish: str
) -> None:
    server.set("qwen", behaviour)
    completion = ask(client)
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert completion.choices[0].finish_reason == finish
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    if behaviour == "finish_length":
        assert completion.usage.completion_tokens == 20
        assert len(completion.choices[0].message.content or "") == 80


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (409, openai.ConflictError),
        (422, openai.UnprocessableEntityError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_http_errors_are_the_sdks_status_error_classes(
    server: Standalone, client: openai.OpenAI, status: int, error: type[openai.APIStatusError]
) -> None:
    server.set("qwen", {"http_error": status, "retry_after": 2} if status == 429 else f"http_{status}")
    with pytest.raises(error) as caught:
        ask(client)
    assert caught.value.status_code == status
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "2"


def test_an_unknown_model_is_not_found_with_code_model_not_found(server: Standalone) -> None:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-fake", max_retries=0, timeout=SDK_TIMEOUT) as sdk:
        with pytest.raises(openai.NotFoundError) as caught:
            sdk.chat.completions.create(model="gpt-nope", messages=MESSAGES)
        assert caught.value.code == "model_not_found"
        assert [m.id for m in sdk.models.list()] == ["qwen", "mistral"]


@pytest.mark.parametrize(
    ("behaviour", "error", "streamed"),
    [
        ("timeout", openai.APITimeoutError, False),
        ("connection_error", openai.APIConnectionError, False),
        ({"cut_stream": 100}, openai.APIConnectionError, False),
        ({"stall": 2 * SDK_TIMEOUT}, openai.APITimeoutError, False),
        ({"cut_stream": {"after_bytes": 900}}, openai.APIConnectionError, True),
        ({"stall": {"seconds": 2 * SDK_TIMEOUT}}, openai.APITimeoutError, True),
    ],
    ids=["timeout", "connection_error", "cut_stream", "stall", "cut_stream-streamed", "stall-streamed"],
)
def test_transport_faults_are_the_sdks_connection_and_timeout_errors(
    server: Standalone, client: openai.OpenAI, behaviour: Any, error: type[openai.APIError], streamed: bool
) -> None:
    server.set("qwen", behaviour)
    call = read_stream if streamed else ask
    with pytest.raises(error):
        call(client)


def test_a_malformed_body_is_not_a_completion(server: Standalone, client: openai.OpenAI) -> None:
    server.set("qwen", "malformed_body")
    answer = ask(client)
    # the SDK hands back a non-JSON 200 as text: nothing in it reads as a completion
    assert isinstance(answer, str)
    assert "502 Bad Gateway" in answer


def test_a_stream_parses_with_the_sdk_and_ends_with_usage(server: Standalone, client: openai.OpenAI) -> None:
    text, finish, usage = read_stream(client)
    assert text.startswith('{"description": ')
    assert finish == "stop"
    assert usage is not None
    assert usage.completion_tokens == (len(text) + 3) // 4
    [call] = server.calls("qwen")
    assert call["behaviour"] == "valid"
    assert call["status"] == 200


def test_a_short_stall_streams_whole_and_finish_length_streams_cut(server: Standalone, client: openai.OpenAI) -> None:
    server.set("qwen", [{"stall": 0.05}, "finish_length"])
    text, finish, _ = read_stream(client)
    assert (text.endswith("}"), finish) == (True, "stop")
    text, finish, usage = read_stream(client)
    assert (len(text), finish, usage.completion_tokens) == (80, "length", 20)
