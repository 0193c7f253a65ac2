"""Tests for LRUCacheWithTTL: TTL, LRU, counters, cleanup, the shared cleanup thread and single-flight loading.

Time is a VirtualClock; nothing here sleeps. Threads are joined with bounded timeouts.
"""

from __future__ import annotations

import asyncio
import gc
import math
import pathlib
import re
import runpy
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from fragrance_ai.cache import lru_cache
from fragrance_ai.cache._cleanup import Scheduler
from fragrance_ai.cache.lru_cache import Fetched, Loaded, LRUCacheWithTTL
from fragrance_ai.clock import VirtualClock

JOIN = 10.0  # generous bound for joins and waits on a loaded CI machine; a healthy run takes milliseconds
SCRIPT = pathlib.Path(__file__).resolve().parents[3] / "scripts" / "test_cache_ttl.py"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def scheduler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Scheduler]:
    """A private cleanup scheduler for this test, so caches of other tests cannot keep its thread alive."""
    sched = Scheduler()
    monkeypatch.setattr(lru_cache, "_scheduler", sched)
    yield sched
    gc.collect()
    sched.wake()
    thread = sched.thread
    if thread is not None:
        thread.join(JOIN)


def make(
    clock: VirtualClock, max_size: int = 100, ttl: float = 10.0, interval: float = 60.0
) -> LRUCacheWithTTL[Any, Any]:
    return LRUCacheWithTTL(max_size, ttl, interval, clock=clock, start_cleanup=False)


def spin_until(predicate: Any, what: str) -> None:
    """Yield the GIL until ``predicate()`` holds (bounded by real time): synchronises threads without sleeping."""
    deadline = time.monotonic() + JOIN
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0)


# -- TTL -------------------------------------------------------------------------------------------


def test_entry_is_fresh_until_just_before_ttl_and_expired_at_exactly_ttl(clock: VirtualClock) -> None:
    cache = make(clock, ttl=10.0)
    cache.set("k", "v")
    clock.advance(9.999)
    assert cache.get("k") == "v"
    clock.advance(0.001)  # now == set time + ttl: expired (fresh only while now < set time + ttl)
    assert "k" not in cache
    assert cache.get("k") is None
    assert (cache.hits, cache.misses, cache.expirations) == (1, 1, 1)


def test_expired_entry_can_be_regenerated(clock: VirtualClock) -> None:
    cache = make(clock, ttl=5.0)
    cache.set("k", "old")
    clock.advance(6)
    assert cache.get("k") is None
    cache.set("k", "new")
    assert cache.get("k") == "new"
    clock.advance(4.9)
    assert cache.get("k") == "new"


def test_update_refreshes_ttl(clock: VirtualClock) -> None:
    cache = make(clock, ttl=10.0)
    cache.set("k", 1)
    clock.advance(8)
    cache.set("k", 2)
    clock.advance(8)  # 16 s after the first set, 8 s after the update
    assert cache.get("k") == 2
    clock.advance(2)
    assert cache.get("k") is None


def test_get_returns_default_on_miss_and_none_is_a_cacheable_value(clock: VirtualClock) -> None:
    cache = make(clock)
    assert cache.get("missing", "dflt") == "dflt"
    cache.set("none", None)
    assert cache.get("none", "dflt") is None
    assert "none" in cache


def test_default_clock_reads_time_monotonic_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    cache: LRUCacheWithTTL[str, str] = LRUCacheWithTTL(ttl_seconds=5, start_cleanup=False)
    virtual = VirtualClock(start=1000.0)
    monkeypatch.setattr(time, "monotonic", virtual)  # patched after construction, still seen
    cache.set("k", "v")
    virtual.advance(5)
    assert cache.get("k") is None


# -- LRU -------------------------------------------------------------------------------------------


def test_get_moves_key_to_most_recently_used_and_full_cache_evicts_lru(clock: VirtualClock) -> None:
    cache = make(clock, max_size=3)
    for key in "abc":
        cache.set(key, key)
    assert cache.get("a") == "a"  # order is now b, c, a
    cache.set("d", "d")
    assert "b" not in cache
    assert all(k in cache for k in "acd")
    assert cache.evictions == 1
    cache.set("e", "e")  # c is now the least recently used
    assert "c" not in cache
    assert cache.evictions == 2


