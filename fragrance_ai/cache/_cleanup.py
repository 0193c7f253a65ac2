"""The one background thread that runs periodic cleanup for every LRU+TTL cache in the process.

It must not keep a cache (or the process) alive: caches are held by weak reference and the thread is a
daemon that exits when no cache is registered. It reads each cache's own clock, never wall time.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import weakref
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from fragrance_ai.cache.lru_cache import LRUCacheWithTTL

__all__ = ["MAX_WAIT", "Scheduler"]

# log lines keep the cache's logger name
_log = logging.getLogger("fragrance_ai.cache.lru_cache")

#: the cleanup thread wakes at least this often, so a clock that jumps (or a VirtualClock) is noticed
MAX_WAIT: Final = 3600.0


class Scheduler:
    """One daemon thread that runs periodic cleanup for every cache in the process.

    It holds caches only by weak reference (a dropped cache is collected and forgotten), waits on an
    Event with a timeout taken from each cache's own clock and interval, and exits when no cache is
    registered (the next registration starts it again).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._caches: dict[int, weakref.ref[LRUCacheWithTTL[Any, Any]]] = {}
        self._tokens = itertools.count(1)
        self._thread: threading.Thread | None = None

    def register(self, cache: LRUCacheWithTTL[Any, Any]) -> int:
        # no weakref callback: it could run inside a GC pass while this thread holds _lock or the Event's
        # lock and deadlock; dead references are pruned by the thread and by live_count() instead
        with self._lock:
            token = next(self._tokens)
            self._caches[token] = weakref.ref(cache)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fragrance-ai-cache-cleanup", daemon=True)
                self._thread.start()
        self._wake.set()
        return token

    def unregister(self, token: int) -> None:
        with self._lock:
            self._caches.pop(token, None)
        self._wake.set()

    def wake(self) -> None:
        """Make the thread re-check now (after a close, or to notice caches that were garbage collected)."""
        self._wake.set()

    def live_count(self) -> int:
        """How many registered caches are still alive (forgets the dead ones)."""
        with self._lock:
            return len(self._live_refs_locked())

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def _live_refs_locked(self) -> list[weakref.ref[LRUCacheWithTTL[Any, Any]]]:
        dead = [token for token, ref in self._caches.items() if ref() is None]
        for token in dead:
            del self._caches[token]
        return list(self._caches.values())

    def run_once(self) -> float | None:
        """One pass: clean every due cache; return how long to wait, or None when no cache is left."""
        with self._lock:
            refs = self._live_refs_locked()
            if not refs:
                return None
            # cleared while holding _lock: a register/unregister after this point sets it again, so no wake is lost
            self._wake.clear()
        timeout = MAX_WAIT
        for ref in refs:
            cache = ref()
            if cache is None:
                continue
            try:
                timeout = min(timeout, cache._periodic_cleanup())
            except Exception:  # noqa: BLE001 - a broken clock in one cache must not stop cleanup for the others
                _log.exception("periodic cleanup of cache %r failed", cache.name)
                timeout = min(timeout, cache.cleanup_interval)
            del cache  # hold no strong reference while waiting
        return max(0.0, timeout) if not math.isnan(timeout) else MAX_WAIT

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._live_refs_locked():
                    # decided under the lock, so a concurrent register() sees _thread None and starts a new one
                    self._thread = None
                    return
            timeout = self.run_once()
            if timeout is None:
                continue  # re-check under the lock above before exiting
            self._wake.wait(timeout)

    def _after_fork_in_child(self) -> None:
        # the thread does not survive fork(); locks may have been held by threads that no longer exist
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        if self._caches:
            with self._lock:
                self._thread = threading.Thread(target=self._run, name="fragrance-ai-cache-cleanup", daemon=True)
                self._thread.start()
