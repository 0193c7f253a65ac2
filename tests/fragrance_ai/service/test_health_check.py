"""LLMHealthChecker: the checklist's result dicts, fixed reason codes, enforced timeout, shared breakers,
cached and shared probes, concurrent checks (shown structurally), and the health metrics."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from service_support import MODELS, Exploding, build, openai_overrides

from fragrance_ai.clock import VirtualClock
from fragrance_ai.llm.backends import CompletionRequest, CompletionResponse, LLMBackend, SimulatedBackend
from fragrance_ai.llm.circuit_breaker import OPEN
from fragrance_ai.llm.health_check import REASONS, LLMHealthChecker, overall_status
from fragrance_ai.service.system import GuardSystem
from pytest_guards import FaultyLLM
from pytest_guards.faults import (
    Behaviour,
    connection_error,
    empty,
    http_error,
    invalid_json,
    malformed_body,
    schema_violation,
    timeout,
    truncated,
    valid,
)

HEALTHY_KEYS = {"model", "status", "latency_ms", "circuit_state"}
# real-time: only a bound on a deadlock (a sequential check_all_models); a correct run never waits on it
DEADLOCK_BOUND_S = 5.0


@pytest.fixture
def checker(system: GuardSystem) -> LLMHealthChecker:
    return system.health_checker


# ----------------------------------------------------------------------------------- result shapes


async def test_check_all_models_returns_the_checklists_dicts(checker: LLMHealthChecker, faulty: FaultyLLM) -> None:
    results = await checker.check_all_models()
    assert list(results) == list(MODELS)
    for model, result in results.items():
        assert set(result) == HEALTHY_KEYS
        assert result["model"] == model
        assert (result["status"], result["circuit_state"]) == ("healthy", "closed")
        assert isinstance(result["latency_ms"], int)
        assert result["latency_ms"] >= 0
    assert overall_status(results) == "healthy"
    assert [faulty.call_count(m) for m in MODELS] == [1, 1, 1]
    prompt = faulty.calls("qwen")[0].request["messages"][-1]["content"]
    assert prompt == "Generate a brief perfume description."


async def test_latency_is_measured_on_the_injected_clock(checker: LLMHealthChecker, faulty: FaultyLLM) -> None:
    faulty.set("mistral", valid().after(0.85))
    result = await checker.check_model("mistral")
    assert (result["status"], result["latency_ms"]) == ("healthy", 850)


REASON_CASES: list[tuple[str, Behaviour, str]] = [
    ("invalid json", invalid_json(), "invalid_response"),
    ("schema violation", schema_violation(), "invalid_response"),
    ("truncated", truncated(), "invalid_response"),
    ("empty", empty(), "invalid_response"),
    ("malformed body", malformed_body(), "invalid_response"),
    ("connection error", connection_error(), "connection_error"),
    ("500", http_error(500), "http_error"),
    ("429", http_error(429, retry_after=30), "http_error"),
    ("401", http_error(401, body='{"error": "bad key sk-SECRET-IN-BODY"}'), "client_error"),
    ("read timeout", timeout(), "timeout"),
]


@pytest.mark.parametrize(("behaviour", "reason"), [c[1:] for c in REASON_CASES], ids=[c[0] for c in REASON_CASES])
async def test_an_unhealthy_model_reports_a_fixed_reason_code(
    checker: LLMHealthChecker, faulty: FaultyLLM, behaviour: Behaviour, reason: str
) -> None:
    faulty.set("llama", behaviour)
    result = await checker.check_model("llama")
    assert set(result) == HEALTHY_KEYS | {"reason"}
    assert (result["model"], result["status"], result["reason"], result["circuit_state"]) == (
        "llama", "unhealthy", reason, "closed"
    )
    assert reason in REASONS
    text = json.dumps(result)
    assert "127.0.0.1" not in text
    assert "SECRET" not in text
    assert "HTTP" not in text
    assert faulty.call_count("llama") == 1  # one test inference, no re-ask


async def test_the_timeout_is_enforced_by_cutting_the_call_at_the_deadline(
    checker: LLMHealthChecker, faulty: FaultyLLM, clock: VirtualClock
) -> None:
    faulty.set("qwen", valid().after(15))  # would answer, but only after the 10 s health timeout
    result = await checker.check_model("qwen")
    assert (result["status"], result["reason"], result["latency_ms"]) == ("unhealthy", "timeout", 10_000)
    assert clock() == 10.0  # cancelled exactly at the deadline, not measured after a 15 s answer


class Slow:
    """A backend that awaits ``asleep(latency)``; records whether it ever finished."""

    def __init__(self, name: str, clock: VirtualClock, latency: float) -> None:
        self.name = name
        self.clock = clock
        self.latency = latency
        self.started = 0
        self.finished = 0

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        self.started += 1
        await self.clock.asleep(self.latency)
        self.finished += 1
        return await SimulatedBackend(self.name).complete(request)

    async def aclose(self) -> None:
        pass


async def test_a_slow_backend_is_cancelled_not_awaited(clock: VirtualClock) -> None:
    slow = Slow("mistral", clock, 60.0)
    backends: dict[str, LLMBackend] = {"qwen": SimulatedBackend("qwen"), "mistral": slow, "llama": SimulatedBackend("llama")}
    system = build(clock, {"health_check": {"timeout": 3}}, backends)
    try:
        result = await system.health_checker.check_model("mistral")
        assert (result["reason"], result["latency_ms"]) == ("timeout", 3000)
        assert (slow.started, slow.finished) == (1, 0)
        assert clock() == 3.0
    finally:
        await system.aclose()


async def test_an_unexpected_exception_is_the_error_code_and_its_text_stays_in_the_log(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    backends: dict[str, LLMBackend] = {
        "qwen": Exploding("qwen", "SECRET-TRACE-123 at http://user:pw@10.0.0.1/v1"),
        "mistral": SimulatedBackend("mistral"),
        "llama": SimulatedBackend("llama"),
    }
    system = build(clock, {}, backends)
    try:
        results = await system.health_checker.check_all_models()
        assert results["qwen"]["reason"] == "error"
        assert overall_status(results) == "degraded"
        assert "SECRET-TRACE-123" not in json.dumps(results)
        assert "SECRET-TRACE-123" in caplog.text
    finally:
        await system.aclose()


async def test_an_unknown_model_is_a_value_error(checker: LLMHealthChecker) -> None:
    with pytest.raises(ValueError, match="unknown model 'gpt'; expected one of: qwen, mistral, llama"):
        await checker.check_model("gpt")


# ------------------------------------------------------------------------------- the shared breakers


async def test_an_open_breaker_from_live_traffic_is_reported_without_calling_the_model(
    system: GuardSystem, faulty: FaultyLLM, clock: VirtualClock
) -> None:
    checker = system.health_checker
    assert checker.circuit_breaker_manager is system.breakers  # the service's manager, not a fresh one
    faulty.set("qwen", http_error(500))
    for n in range(10):
        await system.ensemble.generate_brief(f"traffic {n}")
    assert system.breakers.breakers["qwen"].state == OPEN
    calls = faulty.call_count("qwen")

    result = await checker.check_model("qwen")
    assert result == {
        "model": "qwen",
        "status": "unhealthy",
        "reason": "circuit_breaker_open",
        "circuit_state": "open",
        "retry_after_s": 60.0,
    }
    assert faulty.call_count("qwen") == calls
    assert checker.inferences_total == 0

    clock.advance(61)  # past the breaker timeout: half-open, so the model is really checked again
    faulty.set("qwen", valid())
    again = await checker.check_model("qwen")
    assert (again["status"], again["circuit_state"]) == ("healthy", "half_open")


async def test_health_checks_do_not_feed_the_breakers(system: GuardSystem, faulty: FaultyLLM, clock: VirtualClock) -> None:
    faulty.set("qwen", http_error(500))
    for _ in range(12):
        await system.health_checker.check_model("qwen")
        clock.advance(6)
    breaker = system.breakers.breakers["qwen"]
    assert (breaker.state, breaker.requests_total) == ("closed", 0)
    assert faulty.call_count("qwen") == 12


# ------------------------------------------------------------------------------ caching and sharing


async def test_a_result_is_reused_for_cache_seconds(
    checker: LLMHealthChecker, faulty: FaultyLLM, clock: VirtualClock
) -> None:
    first = await checker.check_model("qwen")
    clock.advance(4.9)
    second = await checker.check_model("qwen")
    assert second == first
    assert faulty.call_count("qwen") == 1
    clock.advance(0.1)  # cache_seconds=5 reached
    await checker.check_model("qwen")
    assert faulty.call_count("qwen") == 2
    assert checker.inferences_total == 2


async def test_an_unhealthy_result_is_cached_too(checker: LLMHealthChecker, faulty: FaultyLLM) -> None:
    faulty.set("qwen", http_error(503), valid())
    assert (await checker.check_model("qwen"))["reason"] == "http_error"
    assert (await checker.check_model("qwen"))["reason"] == "http_error"
    assert faulty.call_count("qwen") == 1


async def test_a_cached_result_can_be_mutated_by_the_caller_safely(checker: LLMHealthChecker) -> None:
    first = await checker.check_model("qwen")
    first["status"] = "tampered"
    assert (await checker.check_model("qwen"))["status"] == "healthy"


async def test_cache_seconds_zero_checks_every_time(clock: VirtualClock, faulty: FaultyLLM, system: GuardSystem) -> None:
    checker = LLMHealthChecker(system.ensemble, system.breakers, cache_seconds=0, clock=clock, atimeout=clock.timeout)
    for _ in range(3):
        await checker.check_model("mistral")
    assert faulty.call_count("mistral") == 3


class Gate:
    """A backend that records entry into ``complete`` and then waits for ``release``."""

    def __init__(self, name: str, entered: list[str], release: asyncio.Event, on_enter: Any = None) -> None:
        self.name = name
        self.entered = entered
        self.release = release
        self.on_enter = on_enter
        self.in_flight = 0
        self.max_in_flight = 0

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        self.entered.append(self.name)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.on_enter is not None:
            self.on_enter()
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        return await SimulatedBackend(self.name).complete(request)

    async def aclose(self) -> None:
        pass


async def run_loop_until(condition: Any, turns: int = 100) -> None:
    """Let other tasks run (zero-length yields, no waiting) until ``condition()``; fail after ``turns``."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never became true")


