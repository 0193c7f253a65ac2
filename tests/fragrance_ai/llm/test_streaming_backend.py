"""The streaming (SSE) side of the OpenAI-compatible backend, against FaultyLLM on virtual time.

Every wait is virtual: the stalls of ``stall(seconds)`` and the backend's per-chunk and overall
timeouts run on one VirtualClock, so these tests never sleep.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from fragrance_ai.clock import VirtualClock
from fragrance_ai.config_loader import ModelConfig
from fragrance_ai.llm.backends import (
    BackendConnectionError,
    BackendInvalidResponse,
    BackendServerError,
    BackendTimeout,
    CompletionRequest,
    OpenAICompatibleBackend,
    build_backend,
)
from fragrance_ai.llm.backends.sse import read_stream
from fragrance_ai.llm.schemas import brief_schema
from pytest_guards.faults import FaultyLLM, cut_stream, finish_length, http_error, stall, valid

REQUEST = CompletionRequest.from_prompt("a rainy forest", system="Answer JSON.", max_tokens=20)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def llm(clock: VirtualClock) -> AsyncIterator[FaultyLLM]:
    fake = FaultyLLM(["qwen"], asleep=clock.asleep, sleep=clock.sleep)
    with fake:
        yield fake
    fake.check()


def backend_for(
    llm: FaultyLLM, clock: VirtualClock, *, timeout: float = 30.0, chunk_timeout: float = 5.0
) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(
        "qwen",
        base_url=llm.base_url("qwen"),
        model_id="qwen",
        timeout=timeout,
        chunk_timeout=chunk_timeout,
        stream=True,
        atimeout=clock.timeout,
    )


async def test_a_stream_is_asked_for_and_read_whole_with_usage(llm: FaultyLLM, clock: VirtualClock) -> None:
    backend = backend_for(llm, clock)
    response = await backend.complete(REQUEST)
    await backend.aclose()
    sent = llm.calls("qwen")[0].request
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    brief = json.loads(response.text)
    assert set(brief) == set(brief_schema()["required"])
    assert response.finish_reason == "stop"
    assert response.prompt_tokens is not None
    assert response.prompt_tokens > 0
    assert response.completion_tokens == (len(response.text) + 3) // 4
    assert backend.completion_tokens == response.completion_tokens
    assert clock.now() == 0.0


async def test_a_stall_within_chunk_timeout_still_answers(llm: FaultyLLM, clock: VirtualClock) -> None:
    llm.set("qwen", stall(1))
    backend = backend_for(llm, clock, chunk_timeout=5.0, timeout=120.0)
    response = await backend.complete(REQUEST)
    await backend.aclose()
    json.loads(response.text)
    assert clock.now() > 5.0  # one second between each of many chunks: longer than one chunk_timeout in all


async def test_a_stall_longer_than_chunk_timeout_is_a_timeout_at_chunk_timeout(llm: FaultyLLM, clock: VirtualClock) -> None:
    llm.set("qwen", stall(7))
    backend = backend_for(llm, clock, chunk_timeout=5.0)
    with pytest.raises(BackendTimeout, match="no stream chunk within 5s"):
        await backend.complete(REQUEST)
    await backend.aclose()
    assert clock.now() == pytest.approx(5.0)
    assert backend.failures == {"timeout": 1}


async def test_short_stalls_that_add_up_past_timeout_are_a_timeout_at_timeout(llm: FaultyLLM, clock: VirtualClock) -> None:
    llm.set("qwen", stall(2))
    backend = backend_for(llm, clock, chunk_timeout=5.0, timeout=10.0)
    with pytest.raises(BackendTimeout, match="did not finish within 10s"):
        await backend.complete(REQUEST)
    await backend.aclose()
    assert clock.now() == pytest.approx(10.0)


async def test_a_stream_cut_mid_answer_gives_the_partial_text_unfinished(llm: FaultyLLM, clock: VirtualClock) -> None:
    llm.set("qwen", cut_stream(after_bytes=700))
    backend = backend_for(llm, clock)
    response = await backend.complete(REQUEST)
    await backend.aclose()
    assert response.text
    assert response.finish_reason is None
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


async def test_a_stream_cut_before_any_text_is_a_connection_error(llm: FaultyLLM, clock: VirtualClock) -> None:
    llm.set("qwen", cut_stream(after_bytes=10))
    backend = backend_for(llm, clock)
    with pytest.raises(BackendConnectionError, match="before any text"):
        await backend.complete(REQUEST)
    await backend.aclose()


async def test_finish_length_is_cut_at_max_tokens_with_finish_reason_length(llm: FaultyLLM, clock: VirtualClock) -> None:
    llm.set("qwen", finish_length())
    backend = backend_for(llm, clock)
    response = await backend.complete(REQUEST)
    await backend.aclose()
    assert response.finish_reason == "length"
    assert len(response.text) == 20 * 4
    assert response.completion_tokens == 20


async def test_an_error_status_on_a_stream_request_is_classified_as_usual(llm: FaultyLLM, clock: VirtualClock) -> None:
    llm.set("qwen", http_error(503))
    backend = backend_for(llm, clock)
    with pytest.raises(BackendServerError):
        await backend.complete(REQUEST)
    await backend.aclose()


async def test_the_size_cap_applies_while_the_stream_arrives(llm: FaultyLLM, clock: VirtualClock) -> None:
    llm.set("qwen", valid())
    backend = backend_for(llm, clock)
    backend.max_response_bytes = 300
    with pytest.raises(BackendInvalidResponse, match="over max_response_bytes=300"):
        await backend.complete(REQUEST)
    await backend.aclose()


async def test_build_backend_takes_stream_settings_from_config(clock: VirtualClock) -> None:
    config = ModelConfig("qwen", backend="openai", base_url="http://127.0.0.1:9/v1", stream=True, chunk_timeout=2.5)
    backend = build_backend(config, atimeout=clock.timeout)
    assert isinstance(backend, OpenAICompatibleBackend)
    assert backend.stream is True
    assert backend.chunk_timeout == 2.5
    assert backend.total_timeout == config.timeout


async def _chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


@pytest.mark.parametrize(
    ("pieces", "error", "message"),
    [
        ((b"data: {not json}\n\n",), BackendInvalidResponse, "not JSON"),
        ((b"data: [1, 2]\n\n",), BackendInvalidResponse, "expected an object"),
        ((b'data: {"error": {"message": "overloaded"}}\n\n',), BackendInvalidResponse, "reported an error"),
        ((b": keep-alive\n\n",), BackendConnectionError, "ended before any text"),
    ],
)
async def test_bad_streams_are_one_clear_error(
    clock: VirtualClock, pieces: tuple[bytes, ...], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await read_stream(_chunks(*pieces), model="qwen", chunk_timeout=1.0, max_bytes=10_000, atimeout=clock.timeout)


async def test_events_split_across_chunks_and_crlf_are_read(clock: VirtualClock) -> None:
    event = b'data: {"choices": [{"delta": {"content": "ab"}, "finish_reason": null}]}\r\n\r\n'
    done = b'data: {"choices": [{"delta": {}, "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'
    answer = await read_stream(
        _chunks(event[:10], event[10:], done), model="qwen", chunk_timeout=1.0, max_bytes=10_000, atimeout=clock.timeout
    )
    assert (answer.text, answer.finish_reason, answer.complete) == ("ab", "stop", True)


async def test_a_server_that_ignores_stream_true_is_read_as_plain_json(clock: VirtualClock) -> None:
    body = {
        "choices": [{"message": {"role": "assistant", "content": "{}"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }

    with respx.mock(assert_all_called=True) as router:
        router.post("http://127.0.0.1:9/v1/chat/completions").mock(return_value=httpx.Response(200, json=body))
        backend = OpenAICompatibleBackend(
            "qwen", base_url="http://127.0.0.1:9/v1", model_id="qwen", stream=True, atimeout=clock.timeout
        )
        response = await backend.complete(REQUEST)
        await backend.aclose()
    assert (response.text, response.prompt_tokens) == ("{}", 1)
