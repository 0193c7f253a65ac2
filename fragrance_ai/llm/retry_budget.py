"""The retry budget: re-asks across the service capped as a share of first attempts over a window.

Envoy's retry budget and gRPC's retry throttling, applied to the JSON guard's re-asks. Over the last
``window`` seconds the ensemble may spend at most ``ratio * first_attempts + min_per_second * window``
re-asks; past that a rejected answer is not re-asked (the ensemble moves on to the next model, then to
the fallback). An outage of JSON validity (every model answers garbage) then costs at most about
``(1 + ratio)`` model calls per first attempt, plus the small reserve, instead of ``1 + max_retries``.
The reserve keeps a quiet service's re-asks (one bad answer now and then) always allowed.

Counts are kept in one-second buckets of the injected clock (at most ``ceil(window) + 1`` buckets), so
memory does not grow with traffic. The budget is per process: with ``state.backend: redis`` each replica
spends its own budget against its own first attempts (the share holds fleet-wide; the reserve is per
replica). A lock guards the bookkeeping only.

What this module must not do: sleep, call a model, or read the wall clock.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

from fragrance_ai.clock import Clock

__all__ = ["RetryBudget", "RetryBudgetSnapshot"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryBudgetSnapshot:
    """Lifetime counts (for the metrics collector) and what the current window holds."""

    first_attempts: int
    reasks: int
    denied: int
    window_first_attempts: int
    window_reasks: int


class RetryBudget:
    """Admits or denies each re-ask against the first attempts of the last ``window`` seconds."""

    def __init__(
        self, *, ratio: float, min_per_second: float, window: float, clock: Clock, enabled: bool = True
    ) -> None:
        if not (ratio >= 0 and min_per_second >= 0 and window > 0):
            raise ValueError("retry budget: ratio and min_per_second must be >= 0 and window > 0")
        self.enabled = enabled
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        #: second -> [first attempts, re-asks] in that second
        self._buckets: dict[int, list[int]] = {}
        self._first_attempts = 0
        self._reasks = 0
        self._denied = 0
        self._denied_logged_at: float | None = None

    def record_attempt(self) -> None:
        """Count one first attempt (a brief's first call to a model)."""
        now = self._clock()
        with self._lock:
            self._bucket_locked(now)[0] += 1
            self._first_attempts += 1

    def try_reask(self) -> bool:
        """Spend one re-ask when the budget allows it (True); else count a denial (False)."""
        if not self.enabled:
            with self._lock:
                self._reasks += 1
            return True
        now = self._clock()
        with self._lock:
            attempts, reasks = self._window_locked(now)
            allowed = reasks < self.ratio * attempts + self.min_per_second * self.window
            if allowed:
                self._bucket_locked(now)[1] += 1
                self._reasks += 1
                return True
            self._denied += 1
            log = self._denied_logged_at is None or now - self._denied_logged_at >= self.window
            if log:
                self._denied_logged_at = now
        if log:  # at most one line per window, outside the lock
            logger.warning(
                "retry budget spent: %d re-asks for %d first attempts in the last %gs (ratio %g, reserve %g/s);"
                " rejected answers go to the next model without a re-ask",
                reasks, attempts, self.window, self.ratio, self.min_per_second,
            )
        return False

    def snapshot(self) -> RetryBudgetSnapshot:
        now = self._clock()
        with self._lock:
            attempts, reasks = self._window_locked(now)
            return RetryBudgetSnapshot(self._first_attempts, self._reasks, self._denied, attempts, reasks)

    def _bucket_locked(self, now: float) -> list[int]:
        second = math.floor(now)
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = [0, 0]
        return bucket

    def _window_locked(self, now: float) -> tuple[int, int]:
        """(first attempts, re-asks) of the buckets within the window; older buckets are dropped."""
        oldest = math.floor(now - self.window) + 1
        attempts = reasks = 0
        for second in list(self._buckets):
            if second < oldest:
                del self._buckets[second]
            else:
                counts = self._buckets[second]
                attempts += counts[0]
                reasks += counts[1]
        return attempts, reasks