async def test_concurrent_probes_share_one_check(clock: VirtualClock) -> None:
    entered: list[str] = []
    release = asyncio.Event()
    gate = Gate("qwen", entered, release)
    backends: dict[str, LLMBackend] = {"qwen": gate, "mistral": SimulatedBackend("mistral"), "llama": SimulatedBackend("llama")}
    system = build(clock, {}, backends)
    try:
        checker = system.health_checker
        probes = [asyncio.ensure_future(checker.check_model("qwen")) for _ in range(2)]
        await run_loop_until(lambda: bool(entered))
        for _ in range(5):
            await asyncio.sleep(0)  # zero-length: give a second (wrong) check every chance to start
        assert entered == ["qwen"]
        assert not any(p.done() for p in probes)
        release.set()
        first, second = await asyncio.wait_for(asyncio.gather(*probes), DEADLOCK_BOUND_S)
        assert first == second
        assert first["status"] == "healthy"
        assert entered == ["qwen"]
        assert checker.inferences_total == 1
    finally:
        await system.aclose()


async def test_a_probe_that_gives_up_does_not_cancel_the_shared_check(clock: VirtualClock) -> None:
    entered: list[str] = []
    release = asyncio.Event()
    backends: dict[str, LLMBackend] = {
        "qwen": Gate("qwen", entered, release), "mistral": SimulatedBackend("mistral"), "llama": SimulatedBackend("llama"),
    }
    system = build(clock, {}, backends)
    try:
        checker = system.health_checker
        quitter = asyncio.ensure_future(checker.check_model("qwen"))
        stayer = asyncio.ensure_future(checker.check_model("qwen"))
        await run_loop_until(lambda: bool(entered))
        quitter.cancel()
        release.set()
        result = await asyncio.wait_for(stayer, DEADLOCK_BOUND_S)
        assert result["status"] == "healthy"
        assert quitter.cancelled()
        assert entered == ["qwen"]
    finally:
        await system.aclose()


