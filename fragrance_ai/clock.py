"""Injectable time: the monotonic clock type every guard takes, and a virtual clock for tests.

Guards never call ``time.time()``; they take ``clock=`` (monotonic seconds) and, where they wait,
``sleep=`` / ``asleep=``. This module must not import anything else from the package.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

__all__ = ["Clock", "SleepFn", "AsyncSleepFn", "VirtualClock", "monotonic"]

Clock = Callable[[], float]
SleepFn = Callable[[float], None]
AsyncSleepFn = Callable[[float], Awaitable[None]]


def monotonic() -> float:
    """Real monotonic seconds, looked up at call time so that freezegun and monkeypatch see it."""
    return time.monotonic()


class VirtualClock:
    """A monotonic clock that only moves when told to; ``sleep``/``asleep`` advance it instead of waiting.

    Thread-safe. Call the instance (or ``now()``) to read it.
    """

    __slots__ = ("_now", "_lock", "_listeners", "slept")

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[float], None]] = []
        #: every sleep requested through ``sleep``/``asleep``, in order (tests assert on backoff waits)
        self.slept: list[float] = []

    def now(self) -> float:
        return self._now

    __call__ = now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (>= 0) and return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards: advance({seconds!r})")
        with self._lock:
            self._now += seconds
            now = self._now
            listeners = list(self._listeners)
        for listener in listeners:
            listener(now)
        return now

    def on_advance(self, listener: Callable[[float], None]) -> None:
        """Call ``listener(new_now)`` after every advance (used to keep freezegun in step)."""
        with self._lock:
            self._listeners.append(listener)

    def sleep(self, seconds: float) -> None:
        """A ``time.sleep`` stand-in that advances virtual time and returns at once."""
        self.slept.append(seconds)
        self.advance(max(0.0, seconds))

    async def asleep(self, seconds: float) -> None:
        """An ``asyncio.sleep`` stand-in: advances virtual time, then yields to the loop once."""
        self.slept.append(seconds)
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now!r})"
