"""JSON hard guard: turn untrusted LLM text into a schema-valid dict, re-asking the model or falling back.

The guard judges an answer (:mod:`~fragrance_ai.llm.json_extract` finds the JSON,
:mod:`~fragrance_ai.llm.strict_json` parses it strictly and validates it), and on failure says what to
re-ask and how long to wait first, consulting the policies of :mod:`~fragrance_ai.llm.retry` (exponential
backoff with jitter, a re-ask limit and an overall deadline). When every attempt fails it returns a
validated fallback (or raises :class:`JSONGuardError` when fallbacks are disabled).

Two ways to drive it: :meth:`JSONHardGuard.guard` / :meth:`~JSONHardGuard.aguard` with a
``regenerate(feedback)`` callable, or a :class:`GuardRun` from :meth:`JSONHardGuard.start` whose
caller owns the loop (the ensemble does, so a failed model call ends its turn as a plain return).

It must not: re-parse the same text and call that a retry, read wall-clock time or sleep by itself
(clock, sleep and rng are injected), talk to Prometheus (the metrics collector reads the plain
counters), log whole answers, log a fallback (a designed outcome) above WARNING, or hold its lock
across a call to the model.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, cast

from fragrance_ai.clock import AsyncSleepFn, Clock, SleepFn, monotonic
from fragrance_ai.config_loader import JSONGuardConfig
from fragrance_ai.constants import JSON_FAILURE_REASONS, Reason
from fragrance_ai.llm.guard_run import (
    DEFAULT_FALLBACK,
    MISSING,
    OFFLOAD_CHARS,
    AttemptError,
    GuardResult,
    GuardRun,
    GuardSnapshot,
    JSONGuardError,
    StopReason,
    Verdict,
    _Missing,
    _Raised,
    default_fallback,
    feedback_for,
)
from fragrance_ai.llm.json_extract import Rejection, clip
from fragrance_ai.llm.retry import (
    RetryState,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)
from fragrance_ai.llm.strict_json import (
    MAX_DEPTH_CEILING,
    CompiledSchema,
    compile_schema,
    judge,
)

__all__ = [
    "REASONS",
    "AttemptError",
    "CompiledSchema",
    "GuardResult",
    "GuardRun",
    "GuardSnapshot",
    "JSONGuardError",
    "JSONHardGuard",
    "Reason",
    "StopReason",
    "Verdict",
    "compile_schema",
    "default_fallback",
    "feedback_for",
]
logger = logging.getLogger(__name__)

#: every reason an attempt can be rejected for (the ``reason`` label of the parse-failure metric)
REASONS: Final[tuple[Reason, ...]] = JSON_FAILURE_REASONS

_SCHEMA_CACHE_SIZE: Final = 32
#: the constructor's defaults are the config's defaults: one place
_DEFAULTS: Final = JSONGuardConfig()

# --------------------------------------------------------------------------------------------------
# The guard


SyncRegenerate = Callable[[str], str]
AsyncRegenerate = Callable[[str], Awaitable[str]] | Callable[[str], str]
SchemaLike = Mapping[str, Any] | CompiledSchema


def _check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


def _check_seconds(name: str, value: object, *, positive: bool = False, finite: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if (positive and value <= 0) or value < 0 or (finite and math.isinf(value)):
        kind = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be {kind}{' and finite' if finite else ''}, got {value!r}")
    return float(value)


class JSONHardGuard:
    """Parse, validate, re-ask with backoff, and fall back: one guard per service, shared by its requests.

    ``max_retries`` is the number of RE-ASKS after the first answer: up to ``1 + max_retries``
    answers are judged, and only when a ``regenerate`` callable is given (re-parsing the same text
    is not a retry). Before re-ask ``i`` (0-based) the guard waits
    ``min(backoff_base * 2**i + uniform(0, jitter), backoff_max)``, unless that wait would reach
    ``deadline`` seconds after the call started, in which case it stops and falls back.

    Counters (read by the metrics collector; take :meth:`snapshot` for a consistent copy):
    ``requests_total`` (guard calls), ``parse_failures`` (rejected attempts by reason),
    ``fallbacks_total``, ``retries_total`` (re-asks), ``retry_histogram`` (index i = calls that made
    i re-asks), ``deadline_stops_total`` and ``rejections_total`` (JSONGuardError raised).
    """

    def __init__(
        self,
        max_retries: int = _DEFAULTS.max_retries,
        backoff_base: float = _DEFAULTS.backoff_base,
        *,
        jitter: float = _DEFAULTS.jitter,
        backoff_max: float = _DEFAULTS.backoff_max,
        deadline: float = _DEFAULTS.deadline,
        fallback_enabled: bool = _DEFAULTS.fallback_enabled,
        max_input_bytes: int = _DEFAULTS.max_input_bytes,
        max_depth: int = _DEFAULTS.max_depth,
        max_reported_errors: int = _DEFAULTS.max_reported_errors,
        clock: Clock | None = None,
        sleep: SleepFn | None = None,
        asleep: AsyncSleepFn | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.max_retries = _check_int("max_retries", max_retries, 0)
        self.backoff_base = _check_seconds("backoff_base", backoff_base)
        self.jitter = _check_seconds("jitter", jitter)
        self.backoff_max = _check_seconds("backoff_max", backoff_max, finite=False)
        self.deadline = _check_seconds("deadline", deadline, positive=True, finite=False)
        if not isinstance(fallback_enabled, bool):
            raise ValueError(f"fallback_enabled must be True or False, got {fallback_enabled!r}")
        self.fallback_enabled = fallback_enabled
        self.max_input_bytes = _check_int("max_input_bytes", max_input_bytes, 1)
        self.max_depth = _check_int("max_depth", max_depth, 1, MAX_DEPTH_CEILING)
        self.max_reported_errors = _check_int("max_reported_errors", max_reported_errors, 1)
        for name, fn in (("clock", clock), ("sleep", sleep), ("asleep", asleep)):
            if fn is not None and not callable(fn):
                raise ValueError(f"{name} must be callable, got {fn!r}")
        if rng is not None and not isinstance(rng, random.Random):
            raise ValueError(f"rng must be a random.Random, got {rng!r}")
        self._clock: Clock = clock if clock is not None else monotonic
        self._sleep: SleepFn = sleep if sleep is not None else time.sleep
        self._asleep: AsyncSleepFn = asleep if asleep is not None else asyncio.sleep
        self._rng = rng if rng is not None else random.Random()
        #: the policies the re-ask loop consults (each callable on a :class:`~fragrance_ai.llm.retry.RetryState`)
        self.wait = wait_exponential_jitter(self.backoff_base, self.backoff_max, self.jitter, self._rng)
        self.stop = stop_after_attempt(self.max_retries + 1)
        self.deadline_stop = stop_after_delay(self.deadline)

        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._schemas: dict[int, CompiledSchema] = {}
        self.requests_total = 0
        self.parse_failures: dict[str, int] = dict.fromkeys(REASONS, 0)
        self.fallbacks_total = 0
        self.retries_total = 0
        self.retry_histogram: list[int] = [0] * (self.max_retries + 1)
        self.deadline_stops_total = 0
        self.rejections_total = 0

    compile = staticmethod(compile_schema)

    # -- public API -------------------------------------------------------------------------------

    def parse_with_retry(
        self,
        llm_output: str,
        schema: SchemaLike,
        fallback: dict[str, Any] | None = None,
        *,
        regenerate: SyncRegenerate | None = None,
    ) -> dict[str, Any]:
        """The checklist's API: the accepted dict, or a copy of the fallback (``None`` = the default)."""
        given = MISSING if fallback is None else fallback
        return self.guard(llm_output, schema, given, regenerate=regenerate).value

    async def aparse_with_retry(
        self,
        llm_output: str,
        schema: SchemaLike,
        fallback: dict[str, Any] | None = None,
        *,
        regenerate: AsyncRegenerate | None = None,
    ) -> dict[str, Any]:
        """Async twin of :meth:`parse_with_retry` (``regenerate`` may be async)."""
        given = MISSING if fallback is None else fallback
        result = await self.aguard(llm_output, schema, given, regenerate=regenerate)
        return result.value

    def start(
        self,
        schema: SchemaLike,
        fallback: dict[str, Any] | _Missing | None = MISSING,
        *,
        can_reask: bool = True,
        use_fallback: bool = True,
    ) -> GuardRun:
        """A :class:`GuardRun` whose loop the caller drives; a bad schema or fallback raises here, before any counting.

        ``use_fallback=False`` ends a failed run with ``verdict.rejected`` instead of the fallback, for
        callers that try other models first and fall back themselves (see :meth:`fallback`).
        """
        compiled = self._compiled(schema)
        snapshot: dict[str, Any] | None = None
        if self.fallback_enabled and use_fallback:
            is_default = fallback is MISSING or fallback is None
            given = DEFAULT_FALLBACK if is_default else cast(dict[str, Any], fallback)
            snapshot = compiled.validated_fallback(given, self.max_reported_errors, is_default=is_default)
        return GuardRun(self, compiled, snapshot, can_reask)

    def guard(
        self,
        llm_output: str,
        schema: SchemaLike,
        fallback: dict[str, Any] | _Missing | None = MISSING,
        *,
        regenerate: SyncRegenerate | None = None,
        use_fallback: bool = True,
    ) -> GuardResult:
        """Judge ``llm_output``; re-ask via ``regenerate(feedback)`` while it fails; fall back at the end.

        ``use_fallback=False`` raises :class:`JSONGuardError` instead of falling back, for callers
        that try other models first and fall back themselves (see :meth:`fallback`).
        """
        with self.start(schema, fallback, can_reask=regenerate is not None, use_fallback=use_fallback) as run:
            outcome = self._judge(llm_output, run.compiled)
            if not isinstance(outcome, Rejection):  # accepted at once: the common case, without the run's machinery
                return self._accepted(run, outcome)
            verdict = run.judged(llm_output, outcome)
            while not verdict.done:
                run.sleep(verdict.delay)
                verdict = run.judge(_ask(cast(SyncRegenerate, regenerate), run.begin_reask()))
            return verdict.unwrap()

    async def aguard(
        self,
        llm_output: str,
        schema: SchemaLike,
        fallback: dict[str, Any] | _Missing | None = MISSING,
        *,
        regenerate: AsyncRegenerate | None = None,
        use_fallback: bool = True,
    ) -> GuardResult:
        """Async twin of :meth:`guard`: awaits ``regenerate``, sleeps with ``asleep``, judges a large answer off the loop."""
        with self.start(schema, fallback, can_reask=regenerate is not None, use_fallback=use_fallback) as run:
            if isinstance(llm_output, str) and len(llm_output) <= OFFLOAD_CHARS:  # judged on the loop, as ajudge would
                outcome = self._judge(llm_output, run.compiled)
                if not isinstance(outcome, Rejection):
                    return self._accepted(run, outcome)
                verdict = run.judged(llm_output, outcome)
            else:
                verdict = await run.ajudge(llm_output)
            while not verdict.done:
                await run.asleep(verdict.delay)
                verdict = await run.ajudge(await _aask(cast(AsyncRegenerate, regenerate), run.begin_reask()))
            return verdict.unwrap()

    def fallback(
        self, schema: SchemaLike, fallback: dict[str, Any] | _Missing | None = MISSING
    ) -> dict[str, Any]:
        """A fresh, schema-checked copy of the fallback, counted in ``fallbacks_total``.

        For callers that ran their own loop (say, over several models with ``use_fallback=False``)
        and have nothing better to answer. Raises :class:`JSONGuardError` when fallback is disabled.
        """
        if not self.fallback_enabled:
            raise JSONGuardError(0, (), "max_retries")
        compiled = self._compiled(schema)
        is_default = fallback is MISSING or fallback is None
        given = DEFAULT_FALLBACK if is_default else cast(dict[str, Any], fallback)
        snapshot = compiled.validated_fallback(given, self.max_reported_errors, is_default=is_default)
        with self._lock:
            self.fallbacks_total += 1
        # a designed outcome, not an error: WARNING at most, or every degraded brief pages someone
        logger.warning("JSON guard: no acceptable answer; using the fallback")
        return copy.deepcopy(snapshot)

    def backoff_delay(self, retry: int) -> float:
        """Seconds to wait before re-ask number ``retry`` (0 = the first re-ask), jittered and capped."""
        return self.wait(RetryState(retry + 1))

    def snapshot(self) -> GuardSnapshot:
        """A consistent copy of every counter."""
        with self._lock:
            return GuardSnapshot(
                requests_total=self.requests_total,
                parse_failures=dict(self.parse_failures),
                fallbacks_total=self.fallbacks_total,
                retries_total=self.retries_total,
                retry_histogram=tuple(self.retry_histogram),
                deadline_stops_total=self.deadline_stops_total,
                rejections_total=self.rejections_total,
            )

    # -- mechanism --------------------------------------------------------------------------------

    def _compiled(self, schema: SchemaLike) -> CompiledSchema:
        """The cached validator for ``schema`` (keyed by identity; the entry keeps the schema alive)."""
        if type(schema) is CompiledSchema:
            return schema
        hit = self._schemas.get(id(schema))
        if hit is not None and hit.schema is schema:
            return hit
        compiled = compile_schema(schema)
        with self._lock:
            if len(self._schemas) >= _SCHEMA_CACHE_SIZE:
                self._schemas.pop(next(iter(self._schemas)), None)
            self._schemas[id(schema)] = compiled
        return compiled

    def _offload(self) -> ThreadPoolExecutor:
        """The one worker thread that judges large answers off the event loop (made on first use)."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="json-guard")
            return self._executor

    def _judge(self, text: object, compiled: CompiledSchema) -> Any:
        """The parsed value if ``text`` is acceptable, else a :class:`Rejection` saying why."""
        return judge(
            text,
            compiled,
            max_input_bytes=self.max_input_bytes,
            max_depth=self.max_depth,
            max_reported_errors=self.max_reported_errors,
        )

    def _judge_reply(self, reply: object, compiled: CompiledSchema) -> Any:
        if isinstance(reply, _Raised):
            exc = reply.error
            message = f"regenerate raised {type(exc).__name__}: {clip(str(exc))}"
            return Rejection("regenerate_error", message)
        if not isinstance(reply, str):
            return Rejection("regenerate_error", f"regenerate returned {type(reply).__name__}, expected str")
        return self._judge(reply, compiled)

    def _log_rejection(self, error: AttemptError, answer: object) -> None:
        if isinstance(answer, _Raised):
            logger.warning(
                "JSON guard: attempt %d failed (%s)", error.attempt, error.reason, exc_info=answer.error
            )
            return
        shown = clip(answer) if isinstance(answer, str) else type(answer).__name__
        logger.warning(
            "JSON guard: attempt %d rejected (%s): %s; answer: %r",
            error.attempt, error.reason, clip(error.message), shown,
        )

    def _accepted(self, run: GuardRun, value: Any) -> GuardResult:
        """End ``run`` with its first answer accepted: the counting of :meth:`_record` for that case only."""
        run.finish_quietly()
        with self._lock:
            self.requests_total += 1
            self.retry_histogram[0] += 1
        return GuardResult(value, "model", 1, ())

    def _record(self, errors: list[AttemptError], reasks: int, outcome: str, stop: StopReason) -> None:
        with self._lock:
            self.requests_total += 1
            for error in errors:
                self.parse_failures[error.reason] += 1
            self.retries_total += reasks
            self.retry_histogram[min(reasks, len(self.retry_histogram) - 1)] += 1
            if outcome == "fallback":
                self.fallbacks_total += 1
            elif outcome == "raised":
                self.rejections_total += 1
            if stop == "deadline":
                self.deadline_stops_total += 1


def _ask(regenerate: SyncRegenerate, feedback: str) -> object:
    """Call ``regenerate``: an Exception is a failed attempt; AssertionError and BaseException propagate."""
    try:
        answer: object = regenerate(feedback)
    except AssertionError:  # e.g. respx's AllMockedAssertionError: a test failure, not a model failure
        raise
    except Exception as exc:  # noqa: BLE001 - any error from the caller's regenerate is a failed attempt, re-asked or fallen back
        return _Raised(exc)
    if inspect.iscoroutine(answer):
        answer.close()  # never awaited: close it so Python does not warn
        return _Raised(TypeError("regenerate is async; use aguard / aparse_with_retry"))
    return answer


async def _aask(regenerate: AsyncRegenerate, feedback: str) -> object:
    """Async :func:`_ask`: awaits ``regenerate`` when it returns an awaitable; cancellation propagates."""
    try:
        answer: object = regenerate(feedback)
        if inspect.isawaitable(answer):
            answer = await answer
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 - as in _ask: any error from regenerate is a failed attempt
        return _Raised(exc)
    return answer