async def test_check_all_models_has_every_check_in_flight_at_once(clock: VirtualClock) -> None:
    # Each backend waits until all three have entered complete(): checks run one after another would
    # deadlock here (the bound turns that into a failure); concurrent checks all get through.
    entered: list[str] = []
    release = asyncio.Event()

    def on_enter() -> None:
        if len(entered) == len(MODELS):
            release.set()

    gates = {m: Gate(m, entered, release, on_enter) for m in MODELS}
    system = build(clock, {}, dict(gates))
    try:
        results = await asyncio.wait_for(system.health_checker.check_all_models(), DEADLOCK_BOUND_S)
        assert sorted(entered) == sorted(MODELS)
        assert all(r["status"] == "healthy" for r in results.values())
        assert overall_status(results) == "healthy"
    finally:
        await system.aclose()


# ------------------------------------------------------------------------------------------ metrics


async def test_health_metrics_move(system: GuardSystem, faulty: FaultyLLM, clock: VirtualClock) -> None:
    metrics, checker = system.metrics, system.health_checker

    def sample(name: str, model: str) -> float | None:
        return metrics.sample(name, {"model": model})

    assert sample("llm_health_status", "qwen") == 0  # exists from start-up
    assert sample("llm_health_check_failures_total", "qwen") == 0
    faulty.set("qwen", valid().after(0.3))
    await checker.check_all_models()
    assert sample("llm_health_status", "qwen") == 1
    assert sample("llm_health_check_duration_seconds_count", "qwen") == 1
    assert sample("llm_health_check_duration_seconds_sum", "qwen") == pytest.approx(0.3)
    assert sample("llm_health_check_duration_seconds_bucket", "qwen") is None  # needs the le label
    assert metrics.sample("llm_health_check_duration_seconds_bucket", {"model": "qwen", "le": "0.25"}) == 0
    assert metrics.sample("llm_health_check_duration_seconds_bucket", {"model": "qwen", "le": "0.5"}) == 1
    assert metrics.sample("llm_health_check_duration_seconds_bucket", {"model": "qwen", "le": "15.0"}) == 1

    clock.advance(5)
    faulty.set("qwen", valid().after(20))
    await checker.check_model("qwen")
    assert sample("llm_health_status", "qwen") == 0
    assert sample("llm_health_check_failures_total", "qwen") == 1
    assert sample("llm_health_check_duration_seconds_count", "qwen") == 2
    assert metrics.sample("llm_health_check_duration_seconds_bucket", {"model": "qwen", "le": "10.0"}) == 2
    await checker.check_model("qwen")  # cached: neither a new check nor a new failure
    assert sample("llm_health_check_failures_total", "qwen") == 1
    assert sample("llm_health_status", "mistral") == 1


