"""LLMEnsemble: cache -> the mode's models through their breakers -> JSON guard with re-ask -> fallback.

Models are faked at the HTTP boundary (FaultyLLM, respx) and everything runs on a VirtualClock.
"""

from __future__ import annotations

import asyncio
import json
import typing

import pytest
from jsonschema import Draft202012Validator
from service_support import MODELS, Exploding, build, openai_overrides

from fragrance_ai.clock import VirtualClock
from fragrance_ai.llm.backends import BackendServerError, LLMBackend, SimulatedBackend
from fragrance_ai.llm.circuit_breaker import CLOSED, OPEN
from fragrance_ai.llm.ensemble import BRIEF_SOURCES, BriefResult, LLMEnsemble, ModelAttempt, NoModelAvailableError, Source
from fragrance_ai.llm.guards import JSONGuardError
from fragrance_ai.llm.schemas import brief_schema
from fragrance_ai.service.system import GuardSystem
from pytest_guards import FaultyLLM
from pytest_guards.faults import (
    Behaviour,
    connection_error,
    http_error,
    invalid_json,
    malformed_body,
    schema_violation,
    timeout,
    valid,
)

BRIEF = Draft202012Validator(brief_schema())
JOIN_S = 10.0  # real-time bound on joining concurrent briefs (virtual time does the waiting); milliseconds when healthy


@pytest.fixture
def ensemble(system: GuardSystem) -> LLMEnsemble:
    return system.ensemble


def outcomes(result: BriefResult) -> list[tuple[str, str]]:
    return [(a.model, a.outcome) for a in result.tried]


async def open_breaker_through_traffic(ensemble: LLMEnsemble, faulty: FaultyLLM, model: str = "qwen") -> int:
    """Fail ``model`` with HTTP 500 on fresh prompts until its breaker opens; returns the briefs it took."""
    faulty.set(model, http_error(500))
    breaker = ensemble.breakers.breakers[model]
    for n in range(1, 41):
        result = await ensemble.generate_brief(f"breaker traffic {n}", mode="creative")
        assert result.source in ("model", "fallback")
        if breaker.state == OPEN:
            return n
    raise AssertionError(f"{model}'s breaker never opened")


# ------------------------------------------------------------------------------------ the happy path


async def test_first_model_of_the_mode_answers_and_its_validated_answer_is_cached(
    ensemble: LLMEnsemble, faulty: FaultyLLM
) -> None:
    first = await ensemble.generate_brief("a fresh summer citrus scent")
    assert (first.source, first.model, first.mode, first.attempts) == ("model", "qwen", "creative", 1)
    assert outcomes(first) == [("qwen", "ok")]
    assert BRIEF.is_valid(first.brief)

    again = await ensemble.generate_brief("  a fresh   summer citrus scent ")  # whitespace-normalised key
    assert (again.source, again.mode, again.attempts, again.tried) == ("cache", "creative", 0, ())
    assert again.brief == first.brief
    assert [faulty.call_count(m) for m in MODELS] == [1, 0, 0]


async def test_a_cached_brief_is_handed_out_as_a_copy(ensemble: LLMEnsemble) -> None:
    first = await ensemble.generate_brief("woody evening")
    first.brief["notes"].append("mutated by the caller")
    hit = await ensemble.generate_brief("woody evening")
    assert hit.source == "cache"
    assert "mutated by the caller" not in hit.brief["notes"]
    hit.brief["intensity"] = -1
    assert (await ensemble.generate_brief("woody evening")).brief["intensity"] != -1


async def test_the_cache_is_per_mode(ensemble: LLMEnsemble, faulty: FaultyLLM) -> None:
    await ensemble.generate_brief("green tea", mode="creative")
    fast = await ensemble.generate_brief("green tea", mode="fast")
    assert (fast.source, fast.model, fast.mode) == ("model", "llama", "fast")
    request = faulty.calls("llama")[0].request
    assert (request["temperature"], request["top_p"], request["max_tokens"]) == (0.3, 0.8, 256)
    assert request["messages"][-1] == {"role": "user", "content": "green tea"}


async def test_an_unknown_mode_is_refused_before_any_model_call(ensemble: LLMEnsemble, faulty: FaultyLLM) -> None:
    with pytest.raises(ValueError, match="unknown mode 'turbo'; expected one of creative, balanced, fast"):
        await ensemble.generate_brief("x", mode="turbo")
    assert sum(faulty.call_count(m) for m in MODELS) == 0


