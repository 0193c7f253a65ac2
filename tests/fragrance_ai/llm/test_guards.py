"""Tests for fragrance_ai.llm.guards: strict parsing, re-asks, backoff, deadline, fallback, counters."""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import logging
import random
import re
from collections.abc import Callable, Iterable
from typing import Any

import brief_support
import pytest
from brief_support import BRIEF, BRIEF_SCHEMA

from fragrance_ai.clock import VirtualClock
from fragrance_ai.llm import guards, strict_json
from fragrance_ai.llm.guards import (
    REASONS,
    CompiledSchema,
    GuardResult,
    JSONGuardError,
    JSONHardGuard,
    default_fallback,
)

VALID: str = brief_support.VALID  # typed here: mypy sees the bare-imported support module as untyped
KOREAN_FALLBACK_TEXT = "향수 생성 중 오류가 발생했습니다. 다시 시도해주세요."
SEED = 1234


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def make_guard(clock: VirtualClock) -> Callable[..., JSONHardGuard]:
    def make(**kwargs: Any) -> JSONHardGuard:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("sleep", clock.sleep)
        kwargs.setdefault("asleep", clock.asleep)
        kwargs.setdefault("rng", random.Random(SEED))
        return JSONHardGuard(**kwargs)

    return make


class Script:
    """A scripted ``regenerate``: returns (or raises) the given answers in order and records feedback."""

    def __init__(self, answers: Iterable[object]) -> None:
        self._answers = list(answers)
        self.feedback: list[str] = []

    def __call__(self, feedback: str) -> str:
        self.feedback.append(feedback)
        answer = self._answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[return-value]

    @property
    def calls(self) -> int:
        return len(self.feedback)


