"""Per-model circuit breakers judged on a sliding-window failure rate, and the manager that downshifts the mode.

A :class:`CircuitBreaker` wraps calls to one model (``call`` / ``acall``). It opens when more than
``failure_threshold`` of the last ``window_size`` completed calls failed, rejects calls while open,
lets ``half_open_requests`` trial calls through at once after ``timeout`` seconds, and judges them by
``half_open_policy``. :class:`LLMCircuitBreakerManager` builds one breaker per configured model and
downshifts the ONE shared :class:`ModeController` whenever any of them opens.

What this module must not do: read wall time (time comes from the injected ``clock``), hold its lock
across the guarded call or a listener, create a ModeController behind the caller's back, or talk to
prometheus_client (the metrics collector reads the plain counters documented on the class).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Final, ParamSpec, TypeVar

from fragrance_ai.clock import Clock, monotonic
from fragrance_ai.config_schema import BreakerSettings
from fragrance_ai.llm.breaker_policy import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    CircuitBreakerOpenError,
    FailureRateWindow,
    OpenPeriod,
    check_settings,
    default_is_failure,
    judge_trials,
    retry_after_hold,
)
from fragrance_ai.llm.breaker_settings import ConfigLike
from fragrance_ai.llm.mode_controller import ModeController

if TYPE_CHECKING:
    from fragrance_ai.config_loader import Config

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "BreakerListener",
    "CircuitBreaker",
    "CircuitBreakerOpenError",
    "FailureRateWindow",
    "LLMCircuitBreakerManager",
]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
_DEFAULTS: Final = BreakerSettings()  # the constructor's defaults are the config's: one place

# outcomes of one guarded call, as _after_call sees them
_SUCCESS: Final = 0
_FAILURE: Final = 1
_IGNORED: Final = 2  # neither: an exception is_failure rejected, or cancellation (BaseException)
_SLOW: Final = 3  # a success slower than slow_call_duration: a success in the failure window, slow in the slow one

#: called as ``listener(breaker, old_state, new_state)`` after every transition, outside the breaker's lock
BreakerListener = Callable[["CircuitBreaker", str, str], None]


class CircuitBreaker:
    """A circuit breaker for one model: closed -> open on a high failure rate, half-open trials, closed again.

    * closed: every call goes through; its outcome enters a sliding window of the last ``window_size``
      calls. When a failure is recorded, the window holds >= ``minimum_calls`` outcomes and the failure
      rate is strictly above ``failure_threshold``, the breaker opens.
    * open: calls are rejected with :class:`CircuitBreakerOpenError` (the function is not called).
      Once ``timeout`` seconds have passed since it opened (``>=``), the breaker is half-open; this is
      decided lazily, whenever the state is read or a call arrives.
    * half_open: at most ``half_open_requests`` calls in flight at once; the rest are rejected.
      ``half_open_policy`` judges the trials (:func:`~.breaker_policy.judge_trials`): ``failure_rate``
      reopens (fresh timeout) once their failure rate is above ``failure_threshold`` and closes after
      ``success_threshold`` trials at or under it; ``consecutive`` (the checklist's) reopens on any
      failure and closes after ``success_threshold`` successes. Closing empties the window.

    Slow calls: with ``slow_call_duration`` > 0 a success that took longer is slow; a second window counts them
    and opens the breaker (>= ``minimum_calls``) above ``slow_call_rate_threshold``; a slow trial fails. With
    ``max_retry_after`` > 0 a failure carrying ``retry_after`` (a 429's Retry-After) opens it at once, for
    at least that long (at most ``max_retry_after``): :func:`~.breaker_policy.retry_after_hold`.

    What counts: an ``Exception`` for which ``is_failure(exc)`` is true is a failure (default: every
    Exception). Any other exception, and cancellation (``asyncio.CancelledError``, ``KeyboardInterrupt``,
    any non-Exception ``BaseException``), is *ignored*: neither failure nor success, it only frees its
    half-open slot. The exception always propagates unchanged.

    Every transition starts a new generation; an outcome of a call admitted in an earlier generation
    (say a slow call started while closed that fails after the breaker went half-open) moves the
    counters but not the window or the half-open tally.

    With ``enabled=False`` the breaker never opens: calls pass through and are still counted.

    Counters (plain ints, read at scrape time): ``requests_total`` calls admitted (counted when they
    finish, so in-flight calls are not in it yet), ``failures_total`` admitted calls that failed,
    ``rejected_total`` calls rejected unmade, ``opened_total`` transitions to open.
    """

    __slots__ = (
        "_clock", "_forced", "_generation", "_in_flight", "_listeners", "_lock", "_open_for", "_opened_at", "_period",
        "_slow", "_state", "_trial_failures", "_trial_successes", "_window", "enabled", "failure_threshold",
        "failures_total", "half_open_policy", "half_open_requests", "is_failure", "max_retry_after", "minimum_calls",
        "model", "opened_total", "rejected_total", "requests_total", "slow_call_duration", "slow_call_rate_threshold",
        "slow_total", "success_threshold", "timeout", "window_size",
    )

    def __init__(
        self,
        failure_threshold: float = _DEFAULTS.failure_threshold,
        success_threshold: int = _DEFAULTS.success_threshold,
        timeout: float = _DEFAULTS.timeout,
        half_open_requests: int = _DEFAULTS.half_open_requests,
        *,
        window_size: int = _DEFAULTS.window_size,
        minimum_calls: int = _DEFAULTS.minimum_calls,
        model: str = "default",
        clock: Clock | None = None,
        is_failure: Callable[[BaseException], bool] | None = None,
        listeners: Iterable[BreakerListener] = (),
        enabled: bool = True,
        half_open_policy: str = _DEFAULTS.half_open_policy,
        timeout_multiplier: float = _DEFAULTS.timeout_multiplier,
        max_timeout: float | None = None,
        slow_call_duration: float | None = _DEFAULTS.slow_call_duration,
        slow_call_rate_threshold: float = _DEFAULTS.slow_call_rate_threshold,
        max_retry_after: float = _DEFAULTS.max_retry_after,
    ) -> None:
        check_settings(  # raises ValueError naming the first bad argument
            failure_threshold, timeout, half_open_policy, slow_call_duration, slow_call_rate_threshold, max_retry_after,
            success_threshold=success_threshold, half_open_requests=half_open_requests, window_size=window_size,
            minimum_calls=minimum_calls,
        )
        self.model = model
        self.failure_threshold = failure_threshold
        self.success_threshold = success_threshold
        self.timeout = timeout
        self.half_open_requests = half_open_requests
        self.window_size = window_size
        self.minimum_calls = minimum_calls
        self.enabled = enabled
        self.half_open_policy = half_open_policy
        self.is_failure: Callable[[BaseException], bool] = is_failure or default_is_failure
        self.requests_total = 0
        self.failures_total = 0
        self.rejected_total = 0
        self.opened_total = 0
        self._clock: Clock = clock if clock is not None else monotonic
        self._lock = threading.Lock()
        self._listeners: list[BreakerListener] = list(listeners)
        self._state: str = CLOSED
        self._generation = 0
        self._window = FailureRateWindow(window_size)
        self._opened_at = 0.0
        self._in_flight = 0  # half-open trial calls admitted and not finished
        self._trial_successes = 0  # successes since the breaker went half-open
        self._trial_failures = 0  # failures since the breaker went half-open (failure_rate policy)
        self._forced: str | None = None  # an operator's force_open / force_close, until reset()
        self._period = OpenPeriod(timeout, timeout_multiplier, max_timeout)  # raises ValueError on bad values
        self._open_for: float = timeout  # how long the current (or last) opening lasts
        #: seconds above which a successful call is slow (0: slow calls are not judged)
        self.slow_call_duration: float = slow_call_duration or 0.0
        self.slow_call_rate_threshold = slow_call_rate_threshold
        self.slow_total = 0  # admitted calls that succeeded slowly
        self.max_retry_after = max_retry_after  # 0: a failure's retry_after does not open the breaker
        self._slow = FailureRateWindow(window_size) if self.slow_call_duration else None  # "failed" = slow

    # ------------------------------------------------------------------------------------ the API

    def call(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``func(*args, **kwargs)`` through the breaker; raises CircuitBreakerOpenError instead when open."""
        # _before_call's closed fast path, inlined (this runs on every request): no lock, no clock.
        # Reading the generation BEFORE the state makes it safe: if a transition slips in between, the
        # token is stale and the outcome only moves the counters.
        token = self._generation
        if self._state is not CLOSED:
            token = self._before_call()
        started = self._clock() if self.slow_call_duration else 0.0
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            self._after_call(token, self._classify(exc), retry_after_hold(exc, self.max_retry_after))
            raise
        self._succeeded(token, started)
        return result

    async def acall(self, afunc: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``afunc(*args, **kwargs)`` through the breaker; the async twin of :meth:`call`."""
        token = self._generation  # the same inlined fast path as in call()
        if self._state is not CLOSED:
            token = self._before_call()
        started = self._clock() if self.slow_call_duration else 0.0
        try:
            result = await afunc(*args, **kwargs)
        except BaseException as exc:
            self._after_call(token, self._classify(exc), retry_after_hold(exc, self.max_retry_after))
            raise
        self._succeeded(token, started)
        return result

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"`` (an open breaker past its timeout reads half_open)."""
        if self._state is CLOSED:
            return CLOSED
        with self._lock:
            event = self._refresh_locked()
            state = self._state
        if event is not None:
            self._notify(*event)
        return state

    @property
    def failure_rate(self) -> float:
        """Failure rate over the current window (0.0 when empty)."""
        with self._lock:
            return self._window.rate

    @property
    def window_calls(self) -> int:
        """How many outcomes the current window holds."""
        return self._window.count

    def retry_after(self) -> float:
        """Seconds until an open breaker admits trial calls (0.0 when closed or half-open)."""
        with self._lock:
            if self._state is not OPEN:
                return 0.0
            return max(0.0, self._opened_at + self._open_for - self._clock())

    def force(self, state: str | None) -> None:
        """An operator's hand: ``"open"`` stays open (no half-open) and ``"closed"`` never opens, until
        ``force(None)``, which closes with an empty window (a reset). Listeners hear each transition."""
        if state not in (OPEN, CLOSED, None):
            raise ValueError(f"a breaker is forced open, closed or released (None); got {state!r}")
        with self._lock:
            self._forced = state
            # a release or force-closed: a new generation and an empty window
            event = self._transition_locked(CLOSED) if state is not OPEN else None if self._state is OPEN else self._open_locked()
        if event is not None and event[0] != event[1]:
            self._notify(*event)

    @property
    def forced(self) -> str | None:
        """``"open"`` or ``"closed"`` while an operator holds the breaker there, else None."""
        return self._forced

    def add_listener(self, listener: BreakerListener) -> None:
        """Call ``listener(breaker, old_state, new_state)`` after every transition."""
        with self._lock:
            self._listeners.append(listener)

    # ----------------------------------------------------------------------- admission and outcomes

    def _before_call(self) -> int:
        """Admit one call and return its token (the generation it was admitted in), or raise CircuitBreakerOpenError."""
        rejection: CircuitBreakerOpenError | None = None
        with self._lock:
            event = self._refresh_locked()
            state = self._state
            token = self._generation
            if state is HALF_OPEN:
                if self._in_flight < self.half_open_requests:
                    self._in_flight += 1
                else:
                    self.rejected_total += 1
                    rejection = CircuitBreakerOpenError(
                        self.model, 0.0, HALF_OPEN, f"all {self.half_open_requests} trial calls are in flight"
                    )
            elif state is OPEN:
                self.rejected_total += 1
                retry_after = max(0.0, self._opened_at + self._open_for - self._clock())
                rejection = CircuitBreakerOpenError(self.model, retry_after)
        if event is not None:
            self._notify(*event)
        if rejection is not None:
            raise rejection
        return token

    def _classify(self, exc: BaseException) -> int:  # outside the lock: is_failure is the caller's code
        if not isinstance(exc, Exception):
            return _IGNORED
        try:
            return _FAILURE if self.is_failure(exc) else _IGNORED
        except Exception:
            logger.exception("is_failure(%r) raised for breaker %r; counting the call as a failure", exc, self.model)
            return _FAILURE

    def _succeeded(self, token: int, started: float) -> None:
        """``_after_call(token, _SUCCESS)``, the closed breaker's case first (every request takes it)."""
        if self.slow_call_duration and self._clock() - started > self.slow_call_duration:
            self._after_call(token, _SLOW)
            return
        lock = self._lock
        lock.acquire()  # not ``with``: half the lock overhead on CPython 3.11, on every request
        try:
            if token == self._generation and self._state is CLOSED:
                self.requests_total += 1
                self._window.record_success()
                if self._slow is not None:
                    self._slow.record_success()
                return
        finally:
            lock.release()
        self._after_call(token, _SUCCESS)

    def _after_call(self, token: int, outcome: int, hold: float = 0.0) -> None:
        """Apply a call's outcome (stale generations only move the counters); ``hold`` > 0 opens at once."""
        event: tuple[str, str] | None = None
        with self._lock:
            # admissions are counted here, not in the lock-free fast path; every admitted call ends up here
            self.requests_total += 1
            self.failures_total += outcome == _FAILURE
            self.slow_total += outcome == _SLOW
            if token != self._generation:
                return  # admitted before the last transition: says nothing about the current state
            if self._state is CLOSED:
                if outcome == _IGNORED:
                    return
                window, slow = self._window, self._slow
                window.record(outcome == _FAILURE)
                if slow is not None:
                    slow.record(outcome == _SLOW)
                if self.enabled and self._forced is None and outcome != _SUCCESS and (
                    hold or (window.count >= self.minimum_calls and window.failures / window.count > self.failure_threshold)
                    or (slow is not None and slow.count >= self.minimum_calls
                    and slow.failures / slow.count > self.slow_call_rate_threshold)
                ):
                    event = self._open_locked(hold)
            else:
                # same generation and not closed: a half-open trial (an open breaker admits nothing); slow = failed
                self._in_flight -= 1
                event = self._open_locked(hold) if hold else self._judge_trial_locked(_FAILURE if outcome == _SLOW else outcome)
        if event is not None:
            self._notify(*event)

    def _judge_trial_locked(self, outcome: int) -> tuple[str, str] | None:
        """A half-open trial's outcome: reopen, close, or stay half-open (``breaker_policy.judge_trials``)."""
        if outcome == _IGNORED:
            return None
        failed = self._trial_failures = self._trial_failures + (outcome == _FAILURE)
        succeeded = self._trial_successes = self._trial_successes + (outcome != _FAILURE)
        verdict = judge_trials(self.half_open_policy, failed, succeeded, self.failure_threshold, self.success_threshold)
        if verdict is OPEN:
            return self._open_locked()
        return self._transition_locked(CLOSED) if verdict is CLOSED else None

    # ---------------------------------------------------------------------------------- transitions

    def _refresh_locked(self) -> tuple[str, str] | None:
        if self._state is OPEN and self._forced is None and self._clock() - self._opened_at >= self._open_for:
            return self._transition_locked(HALF_OPEN)
        return None

    def _open_locked(self, hold: float = 0.0) -> tuple[str, str]:
        self._opened_at = self._clock()
        self._open_for = max(self._period.on_open(self._opened_at), hold)
        self.opened_total += 1
        return self._transition_locked(OPEN)

    def _transition_locked(self, new: str) -> tuple[str, str]:
        old = self._state
        self._state = new
        self._generation += 1
        self._in_flight = 0
        self._trial_successes = self._trial_failures = 0
        if new is CLOSED:
            self._window.reset()
            if self._slow is not None:
                self._slow.reset()
            self._period.on_close(self._clock())
        return old, new

    def _notify(self, old: str, new: str) -> None:
        # outside the lock: a listener may read the state, call through this breaker, or downshift the mode
        if new is OPEN:
            rate, period = self._window.rate * 100, self._open_for
            logger.warning("circuit breaker %r: %s -> open (failure rate %.0f%%, retry in %gs)", self.model, old, rate, period)
        else:
            logger.info("circuit breaker %r: %s -> %s", self.model, old, new)
        for listener in list(self._listeners):
            try:
                listener(self, old, new)
            except Exception:
                logger.exception("breaker listener %r failed on %r %s -> %s; ignored", listener, self.model, old, new)

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(model={self.model!r}, state={self._state!r}, "
            f"failure_threshold={self.failure_threshold!r}, window={self._window.failures}/{self._window.count})"
        )


# ------------------------------------------------------------------------------------------ manager


class LLMCircuitBreakerManager:
    """One circuit breaker per configured model, all wired to one shared ModeController.

    Every transition of any breaker to open downshifts the controller one step (when
    ``circuit_breaker.auto_downshift``) and restarts its upshift quiet period. With
    ``circuit_breaker.enabled`` false the breakers never open (they still count calls).
    """

    def __init__(
        self,
        config: Config | ConfigLike | None = None,
        mode_controller: ModeController | None = None,
        *,
        clock: Clock | None = None,
        metrics_listeners: Iterable[BreakerListener] = (),
        breaker_factory: Callable[..., CircuitBreaker] = CircuitBreaker,  # takes CircuitBreaker's arguments
    ) -> None:
        if config is None:
            from fragrance_ai.config_loader import get_config

            config = get_config()
        cb = config.circuit_breaker
        self.enabled: bool = cb.enabled
        self.auto_downshift: bool = cb.auto_downshift
        if mode_controller is None:
            mc = config.mode_controller
            mode_controller = ModeController(
                mc.initial_mode, upshift_quiet_period=mc.upshift_quiet_period, clock=clock
            )
        self.mode_controller: ModeController = mode_controller
        listeners: list[BreakerListener] = [self._on_transition, *metrics_listeners]
        self.breakers: dict[str, CircuitBreaker] = {
            model: breaker_factory(
                s.failure_threshold,
                s.success_threshold,
                s.timeout,
                s.half_open_requests,
                window_size=s.window_size,
                minimum_calls=s.minimum_calls,
                half_open_policy=s.half_open_policy,
                timeout_multiplier=s.timeout_multiplier,
                max_timeout=s.max_timeout,
                slow_call_duration=s.slow_call_duration,
                slow_call_rate_threshold=s.slow_call_rate_threshold,
                max_retry_after=s.max_retry_after,
                model=model,
                clock=clock,
                listeners=listeners,
                enabled=cb.enabled,
            )
            for model, s in cb.models.items()
        }

    def _on_transition(self, breaker: CircuitBreaker, old: str, new: str) -> None:
        if new != OPEN:
            return
        if self.auto_downshift:
            self.mode_controller.downshift(reason=f"circuit breaker for {breaker.model!r} opened")
        # a breaker opening is trouble: the upshift quiet period starts over
        self.mode_controller.evaluate(False)

    def get_breaker(self, model: str) -> CircuitBreaker | None:
        """The breaker guarding ``model``, or None for a model that is not configured."""
        return self.breakers.get(model)

    def is_available(self, model: str) -> bool:
        """Whether ``model`` may be called now (its breaker is not open); False for an unknown model."""
        breaker = self.breakers.get(model)
        return breaker is not None and breaker.state != OPEN

    def get_available_models(self) -> list[str]:
        """The configured models whose breaker is not open, in configuration order."""
        return [model for model, breaker in self.breakers.items() if breaker.state != OPEN]

    def states(self) -> dict[str, str]:
        """Each model's breaker state."""
        return {model: breaker.state for model, breaker in self.breakers.items()}

    def all_closed(self) -> bool:
        """Whether every breaker is closed."""
        return all(breaker.state == CLOSED for breaker in self.breakers.values())

    def none_open(self) -> bool:
        """Whether no breaker is open (closed or half-open, i.e. admitting calls)."""
        return all(breaker.state != OPEN for breaker in self.breakers.values())

    def evaluate_upshift(self) -> str | None:
        """Let the mode controller upshift after a quiet period with no breaker open.

        Half-open is quiet: else a model a downshifted mode no longer calls first would pin the lowest mode."""
        return self.mode_controller.evaluate(self.none_open())

    def current_mode(self) -> str:
        """The mode to serve now; :meth:`evaluate_upshift` first only below the initial mode (no state reads above)."""
        mode = self.mode_controller.get_current_mode()
        moved = self.evaluate_upshift() if self.mode_controller.can_upshift_from(mode) else None
        return mode if moved is None else moved

    def __repr__(self) -> str:
        return f"LLMCircuitBreakerManager(states={self.states()!r}, mode={self.mode_controller.mode!r})"
