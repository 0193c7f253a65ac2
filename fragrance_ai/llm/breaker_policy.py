"""A circuit breaker's policies, readable and testable on their own: the sliding failure-rate window, what
counts as a failure, how half-open trials are judged, how long each opening lasts, and the error a
refused call raises.

Pure bookkeeping: it must not read the clock, take a lock (the breaker holds its own around these), or log.
"""

from __future__ import annotations

import math
from typing import Final

from fragrance_ai.config_schema import HALF_OPEN_POLICIES

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "CircuitBreakerOpenError",
    "FailureRateWindow",
    "OpenPeriod",
    "check_settings",
    "default_is_failure",
    "judge_trials",
    "retry_after_hold",
]

#: the breaker states, as the checklist names them
CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"


class CircuitBreakerOpenError(Exception):
    """A call was rejected without being made: the model's breaker is open (or half-open and full)."""

    def __init__(self, model: str, retry_after: float, state: str = OPEN, detail: str = "") -> None:
        super().__init__(model, retry_after)
        self.model = model
        #: seconds until the breaker will admit a trial call again (0 when only the half-open slots are busy)
        self.retry_after = retry_after
        self.state = state
        self.detail = detail

    def __str__(self) -> str:
        # built on demand: rejections are frequent while open, and most are never printed
        detail = f": {self.detail}" if self.detail else ""
        return (
            f"circuit breaker for model {self.model!r} is {self.state.replace('_', '-')}{detail}; "
            f"call not made, retry after {self.retry_after:.1f}s"
        )


class FailureRateWindow:
    """The outcomes (failed or not) of the last ``size`` calls in a fixed ring, with a running failure count.

    ``record`` is O(1): the oldest outcome drops out as the newest comes in.
    """

    __slots__ = ("_next", "_ring", "count", "failures", "size")

    def __init__(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"window size must be an int >= 1; got {size!r}")
        self.size: Final = size
        self._ring = [False] * size
        self._next = 0
        #: outcomes currently in the window (<= size)
        self.count = 0
        #: failures currently in the window
        self.failures = 0

    def record(self, failed: bool) -> None:
        """Add one outcome, dropping the oldest once the window is full."""
        i = self._next
        if self.count == self.size:
            if self._ring[i]:
                self.failures -= 1
        else:
            self.count += 1
        self._ring[i] = failed
        if failed:
            self.failures += 1
        i += 1
        self._next = 0 if i == self.size else i

    def record_success(self) -> None:
        """``record(False)`` for the common case, with no ring write unless a failure drops out."""
        i = self._next
        if self.count == self.size:
            if self._ring[i]:
                self._ring[i] = False
                self.failures -= 1
        else:
            self.count += 1  # a slot not yet written holds False
        i += 1
        self._next = 0 if i == self.size else i

    @property
    def rate(self) -> float:
        """Failures / outcomes in the window (0.0 when empty)."""
        return self.failures / self.count if self.count else 0.0

    def reset(self) -> None:
        """Forget every outcome."""
        self._ring = [False] * self.size
        self._next = self.count = self.failures = 0

    def __repr__(self) -> str:
        return f"FailureRateWindow(size={self.size}, count={self.count}, failures={self.failures})"


def default_is_failure(exc: BaseException) -> bool:
    """Every exception the guarded call raises counts as a failure (cancellation never reaches here)."""
    return True


def judge_trials(policy: str, failures: int, successes: int, failure_threshold: float, success_threshold: int) -> str | None:
    """What a half-open breaker does after a trial: ``OPEN``, ``CLOSED``, or None (stay half-open).

    ``consecutive`` (the checklist's rule): any failure reopens; ``success_threshold`` successes close.
    ``failure_rate`` (resilience4j judges its permitted half-open calls on the failure rate): the trials
    so far reopen once their failure rate is above ``failure_threshold`` (so a dead model's first failed
    trial still reopens), and ``success_threshold`` trials at or under it close. Unlike resilience4j,
    which waits for every permitted call, the judgement is made as trials come in.
    """
    if policy == "consecutive":
        if failures:
            return OPEN
        return CLOSED if successes >= success_threshold else None
    judged = failures + successes
    if judged and failures / judged > failure_threshold:
        return OPEN
    return CLOSED if judged >= success_threshold else None