def test_update_moves_key_to_most_recently_used_without_evicting(clock: VirtualClock) -> None:
    cache = make(clock, max_size=2)
    cache.set("a", 1)
    cache.set("b", 1)
    cache.set("a", 2)  # update: no eviction, a becomes MRU
    assert cache.evictions == 0
    assert len(cache) == 2
    cache.set("c", 1)
    assert "b" not in cache
    assert cache.get("a") == 2


def test_contains_touches_neither_lru_order_nor_counters(clock: VirtualClock) -> None:
    cache = make(clock, max_size=2)
    cache.set("a", 1)
    cache.set("b", 1)
    assert "a" in cache
    cache.set("c", 1)  # "a" was not promoted by ``in``, so it is the one evicted
    assert "a" not in cache
    assert (cache.hits, cache.misses) == (0, 0)


def test_every_insert_into_a_full_cache_counts_one_eviction(clock: VirtualClock) -> None:
    cache = make(clock, max_size=10)
    for i in range(25):
        cache.set(i, i)
    assert len(cache) == 10
    assert cache.evictions == 15
    assert [k for k in range(25) if k in cache] == list(range(15, 25))


def test_full_cache_drops_expired_entries_before_evicting_fresh_ones(clock: VirtualClock) -> None:
    cache = make(clock, max_size=3, ttl=10.0)
    cache.set("a", 1)
    cache.set("b", 1)
    clock.advance(5)
    cache.set("c", 1)
    clock.advance(5)  # a and b expired, c is fresh
    cache.set("d", 1)
    assert (cache.evictions, cache.expirations) == (0, 2)
    assert "c" in cache
    assert "d" in cache


# -- counters, stats, delete, clear ------------------------------------------------------------------


def test_stats_report_configuration_size_and_counters(clock: VirtualClock) -> None:
    cache = make(clock, max_size=4, ttl=10.0)
    assert cache.stats()["hit_rate"] == 0.0
    cache.set("a", 1)
    cache.set("b", 2)
    cache.get("a")
    cache.get("a")
    cache.get("a")
    cache.get("zz")
    stats = cache.stats()
    assert stats["size"] == 2
    assert stats["max_size"] == 4
    assert stats["utilization"] == 0.5
    assert stats["ttl_seconds"] == 10.0
    assert (stats["hits"], stats["misses"], stats["hit_rate"]) == (3, 1, 0.75)
    assert (stats["evictions"], stats["expirations"]) == (0, 0)
    clock.advance(10)
    stats = cache.stats()
    assert (stats["size"], stats["expirations"]) == (0, 2)


def test_delete_and_clear(clock: VirtualClock) -> None:
    cache = make(clock, ttl=10.0)
    cache.set("a", 1)
    cache.set("b", 1)
    assert cache.delete("a") is True
    assert cache.delete("a") is False
    assert "a" not in cache
    clock.advance(10)
    assert cache.delete("b") is False  # present but expired: removed and counted as an expiration
    assert cache.expirations == 1
    cache.set("c", 1)
    cache.get("c")
    cache.clear()
    assert len(cache) == 0
    assert "c" not in cache
    assert cache.hits == 1  # counters feed Prometheus counters: clear() does not reset them


# -- cleanup ---------------------------------------------------------------------------------------


