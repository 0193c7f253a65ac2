"""Injectable time: the monotonic clock type every guard takes, and a virtual clock for tests.

Guards never call ``time.time()``; they take ``clock=`` (monotonic seconds) and, where they wait,
``sleep=`` / ``asleep=``. This module must not import anything else from the package.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

__all__ = ["AsyncSleepFn", "AsyncTimeoutFn", "Clock", "SleepFn", "VirtualClock", "monotonic"]

Clock = Callable[[], float]
SleepFn = Callable[[float], None]
AsyncSleepFn = Callable[[float], Awaitable[None]]
#: ``asyncio.timeout``'s shape: ``async with atimeout(seconds):`` cancels the body past the deadline
AsyncTimeoutFn = Callable[[float], AbstractAsyncContextManager[object]]


def monotonic() -> float:
    """Real monotonic seconds, looked up at call time so that freezegun and monkeypatch see it."""
    return time.monotonic()


#: loop iterations the ticker lets pass before it moves time: enough for every task that is ready to run
#: (an in-process HTTP request through ASGITransport and respx takes a few) to reach its own sleep
_SETTLE_ROUNDS = 16


class VirtualClock:
    """A monotonic clock that only moves when told to; ``sleep``/``asleep`` advance it instead of waiting.

    Async sleeps overlap as real ones would: each waits for its wake-up time, and a ticker task moves
    the clock to the earliest wake-up once the loop's ready tasks have had their turn. Three tasks
    sleeping 4 s at once take 4 virtual seconds, not 12. Thread-safe. Call the instance (or ``now()``)
    to read it.
    """

    __slots__ = ("_deadline", "_expired", "_listeners", "_lock", "_loops", "_now", "_seq", "slept")

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[float], None]] = []
        # (deadline, the task that opened the timeout block): tasks it spawns inherit the context var
        # but not the deadline, as with asyncio.timeout
        self._deadline: contextvars.ContextVar[tuple[float, asyncio.Task[Any] | None] | None] = contextvars.ContextVar(
            "deadline", default=None
        )
        # per event loop: its sleepers (wake time, order, future) and the ticker task that wakes them
        self._loops: dict[
            asyncio.AbstractEventLoop, tuple[list[tuple[float, int, asyncio.Future[None]]], asyncio.Task[None] | None]
        ] = {}
        self._seq = 0
        # task -> the deadline that cut its sleep: its timeout block turns that cancellation into TimeoutError
        self._expired: weakref.WeakKeyDictionary[asyncio.Task[Any], float] = weakref.WeakKeyDictionary()
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
        """An ``asyncio.sleep`` stand-in: returns when virtual time reaches now + ``seconds``.

        Concurrent sleeps overlap (see the class docstring). Inside a :meth:`timeout` block, a sleep
        that would pass the deadline wakes at the deadline and ends the block with ``TimeoutError``,
        as a real cancellation would. Each event loop has its own sleepers and ticker; time is shared.
        """
        self.slept.append(seconds)
        loop = asyncio.get_running_loop()
        wake = self._now + max(0.0, seconds)
        deadline = self._active_deadline()
        cut = deadline is not None and wake > deadline
        if cut:
            assert deadline is not None
            wake = deadline
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._seq += 1
            heap, ticker = self._loops.get(loop, ([], None))
            heapq.heappush(heap, (wake, self._seq, future))
            if ticker is None or ticker.done():
                ticker = loop.create_task(self._tick(loop, heap))
            self._loops[loop] = (heap, ticker)
        await future
        if cut:
            assert deadline is not None
            # as asyncio.timeout does: cancel the task at the deadline; the block that set it turns the
            # cancellation into TimeoutError (a broad ``except Exception`` cannot swallow a cancellation)
            task = asyncio.current_task()
            assert task is not None  # a deadline belongs to the task that opened the block
            self._expired[task] = deadline
            task.cancel()
            await asyncio.sleep(0)

    def _active_deadline(self) -> float | None:
        """The deadline of the innermost :meth:`timeout` block this task opened (tasks it spawned are free)."""
        entry = self._deadline.get()
        if entry is None:
            return None
        deadline, owner = entry
        try:
            current = asyncio.current_task()
        except RuntimeError:
            current = None
        return deadline if owner is current else None

    async def _tick(self, loop: asyncio.AbstractEventLoop, heap: list[tuple[float, int, asyncio.Future[None]]]) -> None:
        """Move time to this loop's earliest pending wake-up, once its ready tasks have reached their sleeps."""
        while True:
            for _ in range(_SETTLE_ROUNDS):
                await asyncio.sleep(0)
            with self._lock:
                while heap and heap[0][2].done():
                    heapq.heappop(heap)  # cancelled sleeper
                if not heap:
                    self._loops.pop(loop, None)
                    return
                wake = heap[0][0]
                due = []
                while heap and heap[0][0] <= wake:
                    due.append(heapq.heappop(heap)[2])
            try:
                if wake > self._now:
                    self.advance(wake - self._now)
            except Exception as exc:  # noqa: BLE001 - a listener failed: the sleepers must still wake, with the error
                for future in due:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for future in due:
                if not future.done():
                    future.set_result(None)

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        """``asyncio.timeout`` in virtual time: the body is cut off when virtual sleeps pass the deadline."""
        return self._timeout(seconds)

    @asynccontextmanager
    async def _timeout(self, seconds: float) -> AsyncIterator[object]:
        deadline = self._now + seconds
        outer = self._active_deadline()
        owner = asyncio.current_task()
        token = self._deadline.set((deadline if outer is None else min(outer, deadline), owner))
        try:
            yield self
        except asyncio.CancelledError:
            expired = self._expired.get(owner) if owner is not None else None
            if owner is None or expired is None or expired < deadline:
                raise  # cancelled by someone else, or an outer block's earlier deadline ends that block
            del self._expired[owner]
            if owner.uncancel() > 0:
                raise  # also cancelled from outside: that cancellation wins, as with asyncio.timeout
            raise TimeoutError(f"virtual timeout after {seconds:g}s") from None
        finally:
            self._deadline.reset(token)

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now!r})"