# ---------------------------------------------------------------------------------- guard and re-ask


async def test_an_invalid_answer_is_re_asked_with_the_rejection_reason(
    ensemble: LLMEnsemble, faulty: FaultyLLM, clock: VirtualClock
) -> None:
    faulty.set("qwen", invalid_json(), valid())
    result = await ensemble.generate_brief("amber vanilla")
    assert (result.source, result.model, result.attempts) == ("model", "qwen", 2)
    assert outcomes(result) == [("qwen", "ok")]
    first, second = faulty.calls("qwen")
    assert len(first.request["messages"]) == 2
    messages = second.request["messages"]
    assert messages[:2] == first.request["messages"]  # same system prompt and question
    assert messages[2]["role"] == "assistant"
    assert messages[2]["content"].startswith('{"description": "x", "notes": [')
    assert messages[3]["role"] == "user"
    assert "Your previous answer was rejected: invalid JSON" in messages[3]["content"]
    assert len(clock.slept) == 1
    assert 1.0 <= clock.slept[0] <= 1.5
    cached = await ensemble.generate_brief("amber vanilla")
    assert cached.source == "cache"
    assert cached.brief == result.brief


async def test_a_schema_violation_is_re_asked_with_the_schema_errors(ensemble: LLMEnsemble, faulty: FaultyLLM) -> None:
    faulty.set("qwen", schema_violation(), valid())
    result = await ensemble.generate_brief("leather")
    assert (result.model, result.attempts) == ("qwen", 2)
    feedback = faulty.calls("qwen")[1].request["messages"][-1]["content"]
    assert "does not match the required JSON schema" in feedback
    assert "intensity" in feedback


async def test_a_model_that_never_answers_valid_json_gives_way_to_the_next(
    ensemble: LLMEnsemble, faulty: FaultyLLM
) -> None:
    faulty.set("qwen", invalid_json())
    result = await ensemble.generate_brief("iris")
    assert outcomes(result) == [("qwen", "invalid_response"), ("mistral", "ok")]
    assert result.tried[0].answers == 4  # the answer plus max_retries=3 re-asks
    assert (result.model, result.attempts) == ("mistral", 5)
    assert faulty.call_count("qwen") == 4
    # answers the guard rejected are not transport failures: the breaker saw four successful calls
    assert ensemble.breakers.breakers["qwen"].failures_total == 0


# ------------------------------------------------------------------------------------ failure classes

FAILURES: list[tuple[str, Behaviour, str]] = [
    ("timeout", timeout(), "timeout"),
    ("connection error", connection_error(), "connection_error"),
    ("429 rate limited", http_error(429, retry_after=5), "http_error"),
    ("500 server error", http_error(500), "http_error"),
    ("400 client error", http_error(400), "client_error"),
    ("malformed body", malformed_body(), "invalid_response"),
]


@pytest.mark.parametrize(("behaviour", "outcome"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES])
async def test_every_backend_failure_moves_on_to_the_next_model(
    ensemble: LLMEnsemble, faulty: FaultyLLM, clock: VirtualClock, behaviour: Behaviour, outcome: str
) -> None:
    faulty.set("qwen", behaviour)
    result = await ensemble.generate_brief("citrus")
    assert outcomes(result) == [("qwen", outcome), ("mistral", "ok")]
    assert (result.source, result.model, result.attempts) == ("model", "mistral", 1)
    assert faulty.call_count("qwen") == 1  # no re-ask and no backoff against a failing server
    assert clock.slept == ([30.0] if outcome == "timeout" else [])  # the read timeout, in virtual time
    assert ensemble.breakers.breakers["qwen"].failures_total == 1


async def test_a_failure_during_a_re_ask_ends_that_models_turn_at_once(
    ensemble: LLMEnsemble, faulty: FaultyLLM, clock: VirtualClock
) -> None:
    faulty.set("qwen", invalid_json(), http_error(500))
    result = await ensemble.generate_brief("neroli")
    assert outcomes(result) == [("qwen", "http_error"), ("mistral", "ok")]
    assert result.tried[0].answers == 1
    assert faulty.call_count("qwen") == 2
    assert len(clock.slept) == 1  # the backoff before the re-ask; none after the failed re-ask
    assert ensemble.breakers.breakers["qwen"].failures_total == 1


