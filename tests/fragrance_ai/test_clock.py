from __future__ import annotations

import asyncio

import pytest

from fragrance_ai.clock import VirtualClock


def test_advance_and_sleep_move_time_without_waiting() -> None:
    clock = VirtualClock(100.0)
    assert clock() == clock.now() == 100.0
    clock.sleep(2.5)
    assert clock.advance(0.5) == 103.0
    assert clock.slept == [2.5]
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


def test_listeners_see_every_advance() -> None:
    clock = VirtualClock()
    seen: list[float] = []
    clock.on_advance(seen.append)
    clock.advance(1)
    clock.sleep(2)
    assert seen == [1.0, 3.0]


async def test_asleep_advances_and_yields() -> None:
    clock = VirtualClock()
    order: list[str] = []

    async def other() -> None:
        order.append("other")

    task = asyncio.create_task(other())
    await clock.asleep(5)
    order.append("after-sleep")
    await task
    assert clock() == 5.0
    assert order == ["other", "after-sleep"]


async def test_virtual_timeout_cuts_off_at_the_deadline() -> None:
    clock = VirtualClock()
    with pytest.raises(TimeoutError):
        async with clock.timeout(10):
            await clock.asleep(4)
            await clock.asleep(15)
    assert clock() == 10.0  # advanced exactly to the deadline, not past it


async def test_virtual_timeout_is_not_swallowed_by_broad_except() -> None:
    clock = VirtualClock()
    with pytest.raises(TimeoutError):
        async with clock.timeout(1):
            try:
                await clock.asleep(2)
            except Exception:  # noqa: BLE001 - what a careless guard would write
                pytest.fail("the deadline must not be an Exception")


async def test_nested_timeouts_end_the_block_whose_deadline_passed() -> None:
    clock = VirtualClock()
    inner_timed_out = False
    with pytest.raises(TimeoutError):
        async with clock.timeout(5):
            try:
                async with clock.timeout(60):
                    await clock.asleep(30)
            except TimeoutError:
                inner_timed_out = True
    assert not inner_timed_out
    assert clock() == 5.0
    async with clock.timeout(5):
        await clock.asleep(4)  # within the deadline: no error
    assert clock() == 9.0