class LoadsSpy:
    """Counts calls to the guard's strict ``json`` decoder (proves hostile input never reached it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.texts: list[str] = []
        real = strict_json.strict_loads

        def spy(text: str) -> Any:
            self.texts.append(text)
            return real(text)

        monkeypatch.setattr(strict_json, "strict_loads", spy)


def brief_with(**changes: Any) -> str:
    return json.dumps({**BRIEF, **changes})


# --- the first answer ---------------------------------------------------------------------------


def test_valid_answer_is_accepted_without_sleeping_or_reasking(make_guard: Callable[..., JSONHardGuard],
                                                               clock: VirtualClock) -> None:
    guard = make_guard()
    regenerate = Script([])
    result = guard.guard(VALID, BRIEF_SCHEMA, regenerate=regenerate)
    assert result == GuardResult(BRIEF, "model", 1, ())
    assert regenerate.calls == 0
    assert clock.slept == []
    assert guard.parse_with_retry(VALID, BRIEF_SCHEMA) == BRIEF
    snap = guard.snapshot()
    assert snap.requests_total == 2
    assert snap.retry_histogram == (2, 0, 0, 0)
    assert snap.fallbacks_total == 0
    assert sum(snap.parse_failures.values()) == 0


# --- strict parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_rejected(make_guard: Callable[..., JSONHardGuard], constant: str) -> None:
    result = make_guard().guard(VALID[:-1] + f', "x": {constant}}}', {"type": "object"})
    assert result.source == "fallback"
    assert result.errors[0].reason == "invalid_json"
    assert constant.lstrip("-") in result.errors[0].message


def test_number_overflowing_to_infinity_is_rejected(make_guard: Callable[..., JSONHardGuard]) -> None:
    result = make_guard().guard('{"x": 1e999}', {"type": "object"})
    assert result.errors[0].reason == "invalid_json"
    assert "infinity" in result.errors[0].message


@pytest.mark.parametrize("answer", ['{"notes": ["a"], "notes": ["b"]}', '{"a": {"notes": 1, "notes": 1}}'])
def test_duplicate_keys_are_rejected_naming_the_key(make_guard: Callable[..., JSONHardGuard], answer: str) -> None:
    result = make_guard().guard(answer, {"type": "object"})
    assert result.source == "fallback"
    assert result.errors[0].reason == "duplicate_key"
    assert "'notes'" in result.errors[0].message


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("I'm sorry, I cannot write a perfume brief.", "no_json_found"),
        ("", "no_json_found"),
        ('{"description": "unterminated', "invalid_json"),
        ('{"description": "x", ', "invalid_json"),
        ("[1, 2}", "invalid_json"),
        ("42", "schema_violation"),
    ],
)
def test_unusable_answers_get_the_right_reason(make_guard: Callable[..., JSONHardGuard], answer: str,
                                               reason: str) -> None:
    result = make_guard().guard(answer, BRIEF_SCHEMA)
    assert [e.reason for e in result.errors] == [reason]


def test_non_string_answer_is_rejected_not_crashed_on(make_guard: Callable[..., JSONHardGuard]) -> None:
    result = make_guard().guard(None, BRIEF_SCHEMA)  # type: ignore[arg-type]
    assert result.source == "fallback"
    assert result.errors[0].reason == "no_json_found"
    assert "NoneType" in result.errors[0].message


# --- hostile input fails fast, before the parser -------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    ["[" * 5000 + "]" * 5000, '{"a": ' * 5000 + "1" + "}" * 5000, "Result: " + "[" * 5000 + "]" * 5000 + " ok"],
    ids=["arrays", "objects", "in-prose"],
)
def test_deep_nesting_is_rejected_before_parsing(make_guard: Callable[..., JSONHardGuard],
                                                 monkeypatch: pytest.MonkeyPatch, answer: str) -> None:
    loads = LoadsSpy(monkeypatch)
    guard = make_guard()
    result = guard.guard(answer, BRIEF_SCHEMA)
    assert [e.reason for e in result.errors] == ["too_deep"]
    assert "max_depth=64" in result.errors[0].message
    assert loads.texts == []
    guard.guard(VALID, BRIEF_SCHEMA)  # the spy does see ordinary answers
    assert loads.texts == [VALID]


def test_nesting_at_the_limit_is_parsed(make_guard: Callable[..., JSONHardGuard]) -> None:
    answer = "[" * 8 + "]" * 8
    assert make_guard(max_depth=8).guard(answer, {}).source == "model"
    assert make_guard(max_depth=7).guard(answer, {}).errors[0].reason == "too_deep"


def test_huge_answer_is_rejected_before_parsing(make_guard: Callable[..., JSONHardGuard],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    loads = LoadsSpy(monkeypatch)
    huge = '{"description": "' + "x" * 10_000_000 + '"}'
    result = make_guard().guard(huge, BRIEF_SCHEMA)
    assert [e.reason for e in result.errors] == ["too_large"]
    assert "max_input_bytes=1,000,000" in result.errors[0].message
    assert loads.texts == []


def test_size_limit_counts_utf8_bytes_not_characters(make_guard: Callable[..., JSONHardGuard]) -> None:
    answer = '{"d": "가나다"}'  # 12 characters, 18 UTF-8 bytes
    assert make_guard(max_input_bytes=18).guard(answer, {"type": "object"}).source == "model"
    assert make_guard(max_input_bytes=17).guard(answer, {"type": "object"}).errors[0].reason == "too_large"


# --- re-asking -------------------------------------------------------------------------------------


def test_reask_sends_the_parse_error_and_accepts_the_second_answer(
    make_guard: Callable[..., JSONHardGuard], clock: VirtualClock
) -> None:
    guard = make_guard()
    regenerate = Script([VALID])
    result = guard.guard('{"description": "x",', BRIEF_SCHEMA, regenerate=regenerate)
    assert (result.source, result.value, result.attempts, result.retries) == ("model", BRIEF, 2, 1)
    assert [e.reason for e in result.errors] == ["invalid_json"]
    assert regenerate.calls == 1
    assert "invalid JSON" in regenerate.feedback[0]
    assert "line 1 column" in regenerate.feedback[0]
    assert clock.slept == [1.0 + random.Random(SEED).uniform(0, 0.5)]
    snap = guard.snapshot()
    assert snap.retry_histogram == (0, 1, 0, 0)
    assert snap.retries_total == 1
    assert snap.parse_failures["invalid_json"] == 1
    assert snap.fallbacks_total == 0


def test_reask_feedback_names_schema_errors_by_json_path(make_guard: Callable[..., JSONHardGuard]) -> None:
    regenerate = Script([VALID])
    result = make_guard().guard(brief_with(notes=[5], longevity="forever"), BRIEF_SCHEMA, regenerate=regenerate)
    assert result.source == "model"
    feedback = regenerate.feedback[0]
    assert "$.notes[0]: 5 is not of type 'string'" in feedback
    assert "$.longevity: 'forever' is not one of ['short', 'medium', 'long']" in feedback
    assert result.errors[0].reason == "schema_violation"


def test_reported_schema_errors_are_capped_with_and_n_more(make_guard: Callable[..., JSONHardGuard]) -> None:
    regenerate = Script([VALID])
    answer = brief_with(notes=[1, 2, 3, 4, 5])  # five type errors
    result = make_guard(max_reported_errors=2).guard(answer, BRIEF_SCHEMA, regenerate=regenerate)
    assert result.errors[0].details == (
        "$.notes[0]: 1 is not of type 'string'",
        "$.notes[1]: 2 is not of type 'string'",
        "and 3 more",
    )
    feedback = regenerate.feedback[0]
    assert feedback.count("- $.") == 2
    assert "- and 3 more" in feedback


def test_exhausted_reasks_fall_back_and_move_the_counters(make_guard: Callable[..., JSONHardGuard]) -> None:
    guard = make_guard()
    regenerate = Script(["nope", brief_with(intensity=500), '{"a": 1, "a": 2}'])
    result = guard.guard("{", BRIEF_SCHEMA, regenerate=regenerate)
    assert result.source == "fallback"
    assert result.stop_reason == "max_retries"
    assert result.value == default_fallback()
    assert result.value["error"] is True
    assert result.value["description"] == KOREAN_FALLBACK_TEXT
    assert result.attempts == 4
    assert regenerate.calls == 3
    assert [e.reason for e in result.errors] == ["invalid_json", "no_json_found", "schema_violation", "duplicate_key"]
    assert [e.attempt for e in result.errors] == [1, 2, 3, 4]
    snap = guard.snapshot()
    assert snap.fallbacks_total == 1
    assert snap.requests_total == 1
    assert snap.retries_total == 3
    assert snap.retry_histogram == (0, 0, 0, 1)
    assert {k: v for k, v in snap.parse_failures.items() if v} == {
        "invalid_json": 1, "no_json_found": 1, "schema_violation": 1, "duplicate_key": 1,
    }
    assert set(snap.parse_failures) == set(REASONS)


def test_without_regenerate_the_answer_is_judged_once(make_guard: Callable[..., JSONHardGuard], clock: VirtualClock,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    loads = LoadsSpy(monkeypatch)
    guard = make_guard(max_retries=5)
    result = guard.guard('{"description": 1}', BRIEF_SCHEMA)
    assert (result.source, result.attempts, result.stop_reason) == ("fallback", 1, "no_regenerate")
    assert len(loads.texts) == 1
    assert clock.slept == []
    assert guard.snapshot().retry_histogram == (1, 0, 0, 0, 0, 0)


def test_zero_retries_never_calls_regenerate(make_guard: Callable[..., JSONHardGuard]) -> None:
    regenerate = Script([VALID])
    result = make_guard(max_retries=0).guard("{", BRIEF_SCHEMA, regenerate=regenerate)
    assert (result.source, result.attempts, result.stop_reason) == ("fallback", 1, "max_retries")
    assert regenerate.calls == 0


def test_regenerate_exception_is_a_failed_attempt_and_the_feedback_is_repeated(
    make_guard: Callable[..., JSONHardGuard],
) -> None:
    regenerate = Script([ConnectionError("upstream reset"), VALID])
    result = make_guard().guard("{", BRIEF_SCHEMA, regenerate=regenerate)
    assert (result.source, result.attempts) == ("model", 3)
    assert [e.reason for e in result.errors] == ["invalid_json", "regenerate_error"]
    assert "ConnectionError: upstream reset" in result.errors[1].message
    # the model never saw the first feedback, so it is sent again
    assert regenerate.feedback[0] == regenerate.feedback[1]


def test_regenerate_returning_a_non_string_is_a_failed_attempt(make_guard: Callable[..., JSONHardGuard]) -> None:
    regenerate = Script([{"not": "text"}, VALID])
    result = make_guard().guard("{", BRIEF_SCHEMA, regenerate=regenerate)
    assert result.source == "model"
    assert result.errors[1].reason == "regenerate_error"
    assert "dict" in result.errors[1].message


def test_async_regenerate_given_to_the_sync_guard_is_reported_and_closed(
    make_guard: Callable[..., JSONHardGuard], recwarn: pytest.WarningsRecorder
) -> None:
    async def regenerate(feedback: str) -> str:
        return VALID

    result = make_guard(max_retries=1).guard("{", BRIEF_SCHEMA, regenerate=regenerate)  # type: ignore[arg-type]
    gc.collect()
    assert result.errors[1].reason == "regenerate_error"
    assert "aguard" in result.errors[1].message
    assert not [w for w in recwarn if "never awaited" in str(w.message)]


def test_assertion_error_from_regenerate_propagates(make_guard: Callable[..., JSONHardGuard]) -> None:
    class AllMockedAssertionError(AssertionError):
        """Like respx's: a test double saying an unexpected request was made."""

    guard = make_guard()
    with pytest.raises(AllMockedAssertionError):
        guard.guard("{", BRIEF_SCHEMA, regenerate=Script([AllMockedAssertionError("no route")]))
    snap = guard.snapshot()
    assert snap.requests_total == 1
    assert snap.parse_failures["regenerate_error"] == 0
    assert snap.parse_failures["invalid_json"] == 1
    assert snap.fallbacks_total == 0


