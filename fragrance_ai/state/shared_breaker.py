"""A circuit breaker whose state lives in Redis, shared by every replica; local state while Redis is away.

:class:`SharedCircuitBreaker` is a :class:`~fragrance_ai.llm.circuit_breaker.CircuitBreaker` with the
same rules, but the window, the state, the open-until time and the half-open trial permits are one
Redis hash and one sorted set per model, moved by the scripts in :mod:`.breaker_scripts`:

* a call while this replica last saw the breaker closed costs one round trip, after it, whose reply
  carries the fleet's state: a success is one plain ``INCR`` of the state counter (no script), a
  failure one ``RECORD`` script; a call while it saw it open or half-open asks first
  (``ADMIT``), so half-open permits are counted across the fleet;
* :attr:`state` (what the ensemble asks before it calls a model) reads the fleet's state (``VIEW``);
* the replica whose script made a transition tells the listeners (the manager downshifts the mode),
  so each fleet-wide opening downshifts once.

When Redis does not answer (:data:`~.link.UNAVAILABLE`) every decision falls back to the inherited
in-process breaker, and goes back to Redis once it answers again.

What this module must not do: hold a lock across a Redis command or the guarded call, or read wall time.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, Final, ParamSpec, TypeVar

from fragrance_ai.llm.breaker_policy import CLOSED, HALF_OPEN, OPEN, CircuitBreakerOpenError
from fragrance_ai.llm.circuit_breaker import _FAILURE, _SUCCESS, CircuitBreaker
from fragrance_ai.state.breaker_scripts import ADMIT, RECORD, RECORD_MOVED, RECORD_STATES, STATE_UNIT, VIEW
from fragrance_ai.state.link import UNAVAILABLE, RedisLink

__all__ = ["SharedCircuitBreaker"]

P = ParamSpec("P")
T = TypeVar("T")

_STATES: Final = {"closed": CLOSED, "open": OPEN, "half_open": HALF_OPEN}
#: RECORD's integer reply -> (state, moved_from); see breaker_scripts.RECORD_STATES
_RECORDED: Final = {
    state + 4 * moved: (RECORD_STATES[state], RECORD_MOVED[moved]) for state in range(3) for moved in range(4)
}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SharedCircuitBreaker(CircuitBreaker):
    """A CircuitBreaker on the fleet's Redis state (see the module docstring); built by the manager's factory."""

    __slots__ = ("_admit", "_counter", "_keys", "_link", "_record", "_record_tail", "_seen", "_seen_at", "_view")

    def __init__(self, *args: Any, link: RedisLink, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._link = link
        tag = "{" + link.key("breaker", self.model) + "}"
        self._keys = [tag, tag + ":permits", tag + ":n", tag + ":fails"]
        #: the state counter (breaker_scripts): a success on a closed breaker is ``INCR`` of it
        self._counter = tag + ":n"
        self._admit = link.script(ADMIT)
        self._record = link.script(RECORD)
        self._view = link.script(VIEW)
        #: RECORD's arguments after (now, token, outcome, call id): the breaker's settings, fixed
        self._record_tail: list[str | float] = [
            self.window_size, self.minimum_calls, self.failure_threshold, self.success_threshold, 1 if self.enabled else 0,
            self.half_open_policy,
        ]
        #: the fleet state this replica saw last (from any script reply), and when it asked (local clock)
        self._seen: str = CLOSED
        self._seen_at = -math.inf

    # ------------------------------------------------------------------------------------ calls

    def call(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``func`` through the fleet's breaker; raises CircuitBreakerOpenError instead when open."""
        ticket = self._admit_call()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            self._finish(ticket, self._classify(exc))
            raise
        self._finish(ticket, _SUCCESS)
        return result

    async def acall(self, afunc: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``afunc`` through the fleet's breaker; the async twin of :meth:`call`."""
        ticket = self._admit_call()
        try:
            result = await afunc(*args, **kwargs)
        except BaseException as exc:
            self._finish(ticket, self._classify(exc))
            raise
        self._finish(ticket, _SUCCESS)
        return result

    def _admit_call(self) -> tuple[bool, int, str]:
        """(shared?, token, call id); raises CircuitBreakerOpenError when the fleet's breaker refuses."""
        link = self._link
        if link.usable():
            asked = self._clock()
            if self._seen is CLOSED and asked - self._seen_at < self.timeout:
                # Seen closed less than `timeout` ago: the fleet's breaker is closed or open now, never
                # half-open (that takes `timeout` seconds of open), so no trial permit is at stake and the
                # call needs no round trip before it. Token -1: "the current generation if still closed".
                return True, -1, ""
            call_id = link.call_id()
            keys = self._keys
            args: list[str | float] = [link.now_arg(), self.timeout, self.half_open_requests, call_id, self.timeout]
            reply = link.eval(self._admit, keys, args)
            if reply is not UNAVAILABLE:
                admitted, state, gen, retry, moved = reply
                new = self._saw(state, moved, asked)
                if admitted:
                    return True, int(gen), call_id
                with self._lock:
                    self.rejected_total += 1
                if new is HALF_OPEN:
                    detail = f"all {self.half_open_requests} trial calls of the fleet are in flight"
                    raise CircuitBreakerOpenError(self.model, 0.0, HALF_OPEN, detail)
                raise CircuitBreakerOpenError(self.model, max(0.0, float(_text(retry))))
        token = self._generation if self._state is CLOSED else self._before_call()
        return False, token, ""

    def _finish(self, ticket: tuple[bool, int, str], outcome: int) -> None:
        shared, token, call_id = ticket
        if not shared:
            self._after_call(token, outcome)
            return
        with self._lock:
            self.requests_total += 1
            if outcome == _FAILURE:
                self.failures_total += 1
        link = self._link
        asked = self._clock()
        if token == -1 and outcome == _SUCCESS:
            # the common case: one INCR counts the success in the window if the breaker is still closed
            # (else it is harmless) and answers with the fleet's state; a success never moves the state
            count = link.command("INCR", self._counter)
            if count is not UNAVAILABLE:
                state = _STATES[RECORD_STATES[min(int(count) // STATE_UNIT, 2)]]
                self._seen, self._seen_at = state, asked
            return
        # admitted on a closed view (token -1): the outcome belongs to whatever generation is current, as
        # long as it is still closed (RECORD checks the state); one script reads and writes atomically
        args: list[str | float] = [link.now_arg(), "cur" if token == -1 else token, outcome, call_id, *self._record_tail]
        reply = link.eval(self._record, self._keys, args)
        if reply is not UNAVAILABLE:
            state, moved = _RECORDED[reply]
            self._saw(state, moved, asked)

    def _saw(self, state: Any, moved: Any, asked: float) -> str:
        """Remember the fleet state a script replied with; tell the listeners if this script moved it."""
        new = _STATES[_text(state)]
        old = _text(moved)
        self._seen, self._seen_at = new, asked
        if old:
            if new is OPEN:
                with self._lock:
                    self.opened_total += 1
            self._notify(_STATES[old], new)
        return new

    # ------------------------------------------------------------------------------------ reading

    def _read(self) -> list[Any] | None:
        link = self._link
        asked = self._clock()
        keys = self._keys
        args: list[str | float] = [link.now_arg(), self.timeout, self.window_size]
        reply = link.eval(self._view, keys, args)
        if reply is UNAVAILABLE:
            return None
        self._seen, self._seen_at = _STATES[_text(reply[0])], asked
        return reply  # type: ignore[no-any-return]

    @property
    def state(self) -> str:
        """The fleet's state (an open breaker past its timeout reads half_open); the local one without Redis."""
        view = self._read()
        if view is None:
            return super().state
        return self._seen

    @property
    def failure_rate(self) -> float:
        view = self._read()
        if view is None:
            return super().failure_rate
        return int(view[4]) / int(view[3]) if int(view[3]) else 0.0

    @property
    def window_calls(self) -> int:
        view = self._read()
        return super().window_calls if view is None else int(view[3])

    def retry_after(self) -> float:
        view = self._read()
        return super().retry_after() if view is None else max(0.0, float(_text(view[2])))

    def __repr__(self) -> str:
        return f"SharedCircuitBreaker(model={self.model!r}, seen={self._seen!r}, link={self._link!r})"
