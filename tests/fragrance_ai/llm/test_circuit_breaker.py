"""Tests for the circuit breaker and its manager: virtual time only, concurrency through events, never sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from fragrance_ai.clock import VirtualClock
from fragrance_ai.llm.circuit_breaker import (
    CircuitBreaker,
    CircuitBreakerOpenError,
    FailureRateWindow,
    LLMCircuitBreakerManager,
)
from fragrance_ai.llm.mode_controller import ModeController

JOIN_TIMEOUT = 10.0  # bounded waits: a broken breaker fails the test instead of hanging it


class Boom(RuntimeError):
    pass


def ok() -> str:
    return "ok"


def fail() -> str:
    raise Boom("model failed")


def make(clock: VirtualClock, **kwargs: Any) -> CircuitBreaker:
    kwargs.setdefault("window_size", 20)
    kwargs.setdefault("minimum_calls", 10)
    kwargs.setdefault("model", "qwen")
    return CircuitBreaker(clock=clock, **kwargs)


def run(breaker: CircuitBreaker, pattern: str) -> None:
    """Make one call per letter: S succeeds, F fails (the Boom is swallowed here)."""
    for letter in pattern:
        if letter == "S":
            assert breaker.call(ok) == "ok"
        else:
            with pytest.raises(Boom):
                breaker.call(fail)


def trip(breaker: CircuitBreaker) -> None:
    """Open a closed breaker by failing calls (at most ``window_size`` of them)."""
    for _ in range(breaker.window_size):
        run(breaker, "F")
        if breaker.state == "open":
            return
    raise AssertionError(f"{breaker!r} did not open after {breaker.window_size} failures")


def half_open(breaker: CircuitBreaker, clock: VirtualClock) -> None:
    trip(breaker)
    clock.advance(breaker.timeout)
    assert breaker.state == "half_open"


# ------------------------------------------------------------------------------------ construction


@pytest.mark.parametrize(
    ("kwargs", "name", "shown"),
    [
        ({"failure_threshold": 0}, "failure_threshold", "0"),
        ({"failure_threshold": 1.5}, "failure_threshold", "1.5"),
        ({"success_threshold": 0}, "success_threshold", "0"),
        ({"timeout": 0}, "timeout", "0"),
        ({"timeout": -1.0}, "timeout", "-1.0"),
        ({"half_open_requests": 0}, "half_open_requests", "0"),
        ({"window_size": 0}, "window_size", "0"),
        ({"minimum_calls": 2.5}, "minimum_calls", "2.5"),
        ({"window_size": 5, "minimum_calls": 6}, "minimum_calls", "6"),
    ],
)
def test_invalid_arguments_name_the_argument_and_value(kwargs: dict[str, Any], name: str, shown: str) -> None:
    with pytest.raises(ValueError, match=re.escape(name)) as info:
        CircuitBreaker(**kwargs)
    assert name in str(info.value)
    assert shown in str(info.value)


def test_defaults_match_the_checklist() -> None:
    b = CircuitBreaker()
    assert (b.failure_threshold, b.success_threshold, b.timeout, b.half_open_requests) == (0.5, 5, 60, 3)
    # window 100 (was 20): a 20-call window opens on noise at a 20% fault rate (README, "Partial failure")
    assert (b.window_size, b.minimum_calls, b.model, b.state) == (100, 10, "default", "closed")
    assert b.half_open_policy == "failure_rate"


# ----------------------------------------------------------------------------------- the window


def test_failure_rate_window_drops_the_oldest_outcome() -> None:
    w = FailureRateWindow(3)
    for failed in (True, True, False):
        w.record(failed)
    assert (w.count, w.failures) == (3, 2)
    w.record(False)  # pushes out the first failure
    assert (w.count, w.failures) == (3, 1)
    assert w.rate == pytest.approx(1 / 3)
    w.reset()
    assert (w.count, w.failures, w.rate) == (0, 0, 0.0)


# --------------------------------------------------------------------------------- closed -> open


def test_opens_only_when_the_rate_is_strictly_above_the_threshold() -> None:
    clock = VirtualClock()
    b = make(clock, failure_threshold=0.5)
    run(b, "SSSSSFFFFF")  # 10 calls, exactly 50%: not above
    assert b.state == "closed"
    assert b.failure_rate == 0.5
    run(b, "F")  # 6/11
    assert b.state == "open"
    assert b.opened_total == 1


def test_minimum_calls_is_respected() -> None:
    clock = VirtualClock()
    b = make(clock, minimum_calls=10)
    run(b, "F" * 9)  # 100% failures, but too few calls to judge
    assert b.state == "closed"
    run(b, "F")
    assert b.state == "open"


def test_sliding_window_forgets_old_failures_and_is_not_cumulative() -> None:
    clock = VirtualClock()
    b = make(clock, failure_threshold=0.5)
    run(b, "SSSSSFFFFF")  # 5 failures ...
    run(b, "S" * 20)  # ... pushed out of the window of 20
    assert b.failure_rate == 0.0
    assert b.window_calls == 20
    # had the 5 old failures stayed, this would be 15/20 and open
    run(b, "F" * 10)
    assert b.state == "closed"
    assert b.failure_rate == 0.5
    # cumulatively 16/41 would stay closed; the window says 11/20
    run(b, "F")
    assert b.state == "open"


@pytest.mark.parametrize(("threshold", "opens"), [(0.4, True), (0.5, False)])
def test_alternating_success_first_pattern_is_a_true_fifty_percent(threshold: float, opens: bool) -> None:
    clock = VirtualClock()
    b = make(clock, failure_threshold=threshold, window_size=20, minimum_calls=10)
    for i in range(100):
        run(b, "S" if i % 2 == 0 else "F")
        if b.state == "open":
            break
    if opens:
        assert b.state == "open"
        assert b.requests_total == 10  # the first failure judged with 10 calls in the window: 5/10 > 0.4
    else:
        assert b.state == "closed"
        assert b.requests_total == 100
        assert b.failure_rate == 0.5


# ---------------------------------------------------------------------------------------- open


def test_open_rejects_without_calling_and_says_when_to_retry() -> None:
    clock = VirtualClock()
    b = make(clock, timeout=60)
    trip(b)
    clock.advance(15)
    called: list[int] = []
    with pytest.raises(CircuitBreakerOpenError) as info:
        b.call(called.append, 1)
    assert called == []
    assert info.value.model == "qwen"
    assert info.value.retry_after == 45.0
    assert "qwen" in str(info.value)
    assert "45.0s" in str(info.value)
    assert b.retry_after() == 45.0
    assert b.rejected_total == 1
    assert b.requests_total == 10


async def test_open_rejects_async_calls_without_awaiting() -> None:
    clock = VirtualClock()
    b = make(clock)
    trip(b)
    called: list[int] = []

    async def afunc() -> None:
        called.append(1)

    with pytest.raises(CircuitBreakerOpenError):
        await b.acall(afunc)
    assert called == []
    assert b.rejected_total == 1


def test_half_open_comes_lazily_exactly_at_the_timeout() -> None:
    clock = VirtualClock()
    transitions: list[tuple[str, str]] = []
    b = make(clock, timeout=60, listeners=[lambda br, old, new: transitions.append((old, new))])
    trip(b)
    clock.advance(59.999)
    assert b.state == "open"
    assert b.retry_after() == pytest.approx(0.001)
    clock.advance(0.001)  # exactly 60s after opening: >= timeout
    assert transitions == [("closed", "open")]  # nothing happens until someone looks
    assert b.state == "half_open"
    assert transitions == [("closed", "open"), ("open", "half_open")]
    assert b.retry_after() == 0.0


# ----------------------------------------------------------------------------------- half-open


def test_fifty_threads_in_half_open_only_half_open_requests_get_through() -> None:
    clock = VirtualClock()
    b = make(clock, half_open_requests=3, success_threshold=5)
    half_open(b, clock)
    n = 50
    all_tried = threading.Event()
    tally = threading.Lock()
    tried = 0
    admitted: list[int] = []
    rejected: list[CircuitBreakerOpenError] = []

    def mark() -> None:
        nonlocal tried
        with tally:
            tried += 1
            if tried == n:
                all_tried.set()

    def trial() -> str:
        admitted.append(1)
        mark()
        # hold the slot until every caller has tried, so they are truly concurrent
        if not all_tried.wait(JOIN_TIMEOUT):
            raise AssertionError("not every caller tried in time")
        return "ok"

    def caller() -> None:
        try:
            b.call(trial)
        except CircuitBreakerOpenError as exc:
            rejected.append(exc)
            mark()

    threads = [threading.Thread(target=caller) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads)
    assert len(admitted) == 3
    assert len(rejected) == 47
    assert all(e.state == "half_open" and e.retry_after == 0.0 for e in rejected)
    assert b.rejected_total == 47
    assert b.state == "half_open"  # 3 successes of the 5 needed


async def test_fifty_tasks_in_half_open_only_half_open_requests_get_through() -> None:
    clock = VirtualClock()
    b = make(clock, half_open_requests=3, success_threshold=5)
    half_open(b, clock)
    n = 50
    all_tried = asyncio.Event()
    tried = 0
    admitted = 0
    rejected = 0

    def mark() -> None:
        nonlocal tried
        tried += 1
        if tried == n:
            all_tried.set()

    async def trial() -> str:
        nonlocal admitted
        admitted += 1
        mark()
        await all_tried.wait()
        return "ok"

    async def caller() -> None:
        nonlocal rejected
        try:
            await b.acall(trial)
        except CircuitBreakerOpenError:
            rejected += 1
            mark()

    await asyncio.wait_for(asyncio.gather(*(caller() for _ in range(n))), JOIN_TIMEOUT)
    assert (admitted, rejected) == (3, 47)
    assert b.state == "half_open"
    # the slots were released: the two successes still needed get through now
    assert await b.acall(trial) == "ok"
    assert await b.acall(trial) == "ok"
    assert b.state == "closed"


def test_failure_in_half_open_reopens_with_a_fresh_timeout() -> None:
    clock = VirtualClock()
    b = make(clock, timeout=60)
    half_open(b, clock)  # opened at t=0, half-open at t=60
    clock.advance(10)  # t=70
    run(b, "F")
    assert b.state == "open"
    assert b.opened_total == 2
    assert b.retry_after() == 60.0
    clock.advance(59.9)
    assert b.state == "open"
    clock.advance(0.1)
    assert b.state == "half_open"


def test_success_threshold_successes_close_with_a_clean_window() -> None:
    clock = VirtualClock()
    b = make(clock, success_threshold=5, half_open_requests=3)
    half_open(b, clock)
    run(b, "SSSS")
    assert b.state == "half_open"
    run(b, "S")
    assert b.state == "closed"
    assert b.window_calls == 0
    assert b.failure_rate == 0.0
    run(b, "F" * 9)  # the old failures are gone: minimum_calls must be reached again
    assert b.state == "closed"
    run(b, "F")
    assert b.state == "open"


async def test_cancellation_in_half_open_is_ignored_and_frees_the_slot() -> None:
    clock = VirtualClock()
    b = make(clock, half_open_requests=1, success_threshold=1)
    half_open(b, clock)
    failures = b.failures_total

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await b.acall(cancelled)
    assert b.state == "half_open"
    assert b.failures_total == failures

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        b.call(interrupted)
    assert b.state == "half_open"
    # the single slot is free again, and the cancelled calls did not count as successes either
    assert b.call(ok) == "ok"
    assert b.state == "closed"


async def test_a_real_task_cancellation_frees_the_slot() -> None:
    clock = VirtualClock()
    b = make(clock, half_open_requests=1, success_threshold=1)
    half_open(b, clock)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.ensure_future(b.acall(hang))
    await asyncio.wait_for(started.wait(), JOIN_TIMEOUT)
    with pytest.raises(CircuitBreakerOpenError):  # the one slot is taken
        b.call(ok)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert b.state == "half_open"
    assert b.call(ok) == "ok"
    assert b.state == "closed"


def test_is_failure_filters_what_counts() -> None:
    clock = VirtualClock()

    def not_a_client_error(exc: BaseException) -> bool:
        return not isinstance(exc, ValueError)

    b = make(clock, is_failure=not_a_client_error, half_open_requests=1, success_threshold=1)

    def bad_request() -> None:
        raise ValueError("the caller's fault, not the model's")

    for _ in range(30):
        with pytest.raises(ValueError, match="the caller's fault"):
            b.call(bad_request)
    assert b.state == "closed"
    assert b.failures_total == 0
    assert b.window_calls == 0
    assert b.requests_total == 30
    half_open(b, clock)
    with pytest.raises(ValueError, match="the caller's fault"):
        b.call(bad_request)  # ignored: neither reopens nor closes, and frees the slot
    assert b.state == "half_open"
    assert b.call(ok) == "ok"
    assert b.state == "closed"


# ------------------------------------------------------------------------------- generations


def test_a_late_failure_from_the_closed_generation_does_not_reopen_a_half_open_breaker() -> None:
    clock = VirtualClock()
    b = make(clock, timeout=60)

    def slow_failure() -> None:
        # while this call (admitted when closed) is in flight, others trip the breaker and time passes
        trip(b)
        clock.advance(60)
        assert b.state == "half_open"
        raise Boom("late")

    with pytest.raises(Boom):
        b.call(slow_failure)
    assert b.state == "half_open"
    assert b.opened_total == 1
    assert b.failures_total == 11  # still counted in the stats


def test_a_late_trial_from_an_earlier_half_open_generation_is_not_applied() -> None:
    clock = VirtualClock()
    b = make(clock, timeout=60, half_open_requests=2, success_threshold=1)
    half_open(b, clock)
    inner_rejected: list[CircuitBreakerOpenError] = []

    def outer_trial() -> str:
        run(b, "F")  # another trial fails: reopen
        clock.advance(60)
        assert b.state == "half_open"  # a new half-open generation with fresh slots
        return "late success"

    assert b.call(outer_trial) == "late success"
    # it neither closed the breaker (success_threshold=1) nor released a slot of the new generation
    assert b.state == "half_open"

    def holder() -> str:
        def inner() -> str:
            try:
                b.call(ok)  # a third concurrent trial: must be rejected (2 slots)
            except CircuitBreakerOpenError as exc:
                inner_rejected.append(exc)
            return "ok"

        return b.call(inner)

    assert b.call(holder) == "ok"
    assert len(inner_rejected) == 1
    assert b.state == "closed"


# --------------------------------------------------------------------------- locks and listeners


def test_no_lock_is_held_during_the_call() -> None:
    clock = VirtualClock()
    b = make(clock)
    seen: list[bool] = []

    def probe() -> str:
        seen.append(b._lock.locked())
        return "ok"

    b.call(probe)
    half_open(b, clock)
    b.call(probe)
    assert seen == [False, False]


async def test_no_lock_is_held_during_the_async_call() -> None:
    clock = VirtualClock()
    b = make(clock)
    seen: list[bool] = []

    async def probe() -> str:
        seen.append(b._lock.locked())
        await asyncio.sleep(0)
        seen.append(b._lock.locked())
        return "ok"

    await b.acall(probe)
    half_open(b, clock)
    await b.acall(probe)
    assert seen == [False] * 4


def test_listeners_run_outside_the_lock_and_may_read_the_state() -> None:
    clock = VirtualClock()
    seen: list[tuple[str, str, bool, str]] = []

    def listener(br: CircuitBreaker, old: str, new: str) -> None:
        seen.append((old, new, br._lock.locked(), br.state))  # .state takes the lock when not closed

    b = make(clock, listeners=[listener])
    # in a thread, so that a listener called under the (non-reentrant) lock fails the test, not hangs it
    worker = threading.Thread(target=trip, args=(b,), daemon=True)
    worker.start()
    worker.join(JOIN_TIMEOUT)
    assert not worker.is_alive(), "listener deadlocked: it was called with the lock held"
    assert seen == [("closed", "open", False, "open")]


def test_a_raising_listener_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock()
    after: list[str] = []

    def broken(br: CircuitBreaker, old: str, new: str) -> None:
        raise RuntimeError("listener bug")

    b = make(clock, listeners=[broken, lambda br, old, new: after.append(new)])
    with caplog.at_level(logging.ERROR, logger="fragrance_ai.llm.circuit_breaker"):
        trip(b)
    assert after == ["open"]
    assert any("listener" in r.getMessage() and r.exc_info for r in caplog.records)


def test_counters_move() -> None:
    clock = VirtualClock()
    b = make(clock)
    run(b, "SSF")
    assert (b.requests_total, b.failures_total, b.rejected_total, b.opened_total) == (3, 1, 0, 0)
    run(b, "F" * 6)  # 7/9: below minimum_calls
    assert b.state == "closed"
    run(b, "F")  # 8/10
    assert b.state == "open"
    assert b.opened_total == 1
    with pytest.raises(CircuitBreakerOpenError):
        b.call(ok)
    assert (b.requests_total, b.failures_total, b.rejected_total) == (10, 8, 1)


def test_threads_hammering_a_closed_breaker_keep_exact_counts() -> None:
    b = CircuitBreaker(failure_threshold=1.0, model="x")  # never opens: only the counts matter
    n, per = 8, 2000
    barrier = threading.Barrier(n, timeout=JOIN_TIMEOUT)

    def worker() -> None:
        barrier.wait()
        for i in range(per):
            with contextlib.suppress(Boom):
                b.call(fail if i % 4 == 0 else ok)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads)
    assert b.requests_total == n * per
    assert b.failures_total == n * per // 4
    assert b.failure_rate == pytest.approx(0.25)


def test_disabled_breaker_never_opens_but_counts() -> None:
    clock = VirtualClock()
    b = make(clock, enabled=False)
    run(b, "F" * 30)
    assert b.state == "closed"
    assert b.failures_total == 30
    assert b.opened_total == 0
    assert b.failure_rate == 1.0


# ------------------------------------------------------------------------------------- manager


def settings(**overrides: Any) -> SimpleNamespace:
    base: dict[str, Any] = dict(
        failure_threshold=0.5, success_threshold=5, timeout=60.0, half_open_requests=3, window_size=20, minimum_calls=10,
        half_open_policy="failure_rate", timeout_multiplier=1.0, max_timeout=600.0,
        slow_call_duration=0.0, slow_call_rate_threshold=1.0, max_retry_after=0.0,
    )
    base.update(overrides)
    return SimpleNamespace(**base)


def config(*, enabled: bool = True, auto_downshift: bool = True, quiet: float = 300.0) -> SimpleNamespace:
    return SimpleNamespace(
        circuit_breaker=SimpleNamespace(
            enabled=enabled,
            auto_downshift=auto_downshift,
            models={"qwen": settings(failure_threshold=0.4), "mistral": settings(), "llama": settings()},
        ),
        mode_controller=SimpleNamespace(initial_mode="creative", upshift_quiet_period=quiet),
    )


def test_successive_opens_downshift_the_one_shared_controller() -> None:
    clock = VirtualClock()
    m = LLMCircuitBreakerManager(config(), clock=clock)
    mc = m.mode_controller
    assert mc.mode == "creative"
    trip(m.breakers["qwen"])
    assert mc.mode == "balanced"
    trip(m.breakers["mistral"])
    assert mc.mode == "fast"
    trip(m.breakers["llama"])
    assert mc.mode == "fast"
    assert (mc.downshifts_total, mc.downshift_requests_total) == (2, 3)


def test_a_reopen_from_half_open_downshifts_too() -> None:
    clock = VirtualClock()
    m = LLMCircuitBreakerManager(config(), clock=clock)
    half_open(m.breakers["qwen"], clock)
    run(m.breakers["qwen"], "F")
    assert m.mode_controller.mode == "fast"


def test_the_manager_uses_the_controller_it_is_given() -> None:
    clock = VirtualClock()
    mc = ModeController("balanced", clock=clock)
    m = LLMCircuitBreakerManager(config(), mc, clock=clock)
    assert m.mode_controller is mc
    trip(m.breakers["llama"])
    assert mc.mode == "fast"


def test_no_downshift_without_auto_downshift() -> None:
    clock = VirtualClock()
    m = LLMCircuitBreakerManager(config(auto_downshift=False), clock=clock)
    trip(m.breakers["qwen"])
    assert m.mode_controller.mode == "creative"
    assert m.mode_controller.downshift_requests_total == 0


def test_disabled_config_breakers_never_open() -> None:
    clock = VirtualClock()
    m = LLMCircuitBreakerManager(config(enabled=False), clock=clock)
    run(m.breakers["qwen"], "F" * 40)
    assert m.all_closed()
    assert m.mode_controller.mode == "creative"
    assert m.breakers["qwen"].failures_total == 40


def test_manager_api() -> None:
    clock = VirtualClock()
    metrics: list[tuple[str, str, str]] = []
    m = LLMCircuitBreakerManager(
        config(), clock=clock, metrics_listeners=[lambda br, old, new: metrics.append((br.model, old, new))]
    )
    assert list(m.breakers) == ["qwen", "mistral", "llama"]
    assert m.breakers["qwen"].failure_threshold == 0.4
    assert m.breakers["mistral"].failure_threshold == 0.5
    assert m.get_breaker("qwen") is m.breakers["qwen"]
    assert m.get_breaker("gpt-9") is None
    assert m.is_available("gpt-9") is False
    assert m.all_closed()
    trip(m.breakers["mistral"])
    assert m.is_available("qwen")
    assert not m.is_available("mistral")
    assert m.get_available_models() == ["qwen", "llama"]
    assert m.states() == {"qwen": "closed", "mistral": "open", "llama": "closed"}
    assert not m.all_closed()
    assert metrics == [("mistral", "closed", "open")]
    clock.advance(60)
    assert m.is_available("mistral")
    assert m.states()["mistral"] == "half_open"
    assert metrics[-1] == ("mistral", "open", "half_open")


def test_upshift_after_a_quiet_period_since_the_last_open() -> None:
    clock = VirtualClock()
    m = LLMCircuitBreakerManager(config(quiet=300.0), clock=clock)
    qwen = m.breakers["qwen"]
    trip(qwen)  # t=0: creative -> balanced; the quiet period starts
    clock.advance(60)
    run(qwen, "SSSSS")  # t=60: closed again
    assert m.all_closed()
    clock.advance(239)
    assert m.evaluate_upshift() is None  # t=299
    clock.advance(1)
    assert m.evaluate_upshift() == "creative"  # t=300
    assert m.mode_controller.upshifts_total == 1


def test_an_open_breaker_holds_the_mode_down() -> None:
    clock = VirtualClock()
    m = LLMCircuitBreakerManager(config(quiet=300.0), clock=clock)
    trip(m.breakers["qwen"])
    clock.advance(30)
    assert m.states()["qwen"] == "open"
    assert m.evaluate_upshift() is None
    assert m.mode_controller.mode == "balanced"


def test_a_half_open_breaker_no_mode_calls_does_not_pin_the_mode_down() -> None:
    """qwen is absent from fast and last in balanced: if upshift waited for it to close, nothing would
    ever send it the trial calls that close it, and the service would stay downshifted forever."""
    clock = VirtualClock()
    m = LLMCircuitBreakerManager(config(quiet=300.0), clock=clock)
    trip(m.breakers["qwen"])  # creative -> balanced
    trip(m.breakers["mistral"])  # balanced -> fast
    clock.advance(1000)
    assert m.states()["qwen"] == m.states()["mistral"] == "half_open"
    assert m.evaluate_upshift() == "balanced"
    clock.advance(300)
    assert m.evaluate_upshift() == "creative"  # qwen is first again and gets its trial calls
    trip(m.breakers["qwen"])  # ... and if it still fails, it reopens and the mode steps down again
    assert m.mode_controller.mode == "balanced"


def test_the_checklist_verification_snippet(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.delenv("FRAGRANCE_AI_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./configs here: the packaged default config is used
    manager = LLMCircuitBreakerManager()
    assert list(manager.breakers.keys()) == ["qwen", "mistral", "llama"]
    lines = [f"{model}: {breaker.failure_threshold:.0%} {breaker.state}" for model, breaker in manager.breakers.items()]
    assert lines == ["qwen: 40% closed", "mistral: 50% closed", "llama: 50% closed"]
    assert all(b.timeout == 60 for b in manager.breakers.values())
    assert all(b.state == "closed" for b in manager.breakers.values())
    assert manager.mode_controller.mode == "creative"


# ------------------------------------------------------------------------------- half_open_policy


@pytest.mark.parametrize(
    ("policy", "outcomes", "expected"),
    [
        ("failure_rate", "F", "open"),  # a dead model's first failed trial reopens
        ("failure_rate", "SSFSS", "closed"),  # 1 failure in 5 trials: 20% <= 50%
        ("failure_rate", "SFF", "open"),  # 2 of 3: above 50%
        ("failure_rate", "SF", "half_open"),  # 1 of 2: not above 50%, not yet 5 trials
        ("consecutive", "SSF", "open"),  # the checklist's rule: any failure reopens
        ("consecutive", "SSSSS", "closed"),
    ],
)
def test_half_open_policy_judges_the_trials(policy: str, outcomes: str, expected: str) -> None:
    clock = VirtualClock()
    b = CircuitBreaker(0.5, 5, 60, 1, window_size=10, minimum_calls=2, clock=clock, half_open_policy=policy)
    for _ in range(2):
        with pytest.raises(Boom):
            b.call(fail)
    clock.advance(60)
    assert b.state == "half_open"
    for outcome in outcomes:
        if b.state != "half_open":
            break
        if outcome == "F":
            with pytest.raises(Boom):
                b.call(fail)
        else:
            b.call(ok)
    assert b.state == expected


def test_half_open_policy_must_be_known() -> None:
    with pytest.raises(ValueError, match="half_open_policy must be one of failure_rate, consecutive; got 'sometimes'"):
        CircuitBreaker(half_open_policy="sometimes")


# ------------------------------------------------------------------------------- growing open period


def test_open_period_grows_capped_and_starts_over_after_a_stable_close() -> None:
    clock = VirtualClock()
    b = CircuitBreaker(0.5, 1, 60, 1, window_size=10, minimum_calls=2, clock=clock, timeout_multiplier=2, max_timeout=200)
    for _ in range(2):
        with pytest.raises(Boom):
            b.call(fail)
    waits = []
    for _ in range(4):
        waits.append(b.retry_after())
        clock.advance(b.retry_after())
        with pytest.raises(Boom):
            b.call(fail)  # the trial fails: reopens
    assert waits == [60, 120, 200, 200]
    clock.advance(b.retry_after())
    b.call(ok)  # success_threshold 1: closed
    assert b.state == "closed"
    clock.advance(200)  # a stable close
    for _ in range(2):
        with pytest.raises(Boom):
            b.call(fail)
    assert b.retry_after() == 60


def test_open_period_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="timeout_multiplier must be a number from 1 to 10"):
        CircuitBreaker(timeout_multiplier=0.5)
    with pytest.raises(ValueError, match=r"max_timeout must be a number of seconds >= timeout \(60\)"):
        CircuitBreaker(timeout=60, max_timeout=30)


# ------------------------------------------------------------------------------------ slow calls


def slow_breaker(clock: VirtualClock, **kwargs: Any) -> CircuitBreaker:
    return CircuitBreaker(0.5, 2, 60, 1, window_size=10, minimum_calls=4, clock=clock,
                          slow_call_duration=10, slow_call_rate_threshold=0.5, **kwargs)


def taking(clock: VirtualClock, seconds: float) -> Any:
    def call() -> str:
        clock.advance(seconds)
        return "ok"
    return call


def test_slow_successes_open_the_breaker_above_the_slow_call_rate() -> None:
    clock = VirtualClock()
    b = slow_breaker(clock)
    for seconds in (10, 10, 11, 11):  # exactly the duration is not slow; 2 slow of 4 is not above 0.5
        assert b.call(taking(clock, seconds)) == "ok"
    assert (b.state, b.slow_total, b.failures_total) == ("closed", 2, 0)
    assert b.call(taking(clock, 11)) == "ok"  # the slow answer is still returned
    assert b.state == "open"
    assert b.failure_rate == 0.0  # slow, not failed


async def test_a_slow_half_open_trial_is_a_failed_trial_and_fast_ones_close() -> None:
    clock = VirtualClock()
    b = slow_breaker(clock)

    async def slow() -> str:
        clock.advance(30)
        return "ok"

    async def fast() -> str:
        return "ok"

    for _ in range(4):
        await b.acall(slow)
    assert b.state == "open"
    clock.advance(b.retry_after())
    await b.acall(slow)
    assert b.state == "open"
    clock.advance(b.retry_after())
    await b.acall(fast)
    await b.acall(fast)
    assert b.state == "closed"


def test_slow_calls_are_off_by_default_and_settings_are_checked() -> None:
    clock = VirtualClock()
    b = CircuitBreaker(0.5, 2, 60, 1, window_size=10, minimum_calls=2, clock=clock)
    for _ in range(5):
        b.call(taking(clock, 1000))
    assert (b.state, b.slow_total) == ("closed", 0)
    with pytest.raises(ValueError, match="slow_call_duration must be a number of seconds >= 0"):
        CircuitBreaker(slow_call_duration=-1)
    with pytest.raises(ValueError, match=r"slow_call_rate_threshold must be a rate in \(0, 1\]"):
        CircuitBreaker(slow_call_rate_threshold=0)


# ------------------------------------------------------------------------------- 429 Retry-After


class RateLimited(Exception):
    def __init__(self, retry_after: object) -> None:
        super().__init__("429")
        self.retry_after = retry_after


def rate_limited(retry_after: object) -> Any:
    def call() -> str:
        raise RateLimited(retry_after)
    return call


def test_a_failure_with_retry_after_opens_at_once_for_at_least_that_long_capped() -> None:
    clock = VirtualClock()
    b = CircuitBreaker(0.5, 1, 60, 1, window_size=10, minimum_calls=5, clock=clock, max_retry_after=300)
    with pytest.raises(RateLimited):
        b.call(rate_limited(120))
    assert (b.state, b.retry_after()) == ("open", 120)
    clock.advance(120)
    with pytest.raises(RateLimited):
        b.call(rate_limited(5000))  # a failed trial: reopened for the cap
    assert b.retry_after() == 300
    clock.advance(300)
    with pytest.raises(RateLimited):
        b.call(rate_limited(10))  # shorter than timeout: the open period is max(timeout, retry_after)
    assert b.retry_after() == 60


def test_retry_after_is_ignored_when_off_absent_or_not_a_number() -> None:
    clock = VirtualClock()
    off = CircuitBreaker(0.5, 1, 60, 1, window_size=10, minimum_calls=5, clock=clock)
    with pytest.raises(RateLimited):
        off.call(rate_limited(120))
    assert off.state == "closed"
    on = CircuitBreaker(0.5, 1, 60, 1, window_size=10, minimum_calls=6, clock=clock, max_retry_after=300)
    for value in (None, "120", True, -1, 0):  # 5 failures, under minimum_calls: only a hold could open it
        with pytest.raises(RateLimited):
            on.call(rate_limited(value))
    assert on.state == "closed"
    with pytest.raises(ValueError, match="max_retry_after must be a number of seconds >= 0"):
        CircuitBreaker(max_retry_after=-1)
