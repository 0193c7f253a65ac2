"""The fake LLM server streams over a real loopback socket, and the streaming backend reads it.

Real sockets and real time (short, bounded): the stalls are tenths of a second, the backend's
``chunk_timeout`` a fraction of a second.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from fragrance_ai.llm.backends import BackendTimeout, CompletionRequest, OpenAICompatibleBackend
from pytest_guards.faults import FakeLLMServer, cut_stream, finish_length, stall, valid

REQUEST = CompletionRequest.from_prompt("a rainy forest", system="Answer JSON.", max_tokens=20)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(["qwen"], max_hold=3.0) as fake:
        yield fake


@pytest.fixture
async def backend(server: FakeLLMServer) -> AsyncIterator[OpenAICompatibleBackend]:
    server.reset()
    qwen = OpenAICompatibleBackend(
        "qwen", base_url=server.base_url("qwen"), model_id="qwen", stream=True, chunk_timeout=0.5, timeout=5.0
    )
    yield qwen
    await qwen.aclose()


async def test_the_server_streams_sse_chunks_ending_in_done_with_usage(server: FakeLLMServer) -> None:
    body = {
        "model": "qwen", "messages": [{"role": "user", "content": "x"}], "stream": True, "stream_options": {"include_usage": True}
    }
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.post(f"{server.base_url('qwen')}/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [e for e in response.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    last = json.loads(events[-2][6:])
    assert last["choices"] == []
    assert last["usage"]["completion_tokens"] > 0
    assert json.loads(events[-3][6:])["choices"][0]["finish_reason"] == "stop"


async def test_without_include_usage_no_usage_chunk(server: FakeLLMServer) -> None:
    body = {"model": "qwen", "messages": [{"role": "user", "content": "x"}], "stream": True}
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.post(f"{server.base_url('qwen')}/chat/completions", json=body)
    assert '"usage"' not in response.text


async def test_the_backend_reads_a_real_stream(server: FakeLLMServer, backend: OpenAICompatibleBackend) -> None:
    server.set("qwen", valid(), finish_length())
    whole = await backend.complete(REQUEST)
    json.loads(whole.text)
    assert whole.completion_tokens
    cut = await backend.complete(REQUEST)
    assert (cut.finish_reason, len(cut.text), cut.completion_tokens) == ("length", 80, 20)


async def test_a_real_cut_reaches_the_backend_as_a_partial_answer(
    server: FakeLLMServer, backend: OpenAICompatibleBackend
) -> None:
    server.set("qwen", cut_stream(900))
    response = await backend.complete(REQUEST)
    assert response.text
    assert response.finish_reason is None
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


async def test_a_real_stall_past_chunk_timeout_is_a_timeout(server: FakeLLMServer, backend: OpenAICompatibleBackend) -> None:
    server.set("qwen", stall(1.0))
    with pytest.raises(BackendTimeout, match=r"no stream chunk within 0\.5s"):
        await backend.complete(REQUEST)
