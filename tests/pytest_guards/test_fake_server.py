"""FakeLLMServer: the scripted behaviours over a real socket on 127.0.0.1.

These are real network tests: the server runs uvicorn in a thread and latency, timeouts and drops
happen in real time. Client timeouts are small and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from fragrance_ai.llm.backends import (
    BackendConnectionError,
    BackendRateLimited,
    BackendTimeout,
    CompletionRequest,
    OpenAICompatibleBackend,
)
from fragrance_ai.llm.schemas import brief_schema
from pytest_guards import FakeLLMServer, FaultyLLM
from pytest_guards.faults import (
    Behaviour,
    UnmatchedRequestError,
    connection_error,
    empty,
    fenced,
    http_error,
    invalid_json,
    malformed_body,
    prose,
    schema_violation,
    timeout,
    truncated,
    valid,
)

pytestmark = pytest.mark.network

BRIEF = Draft202012Validator(brief_schema())
BODY = {"model": "qwen", "messages": [{"role": "user", "content": "a fresh summer scent"}]}
CLIENT_TIMEOUT = httpx.Timeout(5.0)


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(["qwen", "mistral"]) as fake:
        yield fake


async def post(client: httpx.AsyncClient, server: FakeLLMServer, model: str = "qwen", **kwargs: Any) -> httpx.Response:
    return await client.post(f"{server.base_url(model)}/chat/completions", json=BODY, **kwargs)


async def wait_until(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    """Poll ``predicate`` until true, for at most ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)  # real-time: waiting for another thread's real socket I/O


# ----------------------------------------------------------------------------------------- lifecycle


