"""Tests for the mode controller: downshift one step at a time, upshift one step per quiet period, virtual time."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from fragrance_ai.clock import VirtualClock
from fragrance_ai.llm.mode_controller import MODES, ModeController

JOIN_TIMEOUT = 10.0


def test_modes_and_defaults() -> None:
    assert MODES == ("creative", "balanced", "fast")
    mc = ModeController(clock=VirtualClock())
    assert mc.mode == mc.get_current_mode() == mc.initial_mode == "creative"
    assert mc.upshift_quiet_period == 300.0
    assert mc.seconds_until_upshift() is None


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"initial_mode": "turbo"}, "'turbo'"),
        ({"upshift_quiet_period": 0}, "upshift_quiet_period"),
        ({"upshift_quiet_period": -5.0}, "-5.0"),
    ],
)
def test_invalid_arguments_are_named(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        ModeController(**kwargs)


def test_set_mode_rejects_unknown_modes_and_says_which_exist() -> None:
    mc = ModeController(clock=VirtualClock())
    with pytest.raises(ValueError, match="'warp'") as info:
        mc.set_mode("warp")
    assert "'warp'" in str(info.value)
    assert "creative, balanced, fast" in str(info.value)
    assert mc.set_mode("fast") == "fast"
    assert mc.mode == "fast"


def test_downshift_moves_one_step_and_fast_stays() -> None:
    mc = ModeController(clock=VirtualClock())
    assert mc.downshift("qwen opened") == "balanced"
    assert mc.downshift() == "fast"
    assert mc.downshift() == "fast"
    assert mc.mode == "fast"
    assert (mc.downshifts_total, mc.downshift_requests_total) == (2, 3)


def test_upshift_moves_one_step_and_never_above_the_initial_mode() -> None:
    mc = ModeController("balanced", clock=VirtualClock())
    mc.downshift()
    assert mc.upshift() == "balanced"
    assert mc.upshift() == "balanced"  # balanced is where this controller started
    assert mc.upshifts_total == 1


def test_quiet_period_upshifts_one_step_per_period() -> None:
    clock = VirtualClock()
    mc = ModeController(upshift_quiet_period=300, clock=clock)
    mc.downshift()
    mc.downshift()  # t=0: fast
    clock.advance(299.9)
    assert mc.evaluate(True) is None
    assert mc.seconds_until_upshift() == pytest.approx(0.1)
    clock.advance(0.1)  # t=300: a full quiet period
    assert mc.evaluate(True) == "balanced"
    assert mc.evaluate(True) is None  # the next step needs another full period
    clock.advance(299)
    assert mc.evaluate(True) is None
    clock.advance(1)
    assert mc.evaluate(True) == "creative"
    clock.advance(10_000)
    assert mc.evaluate(True) is None
    assert mc.mode == "creative"
    assert mc.upshifts_total == 2


def test_one_late_evaluate_still_upshifts_only_one_step() -> None:
    clock = VirtualClock()
    mc = ModeController(upshift_quiet_period=300, clock=clock)
    mc.downshift()
    mc.downshift()
    clock.advance(10_000)  # many periods, but nobody evaluated in between
    assert mc.evaluate(True) == "balanced"
    assert mc.evaluate(True) is None
    assert mc.mode == "balanced"


def test_not_all_closed_restarts_the_quiet_period() -> None:
    clock = VirtualClock()
    mc = ModeController(upshift_quiet_period=300, clock=clock)
    mc.downshift()
    clock.advance(200)
    assert mc.evaluate(False) is None  # t=200: a breaker is not closed
    clock.advance(299)
    assert mc.evaluate(True) is None
    clock.advance(1)  # t=500: 300s since the last time not all were closed
    assert mc.evaluate(True) == "creative"


def test_a_downshift_at_fast_still_restarts_the_quiet_period() -> None:
    clock = VirtualClock()
    mc = ModeController(upshift_quiet_period=300, clock=clock)
    mc.set_mode("fast")
    clock.advance(250)
    assert mc.downshift() == "fast"  # could not move, but it is fresh trouble
    clock.advance(100)
    assert mc.evaluate(True) is None
    clock.advance(200)
    assert mc.evaluate(True) == "balanced"


def test_listeners_get_every_change_and_a_raising_one_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock()
    changes: list[tuple[str, str, bool]] = []
    mc = ModeController(upshift_quiet_period=1, clock=clock)

    def broken(old: str, new: str) -> None:
        raise RuntimeError("listener bug")

    def record(old: str, new: str) -> None:
        changes.append((old, new, mc._lock.locked()))

    mc.add_listener(broken)
    mc.add_listener(record)
    with caplog.at_level(logging.ERROR, logger="fragrance_ai.llm.mode_controller"):
        mc.downshift()
        mc.downshift()
        mc.downshift()  # no change: no call
        clock.advance(1)
        mc.evaluate(True)
        mc.upshift()
    assert changes == [
        ("creative", "balanced", False),
        ("balanced", "fast", False),
        ("fast", "balanced", False),
        ("balanced", "creative", False),
    ]
    assert sum("listener" in r.getMessage() for r in caplog.records) == 4


def test_a_listener_may_change_the_mode_without_deadlock() -> None:
    mc = ModeController(clock=VirtualClock())

    def push_further(old: str, new: str) -> None:
        if new == "balanced":
            mc.set_mode("fast")  # re-enters the controller from its own listener

    mc.add_listener(push_further)
    worker = threading.Thread(target=mc.downshift, daemon=True)
    worker.start()
    worker.join(JOIN_TIMEOUT)
    assert not worker.is_alive(), "listener deadlocked: called with the lock held"
    assert mc.mode == "fast"


def test_concurrent_downshifts_keep_exact_counts() -> None:
    mc = ModeController(clock=VirtualClock())
    n = 16
    barrier = threading.Barrier(n, timeout=JOIN_TIMEOUT)

    def worker() -> None:
        barrier.wait()
        for _ in range(100):
            mc.downshift()

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads)
    assert (mc.mode, mc.downshifts_total, mc.downshift_requests_total) == ("fast", 2, n * 100)
