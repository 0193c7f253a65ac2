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

    async def sleep_past_the_deadline() -> None:
        async with clock.timeout(10):
            await clock.asleep(4)
            await clock.asleep(15)

    with pytest.raises(TimeoutError):
        await sleep_past_the_deadline()
    assert clock() == 10.0  # advanced exactly to the deadline, not past it


async def test_virtual_timeout_is_not_swallowed_by_broad_except() -> None:
    clock = VirtualClock()

    async def careless_guard() -> None:
        async with clock.timeout(1):
            try:
                await clock.asleep(2)
            except Exception:  # noqa: BLE001 - what a careless guard would write
                pytest.fail("the deadline must not be an Exception")

    with pytest.raises(TimeoutError):
        await careless_guard()


async def test_nested_timeouts_end_the_block_whose_deadline_passed() -> None:
    clock = VirtualClock()
    inner_timed_out = False

    async def nested() -> None:
        nonlocal inner_timed_out
        async with clock.timeout(5):
            try:
                async with clock.timeout(60):
                    await clock.asleep(30)
            except TimeoutError:
                inner_timed_out = True

    with pytest.raises(TimeoutError):
        await nested()
    assert not inner_timed_out
    assert clock() == 5.0
    async with clock.timeout(5):
        await clock.asleep(4)  # within the deadline: no error
    assert clock() == 9.0


async def test_concurrent_sleeps_overlap_as_real_ones_would() -> None:
    clock = VirtualClock()
    woke: dict[str, float] = {}

    async def sleeper(name: str, seconds: float) -> None:
        await clock.asleep(seconds)
        woke[name] = clock()

    await asyncio.gather(sleeper("a", 4), sleeper("b", 4), sleeper("c", 1), sleeper("d", 6))
    assert woke == {"c": 1.0, "a": 4.0, "b": 4.0, "d": 6.0}
    assert clock() == 6.0  # not 15: the sleeps overlapped


async def test_each_concurrent_timeout_is_judged_on_its_own_deadline() -> None:
    clock = VirtualClock()

    async def call(latency: float) -> str:
        try:
            async with clock.timeout(10):
                await clock.asleep(latency)
            return "ok"
        except TimeoutError:
            return "timeout"

    results = await asyncio.gather(call(4), call(4), call(4), call(15))
    assert list(results) == ["ok", "ok", "ok", "timeout"]
    assert clock() == 10.0


async def test_a_cancelled_sleeper_does_not_hold_time_back() -> None:
    clock = VirtualClock()
    task = asyncio.create_task(clock.asleep(100))
    await asyncio.sleep(0)
    task.cancel()
    await clock.asleep(1)
    assert clock() == 1.0
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_task_spawned_inside_a_timeout_block_is_not_bound_by_it() -> None:
    clock = VirtualClock()
    async with clock.timeout(5):
        child = asyncio.create_task(clock.asleep(20))  # like asyncio.timeout: the deadline is the block's own
    await child
    assert clock() == 20.0


async def test_a_failing_listener_still_wakes_the_sleepers() -> None:
    clock = VirtualClock()

    def broken(now: float) -> None:
        raise OverflowError("date value out of range")

    clock.on_advance(broken)
    with pytest.raises(OverflowError):
        await asyncio.wait_for(clock.asleep(1), timeout=5)


def test_two_event_loops_in_two_threads_share_time_but_not_sleepers() -> None:
    import threading

    clock = VirtualClock()
    woke: list[float] = []

    def run(seconds: float) -> None:
        async def main() -> None:
            await asyncio.wait_for(clock.asleep(seconds), timeout=5)
            woke.append(seconds)

        asyncio.run(main())

    threads = [threading.Thread(target=run, args=(s,)) for s in (2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(woke) == [2, 3]


async def test_a_deadline_is_a_cancellation_of_the_task_as_with_asyncio_timeout() -> None:
    clock = VirtualClock()
    seen: list[str] = []

    async def body() -> None:
        try:
            await clock.asleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")  # what code under asyncio.timeout sees at the deadline
            raise

    with pytest.raises(TimeoutError):
        async with clock.timeout(2):
            await body()
    assert seen == ["cancelled"]
    assert clock.now() == 2
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0, "the block took back its own cancellation"


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    clock = VirtualClock()

    async def guarded() -> None:
        async with clock.timeout(100):
            await clock.asleep(50)

    task = asyncio.create_task(guarded())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