async def test_a_timeout_during_a_re_ask_does_not_eat_the_guard_deadline(
    ensemble: LLMEnsemble, faulty: FaultyLLM, clock: VirtualClock
) -> None:
    faulty.set("qwen", invalid_json(), timeout())
    result = await ensemble.generate_brief("oud")
    assert outcomes(result) == [("qwen", "timeout"), ("mistral", "ok")]
    assert faulty.call_count("qwen") == 2
    assert clock() == pytest.approx(clock.slept[0] + 30.0)  # one backoff, one read timeout, nothing more


async def test_an_unexpected_backend_exception_is_an_error_outcome_not_a_crash(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    exploding = Exploding("qwen")
    backends: dict[str, LLMBackend] = {
        "qwen": exploding, "mistral": SimulatedBackend("mistral"), "llama": SimulatedBackend("llama"),
    }
    system = build(clock, {}, backends)
    try:
        result = await system.ensemble.generate_brief("rose")
        assert outcomes(result) == [("qwen", "error"), ("mistral", "ok")]
        assert "SECRET-TRACE-123" not in json.dumps(result.to_dict())
        assert "SECRET-TRACE-123" in caplog.text  # the operator still gets the traceback
        assert system.breakers.breakers["qwen"].failures_total == 1
    finally:
        await system.aclose()


# -------------------------------------------------------------------------------- breakers and modes


async def test_qwen_failing_until_its_breaker_opens_downshifts_and_later_briefs_skip_it(
    ensemble: LLMEnsemble, faulty: FaultyLLM, system: GuardSystem
) -> None:
    faulty.set("qwen", http_error(500))
    for n in range(1, 10):
        result = await ensemble.generate_brief(f"brief {n}")
        assert (result.mode, result.model) == ("creative", "mistral")
        assert outcomes(result) == [("qwen", "http_error"), ("mistral", "ok")]
    assert system.breakers.breakers["qwen"].state == CLOSED  # 9 calls: below minimum_calls=10
    tenth = await ensemble.generate_brief("brief 10")
    assert (tenth.mode, tenth.model) == ("creative", "mistral")
    assert system.breakers.breakers["qwen"].state == OPEN
    assert system.mode_controller.get_current_mode() == "balanced"
    assert system.mode_controller.downshifts_total == 1
    assert faulty.call_count("qwen") == 10

    later = await ensemble.generate_brief("brief 11")
    assert (later.mode, later.model, outcomes(later)) == ("balanced", "mistral", [("mistral", "ok")])

    faulty.set("mistral", http_error(503))
    faulty.set("llama", connection_error())
    last = await ensemble.generate_brief("brief 12")
    assert outcomes(last) == [("mistral", "http_error"), ("llama", "connection_error"), ("qwen", "skipped_open")]
    assert last.source == "fallback"
    assert last.brief["error"] is True
    assert faulty.call_count("qwen") == 10  # an open breaker means no call at all

    creative = await ensemble.generate_brief("brief 13", mode="creative")
    assert creative.tried[0] == ModelAttempt("qwen", "skipped_open")


async def test_every_model_failing_gives_the_fallback_which_is_never_cached(
    ensemble: LLMEnsemble, faulty: FaultyLLM, system: GuardSystem
) -> None:
    for model in MODELS:
        faulty.set(model, http_error(500))
    result = await ensemble.generate_brief("vetiver")
    assert (result.source, result.model, result.mode, result.attempts) == ("fallback", None, "creative", 0)
    assert result.brief["error"] is True
    assert BRIEF.is_valid(result.brief)
    assert outcomes(result) == [(m, "http_error") for m in MODELS]
    assert system.guard.fallbacks_total == 1
    assert system.cache is not None
    assert len(system.cache) == 0

    faulty.set("qwen", valid())
    retry = await ensemble.generate_brief("vetiver")
    assert (retry.source, retry.model) == ("model", "qwen")
    assert "error" not in retry.brief
    assert faulty.call_count("qwen") == 1


async def test_no_model_available_when_the_fallback_is_disabled(clock: VirtualClock, faulty: FaultyLLM) -> None:
    system = build(clock, {**openai_overrides(faulty), "json_guard": {"fallback_enabled": False}})
    try:
        faulty.set("qwen", timeout())
        faulty.set("mistral", http_error(500))
        faulty.set("llama", invalid_json())
        with pytest.raises(NoModelAvailableError) as caught:
            await system.ensemble.generate_brief("musk")
        error = caught.value
        assert error.mode == "creative"
        assert [(a.model, a.outcome) for a in error.tried] == [
            ("qwen", "timeout"), ("mistral", "http_error"), ("llama", "invalid_response")
        ]
        assert "qwen: timeout, mistral: http_error, llama: invalid_response" in str(error)
        assert system.cache is not None
        assert len(system.cache) == 0
    finally:
        await system.aclose()


async def test_the_mode_moves_back_up_after_a_quiet_period(
    ensemble: LLMEnsemble, system: GuardSystem, clock: VirtualClock
) -> None:
    system.mode_controller.downshift(reason="test")
    assert (await ensemble.generate_brief("one")).mode == "balanced"
    clock.advance(300)  # upshift_quiet_period with every breaker closed
    result = await ensemble.generate_brief("two")
    assert (result.mode, result.model) == ("creative", "qwen")


async def test_without_a_cache_every_brief_asks_a_model(clock: VirtualClock, faulty: FaultyLLM) -> None:
    system = build(clock, {**openai_overrides(faulty), "cache": {"enabled": False}})
    try:
        assert system.cache is None
        for _ in range(2):
            assert (await system.ensemble.generate_brief("same")).source == "model"
        assert faulty.call_count("qwen") == 2
    finally:
        await system.aclose()


def test_every_configured_model_needs_a_backend(system: GuardSystem) -> None:
    with pytest.raises(ValueError, match="no backend for configured model"):
        LLMEnsemble(
            system.config,
            backends={"qwen": SimulatedBackend("qwen")},
            breakers=system.breakers,
            guard=system.guard,
            schema=brief_schema(),
        )


async def test_to_dict_names_source_model_mode_and_what_was_tried(ensemble: LLMEnsemble, faulty: FaultyLLM) -> None:
    faulty.set("qwen", http_error(500))
    data = (await ensemble.generate_brief("fig")).to_dict()
    assert set(data) == {"brief", "source", "model", "mode", "attempts", "models_tried"}
    assert data["models_tried"] == [{"model": "qwen", "outcome": "http_error"}, {"model": "mistral", "outcome": "ok"}]


# ----------------------------------------------------------------------------- briefs_total by source


def counts(ensemble: LLMEnsemble, cache: int = 0, model: int = 0, fallback: int = 0) -> bool:
    return ensemble.briefs_snapshot() == {"cache": cache, "model": model, "fallback": fallback}


def test_every_source_is_counted_from_construction(ensemble: LLMEnsemble) -> None:
    assert typing.get_args(Source) == BRIEF_SOURCES
    assert ensemble.briefs_total == {"cache": 0, "model": 0, "fallback": 0}


async def test_each_brief_counts_once_under_its_source(ensemble: LLMEnsemble, faulty: FaultyLLM) -> None:
    assert (await ensemble.generate_brief("bergamot")).source == "model"
    assert counts(ensemble, model=1)
    assert (await ensemble.generate_brief("bergamot")).source == "cache"
    assert counts(ensemble, cache=1, model=1)
    faulty.set("qwen", invalid_json(), valid())  # a re-ask is still one brief
    assert (await ensemble.generate_brief("cedar")).attempts == 2
    assert counts(ensemble, cache=1, model=2)
    for model in MODELS:
        faulty.set(model, http_error(500))
    assert (await ensemble.generate_brief("vetiver")).source == "fallback"
    assert counts(ensemble, cache=1, model=2, fallback=1)
    snapshot = ensemble.briefs_snapshot()
    snapshot["model"] = 99  # a copy: the caller cannot change the counters
    assert ensemble.briefs_total["model"] == 2


async def test_concurrent_briefs_for_one_prompt_count_once_each_with_the_source_they_got(
    ensemble: LLMEnsemble, faulty: FaultyLLM, system: GuardSystem
) -> None:
    faulty.set("qwen", valid().after(5))  # slow enough (in virtual time) for the others to join the flight
    results = await asyncio.wait_for(asyncio.gather(*(ensemble.generate_brief("jasmine") for _ in range(4))), JOIN_S)
    assert system.cache is not None
    assert system.cache.coalesced == 3
    assert sorted(r.source for r in results) == ["cache", "cache", "cache", "model"]
    assert faulty.call_count("qwen") == 1
    assert counts(ensemble, cache=3, model=1)


async def test_waiters_of_a_flight_that_falls_back_each_count_one_fallback(
    ensemble: LLMEnsemble, faulty: FaultyLLM, system: GuardSystem
) -> None:
    for model in MODELS:
        faulty.set(model, http_error(500).after(5))
    results = await asyncio.wait_for(asyncio.gather(*(ensemble.generate_brief("tonka") for _ in range(4))), JOIN_S)
    assert system.cache is not None
    assert system.cache.coalesced == 3
    assert [r.source for r in results] == ["fallback"] * 4
    assert faulty.call_count("qwen") == 1
    assert counts(ensemble, fallback=4)
    assert system.guard.fallbacks_total == 4  # the guard's counter agrees: one fallback copy per brief


async def test_without_a_cache_briefs_are_counted_all_the_same(clock: VirtualClock, faulty: FaultyLLM) -> None:
    system = build(clock, {**openai_overrides(faulty), "cache": {"enabled": False}})
    try:
        await system.ensemble.generate_brief("same")
        await system.ensemble.generate_brief("same")
        assert counts(system.ensemble, model=2)
    finally:
        await system.aclose()


async def test_a_refused_request_is_no_brief_and_counts_nothing(clock: VirtualClock, faulty: FaultyLLM) -> None:
    """NoModelAvailableError (a 503) and an unknown mode serve no brief: no source fits, none is counted."""
    system = build(clock, {**openai_overrides(faulty), "json_guard": {"fallback_enabled": False}})
    try:
        for model in MODELS:
            faulty.set(model, http_error(500))
        with pytest.raises(NoModelAvailableError):
            await system.ensemble.generate_brief("musk")
        with pytest.raises(ValueError, match="unknown mode"):
            await system.ensemble.generate_brief("musk", mode="turbo")
        assert counts(system.ensemble)
        faulty.set("qwen", valid())
        await system.ensemble.generate_brief("musk")
        assert counts(system.ensemble, model=1)
    finally:
        await system.aclose()


# -------------------------------------------------------------------------------- generate_single


async def test_generate_single_returns_one_models_parsed_brief(ensemble: LLMEnsemble, faulty: FaultyLLM) -> None:
    brief = await ensemble.generate_single("Generate a brief perfume description.", "mistral", timeout=10)
    assert BRIEF.is_valid(brief)
    assert [faulty.call_count(m) for m in MODELS] == [0, 1, 0]
    assert ensemble.breakers.breakers["mistral"].requests_total == 0  # the health path bypasses the breaker


async def test_generate_single_does_not_re_ask_or_fall_back(ensemble: LLMEnsemble, faulty: FaultyLLM) -> None:
    faulty.set("qwen", invalid_json(), valid())
    with pytest.raises(JSONGuardError):
        await ensemble.generate_single("p", "qwen", timeout=10)
    assert faulty.call_count("qwen") == 1
    faulty.set("qwen", http_error(502))
    with pytest.raises(BackendServerError):
        await ensemble.generate_single("p", "qwen", timeout=10)
    with pytest.raises(KeyError, match="unknown model 'gpt'"):
        await ensemble.generate_single("p", "gpt")


async def test_generate_single_cuts_the_call_at_its_timeout(
    ensemble: LLMEnsemble, faulty: FaultyLLM, clock: VirtualClock
) -> None:
    faulty.set("llama", valid().after(15))
    with pytest.raises(TimeoutError):
        await ensemble.generate_single("p", "llama", timeout=2.5)
    assert clock() == 2.5


@pytest.mark.parametrize(("strict", "attempts"), [(True, 2), (False, 1)])
async def test_strict_schema_decides_whether_invented_fields_are_reasked(
    clock: VirtualClock, faulty: FaultyLLM, strict: bool, attempts: int
) -> None:
    system = build(clock, {**openai_overrides(faulty), "json_guard": {"strict_schema": strict}})
    faulty.set("qwen", valid(brief={"sillage": "huge"}).times(1), valid())
    try:
        result = await system.ensemble.generate_brief("a tuberose for the night")
    finally:
        await system.aclose()
    assert (result.source, result.model, result.attempts) == ("model", "qwen", attempts)