def test_keyboard_interrupt_from_regenerate_propagates(make_guard: Callable[..., JSONHardGuard]) -> None:
    with pytest.raises(KeyboardInterrupt):
        make_guard().guard("{", BRIEF_SCHEMA, regenerate=Script([KeyboardInterrupt()]))


# --- backoff and deadline -------------------------------------------------------------------------


def test_backoff_waits_double_with_jitter_and_are_capped(make_guard: Callable[..., JSONHardGuard],
                                                         clock: VirtualClock) -> None:
    guard = make_guard(max_retries=5, backoff_base=1.0, jitter=0.5, backoff_max=8.0, deadline=1000.0)
    result = guard.guard("{", BRIEF_SCHEMA, regenerate=Script(["{"] * 5))
    assert result.attempts == 6
    assert len(clock.slept) == 5
    for i, wait in enumerate(clock.slept):
        base = 1.0 * 2**i
        assert base <= wait <= base + 0.5 or wait == 8.0, (i, wait)
    assert clock.slept[3:] == [8.0, 8.0]  # 8 + jitter and 16 + jitter are both capped
    rng = random.Random(SEED)
    assert clock.slept == [min(2**i + rng.uniform(0, 0.5), 8.0) for i in range(5)]


def test_backoff_policy_without_jitter_is_exact(make_guard: Callable[..., JSONHardGuard]) -> None:
    guard = make_guard(backoff_base=0.5, jitter=0.0, backoff_max=3.0)
    assert [guard.backoff_delay(i) for i in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert guard.backoff_delay(10_000) == 3.0  # no overflow for absurd retry counts


def test_deadline_stops_reasking_and_falls_back(make_guard: Callable[..., JSONHardGuard],
                                               clock: VirtualClock) -> None:
    guard = make_guard(max_retries=10, backoff_base=1.0, jitter=0.0, deadline=5.0)
    regenerate = Script(["{"] * 10)
    result = guard.guard("{", BRIEF_SCHEMA, regenerate=regenerate)
    # waits 1 (t=1) and 2 (t=3); the next wait of 4 would end at t=7, past the deadline of 5
    assert clock.slept == [1.0, 2.0]
    assert regenerate.calls == 2
    assert (result.source, result.stop_reason, result.attempts) == ("fallback", "deadline", 3)
    assert guard.snapshot().deadline_stops_total == 1


def test_deadline_counts_time_spent_in_regenerate(make_guard: Callable[..., JSONHardGuard],
                                                  clock: VirtualClock) -> None:
    def slow_model(feedback: str) -> str:
        clock.advance(29.0)
        return "{"

    result = make_guard(deadline=30.0).guard("{", BRIEF_SCHEMA, regenerate=slow_model)
    assert result.stop_reason == "deadline"
    assert result.attempts == 2


# --- fallback ------------------------------------------------------------------------------------


def test_empty_dict_fallback_is_honoured(make_guard: Callable[..., JSONHardGuard]) -> None:
    guard = make_guard()
    assert guard.parse_with_retry("nope", {"type": "object"}, {}) == {}
    assert guard.guard("nope", {"type": "object"}, {}).value == {}


def test_fallback_is_deep_copied(make_guard: Callable[..., JSONHardGuard]) -> None:
    guard = make_guard()
    mine = {**BRIEF, "notes": ["iris"]}
    first = guard.parse_with_retry("nope", BRIEF_SCHEMA, mine)
    second = guard.parse_with_retry("nope", BRIEF_SCHEMA, mine)
    assert first == second
    assert first["notes"] is not second["notes"]
    assert first["notes"] is not mine["notes"]
    first["notes"].append("corrupted")
    assert mine["notes"] == ["iris"]
    assert guard.parse_with_retry("nope", BRIEF_SCHEMA, mine)["notes"] == ["iris"]
    default = guard.parse_with_retry("nope", BRIEF_SCHEMA)
    default["notes"].clear()
    assert guard.parse_with_retry("nope", BRIEF_SCHEMA)["notes"] == ["floral", "fresh"]


def test_changed_fallback_is_validated_again(make_guard: Callable[..., JSONHardGuard]) -> None:
    guard = make_guard()
    mine = copy.deepcopy(BRIEF)
    assert guard.parse_with_retry("nope", BRIEF_SCHEMA, mine) == BRIEF
    mine["intensity"] = 500
    with pytest.raises(ValueError, match=r"\$\.intensity"):
        guard.parse_with_retry(VALID, BRIEF_SCHEMA, mine)


def test_bad_fallback_is_rejected_up_front(make_guard: Callable[..., JSONHardGuard]) -> None:
    guard = make_guard()
    regenerate = Script([VALID])
    with pytest.raises(ValueError, match=r"fallback does not match the schema: \$\.intensity: 500"):
        guard.guard(VALID, BRIEF_SCHEMA, {**BRIEF, "intensity": 500}, regenerate=regenerate)
    assert regenerate.calls == 0
    assert guard.snapshot().requests_total == 0


def test_schema_that_rejects_the_default_fallback_says_to_pass_one(make_guard: Callable[..., JSONHardGuard]) -> None:
    strict = {**BRIEF_SCHEMA, "properties": {**BRIEF_SCHEMA["properties"], "error": {"const": False}}}
    with pytest.raises(ValueError, match=r"default fallback.*pass fallback="):
        make_guard().guard(VALID, strict)
    # without fallbacks the default is irrelevant, so it is not checked
    assert make_guard(fallback_enabled=False).guard(VALID, strict).source == "model"


def test_fallback_disabled_raises_with_every_attempt(make_guard: Callable[..., JSONHardGuard]) -> None:
    guard = make_guard(max_retries=2, fallback_enabled=False)
    with pytest.raises(JSONGuardError) as caught:
        guard.guard("{", BRIEF_SCHEMA, regenerate=Script(["nope", brief_with(notes=[])]))
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.attempts == 3
    assert error.stop_reason == "max_retries"
    assert [e.reason for e in error.errors] == ["invalid_json", "no_json_found", "schema_violation"]
    assert "attempt 3 schema_violation" in str(error)
    snap = guard.snapshot()
    assert snap.rejections_total == 1
    assert snap.fallbacks_total == 0
    assert snap.requests_total == 1


# --- schemas -------------------------------------------------------------------------------------


def test_validator_is_compiled_once_per_schema(make_guard: Callable[..., JSONHardGuard],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[object] = []
    real = guards.compile_schema

    def spy(schema: Any) -> CompiledSchema:
        compiled.append(schema)
        return real(schema)

    monkeypatch.setattr(guards, "compile_schema", spy)
    guard = make_guard()
    for _ in range(5):
        guard.guard(VALID, BRIEF_SCHEMA)
        guard.guard("nope", BRIEF_SCHEMA)
    assert compiled == [BRIEF_SCHEMA]
    guard.guard(VALID, copy.deepcopy(BRIEF_SCHEMA))  # a different object is compiled on its own
    assert len(compiled) == 2
    precompiled = real(BRIEF_SCHEMA)
    assert guard.guard(VALID, precompiled).value == BRIEF
    assert len(compiled) == 2


def test_invalid_schema_is_a_clear_value_error(make_guard: Callable[..., JSONHardGuard]) -> None:
    with pytest.raises(ValueError, match=r"invalid JSON Schema at \$\.properties\.intensity\.type"):
        make_guard().guard(VALID, {"type": "object", "properties": {"intensity": {"type": "integr"}}})
    with pytest.raises(TypeError, match="got list"):
        JSONHardGuard.compile([])  # type: ignore[arg-type]


# --- async twin ----------------------------------------------------------------------------------


async def test_aguard_reasks_through_an_async_regenerate(make_guard: Callable[..., JSONHardGuard],
                                                         clock: VirtualClock) -> None:
    feedback: list[str] = []

    async def regenerate(message: str) -> str:
        feedback.append(message)
        return VALID if len(feedback) == 2 else brief_with(notes=[7])

    guard = make_guard()
    result = await guard.aguard("{", BRIEF_SCHEMA, regenerate=regenerate)
    assert (result.source, result.attempts) == ("model", 3)
    assert "invalid JSON" in feedback[0]
    assert "$.notes[0]: 7 is not of type 'string'" in feedback[1]
    rng = random.Random(SEED)
    assert clock.slept == [1.0 + rng.uniform(0, 0.5), 2.0 + rng.uniform(0, 0.5)]
    assert guard.snapshot().retry_histogram == (0, 0, 1, 0)
    assert await guard.aparse_with_retry("nope", BRIEF_SCHEMA, {**BRIEF, "error": True}) == {**BRIEF, "error": True}


async def test_aguard_accepts_a_plain_function_and_falls_back(make_guard: Callable[..., JSONHardGuard]) -> None:
    result = await make_guard(max_retries=1).aguard("{", BRIEF_SCHEMA, regenerate=Script(["nope"]))
    assert result.source == "fallback"
    assert [e.reason for e in result.errors] == ["invalid_json", "no_json_found"]


async def test_aguard_lets_assertion_errors_through(make_guard: Callable[..., JSONHardGuard]) -> None:
    async def regenerate(feedback: str) -> str:
        raise AssertionError("unexpected request")

    with pytest.raises(AssertionError, match="unexpected request"):
        await make_guard().aguard("{", BRIEF_SCHEMA, regenerate=regenerate)


async def test_cancellation_propagates_and_is_counted(make_guard: Callable[..., JSONHardGuard]) -> None:
    started = asyncio.Event()
    never = asyncio.Event()

    async def regenerate(feedback: str) -> str:
        started.set()
        await never.wait()
        return VALID

    guard = make_guard()
    task = asyncio.ensure_future(guard.aguard("{", BRIEF_SCHEMA, regenerate=regenerate))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    snap = guard.snapshot()
    assert snap.requests_total == 1
    assert snap.parse_failures["invalid_json"] == 1
    assert snap.fallbacks_total == 0
    assert snap.parse_failures["regenerate_error"] == 0


# --- construction, counters, logging ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_retries": -1}, "max_retries must be >= 0, got -1"),
        ({"max_retries": 2.5}, "max_retries must be an int, got 2.5"),
        ({"max_retries": True}, "max_retries must be an int, got True"),
        ({"backoff_base": -1.0}, "backoff_base must be >= 0"),
        ({"jitter": float("nan")}, "jitter must be a number of seconds, got nan"),
        ({"backoff_max": -0.1}, "backoff_max must be >= 0"),
        ({"deadline": 0}, "deadline must be > 0"),
        ({"fallback_enabled": "yes"}, "fallback_enabled must be True or False, got 'yes'"),
        ({"max_input_bytes": 0}, "max_input_bytes must be >= 1, got 0"),
        ({"max_depth": 5000}, "max_depth must be between 1 and 512, got 5000"),
        ({"max_reported_errors": 0}, "max_reported_errors must be >= 1, got 0"),
        ({"clock": 3}, "clock must be callable, got 3"),
        ({"rng": 7}, "rng must be a random.Random, got 7"),
    ],
)
def test_bad_constructor_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        JSONHardGuard(**kwargs)
    assert message in str(caught.value)