class CountingKey:
    """A key that counts how often it is hashed: dict operations on it hash it, iteration does not."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.hashes = 0

    def __hash__(self) -> int:
        self.hashes += 1
        return hash(self.n)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CountingKey) and other.n == self.n


def test_cleanup_expired_touches_only_expired_entries(clock: VirtualClock) -> None:
    cache = make(clock, max_size=10_000, ttl=10.0)
    old = [CountingKey(i) for i in range(10)]
    fresh = [CountingKey(i) for i in range(10, 2010)]
    for key in old:
        cache.set(key, 0)
    clock.advance(5)
    for key in fresh:
        cache.set(key, 0)
    clock.advance(5)  # exactly the old keys' deadline
    for key in old + fresh:
        key.hashes = 0
    assert cache.cleanup_expired() == 10
    assert all(key.hashes > 0 for key in old)
    # the scan looks at the first fresh entry (that is how it knows to stop) and at nothing after it
    assert sum(key.hashes for key in fresh[1:]) == 0, "cleanup must not visit unexpired entries"
    assert cache.expirations == 10
    assert all(key in cache for key in fresh[:5] + fresh[-5:])


def test_cleanup_skips_entries_whose_ttl_was_refreshed(clock: VirtualClock) -> None:
    cache = make(clock, ttl=10.0)
    cache.set("a", 1)
    cache.set("b", 1)
    clock.advance(6)
    cache.set("a", 2)  # a's deadline moves from 10 to 16
    clock.advance(4)
    assert cache.cleanup_expired() == 1
    assert "a" in cache
    assert "b" not in cache


def test_maybe_cleanup_runs_only_once_cleanup_interval_has_passed(clock: VirtualClock) -> None:
    cache = make(clock, ttl=1.0, interval=10.0)
    cache.set("a", 1)
    clock.advance(2)  # expired, but the interval has not passed
    assert cache.maybe_cleanup() == 0
    clock.advance(8)
    assert cache.maybe_cleanup() == 1
    assert cache.maybe_cleanup() == 0  # next one is due at t=20
    assert cache.expirations == 1


def test_set_removes_expired_entries_without_any_thread(clock: VirtualClock) -> None:
    cache = make(clock, ttl=10.0, interval=60.0)
    cache.set("a", 1)
    cache.set("b", 1)
    clock.advance(10)
    cache.set("c", 1)  # no get, no cleanup call, no thread: set() itself drops what expired
    assert cache.expirations == 2
    assert cache.stats()["size"] == 1


# -- the shared cleanup thread ------------------------------------------------------------------------


def test_all_caches_share_one_cleanup_thread_which_exits_when_the_last_closes(
    scheduler: Scheduler, clock: VirtualClock
) -> None:
    caches: list[LRUCacheWithTTL[str, str]] = [LRUCacheWithTTL(clock=clock) for _ in range(20)]
    thread = scheduler.thread
    assert thread is not None
    assert thread.is_alive()
    assert thread.daemon
    assert all(scheduler.thread is thread for _ in caches)
    assert scheduler.live_count() == 20
    for cache in caches[:-1]:
        cache.close()
    caches[0].close()  # idempotent
    assert scheduler.live_count() == 1
    assert thread.is_alive()
    with caches[-1]:
        pass  # the context manager closes the cache
    assert caches[-1].closed
    thread.join(JOIN)
    assert not thread.is_alive()
    assert scheduler.thread is None
    # a closed cache still works, it just gets no background cleanup
    caches[0].set("k", "v")
    assert caches[0].get("k") == "v"
    # the next registration starts a fresh thread
    again: LRUCacheWithTTL[str, str]
    with LRUCacheWithTTL(clock=clock) as again:
        assert scheduler.thread is not None
        assert scheduler.thread is not thread
        restarted = scheduler.thread
    assert again.closed
    restarted.join(JOIN)
    assert not restarted.is_alive()


def test_dropped_cache_is_collected_and_forgotten(scheduler: Scheduler, clock: VirtualClock) -> None:
    cache: LRUCacheWithTTL[str, str] | None = LRUCacheWithTTL(clock=clock)
    ref = weakref.ref(cache)
    thread = scheduler.thread
    assert thread is not None
    assert scheduler.live_count() == 1
    cache = None
    gc.collect()
    assert ref() is None, "the cleanup scheduler must not keep a cache alive"
    assert scheduler.live_count() == 0
    scheduler.wake()
    thread.join(JOIN)
    assert not thread.is_alive()


def test_the_shared_thread_cleans_a_cache_when_its_interval_passes(
    scheduler: Scheduler, clock: VirtualClock
) -> None:
    cleaned = threading.Event()

    class Observed(LRUCacheWithTTL[str, int]):
        __slots__ = ()

        def maybe_cleanup(self) -> int:
            removed = super().maybe_cleanup()
            if removed:
                cleaned.set()
            return removed

    with Observed(ttl_seconds=10, cleanup_interval=5, clock=clock) as cache:
        cache.set("a", 1)
        cache.set("b", 2)
        clock.advance(11)
        scheduler.wake()  # the thread would otherwise wake after 5 real seconds
        assert cleaned.wait(JOIN), "the cleanup thread did not run"
        assert cache.expirations == 2


def test_scheduler_waits_until_the_earliest_due_cleanup_on_each_caches_own_clock(
    scheduler: Scheduler,
) -> None:
    fast_clock, slow_clock = VirtualClock(), VirtualClock(start=100.0)
    fast: LRUCacheWithTTL[str, str] = LRUCacheWithTTL(cleanup_interval=5, clock=fast_clock)
    slow: LRUCacheWithTTL[str, str] = LRUCacheWithTTL(cleanup_interval=7, clock=slow_clock)
    with fast, slow:
        fast_clock.advance(3)
        assert scheduler.run_once() == pytest.approx(2.0)
        fast_clock.advance(2)  # the fast cache is due: cleaned now, next due in 5; the slow one in 7
        assert scheduler.run_once() == pytest.approx(5.0)
    assert scheduler.run_once() is None


# -- single-flight ---------------------------------------------------------------------------------


def test_get_or_set_hits_without_calling_the_factory(clock: VirtualClock) -> None:
    cache = make(clock)
    cache.set("k", "cached")
    assert cache.get_or_set("k", lambda: pytest.fail("factory called on a hit")) == "cached"
    assert cache.get_or_set("other", lambda: "made") == "made"
    assert cache.get("other") == "made"


def test_get_or_set_does_not_hold_the_lock_while_the_factory_runs(clock: VirtualClock) -> None:
    cache = make(clock)

    def factory() -> str:
        cache.set("side", 1)  # would deadlock if get_or_set held the cache lock
        return str(cache.get("side"))

    worker = threading.Thread(target=cache.get_or_set, args=("k", factory), daemon=True)
    worker.start()
    worker.join(JOIN)
    assert not worker.is_alive(), "get_or_set deadlocked: the lock is held across the factory"
    assert cache.get("k") == "1"


def _run_threads(n: int, target: Any) -> list[Any]:
    results: list[Any] = [None] * n
    start = threading.Barrier(n)

    def worker(i: int) -> None:
        start.wait(JOIN)
        try:
            results[i] = target()
        except Exception as exc:  # noqa: BLE001 - the test asserts on what each thread got, error or value
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert not any(t.is_alive() for t in threads), "a get_or_set caller never returned"
    return results


def test_twenty_threads_missing_together_call_the_factory_once(clock: VirtualClock) -> None:
    cache = make(clock)
    calls = []

    def factory() -> str:
        calls.append(threading.get_ident())
        spin_until(lambda: cache.coalesced == 19, "the other 19 threads to join the flight")
        return "value"

    results = _run_threads(20, lambda: cache.get_or_set("k", factory))
    assert len(calls) == 1
    assert results == ["value"] * 20
    assert cache.get("k") == "value"
    # the leader missed; each of the 19 waiters got the stored value: a hit, as a lookup a moment later would be
    assert (cache.misses, cache.hits) == (1, 19 + 1)
    assert cache.coalesced == 19


def test_a_failing_factory_fails_every_waiter_and_caches_nothing(clock: VirtualClock) -> None:
    cache = make(clock)
    calls = []

    def factory() -> str:
        calls.append(1)
        spin_until(lambda: cache.coalesced == 19, "the other 19 threads to join the flight")
        raise ConnectionError("model down")

    results = _run_threads(20, lambda: cache.get_or_set("k", factory))
    assert len(calls) == 1
    assert all(isinstance(r, ConnectionError) and str(r) == "model down" for r in results)
    assert "k" not in cache
    assert cache.get_or_set("k", lambda: "recovered") == "recovered"


async def test_twenty_tasks_missing_together_await_the_factory_once(clock: VirtualClock) -> None:
    cache = make(clock)
    release = asyncio.Event()
    calls = []

    async def afactory() -> str:
        calls.append(1)
        await release.wait()
        return "value"

    tasks = [asyncio.create_task(cache.aget_or_set("k", afactory)) for _ in range(20)]
    for _ in range(100):
        if cache.coalesced == 19:
            break
        await asyncio.sleep(0)
    assert cache.coalesced == 19
    release.set()
    assert await asyncio.wait_for(asyncio.gather(*tasks), JOIN) == ["value"] * 20
    assert len(calls) == 1
    assert cache.get("k") == "value"


async def test_async_factory_error_reaches_every_task_and_is_not_cached(clock: VirtualClock) -> None:
    cache = make(clock)
    release = asyncio.Event()

    async def afactory() -> str:
        await release.wait()
        raise ValueError("bad json")

    tasks = [asyncio.create_task(cache.aget_or_set("k", afactory)) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), JOIN)
    assert all(isinstance(r, ValueError) for r in results)
    assert "k" not in cache


async def test_cancelled_leader_hands_the_flight_to_a_waiter(clock: VirtualClock) -> None:
    cache = make(clock)
    calls = []

    async def afactory() -> str:
        calls.append(1)
        if len(calls) == 1:
            await asyncio.Event().wait()  # the first leader never finishes: it gets cancelled
        return "second try"

    leader = asyncio.create_task(cache.aget_or_set("k", afactory))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(cache.aget_or_set("k", afactory))
    await asyncio.sleep(0)
    leader.cancel()
    assert await asyncio.wait_for(waiter, JOIN) == "second try"
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert len(calls) == 2


async def test_a_cancelled_waiter_does_not_cancel_the_flight(clock: VirtualClock) -> None:
    cache = make(clock)
    release = asyncio.Event()

    async def afactory() -> str:
        await release.wait()
        return "value"

    leader = asyncio.create_task(cache.aget_or_set("k", afactory))
    await asyncio.sleep(0)
    quitter = asyncio.create_task(cache.aget_or_set("k", afactory))
    stayer = asyncio.create_task(cache.aget_or_set("k", afactory))
    await asyncio.sleep(0)
    quitter.cancel()
    await asyncio.sleep(0)
    release.set()
    assert list(await asyncio.wait_for(asyncio.gather(leader, stayer), JOIN)) == ["value", "value"]
    assert quitter.cancelled()


async def test_a_thread_waits_for_an_async_leader(clock: VirtualClock) -> None:
    cache = make(clock)
    release = asyncio.Event()

    async def afactory() -> str:
        await release.wait()
        return "value"

    leader = asyncio.create_task(cache.aget_or_set("k", afactory))
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    in_thread = loop.run_in_executor(None, cache.get_or_set, "k", lambda: "thread computed it")
    for _ in range(100_000):
        if cache.coalesced == 1:
            break
        await asyncio.sleep(0)
    assert cache.coalesced == 1
    release.set()
    assert list(await asyncio.wait_for(asyncio.gather(leader, in_thread), JOIN)) == ["value", "value"]


async def test_sync_get_or_set_on_the_loop_computing_the_key_raises_instead_of_deadlocking(
    clock: VirtualClock,
) -> None:
    cache = make(clock)
    release = asyncio.Event()

    async def afactory() -> str:
        await release.wait()
        return "value"

    leader = asyncio.create_task(cache.aget_or_set("k", afactory))
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="aget_or_set"):
        cache.get_or_set("k", lambda: "never")
    release.set()
    assert await asyncio.wait_for(leader, JOIN) == "value"


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_size": 0}, "max_size"),
        ({"max_size": -5}, "max_size"),
        ({"max_size": 1.5}, "max_size"),
        ({"max_size": True}, "max_size"),
        ({"max_size": "10"}, "max_size"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"ttl_seconds": -1.0}, "ttl_seconds"),
        ({"ttl_seconds": math.nan}, "ttl_seconds"),
        ({"ttl_seconds": "600"}, "ttl_seconds"),
        ({"cleanup_interval": 0}, "cleanup_interval"),
        ({"cleanup_interval": -60}, "cleanup_interval"),
    ],
)
def test_bad_arguments_are_rejected_with_name_and_value(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=re.escape(name)) as info:
        LRUCacheWithTTL(start_cleanup=False, **kwargs)
    message = str(info.value)
    assert name in message
    assert repr(kwargs[name]) in message


# -- the checklist's verification script ------------------------------------------------------------


def test_checklist_ttl_script_passes_on_virtual_time(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], scheduler: Scheduler
) -> None:
    virtual = VirtualClock(start=50_000.0)
    monkeypatch.setattr(time, "monotonic", virtual)
    monkeypatch.setattr(time, "sleep", virtual.sleep)
    runpy.run_path(str(SCRIPT), run_name="__main__")
    out = capsys.readouterr().out
    assert "✓ Cache miss (expired)" in out
    assert "All TTL tests passed" in out
    assert virtual.slept == [6]


def test_concurrent_mixed_use_keeps_counters_and_structure_consistent(clock: VirtualClock) -> None:
    cache = make(clock, max_size=50, ttl=3.0, interval=1.0)
    gets_per_thread = 2000

    def worker(seed: int) -> None:
        for i in range(gets_per_thread):
            key = (seed * 7919 + i * 31) % 120
            if i % 3 == 0:
                cache.set(key, i)
            elif i % 97 == 0:
                cache.delete(key)
            if i % 50 == 0:
                clock.advance(0.5)
            cache.get(key)

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert not any(t.is_alive() for t in threads)
    assert cache.hits + cache.misses == 8 * gets_per_thread
    assert cache.hits > 0
    assert cache.evictions > 0
    assert cache.expirations > 0
    assert len(cache) <= 50
    # the LRU and the deadline orders must always hold the same entries
    assert list(cache._data)
    assert set(cache._data) == set(cache._expiry)
    deadlines = [entry[1] for entry in cache._expiry.values()]
    assert deadlines == sorted(deadlines)


# -- single flight with values the cache refuses ----------------------------------------------------


async def test_every_waiter_gets_a_loaded_value_the_cache_does_not_store(clock: VirtualClock) -> None:
    cache = make(clock)
    release = asyncio.Event()
    calls: list[int] = []

    async def aload() -> Loaded[str]:
        calls.append(1)
        await release.wait()
        return Loaded("fallback", store=False)

    leader = asyncio.ensure_future(cache.aget_or_load("k", aload))
    await asyncio.sleep(0)
    waiter = asyncio.ensure_future(cache.aget_or_load("k", aload))
    await asyncio.sleep(0)
    release.set()
    first, second = await asyncio.gather(leader, waiter)
    assert first == Fetched("fallback", "loaded")
    assert second == Fetched("fallback", "joined")
    assert calls == [1]
    assert "k" not in cache


async def test_a_detached_load_survives_its_first_caller_giving_up(clock: VirtualClock) -> None:
    cache = make(clock)
    release = asyncio.Event()
    calls: list[int] = []

    async def aload() -> Loaded[str]:
        calls.append(1)
        await release.wait()
        return Loaded("value")

    quitter = asyncio.ensure_future(cache.aget_or_load("k", aload, detach=True))
    await asyncio.sleep(0)
    stayer = asyncio.ensure_future(cache.aget_or_load("k", aload, detach=True))
    await asyncio.sleep(0)
    quitter.cancel()
    release.set()
    assert await stayer == Fetched("value", "joined")
    assert calls == [1]
    assert cache.get("k") == "value"


def test_get_or_load_stores_only_storable_values(clock: VirtualClock) -> None:
    cache = make(clock)
    assert cache.get_or_load("a", lambda: Loaded(1, store=False)) == Fetched(1, "loaded")
    assert "a" not in cache
    assert cache.get_or_load("b", lambda: Loaded(2)) == Fetched(2, "loaded")
    assert cache.get_or_load("b", lambda: Loaded(3)) == Fetched(2, "hit")
