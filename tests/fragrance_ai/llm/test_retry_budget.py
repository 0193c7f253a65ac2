"""The retry budget: re-asks capped at ratio * first attempts + min_per_second * window, on a virtual clock."""

from __future__ import annotations

import logging

import pytest

from fragrance_ai.clock import VirtualClock
from fragrance_ai.llm.retry_budget import RetryBudget


def budget(clock: VirtualClock, **kw: float | bool) -> RetryBudget:
    settings: dict[str, float | bool] = {"ratio": 0.2, "min_per_second": 0.0, "window": 10.0, **kw}
    return RetryBudget(clock=clock, **settings)  # type: ignore[arg-type]


def test_reasks_are_capped_at_the_ratio_of_first_attempts() -> None:
    clock = VirtualClock()
    b = budget(clock)
    for _ in range(50):
        b.record_attempt()
    granted = sum(b.try_reask() for _ in range(30))
    assert granted == 10  # 0.2 * 50
    snap = b.snapshot()
    assert (snap.first_attempts, snap.reasks, snap.denied) == (50, 10, 20)


def test_the_reserve_allows_reasks_on_a_quiet_service() -> None:
    clock = VirtualClock()
    b = budget(clock, min_per_second=0.5)  # 5 re-asks per 10 s window, whatever the traffic
    assert [b.try_reask() for _ in range(6)] == [True] * 5 + [False]


def test_the_window_slides_and_old_counts_are_dropped() -> None:
    clock = VirtualClock()
    b = budget(clock)
    for _ in range(10):
        b.record_attempt()
    assert [b.try_reask() for _ in range(3)] == [True, True, False]
    clock.advance(5)
    assert not b.try_reask()  # the same window
    clock.advance(6)  # the first second has left the window: no first attempts, no re-asks in it
    assert not b.try_reask()
    b.record_attempt()
    for _ in range(4):
        b.record_attempt()
    assert b.try_reask()  # 0.2 * 5 = 1
    assert not b.try_reask()
    assert len(b._buckets) <= 11


def test_disabled_admits_every_reask_and_still_counts_them() -> None:
    b = budget(VirtualClock(), enabled=False)
    assert all(b.try_reask() for _ in range(100))
    assert (b.snapshot().reasks, b.snapshot().denied) == (100, 0)


def test_one_log_line_per_window_of_denials(caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock()
    b = budget(clock)
    with caplog.at_level(logging.WARNING, logger="fragrance_ai.llm.retry_budget"):
        for _ in range(20):
            b.try_reask()
        clock.advance(10)
        b.try_reask()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "retry budget spent: 0 re-asks for 0 first attempts in the last 10s" in lines[0]


@pytest.mark.parametrize("kw", [{"ratio": -0.1}, {"min_per_second": -1.0}, {"window": 0.0}])
def test_bad_settings_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="retry budget"):
        budget(VirtualClock(), **kw)