def test_snapshot_is_a_copy(make_guard: Callable[..., JSONHardGuard]) -> None:
    guard = make_guard()
    guard.guard("nope", BRIEF_SCHEMA)
    snap = guard.snapshot()
    snap.parse_failures["no_json_found"] = 99
    assert guard.snapshot().parse_failures["no_json_found"] == 1
    assert guard.parse_failures["no_json_found"] == 1
    assert guard.fallbacks_total == 1


def test_logs_truncate_the_answer(make_guard: Callable[..., JSONHardGuard], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fragrance_ai.llm.guards")
    answer = '{"description": ' + "7" * 200_000  # invalid and long
    make_guard().guard(answer, BRIEF_SCHEMA)
    # a fallback is a designed outcome: logged at WARNING, never ERROR
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]
    assert "invalid_json" in caplog.records[0].getMessage()
    assert max(len(r.getMessage()) for r in caplog.records) < 1000


def test_a_lone_surrogate_escape_is_rejected_and_reasked() -> None:
    """A model cut off mid-emoji writes "\\ud83c" alone: json.loads accepts it, UTF-8 cannot encode it."""
    guard = JSONHardGuard(sleep=lambda s: None, jitter=0)
    lone = '{"a": "fresh \\ud83c"}'
    pair = '{"a": "fresh \\ud83c\\udf38"}'
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    result = guard.guard(lone, schema, {"a": "fallback"}, regenerate=lambda feedback: pair)
    assert (result.source, result.attempts, result.value) == ("model", 2, {"a": "fresh \U0001f338"})
    assert result.errors[0].reason == "invalid_json"
    assert "surrogate" in result.errors[0].message


def test_fallback_method_hands_out_independent_copies() -> None:
    guard = JSONHardGuard()
    schema = {"type": "object", "properties": {"notes": {"type": "array"}}}
    first = guard.fallback(schema, {"notes": ["rose"]})
    first["notes"].append("changed by a caller")
    second = guard.fallback(schema, {"notes": ["rose"]})
    assert second == {"notes": ["rose"]}
    from fragrance_ai.llm.schemas import brief_schema

    default = guard.fallback(brief_schema())
    default["notes"].clear()
    assert guard.fallback(brief_schema())["notes"] == ["floral", "fresh"]
