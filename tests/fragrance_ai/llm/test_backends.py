"""Tests for fragrance_ai.llm.backends: the HTTP backend through respx, the simulator offline."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jsonschema
import pytest
import respx

from fragrance_ai.clock import VirtualClock
from fragrance_ai.config_loader import ModelConfig
from fragrance_ai.llm.backends import (
    FEEDBACK_ANSWER_LIMIT,
    BackendClientError,
    BackendConnectionError,
    BackendError,
    BackendInvalidResponse,
    BackendRateLimited,
    BackendServerError,
    BackendTimeout,
    ChatMessage,
    CompletionRequest,
    CompletionResponse,
    LLMBackend,
    OpenAICompatibleBackend,
    SimulatedBackend,
    build_backend,
    error_kind,
    parse_retry_after,
)
from fragrance_ai.llm.schemas import brief_schema
from fragrance_ai.llm.vocabulary import FAMILIES, NOTES_BY_FAMILY

BASE = "http://127.0.0.1:9/v1"
KEY = "sk-test-SECRET-4f1c2a"
ENV = {"FRAGRANCE_TEST_KEY": KEY}
REQUEST = CompletionRequest.from_prompt("a summer citrus scent", system="Answer JSON.", temperature=0.3, top_p=0.8, max_tokens=99)


def ok_body(content: Any = '{"ok": true}', **extra: Any) -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "model": "served-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        **extra,
    }


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_mocked=True, assert_all_called=True) as r:
        yield r


@pytest.fixture
async def backend() -> AsyncIterator[OpenAICompatibleBackend]:
    b = OpenAICompatibleBackend(
        "qwen",
        base_url=BASE,
        model_id="qwen2.5-7b-instruct",
        api_key_env="FRAGRANCE_TEST_KEY",
        timeout=12.0,
        connect_timeout=2.0,
        environ=ENV,
    )
    yield b
    await b.aclose()


# ------------------------------------------------------------------------------------ request types


def test_from_prompt_builds_system_then_user() -> None:
    assert REQUEST.messages == (ChatMessage("system", "Answer JSON."), ChatMessage("user", "a summer citrus scent"))
    assert (REQUEST.temperature, REQUEST.top_p, REQUEST.max_tokens, REQUEST.response_format_json) == (0.3, 0.8, 99, True)
    assert CompletionRequest.from_prompt("hi").messages == (ChatMessage("user", "hi"),)
    assert REQUEST.prompt == "a summer citrus scent"


def test_with_feedback_appends_answer_and_feedback_and_truncates_long_answers() -> None:
    again = REQUEST.with_feedback("{not json", "Your answer was not valid JSON: expected '}'. Answer JSON only.")
    assert again.messages[:2] == REQUEST.messages
    assert again.messages[2] == ChatMessage("assistant", "{not json")
    assert again.messages[3] == ChatMessage("user", "Your answer was not valid JSON: expected '}'. Answer JSON only.")
    assert (again.temperature, again.top_p, again.max_tokens) == (0.3, 0.8, 99)
    assert len(REQUEST.messages) == 2  # the original is untouched

    huge = REQUEST.with_feedback("x" * 1_000_000, "too long")
    assert FEEDBACK_ANSWER_LIMIT <= len(huge.messages[2].content) < FEEDBACK_ANSWER_LIMIT + 100
    assert huge.messages[2].content.endswith("[... truncated]")


def test_request_types_are_frozen_and_validated() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        REQUEST.temperature = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="role must be one of"):
        ChatMessage("robot", "hi")
    with pytest.raises(ValueError, match="at least one message"):
        CompletionRequest(())
    with pytest.raises(ValueError, match="max_tokens"):
        CompletionRequest.from_prompt("hi", max_tokens=0)
    as_list = CompletionRequest([ChatMessage("user", "hi")])  # type: ignore[arg-type]
    assert as_list.messages == (ChatMessage("user", "hi"),)


# ------------------------------------------------------------------------------ the HTTP happy path


async def test_request_body_headers_and_parsed_response(router: respx.MockRouter, backend: OpenAICompatibleBackend) -> None:
    route = router.post("/chat/completions").respond(200, json=ok_body('{"description": "x"}'))
    response = await backend.complete(REQUEST)

    assert response == CompletionResponse('{"description": "x"}', "qwen", "stop", 11, 7)
    sent = route.calls.last.request
    assert sent.url == f"{BASE}/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.content) == {
        "model": "qwen2.5-7b-instruct",
        "messages": [{"role": "system", "content": "Answer JSON."}, {"role": "user", "content": "a summer citrus scent"}],
        "temperature": 0.3,
        "top_p": 0.8,
        "max_tokens": 99,
        "response_format": {"type": "json_object"},
    }
    # the model's own timeouts apply per request, whoever owns the client
    assert sent.extensions["timeout"] == {"connect": 2.0, "read": 12.0, "write": 12.0, "pool": 12.0}
    assert (backend.calls, backend.failures, backend.prompt_tokens, backend.completion_tokens) == (1, {}, 11, 7)


async def test_no_response_format_when_not_asked(router: respx.MockRouter, backend: OpenAICompatibleBackend) -> None:
    route = router.post("/chat/completions").respond(200, json=ok_body())
    await backend.complete(CompletionRequest.from_prompt("hi", response_format_json=False))
    assert "response_format" not in json.loads(route.calls.last.request.content)


async def test_trailing_slash_is_stripped_and_no_key_env_means_no_header(router: respx.MockRouter) -> None:
    route = router.post("/chat/completions").respond(200, json=ok_body())
    b = OpenAICompatibleBackend("llama", base_url=BASE + "/", model_id="llama3.1", environ=ENV)
    try:
        await b.complete(REQUEST)
    finally:
        await b.aclose()
    assert route.calls.last.request.url == f"{BASE}/chat/completions"
    assert "authorization" not in route.calls.last.request.headers


async def test_missing_key_env_sends_no_header_and_warns_once(
    router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    route = router.post("/chat/completions").respond(200, json=ok_body())
    environ: dict[str, str] = {}
    b = OpenAICompatibleBackend("qwen", base_url=BASE, model_id="q", api_key_env="FRAGRANCE_TEST_KEY", environ=environ)
    with caplog.at_level(logging.WARNING, logger="fragrance_ai.llm.backends"):
        await b.complete(REQUEST)
        await b.complete(REQUEST)
    assert all("authorization" not in call.request.headers for call in route.calls)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "FRAGRANCE_TEST_KEY" in warnings[0].getMessage()

    # the key is read at call time: setting it later (a rotation, a late export) takes effect at once
    environ["FRAGRANCE_TEST_KEY"] = "sk-later"
    await b.complete(REQUEST)
    assert route.calls.last.request.headers["authorization"] == "Bearer sk-later"
    await b.aclose()


async def test_key_is_read_from_os_environ_by_default(router: respx.MockRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    route = router.post("/chat/completions").respond(200, json=ok_body())
    b = OpenAICompatibleBackend("qwen", base_url=BASE, model_id="q", api_key_env="FRAGRANCE_TEST_KEY")
    monkeypatch.setenv("FRAGRANCE_TEST_KEY", "sk-from-os")
    await b.complete(REQUEST)
    await b.aclose()
    assert route.calls.last.request.headers["authorization"] == "Bearer sk-from-os"


# ------------------------------------------------------------------------------------------ failures


@pytest.mark.parametrize("exc", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.WriteTimeout, httpx.PoolTimeout])
async def test_timeouts(router: respx.MockRouter, backend: OpenAICompatibleBackend, exc: type[Exception]) -> None:
    router.post("/chat/completions").mock(side_effect=exc)
    with pytest.raises(BackendTimeout) as info:
        await backend.complete(REQUEST)
    assert (info.value.kind, info.value.model, error_kind(info.value)) == ("timeout", "qwen", "timeout")
    assert isinstance(info.value.__cause__, exc)
    assert backend.failures == {"timeout": 1}


async def test_timeout_message_names_the_configured_limit(router: respx.MockRouter, backend: OpenAICompatibleBackend) -> None:
    router.post("/chat/completions").mock(side_effect=httpx.ConnectTimeout)
    with pytest.raises(BackendTimeout, match=r"no connection within 2s"):
        await backend.complete(REQUEST)


@pytest.mark.parametrize("exc", [httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.UnsupportedProtocol])
async def test_connection_errors(router: respx.MockRouter, backend: OpenAICompatibleBackend, exc: type[Exception]) -> None:
    router.post("/chat/completions").mock(side_effect=exc)
    with pytest.raises(BackendConnectionError) as info:
        await backend.complete(REQUEST)
    assert (info.value.kind, error_kind(info.value)) == ("connection_error", "connection_error")
    assert exc.__name__ in str(info.value)


async def test_429_with_retry_after_seconds(router: respx.MockRouter, backend: OpenAICompatibleBackend) -> None:
    router.post("/chat/completions").respond(429, headers={"Retry-After": "7"}, json={"error": "slow down"})
    with pytest.raises(BackendRateLimited) as info:
        await backend.complete(REQUEST)
    e = info.value
    assert (e.kind, e.status, e.retry_after, error_kind(e)) == ("rate_limited", 429, 7.0, "http_error")
    assert "retry after 7s" in str(e)


async def test_429_with_retry_after_http_date_measured_from_the_date_header(
    router: respx.MockRouter, backend: OpenAICompatibleBackend
) -> None:
    router.post("/chat/completions").respond(
        429,
        headers={"Retry-After": "Wed, 21 Oct 2015 07:30:00 GMT", "Date": "Wed, 21 Oct 2015 07:28:00 GMT"},
    )
    with pytest.raises(BackendRateLimited) as info:
        await backend.complete(REQUEST)
    assert info.value.retry_after == 120.0


async def test_429_with_http_date_and_no_date_header_uses_the_injected_wallclock(router: respx.MockRouter) -> None:
    router.post("/chat/completions").respond(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:30:00 GMT"})
    wall = 1445412600.0 - 30  # 07:29:30 that day, UTC
    b = OpenAICompatibleBackend("qwen", base_url=BASE, model_id="q", wallclock=lambda: wall)
    with pytest.raises(BackendRateLimited) as info:
        await b.complete(REQUEST)
    await b.aclose()
    assert info.value.retry_after == 30.0


@pytest.mark.parametrize("header", [None, "soon", "", "-5"])
async def test_429_without_a_readable_retry_after(
    router: respx.MockRouter, backend: OpenAICompatibleBackend, header: str | None
) -> None:
    headers = {} if header is None else {"Retry-After": header}
    router.post("/chat/completions").respond(429, headers=headers)
    with pytest.raises(BackendRateLimited) as info:
        await backend.complete(REQUEST)
    assert info.value.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors(router: respx.MockRouter, backend: OpenAICompatibleBackend, status: int) -> None:
    router.post("/chat/completions").respond(status, text="upstream exploded")
    with pytest.raises(BackendServerError) as info:
        await backend.complete(REQUEST)
    e = info.value
    assert (e.kind, e.status, error_kind(e), e.model) == ("server_error", status, "http_error", "qwen")
    assert f"HTTP {status}" in str(e)
    assert e.detail == "upstream exploded"


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_client_errors(router: respx.MockRouter, backend: OpenAICompatibleBackend, status: int) -> None:
    router.post("/chat/completions").respond(status, json={"error": {"message": "model not found"}})
    with pytest.raises(BackendClientError) as info:
        await backend.complete(REQUEST)
    assert (info.value.kind, info.value.status, error_kind(info.value)) == ("client_error", status, "http_error")
    assert backend.failures == {"client_error": 1}


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"text": "<html>502 Bad Gateway</html>"}, "not JSON"),
        ({"content": b"\xff\xfe\x00garbage"}, "not JSON"),
        ({"json": ["a", "list"]}, "choices"),
        ({"json": {"object": "chat.completion"}}, "choices"),
        ({"json": {"choices": []}}, "choices"),
        ({"json": {"choices": [{"finish_reason": "stop"}]}}, "choices"),
        ({"json": ok_body(None)}, "NoneType, expected a string"),
        ({"json": ok_body(42)}, "int, expected a string"),
        ({"json": ok_body({"nested": "object"})}, "dict, expected a string"),
    ],
)
async def test_malformed_bodies_are_invalid_responses(
    router: respx.MockRouter, backend: OpenAICompatibleBackend, kwargs: dict[str, Any], why: str
) -> None:
    router.post("/chat/completions").respond(200, **kwargs)
    with pytest.raises(BackendInvalidResponse, match=why) as info:
        await backend.complete(REQUEST)
    assert (info.value.kind, error_kind(info.value)) == ("invalid_response", "invalid_response")


async def test_a_redirect_is_an_invalid_response_not_followed(router: respx.MockRouter, backend: OpenAICompatibleBackend) -> None:
    router.post("/chat/completions").respond(307, headers={"Location": "https://127.0.0.1:9/v1/chat/completions"})
    with pytest.raises(BackendInvalidResponse, match="unexpected HTTP 307"):
        await backend.complete(REQUEST)


@pytest.mark.parametrize("status", [200, 400, 429, 500])
async def test_messages_never_contain_the_key_or_the_body(
    router: respx.MockRouter, backend: OpenAICompatibleBackend, status: int
) -> None:
    body = f"BODY-MARKER echoing Authorization: Bearer {KEY} " + "z" * 5000
    router.post("/chat/completions").respond(status, text=body)
    with pytest.raises(BackendError) as info:
        await backend.complete(REQUEST)
    e = info.value
    for text in (str(e), repr(e), str(e.args)):
        assert KEY not in text
        assert "BODY-MARKER" not in text
    # a short, redacted excerpt is kept for debugging
    assert e.detail.startswith("BODY-MARKER")
    assert len(e.detail) <= 200
    assert KEY not in e.detail
    assert KEY not in repr(backend)


async def test_base_url_credentials_stay_out_of_repr() -> None:
    b = OpenAICompatibleBackend("qwen", base_url="http://user:hunter2@127.0.0.1:9/v1", model_id="q")
    assert "hunter2" not in repr(b)
    assert "127.0.0.1:9/v1" in repr(b)


async def test_an_unmatched_respx_route_assertion_propagates() -> None:
    with respx.mock(base_url=BASE, assert_all_mocked=True, assert_all_called=False) as r:
        r.post("/models").respond(200, json={})
        b = OpenAICompatibleBackend("qwen", base_url=BASE, model_id="q")
        with pytest.raises(AssertionError) as info:
            await b.complete(REQUEST)
        await b.aclose()
    assert not isinstance(info.value, BackendError)
    assert "not mocked" in str(info.value)
    assert b.failures == {}


async def test_cancellation_propagates(backend: OpenAICompatibleBackend) -> None:
    started = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.Event().wait()  # never set: only cancellation ends this
        raise AssertionError("unreachable")

    # a cancelled call is never recorded as "called", so this router does not insist on it
    with respx.mock(base_url=BASE, assert_all_mocked=True, assert_all_called=False) as router:
        router.post("/chat/completions").mock(side_effect=hang)
        task = asyncio.create_task(backend.complete(REQUEST))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert backend.failures == {}


# -------------------------------------------------------------------------------- client ownership


async def test_a_passed_client_is_not_closed(router: respx.MockRouter) -> None:
    router.post("/chat/completions").respond(200, json=ok_body())
    async with httpx.AsyncClient() as client:
        b = OpenAICompatibleBackend("qwen", base_url=BASE, model_id="q", client=client)
        await b.complete(REQUEST)
        await b.aclose()
        assert not client.is_closed
        await b.complete(REQUEST)  # still usable after the backend's aclose
    assert len(router.calls) == 2


async def test_an_owned_client_is_made_lazily_and_closed_by_aclose(router: respx.MockRouter) -> None:
    router.post("/chat/completions").respond(200, json=ok_body())
    b = OpenAICompatibleBackend("qwen", base_url=BASE, model_id="q")
    assert b._client is None  # nothing opened before the first call
    _first, _second = await asyncio.gather(b.complete(REQUEST), b.complete(REQUEST))
    owned = b._client
    assert owned is not None
    assert not owned.is_closed
    await b.aclose()
    assert owned.is_closed
    await b.aclose()  # idempotent


def test_bad_construction_is_reported_plainly() -> None:
    with pytest.raises(ValueError, match="base_url must be an http"):
        OpenAICompatibleBackend("qwen", base_url="127.0.0.1:8000/v1", model_id="q")
    with pytest.raises(ValueError, match="model_id"):
        OpenAICompatibleBackend("qwen", base_url=BASE, model_id="")
    with pytest.raises(ValueError, match="connect_timeout"):
        OpenAICompatibleBackend("qwen", base_url=BASE, model_id="q", connect_timeout=0)


# ------------------------------------------------------------------------------- kinds and parsing


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (BackendTimeout("m"), "timeout"),
        (BackendConnectionError("m"), "connection_error"),
        (BackendRateLimited("m", 1.0), "http_error"),
        (BackendServerError("m", 503), "http_error"),
        (BackendClientError("m", 404), "http_error"),
        (BackendInvalidResponse("m"), "invalid_response"),
        (TimeoutError(), "timeout"),
        (httpx.ReadTimeout("t"), "timeout"),
        (httpx.ConnectError("c"), "connection_error"),
        (ConnectionResetError(), "connection_error"),
        (ValueError("v"), "error"),
        (KeyError("k"), "error"),
        (asyncio.CancelledError(), "error"),
    ],
)
def test_error_kind(exc: BaseException, kind: str) -> None:
    assert error_kind(exc) == kind


def test_fine_kinds_are_fixed_codes() -> None:
    kinds = (
        BackendError, BackendTimeout, BackendConnectionError, BackendRateLimited, BackendServerError, BackendClientError,
        BackendInvalidResponse,
    )
    assert [c.kind for c in kinds] == [
        "error", "timeout", "connection_error", "rate_limited", "server_error", "client_error", "invalid_response",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "date", "expected"),
    [
        ("0", None, 0.0),
        (" 120 ", None, 120.0),
        ("1.5", None, 1.5),
        ("Wed, 21 Oct 2015 07:30:00 GMT", "Wed, 21 Oct 2015 07:29:00 GMT", 60.0),
        ("Wed, 21 Oct 2015 07:30:00 GMT", "Wed, 21 Oct 2015 08:00:00 GMT", 0.0),  # in the past
        ("Wednesday, 21-Oct-15 07:30:00 GMT", "Wed, 21 Oct 2015 07:29:50 GMT", 10.0),  # obsolete RFC 850 form
        (None, None, None),
        ("", None, None),
        ("later", None, None),
        ("12abc", None, None),
        ("1e999", None, None),
    ],
)
def test_parse_retry_after(value: str | None, date: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, date=date, wallclock=lambda: 0.0) == expected


def test_parse_retry_after_falls_back_to_wallclock_when_the_date_header_is_unreadable() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", date="garbage", wallclock=lambda: 1445412600.0 - 5) == 5.0


# ---------------------------------------------------------------------------------- config, factory


def test_from_config_and_build_backend() -> None:
    cfg = ModelConfig("mistral", backend="openai", model_id="mistral-7b", base_url="http://127.0.0.1:11434/v1/",
                      api_key_env="OLLAMA_KEY", timeout=20, connect_timeout=3)  # fmt: skip
    b = build_backend(cfg)
    assert isinstance(b, OpenAICompatibleBackend)
    assert (b.name, b.model_id, b.api_key_env, b.url) == ("mistral", "mistral-7b", "OLLAMA_KEY", "http://127.0.0.1:11434/v1/chat/completions")
    assert (b.timeout.connect, b.timeout.read) == (3.0, 20.0)
    sim = build_backend(ModelConfig("qwen"))
    assert isinstance(sim, SimulatedBackend)
    assert sim.name == "qwen"
    assert isinstance(b, LLMBackend)
    assert isinstance(sim, LLMBackend)


def test_factory_errors_speak_plainly() -> None:
    with pytest.raises(ValueError, match="needs base_url"):
        build_backend(ModelConfig("qwen", backend="openai", model_id="q"))
    with pytest.raises(ValueError, match="unknown backend 'grpc'"):
        build_backend(ModelConfig("qwen", backend="grpc"))


async def test_build_backend_shares_a_passed_client(router: respx.MockRouter) -> None:
    router.post("/chat/completions").respond(200, json=ok_body())
    async with httpx.AsyncClient() as client:
        b = build_backend(ModelConfig("qwen", backend="openai", model_id="q", base_url=BASE), client=client)
        await b.complete(REQUEST)
        await b.aclose()
        assert not client.is_closed


# -------------------------------------------------------------------------------------- simulator

VALIDATOR = jsonschema.Draft202012Validator(brief_schema())


def varied_prompts(n: int) -> list[str]:
    """Deterministic, varied prompts: keywords, family names, notes, noise, unicode, empty."""
    words = ["summer", "winter", "evening", "office", "romantic", "sweet", "ocean", "bold", "light", "long-lasting",
             "fougère", "FLORAL", "green tea", "oud", "rose", "vanilla", "sea salt", "dessert", "night", "spring"]  # fmt: skip
    extras = ["", "   ", "향수 추천해줘", "{\"json\": true}", "x" * 500, "a" * 3, "no notes here", "😀 party"]
    prompts = []
    for i in range(n):
        picked = [words[(i * 7 + k * 3) % len(words)] for k in range(i % 4)]
        prompts.append(f"{extras[i % len(extras)]} a {' '.join(picked)} scent #{i}")
    return prompts


async def test_simulator_is_always_schema_valid() -> None:
    prompts = varied_prompts(200)
    for name in ("qwen", "mistral", "llama"):
        b = SimulatedBackend(name)
        for prompt in prompts:
            response = await b.complete(CompletionRequest.from_prompt(prompt))
            brief = json.loads(response.text)
            errors = list(VALIDATOR.iter_errors(brief))
            assert not errors, f"{name} / {prompt!r}: {errors[0].message}"
            assert 3 <= len(brief["notes"]) <= 7
            assert 1 <= len(brief["families"]) <= 3
            assert len(set(brief["notes"])) == len(brief["notes"])
            family_notes = {n for f in brief["families"] for n in NOTES_BY_FAMILY[f]}
            assert set(brief["notes"]) <= family_notes
            for note in brief["notes"]:
                assert note in brief["description"]
        assert b.calls == 200


async def test_simulator_is_deterministic_and_varies_across_models() -> None:
    request = CompletionRequest.from_prompt("a fragrance for a rainy afternoon")
    texts = {name: (await SimulatedBackend(name).complete(request)).text for name in ("qwen", "mistral", "llama")}
    assert texts["qwen"] == (await SimulatedBackend("qwen").complete(request)).text
    assert len(set(texts.values())) == 3
    salted = await SimulatedBackend("qwen", seed_salt="run-2").complete(request)
    assert salted.text != texts["qwen"]


def test_simulator_does_not_depend_on_the_process_hash_seed() -> None:
    code = "from fragrance_ai.llm.backends import SimulatedBackend as S; print(S('qwen').brief('a calm morning'))"
    outputs = {
        subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                       capture_output=True, text=True, check=True).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    assert outputs.pop().startswith("{'description'")


@pytest.mark.parametrize(
    ("prompt", "family"),
    [
        ("a summer citrus scent", "citrus"),
        ("something woody", "woody"),
        ("a Fougère for him", "fougere"),
        ("a sweet treat", "gourmand"),
        ("like the ocean", "aquatic"),
        ("romantic", "floral"),
    ],
)
async def test_simulator_follows_the_prompt(prompt: str, family: str) -> None:
    for name in ("qwen", "mistral", "llama"):
        brief = json.loads((await SimulatedBackend(name).complete(CompletionRequest.from_prompt(prompt))).text)
        assert family in brief["families"], (name, brief)


async def test_simulator_uses_named_notes_and_occasions() -> None:
    for name in ("qwen", "mistral", "llama"):
        brief = SimulatedBackend(name).brief("a summer scent with green tea")
        assert "green tea" in brief["notes"]
        assert brief["families"][0] in {"fresh"}  # green tea's only family comes before the keyword's
        assert "summer" in brief["description"]


async def test_simulator_summer_keyword_alone_picks_a_summer_family() -> None:
    for name in ("qwen", "mistral", "llama", "gemma", "phi"):
        brief = SimulatedBackend(name).brief("for summer")
        assert brief["families"][0] in {"citrus", "fresh", "aquatic"}


async def test_simulator_reask_answers_the_original_question_again() -> None:
    b = SimulatedBackend("mistral")
    request = CompletionRequest.from_prompt("an evening perfume", system="JSON only")
    first = await b.complete(request)
    again = await b.complete(request.with_feedback("not json", "Answer valid JSON."))
    assert again.text == first.text
    assert not list(VALIDATOR.iter_errors(json.loads(again.text)))


async def test_simulator_latency_advances_a_virtual_clock() -> None:
    clock = VirtualClock()
    b = SimulatedBackend("qwen", latency=0.25, asleep=clock.asleep)
    await b.complete(REQUEST)
    await b.complete(REQUEST)
    assert clock() == 0.5
    assert clock.slept == [0.25, 0.25]

    quiet = VirtualClock()
    await SimulatedBackend("qwen", asleep=quiet.asleep).complete(REQUEST)
    assert quiet.slept == []


async def test_simulator_response_fields_and_aclose() -> None:
    b = SimulatedBackend("llama")
    response = await b.complete(REQUEST)
    assert (response.model, response.finish_reason) == ("llama", "stop")
    assert response.prompt_tokens
    assert response.completion_tokens
    assert set(json.loads(response.text)["families"]) <= set(FAMILIES)
    await b.aclose()
    with pytest.raises(ValueError, match="latency"):
        SimulatedBackend("llama", latency=-1)


async def test_an_oversized_body_is_refused_while_it_streams(router: respx.MockRouter) -> None:
    small = OpenAICompatibleBackend("qwen", base_url=BASE, model_id="q", max_response_bytes=1000)
    router.post("/chat/completions").respond(200, json=ok_body("x" * 5000))
    try:
        with pytest.raises(BackendInvalidResponse, match="over max_response_bytes=1,000"):
            await small.complete(CompletionRequest.from_prompt("hi"))
    finally:
        await small.aclose()
    with pytest.raises(ValueError, match="max_response_bytes"):
        OpenAICompatibleBackend("qwen", base_url=BASE, model_id="q", max_response_bytes=0)


async def test_a_gzip_encoded_body_is_decoded_once(router: respx.MockRouter, backend: OpenAICompatibleBackend) -> None:
    import gzip
    import json as _json

    raw = gzip.compress(_json.dumps(ok_body('{"ok": 1}')).encode())
    headers = {"content-encoding": "gzip", "content-type": "application/json"}
    router.post("/chat/completions").respond(200, content=raw, headers=headers)
    response = await backend.complete(CompletionRequest.from_prompt("hi"))
    assert response.text == '{"ok": 1}'
