"""GuardClock: one test's virtual time, shared by every guard the plugin builds and by freezegun.

Guards built by the plugin read ``GuardClock`` directly (injected ``clock``/``sleep``/``asleep``/
``atimeout``). Code that reads ``time.time``/``time.monotonic`` itself sees the same time through
freezegun, started in its asyncio-safe mode (``real_asyncio=True``, without which an event loop
frozen in time never wakes). Nothing here waits for real.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import numbers
from contextlib import AbstractAsyncContextManager
from typing import Any

from freezegun import freeze_time

# Modules that subclass datetime.date at import break if first imported while time is frozen
with contextlib.suppress(ImportError):  # pydantic without its v1 shim: nothing to import early
    import pydantic.v1  # noqa: F401  (FastAPI imports it lazily, at app creation)

from fragrance_ai.clock import VirtualClock

__all__ = ["START", "ClockMisuseError", "GuardClock"]

#: the wall-clock moment every test starts at (any fixed date works; this one is easy to read in logs)
START = _dt.datetime(2026, 1, 1, 0, 0, 0, tzinfo=_dt.UTC)

# Networking libraries keep real time: their own timeouts must not freeze (an event loop never would).
# freezegun also reads every attribute of every module it does not ignore as it starts: the openai
# SDK's modules load their submodules lazily on attribute access, so reading them imports the whole
# SDK (minutes under load); it is an HTTP client, whose time is real anyway.
_IGNORE = (
    "uvicorn", "h11", "httpcore", "anyio", "httpx", "openai",
    "pytest_guards.faults._fake_server", "pytest_guards.network._uvicorn_thread",
)


class ClockMisuseError(ValueError):
    """``guard_clock`` was asked for something time cannot do (go backwards, advance by a non-number)."""


def _seconds(value: object, what: str) -> float:
    if isinstance(value, _dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ClockMisuseError(
            f"guard_clock.{what}() takes seconds as a number or a timedelta, not {value!r}"
        )
    if math.isnan(seconds) or math.isinf(seconds):
        raise ClockMisuseError(f"guard_clock.{what}({value!r}): seconds must be finite")
    if seconds < 0:
        raise ClockMisuseError(
            f"guard_clock.{what}({value!r}): time only moves forward; to start over, use a new test"
        )
    return seconds


class GuardClock:
    """Virtual time for one test: ``now()``, ``advance(seconds)``; sleeps advance it instead of waiting."""

    def __init__(self, start: _dt.datetime = START) -> None:
        self._virtual = VirtualClock(start.timestamp())
        self._origin = self._virtual.now()
        self._freezer: Any = freeze_time(start, real_asyncio=True, ignore=list(_IGNORE))
        self._frozen: Any = None
        self._synced = self._origin  # the virtual time freezegun was last moved to
        self._virtual.on_advance(self._sync_freezer)

    # -- lifecycle (the fixture's job) --------------------------------------------------------------

    def start(self) -> GuardClock:
        try:
            self._frozen = self._freezer.start()
        except BaseException:
            # interrupted while patching modules (a test timeout): undo, or time stays frozen for everyone after
            self._freezer.stop()
            raise
        return self

    def stop(self) -> None:
        if self._frozen is not None:
            self._freezer.stop()
            self._frozen = None

    # -- the clock ------------------------------------------------------------------------------------

    def now(self) -> float:
        """Current virtual monotonic seconds (also what ``time.time()`` returns under the fixture)."""
        return self._virtual.now()

    __call__ = now

    @property
    def elapsed(self) -> float:
        """Virtual seconds since the test began."""
        return self._virtual.now() - self._origin

    @property
    def slept(self) -> list[float]:
        """Every sleep the code under test asked for (backoff waits, simulated latency), in order."""
        return self._virtual.slept

    def advance(self, seconds: float | _dt.timedelta) -> float:
        """Move time forward: breaker timeouts, TTLs and quiet periods pass at once. Returns ``now()``."""
        return self._virtual.advance(_seconds(seconds, "advance"))

    def sleep(self, seconds: float) -> None:
        """``time.sleep`` for injected guards: records the wait, advances virtual time, returns at once."""
        self._virtual.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        """``asyncio.sleep`` for injected guards: concurrent sleeps overlap; honours :meth:`timeout`."""
        await self._virtual.asleep(_seconds(max(0.0, seconds), "asleep"))

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        """``asyncio.timeout`` in virtual time."""
        return self._virtual.timeout(seconds)

    def _sync_freezer(self, now: float) -> None:
        """Keep freezegun's time.time()/monotonic() on the virtual clock after every advance."""
        delta, self._synced = now - self._synced, now
        if self._frozen is not None and delta > 0:
            # past year 9999 freezegun cannot follow; virtual time still moves
            with contextlib.suppress(OverflowError):
                self._frozen.tick(_dt.timedelta(seconds=delta))

    def __repr__(self) -> str:
        return f"<guard_clock elapsed={self.elapsed:g}s>"
