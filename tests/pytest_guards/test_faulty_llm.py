"""FaultyLLM: scripted behaviours through a real httpx client, virtual latency, the unmatched-request check."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from fragrance_ai.clock import VirtualClock
from fragrance_ai.llm.backends import (
    BackendClientError,
    BackendConnectionError,
    BackendError,
    BackendInvalidResponse,
    BackendRateLimited,
    BackendServerError,
    BackendTimeout,
    CompletionRequest,
    OpenAICompatibleBackend,
)
from fragrance_ai.llm.schemas import brief_schema
from pytest_guards import FaultyLLM, UnmatchedRequestError
from pytest_guards.faults import (
    Behaviour,
    connection_error,
    default_base_url,
    empty,
    fenced,
    flaky,
    http_error,
    invalid_json,
    malformed_body,
    prose,
    schema_violation,
    timeout,
    truncated,
    valid,
)

BRIEF = Draft202012Validator(brief_schema())
BODY = {"model": "qwen2.5:7b", "messages": [{"role": "user", "content": "a fresh summer scent"}], "temperature": 0.2}


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def llm(clock: VirtualClock) -> Iterator[FaultyLLM]:
    with FaultyLLM(["qwen", "mistral", "llama"], asleep=clock.asleep, sleep=clock.sleep) as faulty:
        yield faulty


async def post(client: httpx.AsyncClient, llm: FaultyLLM, model: str = "qwen", **kwargs: Any) -> httpx.Response:
    return await client.post(f"{llm.base_url(model)}/chat/completions", json=BODY, **kwargs)


def content(response: httpx.Response) -> str:
    text: str = response.json()["choices"][0]["message"]["content"]
    return text


# ------------------------------------------------------------------------------------------ base URLs


def test_every_model_gets_a_distinct_loopback_base_url() -> None:
    faulty = FaultyLLM(["qwen", "mistral", "qwen2.5:7b"])
    urls = [faulty.base_url(m) for m in faulty.models]
    assert urls[0] == "http://127.0.0.1:9/qwen/v1"
    assert len(set(urls)) == 3
    assert all(httpx.URL(u).host == "127.0.0.1" for u in urls)
    assert default_base_url("a/b") == "http://127.0.0.1:9/a%2Fb/v1"


def test_custom_base_urls_must_be_distinct_http_urls() -> None:
    faulty = FaultyLLM(["qwen"], base_url_for=lambda m: f"http://127.0.0.1:8001/{m}/api/v1/")
    assert faulty.base_url("qwen") == "http://127.0.0.1:8001/qwen/api/v1"
    with pytest.raises(ValueError, match=re.escape("models 'a' and 'b' share the base URL 'http://127.0.0.1:9/v1'")):
        FaultyLLM(["a", "b"], base_url_for=lambda m: "http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="must be an http\\(s\\) URL, found 'ftp://x'"):
        FaultyLLM(["a"], base_url_for=lambda m: "ftp://x")


def test_unknown_model_names_the_configured_ones(llm: FaultyLLM) -> None:
    with pytest.raises(ValueError, match="unknown model 'gpt'; configured models: qwen, mistral, llama"):
        llm.set("gpt", timeout())
    with pytest.raises(ValueError, match="unknown model 'gpt'"):
        llm.base_url("gpt")


def test_start_twice_is_an_error_and_stop_is_idempotent(llm: FaultyLLM) -> None:
    with pytest.raises(RuntimeError, match="already started"):
        llm.start()
    llm.stop()
    llm.stop()
    assert "stopped" in repr(llm)


# ------------------------------------------------------------------------------------------ behaviours


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
        (http_error(400), 400),
    ],
)
async def test_response_behaviours_answer_with_their_status(llm: FaultyLLM, behaviour: Behaviour, status: int) -> None:
    llm.set("qwen", behaviour)
    async with httpx.AsyncClient(timeout=5) as client:
        response = await post(client, llm)
    assert response.status_code == status
    assert response.headers.get("retry-after") == (f"{behaviour.retry_after:g}" if behaviour.retry_after else None)
    assert llm.calls("qwen")[0].status == status


async def test_valid_answer_is_a_schema_valid_brief_echoing_the_model(llm: FaultyLLM) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await post(client, llm)
    assert response.json()["model"] == "qwen2.5:7b"
    assert not list(BRIEF.iter_errors(json.loads(content(response))))


async def test_content_behaviours_break_the_brief_as_named(llm: FaultyLLM) -> None:
    llm.set("qwen", invalid_json(), empty(), malformed_body())
    async with httpx.AsyncClient(timeout=5) as client:
        broken, blank, html = [await post(client, llm) for _ in range(3)]
    with pytest.raises(json.JSONDecodeError):
        json.loads(content(broken))
    assert content(blank) == ""
    with pytest.raises(json.JSONDecodeError):
        html.json()


async def test_timeout_raises_read_timeout_after_the_clients_read_timeout_in_virtual_time(
    llm: FaultyLLM, clock: VirtualClock
) -> None:
    llm.set("qwen", timeout())
    async with httpx.AsyncClient(timeout=httpx.Timeout(7.0, connect=1.0)) as client:
        with pytest.raises(httpx.ReadTimeout) as caught:
            await post(client, llm)
    assert caught.value.request.url == f"{llm.base_url('qwen')}/chat/completions"
    assert clock.slept == [7.0]
    assert clock() == 7.0
    assert llm.calls("qwen")[0].outcome == "timeout"
    assert llm.calls("qwen")[0].status is None


async def test_timeout_with_latency_waits_that_long_instead(llm: FaultyLLM, clock: VirtualClock) -> None:
    llm.set("qwen", timeout().after(2))
    async with httpx.AsyncClient(timeout=30) as client:
        with pytest.raises(httpx.ReadTimeout):
            await post(client, llm)
    assert clock.slept == [2.0]


async def test_timeout_inside_a_shorter_virtual_deadline_ends_at_the_deadline(llm: FaultyLLM, clock: VirtualClock) -> None:
    llm.set("qwen", timeout())
    async with httpx.AsyncClient(timeout=30) as client:
        with pytest.raises(TimeoutError):
            async with clock.timeout(3):
                await post(client, llm)
    assert clock() == 3.0


async def test_connection_error_raises_connect_error(llm: FaultyLLM) -> None:
    llm.set("qwen", connection_error())
    async with httpx.AsyncClient(timeout=5) as client:
        with pytest.raises(httpx.ConnectError):
            await post(client, llm)
    assert llm.calls("qwen")[0].outcome == "connection_error"


async def test_latency_advances_the_virtual_clock_without_real_sleep(llm: FaultyLLM, clock: VirtualClock) -> None:
    llm.set("qwen", valid().after(2.5), http_error(503).after(0.5), valid())
    async with httpx.AsyncClient(timeout=5) as client:
        statuses = [(await post(client, llm)).status_code for _ in range(3)]
    assert statuses == [200, 503, 200]
    assert clock.slept == [2.5, 0.5]
    assert clock() == 3.0


async def test_latency_past_a_virtual_deadline_times_out(llm: FaultyLLM, clock: VirtualClock) -> None:
    llm.set("qwen", valid().after(5))
    async with httpx.AsyncClient(timeout=30) as client:
        with pytest.raises(TimeoutError):
            async with clock.timeout(1):
                await post(client, llm)
    assert clock() == 1.0


def test_sync_clients_wait_with_the_sync_sleep(llm: FaultyLLM, clock: VirtualClock) -> None:
    llm.set("qwen", valid().after(1.5), timeout())
    with httpx.Client(timeout=4) as client:
        url = f"{llm.base_url('qwen')}/chat/completions"
        assert client.post(url, json=BODY).status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            client.post(url, json=BODY)
    assert clock.slept == [1.5, 4.0]


async def test_sync_client_inside_async_code_still_waits_with_the_sync_sleep(llm: FaultyLLM, clock: VirtualClock) -> None:
    llm.set("qwen", valid().after(1.5))
    with httpx.Client(timeout=4) as client:
        assert client.post(f"{llm.base_url('qwen')}/chat/completions", json=BODY).status_code == 200
    assert clock.slept == [1.5]


async def test_scripts_are_per_model_and_a_finite_script_ends_in_valid(llm: FaultyLLM) -> None:
    llm.set("qwen", http_error(500).times(2))
    llm.set("mistral", timeout())
    async with httpx.AsyncClient(timeout=5) as client:
        qwen = [(await post(client, llm, "qwen")).status_code for _ in range(4)]
        with pytest.raises(httpx.ReadTimeout):
            await post(client, llm, "mistral")
        assert (await post(client, llm, "llama")).status_code == 200
    assert qwen == [500, 500, 200, 200]
    assert (llm.call_count("qwen"), llm.call_count("mistral"), llm.call_count("llama")) == (4, 1, 1)


async def test_flaky_is_reproducible_across_set(llm: FaultyLLM) -> None:
    async def statuses() -> list[int]:
        llm.set("qwen", flaky(http_error(502), 0.4, seed=11))
        async with httpx.AsyncClient(timeout=5) as client:
            return [(await post(client, llm)).status_code for _ in range(30)]

    first, second = await statuses(), await statuses()
    assert first == second
    assert {200, 502} == set(first)


async def test_plain_data_scripts_work_in_set(llm: FaultyLLM) -> None:
    llm.set("qwen", [{"http_error": 503, "retry_after": 2, "times": 1}, "valid"])
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await post(client, llm)).headers["retry-after"] == "2"
        assert (await post(client, llm)).status_code == 200


# ------------------------------------------------------------------------------- the calls log, reset


async def test_calls_log_records_parsed_bodies_kinds_and_statuses(llm: FaultyLLM) -> None:
    llm.set("qwen", http_error(503).times(1), connection_error(), valid())
    async with httpx.AsyncClient(timeout=5) as client:
        await post(client, llm)
        with pytest.raises(httpx.ConnectError):
            await post(client, llm)
        await client.post(f"{llm.base_url('qwen')}/chat/completions", content=b"not json")
    calls = llm.calls("qwen")
    assert [(c.index, c.behaviour, c.outcome, c.status) for c in calls] == [
        (0, "http_error", "response", 503),
        (1, "connection_error", "connection_error", None),
        (2, "valid", "response", 200),
    ]
    assert calls[0].request == BODY
    assert calls[0].model == "qwen"
    assert calls[2].request is None


async def test_set_restarts_the_index_and_reset_restores_valid(llm: FaultyLLM) -> None:
    llm.set("qwen", http_error(500))
    async with httpx.AsyncClient(timeout=5) as client:
        await post(client, llm)
        llm.set("qwen", http_error(502))
        assert (await post(client, llm)).status_code == 502
        assert [c.index for c in llm.calls("qwen")] == [0]
        await client.get("http://127.0.0.1:9/nowhere")
        llm.reset()
        assert llm.unmatched == []
        assert llm.call_count("qwen") == 0
        assert (await post(client, llm)).status_code == 200


async def test_concurrent_calls_get_distinct_indices(llm: FaultyLLM) -> None:
    llm.set("qwen", valid().after(0.1))
    async with httpx.AsyncClient(timeout=5) as client:
        responses = await asyncio.gather(*(post(client, llm) for _ in range(25)))
    assert sorted(r.json()["id"] for r in responses) == sorted(f"chatcmpl-fake-qwen-{i}" for i in range(25))
    assert sorted(c.index for c in llm.calls("qwen")) == list(range(25))


# ---------------------------------------------------------------------------------- unmatched requests


async def test_unmatched_request_is_recorded_and_check_names_it_even_when_the_501_was_swallowed(llm: FaultyLLM) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            response = await client.post("http://127.0.0.1:9/gpt/v1/chat/completions", json=BODY)
            response.raise_for_status()
        except Exception:  # noqa: BLE001 - a guard's broad except, which must not hide the problem
            pass
        wrong_method = await client.get(f"{llm.base_url('qwen')}/chat/completions")
    assert wrong_method.status_code == 501
    assert "no configured model answers GET" in wrong_method.json()["error"]["message"]
    assert llm.unmatched == [
        "POST http://127.0.0.1:9/gpt/v1/chat/completions",
        "GET http://127.0.0.1:9/qwen/v1/chat/completions",
    ]
    assert llm.call_count("qwen") == 0
    with pytest.raises(UnmatchedRequestError) as caught:
        llm.check()
    assert "2 requests matched no configured model" in str(caught.value)
    assert "POST http://127.0.0.1:9/gpt/v1/chat/completions" in str(caught.value)


async def test_check_passes_when_every_request_matched(llm: FaultyLLM) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        await post(client, llm, "mistral")
    llm.check()


async def test_check_still_works_after_stop(llm: FaultyLLM) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        await client.post("http://127.0.0.1:9/gpt/v1/chat/completions", json=BODY)
    llm.stop()
    with pytest.raises(UnmatchedRequestError, match=r"^faulty_llm: 1 request matched no configured model: POST http://127\.0\.0\.1:9/gpt/v1/chat/completions"):
        llm.check()


# ----------------------------------------------------------------------------- with the real backend


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [
        (http_error(503), BackendServerError),
        (http_error(429, retry_after=2), BackendRateLimited),
        (http_error(404), BackendClientError),
        (timeout(), BackendTimeout),
        (connection_error(), BackendConnectionError),
        (malformed_body(), BackendInvalidResponse),
    ],
)
async def test_the_openai_backend_classifies_each_fault(
    llm: FaultyLLM, clock: VirtualClock, behaviour: Behaviour, error: type[BackendError]
) -> None:
    llm.set("qwen", behaviour)
    backend = OpenAICompatibleBackend("qwen", base_url=llm.base_url("qwen"), model_id="qwen2.5:7b", timeout=12)
    try:
        with pytest.raises(error) as caught:
            await backend.complete(CompletionRequest.from_prompt("a fresh summer scent"))
    finally:
        await backend.aclose()
    if isinstance(caught.value, BackendRateLimited):
        assert caught.value.retry_after == 2.0
    assert llm.calls("qwen")[0].request["model"] == "qwen2.5:7b"


async def test_the_openai_backend_reads_the_text_of_content_behaviours(llm: FaultyLLM) -> None:
    llm.set("qwen", prose(), truncated())
    backend = OpenAICompatibleBackend("qwen", base_url=llm.base_url("qwen"), model_id="qwen2.5:7b")
    try:
        first = await backend.complete(CompletionRequest.from_prompt("x"))
        second = await backend.complete(CompletionRequest.from_prompt("x"))
    finally:
        await backend.aclose()
    assert first.text.startswith("Sure! Here is your brief: {")
    assert first.finish_reason == "stop"
    assert second.finish_reason == "length"