class OpenPeriod:
    """How long each opening lasts: ``timeout * multiplier ** (trips - 1)``, capped at ``max_timeout``.

    ``trips`` counts the openings since the last stable close: a close that held for ``max_timeout``
    seconds before the next opening starts the count over (Polly v8 and resilience4j lengthen the
    break on repeated trips the same way). ``multiplier`` 1 keeps every opening at ``timeout`` (the
    checklist). Times are passed in: this class reads no clock.
    """

    __slots__ = ("closed_at", "max_timeout", "multiplier", "timeout", "trips")

    def __init__(self, timeout: float, multiplier: float = 1.0, max_timeout: float | None = None) -> None:
        if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)) or not 1 <= multiplier <= 10:
            raise ValueError(f"timeout_multiplier must be a number from 1 to 10; got {multiplier!r}")
        cap = timeout if max_timeout is None else max_timeout
        if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not cap >= timeout:
            raise ValueError(f"max_timeout must be a number of seconds >= timeout ({timeout:g}); got {max_timeout!r}")
        self.timeout, self.multiplier, self.max_timeout = timeout, multiplier, cap
        self.trips = 0
        self.closed_at: float | None = None

    def on_open(self, now: float) -> float:
        """Count one opening at ``now``; how many seconds it lasts."""
        if self.closed_at is not None and now - self.closed_at >= self.max_timeout:
            self.trips = 0  # the last close was stable
        self.closed_at = None
        self.trips += 1
        return min(self.timeout * self.multiplier ** (self.trips - 1), self.max_timeout)

    def on_close(self, now: float) -> None:
        """The breaker closed at ``now`` (the count of trips starts over if it stays closed long enough)."""
        self.closed_at = now


def _is_rate(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 < value <= 1


def check_settings(
    failure_threshold: float,
    timeout: float,
    half_open_policy: str,
    slow_call_duration: float | None,
    slow_call_rate_threshold: float,
    max_retry_after: float = 0.0,
    **counts: int,
) -> None:
    """Raise ValueError naming the first bad breaker argument; ``counts`` are ints >= 1 (window_size, ...)."""
    if half_open_policy not in HALF_OPEN_POLICIES:
        raise ValueError(f"half_open_policy must be one of {', '.join(HALF_OPEN_POLICIES)}; got {half_open_policy!r}")
    if not _is_rate(failure_threshold):
        raise ValueError(f"failure_threshold must be a rate in (0, 1]; got {failure_threshold!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or math.isnan(timeout) or timeout <= 0:
        raise ValueError(f"timeout must be a number of seconds > 0; got {timeout!r}")
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1; got {value!r}")
    if counts.get("minimum_calls", 1) > counts.get("window_size", 1):
        raise ValueError(
            f"minimum_calls must be <= window_size ({counts['window_size']}); got {counts['minimum_calls']}: "
            "the failure rate could never be judged"
        )
    for name, seconds in (("slow_call_duration", slow_call_duration or 0), ("max_retry_after", max_retry_after)):
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
            raise ValueError(f"{name} must be a number of seconds >= 0 (0: off); got {seconds!r}")
    if not _is_rate(slow_call_rate_threshold):
        raise ValueError(f"slow_call_rate_threshold must be a rate in (0, 1]; got {slow_call_rate_threshold!r}")


def retry_after_hold(exc: BaseException, cap: float) -> float:
    """How long a failure asks the breaker to stay open: its numeric ``retry_after`` (a 429's Retry-After,
    as ``BackendRateLimited`` carries it) capped at ``cap``; 0.0 (no hold) when ``cap`` is 0, the exception
    has none, or it is a breaker's own refusal."""
    if not cap or isinstance(exc, CircuitBreakerOpenError):
        return 0.0
    seconds = getattr(exc, "retry_after", None)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        return 0.0
    return float(min(seconds, cap))