# -------------------------------------------------------------------------------------- validation


def test_overall_status() -> None:
    healthy = {"status": "healthy"}
    assert overall_status({"a": healthy, "b": healthy}) == "healthy"
    assert overall_status({"a": healthy, "b": {"status": "unhealthy"}}) == "degraded"
    assert overall_status({"a": {"status": "unhealthy"}, "b": {"status": "unhealthy"}}) == "unhealthy"
    assert overall_status({}) == "unhealthy"


def test_settings_are_checked(system: GuardSystem) -> None:
    with pytest.raises(ValueError, match="timeout must be > 0 seconds; got 0"):
        LLMHealthChecker(system.ensemble, timeout=0)
    with pytest.raises(ValueError, match="cache_seconds must be >= 0; got -1"):
        LLMHealthChecker(system.ensemble, cache_seconds=-1)
    default = LLMHealthChecker(system.ensemble)
    assert (default.timeout, default.cache_seconds) == (10, 5)
    assert default.circuit_breaker_manager is system.breakers


async def test_a_cached_result_still_shows_the_live_breaker_state(clock: VirtualClock, faulty: FaultyLLM) -> None:
    system = build(clock, {**openai_overrides(faulty), "circuit_breaker": {"models": {"qwen": {"timeout": 1}}}})
    try:
        checker = system.health_checker
        assert (await checker.check_model("qwen"))["circuit_state"] == "closed"
        faulty.set("qwen", http_error(500))
        for n in range(10):
            await system.ensemble.generate_brief(f"traffic {n}")
        clock.advance(1.5)  # past qwen's 1 s breaker timeout, within the 5 s result cache
        result = await checker.check_model("qwen")
        assert (result["status"], result["circuit_state"]) == ("healthy", "half_open")
        assert checker.inferences_total == 1
    finally:
        await system.aclose()


async def test_background_probe_checks_every_model_each_interval(clock: VirtualClock) -> None:
    system = build(clock, {})
    probe = asyncio.create_task(system.health_checker.probe_forever(30, clock.asleep))
    try:
        await clock.asleep(95)  # virtual time: probes at t = 0, 30, 60, 90
    finally:
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        await system.aclose()
    assert system.health_checker.inferences_total == 4 * len(MODELS)
    assert system.metrics.sample("llm_health_status", {"model": "qwen"}) == 1


async def test_a_failing_probe_round_does_not_stop_the_probe(clock: VirtualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    system = build(clock, {})
    rounds = 0

    async def broken() -> dict[str, Any]:
        nonlocal rounds
        rounds += 1
        raise RuntimeError("probe exploded")

    monkeypatch.setattr(system.health_checker, "check_all_models", broken)
    probe = asyncio.create_task(system.health_checker.probe_forever(10, clock.asleep))
    await clock.asleep(25)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    await system.aclose()
    assert rounds == 3
    with pytest.raises(ValueError, match="interval must be > 0"):
        await system.health_checker.probe_forever(0)
