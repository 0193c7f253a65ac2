"""The panic rule: when every model of the mode is open, a bounded trickle of trial calls goes through anyway.

Envoy's panic threshold, for breakers: with every model of the current mode open the service would serve
only fallbacks until the first breaker's timeout. With ``circuit_breaker.panic_enabled`` the ensemble then
lets ONE trial call through, past the open breaker, at most once per ``panic_interval`` seconds (per
process), to the mode's model whose breaker is closest to its own half-open (smallest ``retry_after``;
mode order breaks ties). A model an operator forced open is never picked. The trial is one call and one
judgement of its answer (no re-ask). When it succeeds, its brief is served and, when the breakers are
this process's own (``state.backend: memory``), the model's breaker is released (closed, empty window),
so traffic resumes without waiting out the timeout; with shared breakers (``state.backend: redis``) the
rule reads the shared states, the trial's brief is served, and the shared breaker keeps its own timeout.
A dead fleet is thus asked at most once per ``panic_interval`` more than without the rule.

Counts: ``circuit_breaker_panic_total{model, outcome}`` (``ok`` or ``failed``); each trial logs one
WARNING line. Off (the default) is the checklist's behaviour: every model open -> the fallback, no call.

What this module must not do: call a model (the ensemble does), sleep, or hold its lock across a call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Protocol

from fragrance_ai.clock import Clock

__all__ = ["PANIC_OUTCOMES", "PanicRule"]

logger = logging.getLogger(__name__)

PANIC_OUTCOMES = ("ok", "failed")


class _Breaker(Protocol):
    @property
    def forced(self) -> str | None: ...
    def retry_after(self) -> float: ...


class PanicRule:
    """Hands out at most one trial call per ``interval`` seconds while every model of a mode is open."""

    def __init__(self, *, interval: float, clock: Clock, release_on_success: bool, enabled: bool = True) -> None:
        if not interval > 0:
            raise ValueError("panic rule: interval must be > 0")
        self.enabled = enabled
        self.interval = interval
        self.release_on_success = release_on_success
        self._clock = clock
        self._lock = threading.Lock()
        self._last_trial: float | None = None
        self._counts: dict[tuple[str, str], int] = {}

    def pick(self, mode: str, models: Iterable[str], breakers: Mapping[str, _Breaker]) -> str | None:
        """The model to try now, or None (rule off, a trial too recent, or every model forced open)."""
        if not self.enabled:
            return None
        candidates = [
            (breaker.retry_after(), i, model)
            for i, model in enumerate(models)
            if (breaker := breakers.get(model)) is not None and breaker.forced is None
        ]
        if not candidates:
            return None
        now = self._clock()
        with self._lock:
            if self._last_trial is not None and now - self._last_trial < self.interval:
                return None
            self._last_trial = now
        model = min(candidates)[2]
        logger.warning(
            "panic: every model of mode %s is open; one trial call to %s (at most one per %gs)", mode, model, self.interval
        )
        return model

    def record(self, model: str, ok: bool) -> None:
        """Count one trial's outcome."""
        key = (model, "ok" if ok else "failed")
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def snapshot(self) -> dict[tuple[str, str], int]:
        """Trials by (model, outcome), for the metrics collector."""
        with self._lock:
            return dict(self._counts)
