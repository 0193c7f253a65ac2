"""JSON hard guard: turn untrusted LLM text into a schema-valid dict, re-asking the model or falling back.

The guard extracts one JSON value from the answer (bare, fenced in a code block, or wrapped in prose),
parses it strictly, validates it with a compiled ``jsonschema`` validator, and on failure re-asks the
model through a caller-supplied ``regenerate(feedback)`` that says what was wrong, with exponential
backoff, jitter and an overall deadline. When every attempt fails it returns a validated fallback
(or raises :class:`JSONGuardError` when fallbacks are disabled).

It must not: re-parse the same text and call that a retry, let hostile input (huge or deeply nested)
reach ``json.loads`` or recurse, read wall-clock time or sleep by itself (clock, sleep and rng are
injected), talk to Prometheus (the metrics collector reads the plain counters), log whole answers, or
hold its lock across a call to the model.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, Final, Literal, cast, get_args

from jsonschema.exceptions import SchemaError
from jsonschema.validators import Draft202012Validator, validator_for

from fragrance_ai.clock import AsyncSleepFn, Clock, SleepFn, monotonic

__all__ = [
    "REASONS",
    "AttemptError",
    "CompiledSchema",
    "GuardResult",
    "GuardSnapshot",
    "JSONGuardError",
    "JSONHardGuard",
    "Reason",
    "StopReason",
    "compile_schema",
    "default_fallback",
    "feedback_for",
]

logger = logging.getLogger(__name__)

#: Why one attempt was rejected; a fixed set, used as the ``reason`` label of the parse-failure metric.
Reason = Literal[
    "invalid_json",
    "duplicate_key",
    "too_large",
    "too_deep",
    "no_json_found",
    "schema_violation",
    "regenerate_error",
]
REASONS: Final[tuple[Reason, ...]] = get_args(Reason)

#: Why the guard stopped: it accepted an answer, had no way to re-ask, ran out of re-asks, or of time.
StopReason = Literal["accepted", "no_regenerate", "max_retries", "deadline"]

#: Above this, a value that passed the depth check could still exhaust the interpreter's recursion
#: limit inside ``json`` or ``jsonschema`` (both recurse once or more per nesting level).
_MAX_DEPTH_CEILING: Final = 512
_SCHEMA_CACHE_SIZE: Final = 32
_FALLBACK_CACHE_SIZE: Final = 8
#: Schema errors are counted up to this many; beyond it the feedback says "at least N more".
_ERROR_COUNT_CAP: Final = 1000
_CLIP: Final = 200

_DEFAULT_FALLBACK: Final[dict[str, Any]] = {
    "description": "향수 생성 중 오류가 발생했습니다. 다시 시도해주세요.",
    "notes": ["floral", "fresh"],
    "families": ["floral"],
    "intensity": 50,
    "longevity": "medium",
    "error": True,
}


def default_fallback() -> dict[str, Any]:
    """A fresh copy of the checklist's default fallback brief (``error: True``)."""
    return copy.deepcopy(_DEFAULT_FALLBACK)


class _Missing:
    """Type of :data:`MISSING`: "no fallback given", distinct from any dict."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


# --------------------------------------------------------------------------------------------------
# Results and errors


@dataclass(frozen=True, slots=True)
class AttemptError:
    """Why attempt number ``attempt`` (1 = the first answer) was rejected."""

    attempt: int
    reason: Reason
    message: str
    #: for ``schema_violation``: one line per error (``$.notes[0]: 5 is not of type 'string'``),
    #: at most ``max_reported_errors`` of them, then ``and N more``
    details: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GuardResult:
    """What the guard returned and how it got there."""

    #: The accepted answer, or a deep copy of the fallback. The schema is the authority on its shape:
    #: with a schema that admits non-objects this can be a list or scalar despite the annotation.
    value: dict[str, Any]
    source: Literal["model", "fallback"]
    #: answers asked for and judged: the first one plus one per re-ask (a re-ask whose
    #: ``regenerate`` raised still counts)
    attempts: int
    errors: tuple[AttemptError, ...]
    stop_reason: StopReason = "accepted"

    @property
    def retries(self) -> int:
        """Re-asks made (``attempts - 1``)."""
        return self.attempts - 1


class JSONGuardError(ValueError):
    """Every attempt was rejected and fallbacks are disabled; ``errors`` holds each attempt's reason."""

    def __init__(self, attempts: int, errors: tuple[AttemptError, ...], stop_reason: StopReason) -> None:
        self.attempts = attempts
        self.errors = errors
        self.stop_reason = stop_reason
        lines = "; ".join(f"attempt {e.attempt} {e.reason}: {_clip(e.message)}" for e in errors)
        super().__init__(
            f"LLM output rejected after {attempts} attempt(s) (stopped: {stop_reason}) and fallback "
            f"is disabled: {lines}"
        )