async def test_starts_on_a_loopback_port_and_answers_health(server: FakeLLMServer) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.base_url("mistral") == f"http://127.0.0.1:{server.port}/mistral/v1"
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        health = await client.get(f"{server.url}/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "models": ["qwen", "mistral"]}


def test_stop_ends_the_thread_and_closes_the_port() -> None:
    fake = FakeLLMServer(["qwen"]).start()
    thread, port = fake._thread, fake.port
    assert thread is not None
    assert thread.is_alive()
    fake.stop()
    fake.stop()  # idempotent
    assert not thread.is_alive()
    with pytest.raises(httpx.ConnectError), httpx.Client(timeout=CLIENT_TIMEOUT) as client:
        client.get(f"http://127.0.0.1:{port}/health")


def test_url_before_start_and_double_start_are_errors() -> None:
    fake = FakeLLMServer(["qwen"])
    with pytest.raises(RuntimeError, match="not started"):
        _ = fake.url
    with fake, pytest.raises(RuntimeError, match="already started"):
        fake.start()
    with pytest.raises(ValueError, match="max_hold must be a positive number of seconds, found 0"):
        FakeLLMServer(["qwen"], max_hold=0)


# ---------------------------------------------------------------------------------------- behaviours


@pytest.mark.parametrize(
    ("behaviour", "status"),
    [
        (valid(), 200),
        (invalid_json(), 200),
        (schema_violation(), 200),
        (fenced(), 200),
        (prose(), 200),
        (truncated(), 200),
        (empty(), 200),
        (malformed_body(), 200),
        (http_error(500), 500),
        (http_error(503, retry_after=2), 503),
        (http_error(429, retry_after=1), 429),
    ],
)
async def test_response_behaviours_are_served_byte_for_byte_as_rendered(
    server: FakeLLMServer, behaviour: Behaviour, status: int
) -> None:
    server.set("qwen", behaviour)
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        response = await post(client, server)
    assert response.status_code == status
    assert response.headers.get("retry-after") == (f"{behaviour.retry_after:g}" if behaviour.retry_after else None)
    # the same behaviour through respx gives the same body: both transports render alike
    with FaultyLLM(["qwen"]) as faulty, httpx.Client(timeout=CLIENT_TIMEOUT) as sync_client:
        faulty.set("qwen", behaviour)
        mocked = sync_client.post(f"{faulty.base_url('qwen')}/chat/completions", json=BODY)
    assert response.content == mocked.content


async def test_valid_content_is_a_schema_valid_brief(server: FakeLLMServer) -> None:
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        response = await post(client, server)
    assert not list(BRIEF.iter_errors(json.loads(response.json()["choices"][0]["message"]["content"])))


async def test_connection_error_drops_the_connection_before_any_response(server: FakeLLMServer) -> None:
    server.set("qwen", connection_error(), valid())
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await post(client, server)
        assert (await post(client, server)).status_code == 200  # the server itself is fine
    assert [c.outcome for c in server.calls("qwen")] == ["connection_error", "response"]


async def test_timeout_holds_the_request_until_the_client_gives_up(server: FakeLLMServer) -> None:
    server.set("qwen", timeout().times(1))
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        with pytest.raises(httpx.ReadTimeout):
            await post(client, server, timeout=0.2)  # real-time: a real client read timeout
        assert (await post(client, server)).status_code == 200
    assert [c.behaviour for c in server.calls("qwen")] == ["timeout", "valid"]


async def test_a_held_request_is_dropped_after_max_hold() -> None:
    with FakeLLMServer(["qwen"], max_hold=0.2) as fake:
        fake.set("qwen", timeout())
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
            started = time.monotonic()
            with pytest.raises(httpx.RemoteProtocolError):
                await post(client, fake)  # real-time: held for max_hold, well under the client's 5s
            assert time.monotonic() - started < 4.0


async def test_stop_releases_held_requests_and_the_thread_exits() -> None:
    fake = FakeLLMServer(["qwen"]).start()
    thread = fake._thread
    assert thread is not None
    fake.set("qwen", timeout())
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        held = asyncio.create_task(post(client, fake))
        await wait_until(lambda: fake.call_count("qwen") == 1)
        started = time.monotonic()
        await asyncio.to_thread(fake.stop)
        assert time.monotonic() - started < 4.0  # released, not waiting out max_hold (30s)
        with pytest.raises(httpx.RemoteProtocolError):
            await held
    assert not thread.is_alive()


async def test_latency_is_real_time(server: FakeLLMServer) -> None:
    server.set("qwen", valid().after(0.2))
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        started = time.monotonic()
        response = await post(client, server)  # real-time: fake server latency is real network time
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed >= 0.2


# ----------------------------------------------------------------------------------- routing, checks


async def test_the_shared_endpoint_routes_by_the_body_model(server: FakeLLMServer) -> None:
    server.set("mistral", http_error(502))
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        response = await client.post(f"{server.url}/v1/chat/completions", json={**BODY, "model": "mistral"})
        unknown = await client.post(f"{server.url}/v1/chat/completions", json={**BODY, "model": "gpt-4"})
    assert response.status_code == 502
    assert server.call_count("mistral") == 1
    assert unknown.status_code == 404  # as an OpenAI-compatible server answers a model it does not serve
    assert unknown.json()["error"]["code"] == "model_not_found"
    assert server.unmatched == [f"POST {server.url}/v1/chat/completions (body model 'gpt-4')"]


async def test_unmatched_requests_are_answered_501_and_named_by_check(server: FakeLLMServer) -> None:
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        unknown = await client.post(f"{server.url}/gpt/v1/chat/completions", json=BODY)
        wrong_method = await client.get(f"{server.base_url('qwen')}/chat/completions")
        other = await client.delete(f"{server.url}/v1/models?x=1")
    assert unknown.status_code == 404
    assert {wrong_method.status_code, other.status_code} == {501}
    assert server.call_count("qwen") == 0
    with pytest.raises(UnmatchedRequestError) as caught:
        server.check()
    message = str(caught.value)
    assert message.startswith("fake_llm_server: 3 requests matched no configured model:")
    for line in (
        f"POST {server.url}/gpt/v1/chat/completions",
        f"GET {server.url}/qwen/v1/chat/completions",
        f"DELETE {server.url}/v1/models?x=1",
    ):
        assert line in message
    server.reset()
    server.check()


async def test_model_names_with_slashes_and_colons_get_their_own_path() -> None:
    with FakeLLMServer(["meta/llama-3", "qwen2.5:7b"]) as fake:
        fake.set("meta/llama-3", http_error(503))
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
            llama = await post(client, fake, "meta/llama-3")
            qwen = await post(client, fake, "qwen2.5:7b")
    assert (llama.status_code, qwen.status_code) == (503, 200)
    assert fake.unmatched == []


async def test_faulty_llm_passes_through_to_the_fake_server(server: FakeLLMServer) -> None:
    server.set("qwen", http_error(418 + 100))
    with FaultyLLM(["mistral"], pass_through=[server.url]) as faulty:
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
            response = await post(client, server)
    assert response.status_code == 518
    assert server.call_count("qwen") == 1
    assert faulty.unmatched == []


# ----------------------------------------------------------------------------- with the real backend


async def test_the_openai_backend_sees_real_network_faults(server: FakeLLMServer) -> None:
    server.set("qwen", connection_error(), timeout(), http_error(429, retry_after=3))
    backend = OpenAICompatibleBackend("qwen", base_url=server.base_url("qwen"), model_id="qwen", timeout=0.2)
    request = CompletionRequest.from_prompt("a fresh summer scent")
    try:
        with pytest.raises(BackendConnectionError):
            await backend.complete(request)
        with pytest.raises(BackendTimeout):
            await backend.complete(request)  # real-time: the backend's real 0.2s read timeout
        with pytest.raises(BackendRateLimited) as limited:
            await backend.complete(request)
    finally:
        await backend.aclose()
    assert limited.value.retry_after == 3.0
