"""Each scenario written for a blind spot of issue 18 fails on the defect it is for.

A test builds the defective variant (one part monkeypatched: a counter set instead of incremented, a
half-open trial that frees two slots, a probe error read as healthy...) and runs the shipped checklist
scenario against it in process, as the plugin does: the run must fail, naming the scenario. The same
scenarios pass on the reference implementation (``pytest pytest_guards/checklist`` runs them).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from in_process_scenario import run_checklist_scenario  # this directory's helper

from fragrance_ai.cache.lru_cache import LRUCacheWithTTL
from fragrance_ai.llm import ensemble as ensemble_module
from fragrance_ai.llm import guard_run, health_check, json_extract, strict_json
from fragrance_ai.llm.backends.base import CompletionResponse
from fragrance_ai.llm.breaker_policy import FailureRateWindow
from fragrance_ai.llm.circuit_breaker import CLOSED, HALF_OPEN, CircuitBreaker
from fragrance_ai.llm.ensemble import LLMEnsemble
from fragrance_ai.llm.guards import JSONHardGuard
from fragrance_ai.llm.health_check import LLMHealthChecker
from fragrance_ai.llm.mode_controller import ModeController
from fragrance_ai.llm.panic import PanicRule
from pytest_guards.scenarios import (
    CHECKLIST_DIR,
    ScenarioFailure,
)

Patch = Callable[[pytest.MonkeyPatch], None]


async def _run(path: Path) -> None:
    await run_checklist_scenario(path)


def _fails(path: Path) -> ScenarioFailure:
    with pytest.raises(ScenarioFailure) as caught:
        asyncio.run(_run(path))
    return caught.value


# ----------------------------------------------------------------------------------------- defects


def _expirations_set_to_one(mp: pytest.MonkeyPatch) -> None:
    real = LRUCacheWithTTL._expire_locked

    def expire(self: LRUCacheWithTTL[Any, Any], now: float) -> int:
        removed = real(self, now)
        if removed:
            self.expirations = 1  # set, not added
        return removed

    mp.setattr(LRUCacheWithTTL, "_expire_locked", expire)


def _opened_set_to_one(mp: pytest.MonkeyPatch) -> None:
    real = CircuitBreaker._open_locked

    def open_locked(self: CircuitBreaker) -> tuple[str, str]:
        event = real(self)
        self.opened_total = 1
        return event

    mp.setattr(CircuitBreaker, "_open_locked", open_locked)


def _requests_start_at_one(mp: pytest.MonkeyPatch) -> None:
    real = CircuitBreaker.__init__

    def init(self: CircuitBreaker, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        self.failures_total = 1

    mp.setattr(CircuitBreaker, "__init__", init)


def _upshifts_set_to_one(mp: pytest.MonkeyPatch) -> None:
    real = ModeController._upshift_locked

    def upshift(self: ModeController) -> tuple[str, str]:
        event = real(self)
        self.upshifts_total = 1
        return event

    mp.setattr(ModeController, "_upshift_locked", upshift)


def _downshift_requests_only_when_moved(mp: pytest.MonkeyPatch) -> None:
    real = ModeController.downshift

    def downshift(self: ModeController, reason: str = "") -> str:
        old = self.mode
        new = real(self, reason)
        if new == old:
            self.downshift_requests_total -= 1  # a request at fast goes uncounted
        return new

    mp.setattr(ModeController, "downshift", downshift)


def _downshift_requests_set_to_one(mp: pytest.MonkeyPatch) -> None:
    real = ModeController.downshift

    def downshift(self: ModeController, reason: str = "") -> str:
        new = real(self, reason)
        self.downshift_requests_total = 1  # set, not added
        return new

    mp.setattr(ModeController, "downshift", downshift)


def _accepted_at_once_counted_as_one(mp: pytest.MonkeyPatch) -> None:
    real = JSONHardGuard._accepted

    def accepted(self: JSONHardGuard, run: Any, value: Any) -> Any:
        result = real(self, run, value)
        self.requests_total = 1  # set, not added
        self.retry_histogram[0] += 1  # and the no-re-ask bucket counted twice
        return result

    mp.setattr(JSONHardGuard, "_accepted", accepted)


def _probe_reasks_without_regenerate(mp: pytest.MonkeyPatch) -> None:
    real = JSONHardGuard.start

    def start(self: JSONHardGuard, schema: Any, fallback: Any = guard_run.MISSING, *, can_reask: bool = True,
              use_fallback: bool = True) -> Any:
        return real(self, schema, fallback, can_reask=True, use_fallback=use_fallback)  # even with no regenerate

    mp.setattr(JSONHardGuard, "start", start)


def _guard_reads_another_clock(mp: pytest.MonkeyPatch) -> None:
    real = JSONHardGuard.__init__

    def init(self: JSONHardGuard, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        self._clock = lambda: 0.0  # not the service's clock: no time ever passes for the deadline

    mp.setattr(JSONHardGuard, "__init__", init)


def _check_timed_under_no_model(mp: pytest.MonkeyPatch) -> None:
    real = LLMHealthChecker._record

    def record(self: LLMHealthChecker, model: str, result: dict[str, Any], elapsed: float | None) -> None:
        real(self, model, result, None)  # the duration is not observed under the model
        if elapsed is not None and self._metrics is not None:
            self._metrics.health_check_duration.labels(model="None").observe(elapsed)

    mp.setattr(LLMHealthChecker, "_record", record)


def _failed_flight_breaks_its_waiters(mp: pytest.MonkeyPatch) -> None:
    real = LRUCacheWithTTL._count_joined

    def count_joined(self: LRUCacheWithTTL[Any, Any], flight: Any, value: Any) -> None:
        if value is None:  # the loader failed: the waiter's own bookkeeping breaks instead of re-raising its error
            raise AttributeError("'NoneType' object has no attribute 'stored'")
        real(self, flight, value)

    mp.setattr(LRUCacheWithTTL, "_count_joined", count_joined)


def _parse_failures_first_only(mp: pytest.MonkeyPatch) -> None:
    real = JSONHardGuard._record

    def record(self: JSONHardGuard, errors: list[Any], *args: Any) -> None:
        real(self, errors[:1], *args)  # only the first rejection of a request is counted

    mp.setattr(JSONHardGuard, "_record", record)


def _trial_frees_two_slots(mp: pytest.MonkeyPatch) -> None:
    real = CircuitBreaker._after_call

    def after_call(self: CircuitBreaker, token: int, outcome: int) -> None:
        trial = token == self._generation and self._state is HALF_OPEN
        real(self, token, outcome)
        if trial:
            self._in_flight -= 1

    mp.setattr(CircuitBreaker, "_after_call", after_call)


def _failures_never_leave_the_window(mp: pytest.MonkeyPatch) -> None:
    real = FailureRateWindow.record

    def record(self: FailureRateWindow, failed: bool) -> None:
        before = self.failures
        real(self, failed)
        self.failures = max(self.failures, before)

    real_success = FailureRateWindow.record_success

    def record_success(self: FailureRateWindow) -> None:
        before = self.failures
        real_success(self)
        self.failures = max(self.failures, before)

    mp.setattr(FailureRateWindow, "record", record)
    mp.setattr(FailureRateWindow, "record_success", record_success)


def _window_at_least_twenty(mp: pytest.MonkeyPatch) -> None:
    real = CircuitBreaker.__init__

    def init(self: CircuitBreaker, *args: Any, **kwargs: Any) -> None:
        kwargs["window_size"] = max(20, kwargs.get("window_size", 20))
        real(self, *args, **kwargs)

    mp.setattr(CircuitBreaker, "__init__", init)


def _probe_error_reads_healthy(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(health_check, "failure_reason", lambda exc: None)


def _health_cache_one_second_long(mp: pytest.MonkeyPatch) -> None:
    real = LLMHealthChecker.__init__

    def init(self: LLMHealthChecker, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        self._results.ttl_seconds = self.cache_seconds + 0.5

    mp.setattr(LLMHealthChecker, "__init__", init)


def _health_timeout_doubled(mp: pytest.MonkeyPatch) -> None:
    real = LLMHealthChecker.__init__

    def init(self: LLMHealthChecker, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        self.timeout *= 2

    mp.setattr(LLMHealthChecker, "__init__", init)


def _fence_ignored(mp: pytest.MonkeyPatch) -> None:
    real = json_extract.extract

    def extract(text: str, *args: Any, **kwargs: Any) -> Any:
        return real(text.replace("```json", "").replace("```", ""), *args, **kwargs)

    mp.setattr(strict_json, "extract", extract)


def _depth_off_by_one(mp: pytest.MonkeyPatch) -> None:
    real = JSONHardGuard.__init__

    def init(self: JSONHardGuard, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        self.max_depth -= 1

    mp.setattr(JSONHardGuard, "__init__", init)


def _brackets_counted_in_total(mp: pytest.MonkeyPatch) -> None:
    real = json_extract.extract

    def extract(text: str, max_depth: int, *args: Any, **kwargs: Any) -> Any:
        if text.count("{") + text.count("[") > max_depth:
            return json_extract.Rejection("too_deep", f"JSON is nested deeper than max_depth={max_depth}")
        return real(text, max_depth, *args, **kwargs)

    mp.setattr(strict_json, "extract", extract)


def _no_system_prompt(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(ensemble_module, "SYSTEM_PROMPT", "")


def _creative_parameters_everywhere(mp: pytest.MonkeyPatch) -> None:
    real = LLMEnsemble.request_for

    def request_for(self: LLMEnsemble, prompt: str, mode: str) -> Any:
        request = real(self, prompt, "creative")
        return dataclasses.replace(request, temperature=real(self, prompt, mode).temperature)  # only top_p, max_tokens wrong

    mp.setattr(LLMEnsemble, "request_for", request_for)


def _reask_without_reason(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(guard_run, "feedback_for", lambda error: "Your previous answer was rejected. Try again.")


def _waiter_fallback_misreported(mp: pytest.MonkeyPatch) -> None:
    real = LLMEnsemble._brief

    async def brief(self: LLMEnsemble, prompt: str, mode: str | None) -> Any:
        result = await real(self, prompt, mode)
        if result.source == "fallback" and result.attempts == 0:  # a waiter's own fallback
            return dataclasses.replace(result, mode=self.config.mode_controller.initial_mode, attempts=1)
        return result

    mp.setattr(LLMEnsemble, "_brief", brief)


def _countdown_never_runs(mp: pytest.MonkeyPatch) -> None:
    real = ModeController.seconds_until_upshift

    def seconds_until_upshift(self: ModeController) -> float | None:
        left = real(self)
        return None if left is None else 0.0  # an upshift always "due"

    mp.setattr(ModeController, "seconds_until_upshift", seconds_until_upshift)


def _retry_after_whole_seconds(mp: pytest.MonkeyPatch) -> None:
    real = LLMHealthChecker.check_model

    async def check_model(self: LLMHealthChecker, model: str) -> dict[str, Any]:
        result = await real(self, model)
        if "retry_after_s" in result:
            result["retry_after_s"] = round(result["retry_after_s"])
        return result

    mp.setattr(LLMHealthChecker, "check_model", check_model)


def _max_size_plus_one(mp: pytest.MonkeyPatch) -> None:
    real = LRUCacheWithTTL.__init__

    def init(self: LRUCacheWithTTL[Any, Any], max_size: int = 1000, *args: Any, **kwargs: Any) -> None:
        real(self, max_size + 1 if max_size == 1 else max_size, *args, **kwargs)

    mp.setattr(LRUCacheWithTTL, "__init__", init)


def _panic_outcome_misspelled(mp: pytest.MonkeyPatch) -> None:
    real = LLMEnsemble._panic_trial

    async def panic_trial(self: LLMEnsemble, *args: Any) -> Any:
        outcome, result, judged = await real(self, *args)
        return outcome.upper(), result, judged  # "INVALID_RESPONSE": not a code models_tried knows

    mp.setattr(LLMEnsemble, "_panic_trial", panic_trial)


def _panic_brief_without_its_attempts(mp: pytest.MonkeyPatch) -> None:
    real = LLMEnsemble._from_models

    async def from_models(self: LLMEnsemble, prompt: str, mode: str) -> Any:
        result = await real(self, prompt, mode)
        if result.source == "model" and result.tried and result.tried[0].outcome == "skipped_open":
            return dataclasses.replace(result, tried=())  # a panic trial's brief reports no models tried
        return result

    mp.setattr(LLMEnsemble, "_from_models", from_models)


def _failed_panic_trial_uncounted(mp: pytest.MonkeyPatch) -> None:
    real = PanicRule.record

    def record(self: PanicRule, model: str, ok: bool) -> None:
        if ok:
            real(self, model, ok)

    mp.setattr(PanicRule, "record", record)


def _slow_from_exactly_the_duration(mp: pytest.MonkeyPatch) -> None:
    real = CircuitBreaker.__init__

    def init(self: CircuitBreaker, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        if self.slow_call_duration:
            self.slow_call_duration -= 1e-9  # ">=" instead of ">": a call of exactly the duration is slow

    mp.setattr(CircuitBreaker, "__init__", init)


def _stable_close_counted_from_half_open(mp: pytest.MonkeyPatch) -> None:
    real = CircuitBreaker._transition_locked

    def transition(self: CircuitBreaker, new: str) -> tuple[str, str]:
        stamp = self._period.closed_at
        event = real(self, new)
        if new == HALF_OPEN:
            self._period.closed_at = self._clock()  # the "close" is dated when the breaker went half-open
        elif new == CLOSED:
            self._period.closed_at = stamp  # and the real close does not move it
        return event

    mp.setattr(CircuitBreaker, "_transition_locked", transition)


def _breakers_enabled_regardless(mp: pytest.MonkeyPatch) -> None:
    real = CircuitBreaker.__init__

    def init(self: CircuitBreaker, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **{**kwargs, "enabled": True})  # circuit_breaker.enabled not passed on

    mp.setattr(CircuitBreaker, "__init__", init)


def _no_usage_counted_as_one(mp: pytest.MonkeyPatch) -> None:
    real = LLMEnsemble.count_tokens

    def count_tokens(self: LLMEnsemble, model: str, purpose: Any, response: CompletionResponse) -> None:
        real(self, model, purpose, dataclasses.replace(response, completion_tokens=response.completion_tokens or 1))

    mp.setattr(LLMEnsemble, "count_tokens", count_tokens)


def _cached_health_keeps_its_breaker_state(mp: pytest.MonkeyPatch) -> None:
    real = LLMHealthChecker.check_model
    checked: dict[str, Any] = {}

    async def check_model(self: LLMHealthChecker, model: str) -> dict[str, Any]:
        inferences = self.inferences_total
        result = await real(self, model)
        if self.inferences_total > inferences:
            checked[model] = result["circuit_state"]
        elif result.get("reason") != "circuit_breaker_open" and model in checked:
            result = {**result, "circuit_state": checked[model]}  # the state as it was when the result was fresh
        return result

    mp.setattr(LLMHealthChecker, "check_model", check_model)


CASES: list[tuple[str, str, Patch]] = [
    ("cache/expirations_count_each", "cache-every-expiry-counted-once", _expirations_set_to_one),
    ("circuit_breaker/counters_count_every_event", "cb-counters-count-every-event", _opened_set_to_one),
    ("circuit_breaker/counters_count_every_event", "cb-counters-count-every-event", _requests_start_at_one),
    ("circuit_breaker/mode_counters_count_each", "cb-mode-counters-count-each-shift", _upshifts_set_to_one),
    ("circuit_breaker/mode_counters_count_each", "cb-mode-counters-count-each-shift", _downshift_requests_set_to_one),
    ("circuit_breaker/fast_stays_fast", "cb-fast-stays-fast", _downshift_requests_only_when_moved),
    ("health_check/every_failure_is_unhealthy", "hc-every-failure-kind-is-unhealthy", _probe_reasks_without_regenerate),
    ("json_guard/deadline_stops_reasks", "jg-deadline-stops-reasks", _guard_reads_another_clock),
    ("health_check/every_failure_is_unhealthy", "hc-every-failure-kind-is-unhealthy", _check_timed_under_no_model),
    ("json_guard/fallback_disabled", "jg-fallback-disabled-answers-503", _failed_flight_breaks_its_waiters),
    ("json_guard/parse_failures_count_each", "jg-parse-failures-count-each-rejection", _accepted_at_once_counted_as_one),
    ("json_guard/parse_failures_count_each", "jg-parse-failures-count-each-rejection", _parse_failures_first_only),
    ("circuit_breaker/half_open_trials_over_time", "cb-half-open-trials-over-time", _trial_frees_two_slots),
    ("circuit_breaker/window_slides", "cb-failures-leave-the-sliding-window", _failures_never_leave_the_window),
    ("circuit_breaker/window_size_one", "cb-window-size-one", _window_at_least_twenty),
    ("health_check/every_failure_is_unhealthy", "hc-every-failure-kind-is-unhealthy", _probe_error_reads_healthy),
    ("health_check/cache_and_timeout_boundaries", "hc-cache-and-timeout-boundaries", _health_cache_one_second_long),
    ("health_check/cache_and_timeout_boundaries", "hc-cache-and-timeout-boundaries", _health_timeout_doubled),
    ("json_guard/fenced_after_bracketed_prose", "jg-fenced-block-preferred-over-bracketed-prose", _fence_ignored),
    ("json_guard/depth_boundary", "jg-max-depth-is-a-nesting-limit", _depth_off_by_one),
    ("json_guard/depth_boundary", "jg-max-depth-is-a-nesting-limit", _brackets_counted_in_total),
    ("circuit_breaker/mode_sampling_parameters", "cb-each-mode-sends-its-sampling-parameters", _no_system_prompt),
    ("circuit_breaker/mode_sampling_parameters", "cb-each-mode-sends-its-sampling-parameters", _creative_parameters_everywhere),
    ("json_guard/reask_carries_the_reason", "jg-reask-carries-the-rejection-reason", _reask_without_reason),
    ("cache/single_flight_waiters_report", "cache-single-flight-waiters-report-truly", _waiter_fallback_misreported),
    ("cache/max_size_one", "cache-max-size-one", _max_size_plus_one),
    ("health_check/open_breaker_details", "hc-open-breaker-says-when-to-retry", _retry_after_whole_seconds),
    ("circuit_breaker/guards_shows_the_upshift_countdown", "cb-guards-shows-the-upshift-countdown", _countdown_never_runs),
    ("circuit_breaker/panic_trial_reported", "cb-panic-trial-reported-in-the-brief", _panic_outcome_misspelled),
    ("circuit_breaker/panic_trial_reported", "cb-panic-trial-reported-in-the-brief", _panic_brief_without_its_attempts),
    ("circuit_breaker/panic_trial_reported", "cb-panic-trial-reported-in-the-brief", _failed_panic_trial_uncounted),
    ("circuit_breaker/slow_call_boundary", "cb-slow-call-boundary", _slow_from_exactly_the_duration),
    ("circuit_breaker/open_period_stable_close", "cb-open-period-stable-close-counts-from-the-close",
     _stable_close_counted_from_half_open),
    ("circuit_breaker/disabled_never_opens", "cb-disabled-breakers-never-open", _breakers_enabled_regardless),
    ("health_check/cached_result_live_breaker", "hc-cached-result-reads-the-breaker-live",
     _cached_health_keeps_its_breaker_state),
    ("json_guard/empty_answer_tokens", "jg-empty-answer-costs-only-its-prompt", _no_usage_counted_as_one),
]


@pytest.mark.parametrize(("scenario", "scenario_id", "defect"), CASES, ids=[f"{c[0]}:{c[2].__name__[1:]}" for c in CASES])
def test_the_scenario_fails_on_its_defect(
    monkeypatch: pytest.MonkeyPatch, scenario: str, scenario_id: str, defect: Patch
) -> None:
    path = CHECKLIST_DIR / f"{scenario}.scenario.yaml"
    defect(monkeypatch)
    failure = _fails(path)
    assert failure.scenario.id == scenario_id
    assert f"scenario {scenario_id} " in str(failure)
    assert not failure.inconclusive


@pytest.mark.parametrize("scenario", sorted({c[0] for c in CASES}))
def test_the_scenario_passes_on_the_reference(scenario: str) -> None:
    asyncio.run(_run(CHECKLIST_DIR / f"{scenario}.scenario.yaml"))