@dataclass(frozen=True, slots=True)
class GuardSnapshot:
    """A consistent copy of a guard's counters, taken under its lock."""

    requests_total: int
    parse_failures: dict[str, int]
    fallbacks_total: int
    retries_total: int
    retry_histogram: tuple[int, ...]
    deadline_stops_total: int
    rejections_total: int


# --------------------------------------------------------------------------------------------------
# Schemas


class CompiledSchema:
    """A schema checked once and its validator built once, reusable for every call (thread-safe)."""

    __slots__ = ("schema", "validator", "_fallbacks", "_lock")

    def __init__(self, schema: Mapping[str, Any] | bool, validator: Any) -> None:
        #: the schema object as given (kept alive so an ``id()``-keyed cache entry stays valid)
        self.schema = schema
        self.validator = validator
        # id(fallback) -> (fallback, validated snapshot): a fallback is validated once per schema
        # and re-validated only when the caller's dict no longer equals the snapshot.
        self._fallbacks: dict[int, tuple[object, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def is_valid(self, instance: object) -> bool:
        return bool(self.validator.is_valid(instance))

    def describe_errors(self, instance: object, limit: int) -> tuple[str, ...]:
        """One ``$.path: message`` line per error, at most ``limit``, then ``and N more``."""
        errors = islice(self.validator.iter_errors(instance), _ERROR_COUNT_CAP)
        lines = [f"{e.json_path}: {_clip(e.message)}" for e in islice(errors, limit)]
        more = sum(1 for _ in errors)
        if more:
            at_least = "at least " if len(lines) + more >= _ERROR_COUNT_CAP else ""
            lines.append(f"and {at_least}{more} more")
        return tuple(lines)

    def validated_fallback(self, fallback: dict[str, Any], limit: int, *, is_default: bool) -> dict[str, Any]:
        """Return a validated snapshot of ``fallback``, or raise ValueError saying why it does not fit."""
        entry = self._fallbacks.get(id(fallback))
        if entry is not None and entry[0] is fallback and entry[1] == fallback:
            return entry[1]
        if not isinstance(fallback, dict):
            raise TypeError(f"fallback must be a dict, got {type(fallback).__name__}")
        snapshot = copy.deepcopy(fallback)
        if not self.is_valid(snapshot):
            problems = "; ".join(self.describe_errors(snapshot, limit))
            if is_default:
                raise ValueError(
                    f"the schema rejects the default fallback ({problems}); pass fallback= with a "
                    "value that matches your schema, or construct the guard with fallback_enabled=False"
                )
            raise ValueError(f"fallback does not match the schema: {problems}")
        with self._lock:
            if len(self._fallbacks) >= _FALLBACK_CACHE_SIZE:
                self._fallbacks.pop(next(iter(self._fallbacks)), None)
            self._fallbacks[id(fallback)] = (fallback, snapshot)
        return snapshot

    def __repr__(self) -> str:
        return f"CompiledSchema({_clip(repr(self.schema), 80)})"


def compile_schema(schema: Mapping[str, Any] | bool | CompiledSchema) -> CompiledSchema:
    """Check a schema against its metaschema, then build its validator (2020-12 unless ``$schema`` says)."""
    if isinstance(schema, CompiledSchema):
        return schema
    if not isinstance(schema, (Mapping, bool)):
        raise TypeError(f"schema must be a JSON Schema (a dict or bool), got {type(schema).__name__}")
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"invalid JSON Schema at {exc.json_path}: {exc.message}") from exc
    return CompiledSchema(schema, cls(schema))


# --------------------------------------------------------------------------------------------------
# Extraction and strict parsing (pure functions; the guard's judge calls them)


class _Rejection:
    """An attempt's verdict when it failed (a plain class: cheaper than an exception on this path)."""

    __slots__ = ("reason", "message", "details")

    def __init__(self, reason: Reason, message: str, details: tuple[str, ...] = ()) -> None:
        self.reason: Reason = reason
        self.message = message
        self.details = details


class _Reject(Exception):
    """Raised from inside the JSON decoder's hooks to stop parsing with a reason."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.message = message


def _reject_constant(name: str) -> Any:
    raise _Reject(
        "invalid_json",
        f"invalid JSON: {name} is not allowed (JSON has no NaN or Infinity; use a number or null)",
    )


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _Reject("invalid_json", f"invalid JSON: the number {_clip(text, 40)} overflows to infinity")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Reject(
                    "duplicate_key", f"duplicate key {_clip(key, 60)!r} in an object (JSON keys must be unique)"
                )
            seen.add(key)
    return result


_DECODER: Final = json.JSONDecoder(
    parse_constant=_reject_constant, parse_float=_finite_float, object_pairs_hook=_unique_keys
)


_SURROGATE_MESSAGE: Final = "the answer holds a lone UTF-16 surrogate (U+D800-U+DFFF, e.g. an emoji cut in half): not valid Unicode"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(candidate: str, value: Any) -> bool:
    """Whether ``value`` holds a string that is not valid Unicode (only looked at when the text escapes one)."""
    if _SURROGATE_ESCAPE.search(candidate) is None:
        return False
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _strict_loads(text: str) -> Any:
    """``json.loads`` rejecting NaN/Infinity, overflowing numbers and duplicate keys (raises ``_Reject``)."""
    return _DECODER.decode(text)


_FIRST_OPEN: Final = re.compile(r"[\[{]")
# One token per match: an opener, a closer, or a whole string literal (group 3 is its closing quote,
# absent when unterminated). Possessive quantifiers and disjoint alternatives: no backtracking, so the
# scan is linear in the text.
_TOKEN: Final = re.compile(r'([\[{])|([\]}])|"(?:[^"\\]++|\\.)*+(")?', re.DOTALL)


def _scan(text: str, start: int, max_depth: int) -> str | _Rejection:
    """From the opener at ``start``, return the text up to its matching closer, or reject if too deep."""
    depth = 0
    for token in _TOKEN.finditer(text, start):
        kind = token.lastindex
        if kind == 1:
            depth += 1
            if depth > max_depth:
                return _Rejection("too_deep", f"JSON is nested deeper than max_depth={max_depth}")
        elif kind == 2:
            depth -= 1
            if depth == 0:
                return text[start : token.end()]
        elif kind is None:  # unterminated string: nothing after it is structure
            break
    # Unbalanced: hand the rest to the parser, whose error says what is missing; depth is known safe.
    return text[start:]


def _extract(text: str, max_depth: int) -> tuple[str, bool] | _Rejection:
    """Find one JSON value in ``text``; the flag is False when no ``{``/``[`` was found (a bare scalar?)."""
    stripped = text.strip()
    if stripped:
        first, last = stripped[0], stripped[-1]
        if (first == "{" and last == "}") or (first == "[" and last == "]"):
            # The whole answer is JSON-shaped. Counting openers is a C-speed upper bound on depth,
            # so the usual small answer skips the token scan entirely.
            if stripped.count("{") + stripped.count("[") <= max_depth:
                return stripped, True
            found = _scan(stripped, 0, max_depth)
            return found if isinstance(found, _Rejection) else (found, True)
    # Prefer the first fenced code block (```json ... ```), else the first opener anywhere.
    fence = text.find("```")
    match = _FIRST_OPEN.search(text, fence + 3) if fence >= 0 else None
    if match is None:
        match = _FIRST_OPEN.search(text)
    if match is None:
        return stripped, False
    found = _scan(text, match.start(), max_depth)
    return found if isinstance(found, _Rejection) else (found, True)


def _clip(text: str, limit: int = _CLIP) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was (answers can be megabytes)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} chars)"


def feedback_for(error: AttemptError) -> str:
    """The message sent to ``regenerate``: why the last answer was rejected and what to send instead."""
    if error.reason == "schema_violation":
        lines = "\n".join(f"- {line}" for line in error.details)
        problem = f"it does not match the required JSON schema:\n{lines}"
    else:
        problem = error.message
    return (
        f"Your previous answer was rejected: {problem}\n"
        "Reply again with only one JSON object that fixes this, and no other text."
    )


# --------------------------------------------------------------------------------------------------
# The guard


class _Sleep:
    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class _Ask:
    __slots__ = ("feedback",)

    def __init__(self, feedback: str) -> None:
        self.feedback = feedback


class _Raised:
    """``regenerate`` raised ``error`` (sent into the core instead of an answer)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_Step = _Sleep | _Ask
_Core = Generator[_Step, object, GuardResult]

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
        max_retries: int = 3,
        backoff_base: float = 1.0,
        *,
        jitter: float = 0.5,
        backoff_max: float = 8.0,
        deadline: float = 30.0,
        fallback_enabled: bool = True,
        max_input_bytes: int = 1_000_000,
        max_depth: int = 64,
        max_reported_errors: int = 5,
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
        self.max_depth = _check_int("max_depth", max_depth, 1, _MAX_DEPTH_CEILING)
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

        self._lock = threading.Lock()
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

    def guard(
        self,
        llm_output: str,
        schema: SchemaLike,
        fallback: dict[str, Any] | None | _Missing = MISSING,
        *,
        regenerate: SyncRegenerate | None = None,
        use_fallback: bool = True,
    ) -> GuardResult:
        """Judge ``llm_output``; re-ask via ``regenerate(feedback)`` while it fails; fall back at the end.

        ``use_fallback=False`` raises :class:`JSONGuardError` instead of falling back, for callers
        that try other models first and fall back themselves (see :meth:`fallback`).
        """
        core = self._start(llm_output, schema, fallback, regenerate is not None, use_fallback)
        reply: object = None
        try:
            while True:
                try:
                    step = core.send(reply)
                except StopIteration as done:
                    return cast(GuardResult, done.value)
                if isinstance(step, _Sleep):
                    self._sleep(step.seconds)
                    reply = None
                else:
                    reply = _ask(cast(SyncRegenerate, regenerate), step.feedback)
        finally:
            core.close()

    async def aguard(
        self,
        llm_output: str,
        schema: SchemaLike,
        fallback: dict[str, Any] | None | _Missing = MISSING,
        *,
        regenerate: AsyncRegenerate | None = None,
        use_fallback: bool = True,
    ) -> GuardResult:
        """Async twin of :meth:`guard`: awaits ``regenerate`` and sleeps with ``asleep``."""
        core = self._start(llm_output, schema, fallback, regenerate is not None, use_fallback)
        reply: object = None
        try:
            while True:
                try:
                    step = core.send(reply)
                except StopIteration as done:
                    return cast(GuardResult, done.value)
                if isinstance(step, _Sleep):
                    await self._asleep(step.seconds)
                    reply = None
                else:
                    reply = await _aask(cast(AsyncRegenerate, regenerate), step.feedback)
        finally:
            core.close()

    def fallback(
        self, schema: SchemaLike, fallback: dict[str, Any] | None | _Missing = MISSING
    ) -> dict[str, Any]:
        """A fresh, schema-checked copy of the fallback, counted in ``fallbacks_total``.

        For callers that ran their own loop (say, over several models with ``use_fallback=False``)
        and have nothing better to answer. Raises :class:`JSONGuardError` when fallback is disabled.
        """
        if not self.fallback_enabled:
            raise JSONGuardError(0, (), "max_retries")
        compiled = self._compiled(schema)
        is_default = fallback is MISSING or fallback is None
        given = _DEFAULT_FALLBACK if is_default else cast(dict[str, Any], fallback)
        snapshot = compiled.validated_fallback(given, self.max_reported_errors, is_default=is_default)
        with self._lock:
            self.fallbacks_total += 1
        logger.error("JSON guard: no acceptable answer; using the fallback")
        return copy.deepcopy(snapshot)

    def backoff_delay(self, retry: int) -> float:
        """Seconds to wait before re-ask number ``retry`` (0 = the first re-ask), jittered and capped."""
        delay = self.backoff_base * float(2 ** min(retry, 64))
        if self.jitter:
            delay += self._rng.uniform(0.0, self.jitter)
        return min(delay, self.backoff_max)

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

    def _start(
        self, llm_output: object, schema: SchemaLike, fallback: object, can_reask: bool, use_fallback: bool = True
    ) -> _Core:
        """Check the arguments up front (bad schema or fallback raise here, before any counting)."""
        compiled = self._compiled(schema)
        snapshot: dict[str, Any] | None = None
        if self.fallback_enabled and use_fallback:
            is_default = fallback is MISSING or fallback is None
            given = _DEFAULT_FALLBACK if is_default else cast(dict[str, Any], fallback)
            snapshot = compiled.validated_fallback(given, self.max_reported_errors, is_default=is_default)
        return self._core(llm_output, compiled, snapshot, can_reask)

    def _core(
        self, answer: object, compiled: CompiledSchema, fallback: dict[str, Any] | None, can_reask: bool
    ) -> _Core:
        """The retry loop, shared by both drivers: yields sleeps and re-asks, returns the result."""
        start = self._clock()
        errors: list[AttemptError] = []
        reasks = 0
        outcome: Literal["model", "fallback", "raised", "interrupted"] = "interrupted"
        stop: StopReason = "accepted"
        try:
            verdict = self._judge(answer, compiled)
            feedback = ""
            while True:
                if not isinstance(verdict, _Rejection):
                    outcome = "model"
                    return GuardResult(verdict, "model", reasks + 1, tuple(errors))
                error = AttemptError(reasks + 1, verdict.reason, verdict.message, verdict.details)
                errors.append(error)
                self._log_rejection(error, answer)
                if error.reason != "regenerate_error":  # the model never saw a failed re-ask's feedback
                    feedback = feedback_for(error)
                if not can_reask:
                    stop = "no_regenerate"
                    break
                if reasks >= self.max_retries:
                    stop = "max_retries"
                    break
                delay = self.backoff_delay(reasks)
                if self._clock() - start + delay >= self.deadline:
                    stop = "deadline"
                    break
                if delay > 0:
                    yield _Sleep(delay)
                reasks += 1
                answer = yield _Ask(feedback)
                verdict = self._judge_reply(answer, compiled)
            if fallback is None:
                outcome = "raised"
                raise JSONGuardError(reasks + 1, tuple(errors), stop)
            outcome = "fallback"
            logger.error(
                "JSON guard: %d attempt(s) rejected (stopped: %s, last: %s); using the fallback",
                reasks + 1, stop, errors[-1].reason,
            )
            return GuardResult(copy.deepcopy(fallback), "fallback", reasks + 1, tuple(errors), stop)
        finally:
            # Runs on return, on JSONGuardError, and on close() when the driver is cancelled.
            self._record(errors, reasks, outcome, stop)

    def _judge(self, text: object, compiled: CompiledSchema) -> Any:
        """The parsed value if ``text`` is acceptable, else a ``_Rejection`` saying why."""
        if not isinstance(text, str):
            return _Rejection("no_json_found", f"expected the answer as a str, got {type(text).__name__}")
        limit = self.max_input_bytes
        size = len(text)
        # Characters <= UTF-8 bytes <= 4 * characters: only encode when the cheap bounds disagree.
        if size > limit or (size * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit):
            return _Rejection(
                "too_large", f"the answer is over max_input_bytes={limit:,} ({size:,} characters)"
            )
        found = _extract(text, self.max_depth)
        if isinstance(found, _Rejection):
            return found
        candidate, bracketed = found
        try:
            candidate.encode("utf-8")
        except UnicodeEncodeError:
            return _Rejection("invalid_json", _SURROGATE_MESSAGE)
        try:
            value = _strict_loads(candidate)
        except _Reject as exc:
            return _Rejection(exc.reason, exc.message)
        except ValueError as exc:  # JSONDecodeError, and int() refusing a 5,000-digit number
            if not bracketed:
                return _Rejection(
                    "no_json_found", f"no JSON object found in the answer (it starts: {_clip(text, 60)!r})"
                )
            return _Rejection("invalid_json", f"invalid JSON: {exc}")
        if "\\u" in candidate and _has_lone_surrogate(candidate, value):
            # json.loads accepts "\ud83c" alone (a model cut off mid-emoji); such a string cannot be
            # encoded as UTF-8, so serving or caching it would fail later, far from its cause
            return _Rejection("invalid_json", _SURROGATE_MESSAGE)
        try:
            if compiled.is_valid(value):
                return value
            details = compiled.describe_errors(value, self.max_reported_errors)
        except RecursionError:  # a recursive schema can descend further per level than json does
            return _Rejection("too_deep", "JSON is nested too deeply to validate against this schema")
        return _Rejection("schema_violation", "does not match the schema: " + "; ".join(details), details)

    def _judge_reply(self, reply: object, compiled: CompiledSchema) -> Any:
        if isinstance(reply, _Raised):
            exc = reply.error
            message = f"regenerate raised {type(exc).__name__}: {_clip(str(exc))}"
            return _Rejection("regenerate_error", message)
        if not isinstance(reply, str):
            return _Rejection("regenerate_error", f"regenerate returned {type(reply).__name__}, expected str")
        return self._judge(reply, compiled)

    def _log_rejection(self, error: AttemptError, answer: object) -> None:
        if isinstance(answer, _Raised):
            logger.warning(
                "JSON guard: attempt %d failed (%s)", error.attempt, error.reason, exc_info=answer.error
            )
            return
        shown = _clip(answer) if isinstance(answer, str) else type(answer).__name__
        logger.warning(
            "JSON guard: attempt %d rejected (%s): %s; answer: %r",
            error.attempt, error.reason, _clip(error.message), shown,
        )

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
    except Exception as exc:
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
    except Exception as exc:
        return _Raised(exc)
    return answer
