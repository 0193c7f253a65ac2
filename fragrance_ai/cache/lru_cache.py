"""A thread-safe LRU cache with a per-entry TTL, single-flight loading and cheap periodic cleanup.

It sits on every request, so the hit path is one lock, two dict operations and one clock read.
It must not log per call, call Prometheus (the metrics collector reads the plain counters
``hits``/``misses``/``evictions``/``expirations`` at scrape time), start a thread per instance,
keep a process alive, or hold its lock while a factory (an LLM call) runs.

Expiry rule: an entry set at ``t`` is fresh while ``now < t + ttl_seconds`` and expired from
``now >= t + ttl_seconds`` on (the same rule as ``cachetools.TTLCache``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from types import TracebackType
from typing import Any, Final, Generic, Literal, NamedTuple, TypeVar, overload

from fragrance_ai import clock as _clock_module
from fragrance_ai.cache._cleanup import Scheduler as _Scheduler
from fragrance_ai.clock import Clock
from fragrance_ai.config_schema import CacheConfig

__all__ = ["Fetched", "LRUCacheWithTTL", "Loaded"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")

_log = logging.getLogger(__name__)

#: the constructor's defaults are the config's defaults: one place
_DEFAULTS: Final = CacheConfig()

#: "no entry" marker; ``None`` is a value a cache may legitimately hold
_MISSING: Final[Any] = object()
#: a flight whose leader was interrupted (cancelled, KeyboardInterrupt): waiters try again themselves
_RETRY: Final[Any] = object()


class LRUCacheWithTTL(Generic[K, V]):
    """LRU cache whose entries also expire ``ttl_seconds`` after they were last set.

    Counters (plain ints, only ever increase, read without a lock by the metrics collector):
    ``hits``, ``misses`` (a single-flight waiter counts once its flight lands: a hit when the value was
    stored, a miss when it was not or the loader failed), ``evictions`` (LRU entries pushed out by a full cache), ``expirations``
    (entries removed because their TTL passed) and ``coalesced`` (``get_or_set`` callers that
    waited for another caller's factory instead of running their own).
    ``max_size``, ``ttl_seconds`` and ``cleanup_interval`` are attributes: read them, do not assign.
    """

    __slots__ = (
        "__weakref__",
        "_clock",
        "_data",
        "_expiry",
        "_flights",
        "_fresh_until",
        "_lock",
        "_next_cleanup",
        "_scheduler",
        "_token",
        "cleanup_interval",
        "coalesced",
        "evictions",
        "expirations",
        "hits",
        "max_size",
        "misses",
        "name",
        "ttl_seconds",
    )

    def __init__(
        self,
        max_size: int = _DEFAULTS.max_size,
        ttl_seconds: float = _DEFAULTS.ttl_seconds,
        cleanup_interval: float = _DEFAULTS.cleanup_interval,
        clock: Clock | None = None,
        *,
        name: str = "cache",
        start_cleanup: bool = True,
    ) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_size must be an int >= 1 (entries), got {max_size!r}")
        _check_positive("ttl_seconds", ttl_seconds)
        _check_positive("cleanup_interval", cleanup_interval)
        self.max_size: int = max_size
        self.ttl_seconds: float = ttl_seconds
        self.cleanup_interval: float = cleanup_interval
        self.name = name
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expirations = 0
        self.coalesced = 0
        self._clock: Clock = clock if clock is not None else _clock_module.monotonic
        self._lock = threading.Lock()
        # key -> [value, deadline]; order = recency of use (LRU first)
        self._data: OrderedDict[K, list[Any]] = OrderedDict()
        # the same entry lists, ordered by deadline: every set gives the same TTL, so deadline order is
        # the order of the last set, and cleanup can stop at the first fresh entry (O(expired), not O(size))
        self._expiry: OrderedDict[K, list[Any]] = OrderedDict()
        self._flights: dict[K, _Flight] = {}
        now = self._clock()
        self._next_cleanup = now + cleanup_interval
        # no entry can expire before this time (a lower bound on the oldest deadline): set() compares one
        # float instead of peeking at the oldest entry on every call
        self._fresh_until = now + ttl_seconds
        self._scheduler: _Scheduler | None = None
        self._token: int | None = None
        if start_cleanup:
            self._scheduler = _scheduler
            self._token = _scheduler.register(self)

    # -- lookups -------------------------------------------------------------------------------------

    @overload
    def get(self, key: K) -> V | None: ...

    @overload
    def get(self, key: K, default: T) -> V | T: ...

    def get(self, key: K, default: Any = None) -> Any:
        """Return the fresh value for ``key`` and mark it most recently used, else ``default``."""
        # acquire/try/finally instead of ``with``: half the lock overhead on CPython 3.11, on every request
        lock = self._lock
        lock.acquire()
        try:
            entry = self._data.get(key)
            if entry is not None:
                if self._clock() < entry[1]:
                    self._data.move_to_end(key)
                    self.hits += 1
                    return entry[0]
                # expired: drop it now rather than let it occupy a slot until cleanup
                del self._data[key]
                del self._expiry[key]
                self.expirations += 1
            self.misses += 1
            return default
        finally:
            lock.release()

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` has a fresh entry; touches neither the LRU order nor the counters."""
        with self._lock:
            entry = self._data.get(key)  # type: ignore[arg-type]
            return entry is not None and self._clock() < entry[1]

    def __len__(self) -> int:
        """Number of fresh entries (expired ones are removed first, as cleanup would)."""
        with self._lock:
            self._expire_locked(self._clock())
            return len(self._data)

    # -- updates -------------------------------------------------------------------------------------

    def set(self, key: K, value: V) -> None:
        """Insert or replace ``key`` with a fresh TTL; a full cache drops expired entries, else its LRU one."""
        lock = self._lock
        lock.acquire()  # see get() for why not ``with``
        try:
            now = self._clock()
            if now >= self._fresh_until:
                self._expire_locked(now)
            data = self._data
            entry = [value, now + self.ttl_seconds]
            old = data.setdefault(key, entry)  # one hash lookup for both the insert and the update case
            if old is not entry:
                old[0] = value
                old[1] = entry[1]
                data.move_to_end(key)
                self._expiry.move_to_end(key)
                return
            self._expiry[key] = entry
            if len(data) > self.max_size:
                # nothing is expired (checked above), so the least recently used entry makes room
                old_key, _ = data.popitem(last=False)
                del self._expiry[old_key]
                self.evictions += 1
        finally:
            lock.release()

    def delete(self, key: K) -> bool:
        """Remove ``key``; True if it held a fresh entry (an expired one is removed and counted as expired)."""
        with self._lock:
            entry = self._data.pop(key, None)
            if entry is None:
                return False
            del self._expiry[key]
            if self._clock() < entry[1]:
                return True
            self.expirations += 1
            return False

    def clear(self) -> None:
        """Drop every entry; the counters keep counting (they back Prometheus counters, which never go down)."""
        with self._lock:
            self._data.clear()
            self._expiry.clear()

    # -- cleanup -------------------------------------------------------------------------------------

    def cleanup_expired(self) -> int:
        """Remove every expired entry now and return how many; costs O(expired entries), not O(size)."""
        with self._lock:
            return self._expire_locked(self._clock())

    def maybe_cleanup(self) -> int:
        """``cleanup_expired()`` if ``cleanup_interval`` has passed on this cache's clock, else 0 (cheap)."""
        with self._lock:
            now = self._clock()
            if now < self._next_cleanup:
                return 0
            return self._expire_locked(now)

    def _expire_locked(self, now: float) -> int:
        self._next_cleanup = now + self.cleanup_interval
        expiry = self._expiry
        data = self._data
        removed = 0
        while expiry:
            key, entry = next(iter(expiry.items()))
            if now < entry[1]:
                self._fresh_until = entry[1]
                break
            del expiry[key]
            del data[key]
            removed += 1
        else:
            self._fresh_until = now + self.ttl_seconds  # empty: the next entry set will live at least this long
        self.expirations += removed
        return removed

    def _periodic_cleanup(self) -> float:
        """Called by the shared cleanup thread: clean if due; return seconds (on our clock) until next due."""
        self.maybe_cleanup()
        return self._next_cleanup - self._clock()

    def close(self) -> None:
        """Stop periodic background cleanup for this cache (idempotent); the cache itself keeps working."""
        token, self._token = self._token, None
        if token is not None and self._scheduler is not None:
            self._scheduler.unregister(token)

    @property
    def closed(self) -> bool:
        """Whether this cache is out of the shared background cleanup (closed, or never started)."""
        return self._token is None

    def __enter__(self) -> LRUCacheWithTTL[K, V]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- single-flight loading -----------------------------------------------------------------------

    def _lookup_or_join(self, key: K) -> tuple[Any, _Flight | None, bool]:
        """Under the lock: (value, None, _) on a hit, else (_MISSING, flight, we_lead)."""
        with self._lock:
            now = self._clock()
            entry = self._data.get(key)
            if entry is not None:
                if now < entry[1]:
                    self._data.move_to_end(key)
                    self.hits += 1
                    return entry[0], None, False
                del self._data[key]
                del self._expiry[key]
                self.expirations += 1
            flight = self._flights.get(key)
            if flight is not None:
                # a waiter counts when the flight lands: a hit if the value is stored, else a miss
                self.coalesced += 1
                return _MISSING, flight, False
            self.misses += 1
            flight = self._flights[key] = _Flight()
            return _MISSING, flight, True

    def _count_joined(self, flight: _Flight, value: Any) -> None:
        """A waiter got ``value`` from another caller's flight: a hit when the cache kept it (as the next lookup
        would be), else a miss; an interrupted flight counts nothing (the waiter looks up again)."""
        if value is _RETRY:
            return
        with self._lock:
            if flight.stored:
                self.hits += 1
            else:
                self.misses += 1

    def _land(self, key: K, flight: _Flight, loaded: Loaded[Any]) -> None:
        """The leader's loader returned: cache the value if it may be stored, then release the waiters."""
        if loaded.store:
            self.set(key, loaded.value)
            flight.stored = True
        # only now drop the flight: a lookup in between finds the value, so nobody recomputes it
        with self._lock:
            del self._flights[key]
        flight.future.set_result(loaded.value)

    def _crash(self, key: K, flight: _Flight, exc: BaseException) -> None:
        """The leader's loader failed: cache nothing; waiters get the error, or retry if the leader was interrupted."""
        with self._lock:
            del self._flights[key]
        if isinstance(exc, Exception):
            flight.future.set_exception(exc)
        else:
            flight.future.set_result(_RETRY)

    def get_or_load(self, key: K, loader: Callable[[], Loaded[T]]) -> Fetched[V | T]:
        """The fresh value for ``key`` (``origin="hit"``), else ``loader()``'s value: once, however many threads miss together.

        The loader returns :class:`Loaded` ``(value, store)``: every caller waiting on this key gets
        ``value`` (``origin="joined"``; the one that ran the loader gets ``origin="loaded"``), and the cache
        keeps it only when ``store`` is true, so an answer that must not be reused (a fallback) still
        reaches every waiter without being cached. If the loader raises, every waiter gets that exception
        and nothing is cached. The lock is never held while the loader runs.
        """
        while True:
            value, flight, lead = self._lookup_or_join(key)
            if flight is None:
                return Fetched(value, "hit")
            if lead:
                try:
                    loaded = loader()
                except BaseException as exc:
                    self._crash(key, flight, exc)
                    raise
                self._land(key, flight, loaded)
                return Fetched(loaded.value, "loaded")
            if flight.loop is not None and _running_loop() is flight.loop:
                raise RuntimeError(
                    f"get_or_set/get_or_load({key!r}) would block the event loop that is computing this key "
                    "in aget_or_set/aget_or_load; call aget_or_set or aget_or_load from async code"
                )
            try:
                value = flight.future.result()
            except BaseException:
                self._count_joined(flight, None)  # the loader failed for everyone: a miss
                raise
            self._count_joined(flight, value)
            if value is not _RETRY:
                return Fetched(value, "joined")

    async def aget_or_load(
        self, key: K, aloader: Callable[[], Awaitable[Loaded[T]]], *, detach: bool = False
    ) -> Fetched[V | T]:
        """Async twin of :meth:`get_or_load`: concurrent misses on ``key`` (tasks or threads) share one ``aloader()``.

        By default the loader runs in the first caller's task, so cancelling that caller interrupts the load
        and a waiter runs it again. ``detach=True`` runs it in a task of its own that every caller waits on
        (shielded), so a caller that gives up cancels nothing for the others.
        """
        while True:
            value, flight, lead = self._lookup_or_join(key)
            if flight is None:
                return Fetched(value, "hit")
            if lead:
                loop = flight.loop = asyncio.get_running_loop()
                if detach:
                    flight.task = loop.create_task(self._afly(key, flight, aloader))
                else:
                    try:
                        loaded = await aloader()
                    except BaseException as exc:
                        self._crash(key, flight, exc)
                        raise
                    self._land(key, flight, loaded)
                    return Fetched(loaded.value, "loaded")
            # shield: a waiter being cancelled must not cancel the shared flight for everyone else
            try:
                value = await asyncio.shield(asyncio.wrap_future(flight.future))
            except Exception:
                if not lead:
                    self._count_joined(flight, None)  # the loader failed for everyone: a miss
                raise
            if not lead:
                self._count_joined(flight, value)
            if value is not _RETRY:
                return Fetched(value, "loaded" if lead else "joined")

    async def _afly(self, key: K, flight: _Flight, aloader: Callable[[], Awaitable[Loaded[Any]]]) -> None:
        """A detached flight: run the loader and settle the flight; the outcome travels through its future."""
        try:
            loaded = await aloader()
        except BaseException as exc:  # handed to every waiter through the flight's future
            self._crash(key, flight, exc)
            if not isinstance(exc, Exception):
                raise  # cancellation and interrupts still end the task
            return
        self._land(key, flight, loaded)

    def get_or_set(self, key: K, factory: Callable[[], V]) -> V:
        """Return the fresh value for ``key``, else make it with ``factory``: once, however many threads miss together.

        Concurrent callers for the same key wait for the first one's result; if the factory raises, every
        waiter gets that exception and nothing is cached. The lock is never held while the factory runs.
        """
        return self.get_or_load(key, lambda: Loaded(factory())).value

    async def aget_or_set(self, key: K, afactory: Callable[[], Awaitable[V]]) -> V:
        """Async twin of ``get_or_set``: concurrent misses on ``key`` (tasks or threads) share one ``afactory()``."""

        async def aload() -> Loaded[V]:
            return Loaded(await afactory())

        fetched = await self.aget_or_load(key, aload)
        return fetched.value

    # -- introspection -------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Snapshot of size, configuration and counters (expired entries are removed first)."""
        with self._lock:
            self._expire_locked(self._clock())
            size = len(self._data)
            hits, misses = self.hits, self.misses
            lookups = hits + misses
            return {
                "name": self.name,
                "size": size,
                "max_size": self.max_size,
                "utilization": size / self.max_size,
                "ttl_seconds": self.ttl_seconds,
                "cleanup_interval": self.cleanup_interval,
                "hits": hits,
                "misses": misses,
                "hit_rate": hits / lookups if lookups else 0.0,
                "evictions": self.evictions,
                "expirations": self.expirations,
                "coalesced": self.coalesced,
            }

    def __repr__(self) -> str:
        return (
            f"LRUCacheWithTTL(name={self.name!r}, size={len(self._data)}, max_size={self.max_size}, "
            f"ttl_seconds={self.ttl_seconds})"
        )


class Loaded(NamedTuple, Generic[T]):
    """What a single-flight loader returns: the value for every waiter, and whether the cache may keep it."""

    value: T
    store: bool = True


class Fetched(NamedTuple, Generic[T]):
    """What :meth:`LRUCacheWithTTL.get_or_load` returns: the value, and whether it was a ``hit``, ``loaded``
    by this caller, or ``joined`` from another caller's load."""

    value: T
    origin: Literal["hit", "loaded", "joined"]


class _Flight:
    """One in-progress loader call that concurrent misses on the same key wait for."""

    __slots__ = ("future", "loop", "stored", "task")

    def __init__(self) -> None:
        # a concurrent Future can be waited on by threads (result()) and by any event loop (wrap_future)
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        # the event loop of an async leader, so that a sync waiter on that same loop fails instead of deadlocking
        self.loop: asyncio.AbstractEventLoop | None = None
        # a detached loader's task, held so that it is not garbage collected while it runs
        self.task: asyncio.Task[None] | None = None
        #: whether the cache kept the loaded value (its waiters then count as hits)
        self.stored = False


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")


_scheduler = _Scheduler()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _scheduler._after_fork_in_child())
