"""The service mode (creative -> balanced -> fast) and the rules that move it down on trouble and back up.

One ``ModeController`` is shared on purpose: the breaker manager downshifts it when a breaker opens and
the service reads ``mode`` on every request. Upshifts happen one step at a time, only after every
breaker has stayed closed for a whole quiet period. This module holds no breakers and must not import
them (the manager wires breakers to the controller); it must not sleep or start timers either: time
only moves through the injected ``clock``, and upshifts happen when someone calls :meth:`evaluate`.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable
from typing import Final

from fragrance_ai.clock import Clock, monotonic
from fragrance_ai.config_schema import ModeControllerConfig
from fragrance_ai.constants import MODES

__all__ = ["MODES", "ModeController", "ModeListener"]

logger = logging.getLogger(__name__)

_INDEX: Final[dict[str, int]] = {mode: i for i, mode in enumerate(MODES)}

#: the constructor's defaults are the config's defaults: one place
_DEFAULTS: Final = ModeControllerConfig()

#: called as ``listener(old_mode, new_mode)`` after every mode change, outside the controller's lock
ModeListener = Callable[[str, str], None]


def _check_mode(mode: object, what: str) -> str:
    if not isinstance(mode, str) or mode not in _INDEX:
        raise ValueError(f"{what} must be one of {', '.join(MODES)}; got {mode!r}")
    return mode


class ModeController:
    """The current service mode, shared by every breaker: downshift on trouble, upshift after a quiet period.

    Counters (plain ints, read at scrape time):
    ``downshift_requests_total`` every :meth:`downshift` call; ``downshifts_total`` those that moved the
    mode; ``upshifts_total`` every step back up (by :meth:`upshift` or :meth:`evaluate`).
    """

    MODES: Final = MODES

    def __init__(
        self,
        initial_mode: str = _DEFAULTS.initial_mode,
        *,
        upshift_quiet_period: float = _DEFAULTS.upshift_quiet_period,
        clock: Clock | None = None,
        listeners: Iterable[ModeListener] = (),
    ) -> None:
        self.initial_mode: Final[str] = _check_mode(initial_mode, "initial_mode")
        if (
            isinstance(upshift_quiet_period, bool)
            or not isinstance(upshift_quiet_period, (int, float))
            or math.isnan(upshift_quiet_period)
            or upshift_quiet_period <= 0
        ):
            raise ValueError(f"upshift_quiet_period must be a number of seconds > 0; got {upshift_quiet_period!r}")
        self.upshift_quiet_period: Final[float] = float(upshift_quiet_period)
        self._clock: Clock = clock if clock is not None else monotonic
        self._lock = threading.Lock()
        self._mode = self.initial_mode
        # start of the current quiet period: the later of the last mode change and the last time
        # evaluate() heard that not every breaker was closed
        self._quiet_since = self._clock()
        self._listeners: list[ModeListener] = list(listeners)
        self.downshift_requests_total = 0
        self.downshifts_total = 0
        self.upshifts_total = 0

    # ------------------------------------------------------------------------------------------ reading

    @property
    def mode(self) -> str:
        """The current mode (one of :data:`MODES`)."""
        return self._mode

    def get_current_mode(self) -> str:
        """The current mode (the checklist's name for :attr:`mode`)."""
        return self._mode

    def can_upshift_from(self, mode: str) -> bool:
        """Whether ``mode`` is below the initial mode, i.e. whether :meth:`evaluate` could move it up.

        At or above the initial mode an evaluation changes nothing that matters: the quiet period it
        might restart is restarted anyway by the next mode change, the only way below the initial mode.
        """
        return _INDEX[mode] > _INDEX[self.initial_mode]

    def seconds_until_upshift(self) -> float | None:
        """Seconds of all-closed quiet still needed before the next upshift; ``None`` when at the initial mode."""
        with self._lock:
            if _INDEX[self._mode] <= _INDEX[self.initial_mode]:
                return None
            return max(0.0, self._quiet_since + self.upshift_quiet_period - self._clock())

    # ------------------------------------------------------------------------------------------ moving

    def add_listener(self, listener: ModeListener) -> None:
        """Call ``listener(old, new)`` after every mode change."""
        with self._lock:
            self._listeners.append(listener)

    def set_mode(self, mode: str) -> str:
        """Force ``mode`` (an operator's override); restarts the quiet period. Returns the new mode."""
        _check_mode(mode, "mode")
        with self._lock:
            old = self._mode
            self._mode = mode
            self._quiet_since = self._clock()
        if old != mode:
            logger.warning("mode set: %s -> %s", old, mode)
            self._notify(old, mode)
        return mode

    def downshift(self, reason: str = "") -> str:
        """Move one step toward ``fast`` (``fast`` stays) and restart the quiet period; returns the mode now."""
        with self._lock:
            self.downshift_requests_total += 1
            old = self._mode
            new = MODES[min(_INDEX[old] + 1, len(MODES) - 1)]
            # even a downshift that cannot move (already fast) is fresh trouble: the quiet period restarts
            self._quiet_since = self._clock()
            if new != old:
                self._mode = new
                self.downshifts_total += 1
        if new != old:
            logger.warning("auto downshift: %s -> %s%s", old, new, f" ({reason})" if reason else "")
            self._notify(old, new)
        return new

    def upshift(self) -> str:
        """Move one step back toward the initial mode (never above it); returns the mode now."""
        with self._lock:
            old, new = self._upshift_locked()
        if new != old:
            logger.info("upshift: %s -> %s", old, new)
            self._notify(old, new)
        return new

    def evaluate(self, all_breakers_closed: bool) -> str | None:
        """Upshift one step once the breakers have been quiet for a whole quiet period; the new mode or None.

        Call it periodically with whether the breakers are quiet now (the manager passes "no breaker
        open"). A ``False`` restarts the quiet period; so does every mode change, hence each further
        step needs another full quiet period.
        """
        now = self._clock()
        with self._lock:
            if not all_breakers_closed:
                self._quiet_since = now
                return None
            if _INDEX[self._mode] <= _INDEX[self.initial_mode]:
                return None
            if now - self._quiet_since < self.upshift_quiet_period:
                return None
            old, new = self._upshift_locked()
        logger.info("upshift after %.0fs with every breaker closed: %s -> %s", self.upshift_quiet_period, old, new)
        self._notify(old, new)
        return new

    def _upshift_locked(self) -> tuple[str, str]:
        old = self._mode
        index = _INDEX[old]
        if index <= _INDEX[self.initial_mode]:
            return old, old
        new = MODES[index - 1]
        self._mode = new
        self._quiet_since = self._clock()
        self.upshifts_total += 1
        return old, new

    def _notify(self, old: str, new: str) -> None:
        # outside the lock, so a listener may read or even change the mode
        for listener in list(self._listeners):
            try:
                listener(old, new)
            except Exception:
                logger.exception("mode listener %r failed on %s -> %s; ignored", listener, old, new)

    def __repr__(self) -> str:
        return f"ModeController(mode={self._mode!r}, initial_mode={self.initial_mode!r})"
