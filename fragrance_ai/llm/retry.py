"""Re-ask policies as small objects a loop consults (after tenacity's ``wait``/``stop``): how long to wait
before the next re-ask, and when to stop re-asking.

Each policy is a plain callable a test can call directly. The loops that use them (the JSON guard's
attempt run, the ensemble's turn) own the sleeping; these objects never sleep, read the clock or log:
the caller passes in the :class:`RetryState` it measured. Jitter draws from an injected ``random.Random``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["RetryState", "stop_after_attempt", "stop_after_delay", "wait_exponential_jitter"]


@dataclass(frozen=True, slots=True)
class RetryState:
    """Where a retry loop is: ``attempt_number`` answers judged so far (1 = the first answer), and the
    seconds since the loop started, counting the wait about to be made."""

    attempt_number: int
    seconds_since_start: float = 0.0


@dataclass(frozen=True, slots=True)
class wait_exponential_jitter:
    """Seconds to wait before re-ask number ``attempt_number`` (1 = the first re-ask):
    ``min(base * 2**(n - 1) + uniform(0, jitter), max)``; no overflow for absurd attempt numbers."""

    base: float = 1.0
    max: float = 8.0
    jitter: float = 0.0
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __call__(self, state: RetryState) -> float:
        delay = self.base * float(2 ** min(state.attempt_number - 1, 64))
        if self.jitter:
            delay += self.rng.uniform(0.0, self.jitter)
        return min(delay, self.max)


@dataclass(frozen=True, slots=True)
class stop_after_attempt:
    """Stop once ``max_attempt_number`` answers have been judged (``max_retries + 1`` for a guard)."""

    max_attempt_number: int

    def __call__(self, state: RetryState) -> bool:
        return state.attempt_number >= self.max_attempt_number


@dataclass(frozen=True, slots=True)
class stop_after_delay:
    """Stop when the next wait would end at or after ``max_delay`` seconds from the start."""

    max_delay: float

    def __call__(self, state: RetryState) -> bool:
        return state.seconds_since_start >= self.max_delay
