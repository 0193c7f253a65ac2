"""Strict JSON parsing and compiled JSON Schemas: the judge that says whether one answer is acceptable.

:func:`judge` takes one answer and returns the parsed value, or a :class:`~fragrance_ai.llm.json_extract.Rejection`
saying why not (too large, too deep, no JSON, invalid JSON, duplicate key, NaN, a lone surrogate, or a
schema violation). :func:`compile_schema` checks a schema once and builds its validators once: a compiled
one (jsonschema-rs) that decides, and the reference one (``jsonschema``) that explains a rejection, after
:mod:`~fragrance_ai.llm.schema_bounds` has reported any size over a bound the schema states (so a hostile
answer is explained in time bounded by the schema, not by the answer).

Pure and stateless per call (a compiled schema caches validated fallbacks under its own lock): it must
not re-ask, sleep, read the clock, count or log; those belong to the guard.
"""

from __future__ import annotations

import copy
import json
import math
import re
import threading
from collections.abc import Mapping
from itertools import islice
from typing import Any, Final

import jsonschema_rs
from jsonschema.exceptions import SchemaError
from jsonschema.validators import Draft202012Validator, validator_for

from fragrance_ai.constants import Reason
from fragrance_ai.llm.json_extract import Rejection, clip, extract, over_structure
from fragrance_ai.llm.schema_bounds import oversized, structure_bound

__all__ = ["MAX_DEPTH_CEILING", "CompiledSchema", "compile_schema", "judge", "strict_loads"]

#: Above this, a value that passed the depth check could still exhaust the interpreter's recursion
#: limit inside ``json`` or ``jsonschema`` (both recurse once or more per nesting level).
MAX_DEPTH_CEILING: Final = 512
_FALLBACK_CACHE_SIZE: Final = 8
#: Schema errors are counted up to this many; beyond it the feedback says "at least N more".
_ERROR_COUNT_CAP: Final = 1000
#: Above this many characters a JSON text is first counted against the structure the schema allows
#: (arrays, objects, members), so an answer that cannot be valid is never parsed; below it, parsing is cheaper.
STRUCTURE_CHECK_CHARS: Final = 8192


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
        raise _Reject("invalid_json", f"invalid JSON: the number {clip(text, 40)} overflows to infinity")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Reject(
                    "duplicate_key", f"duplicate key {clip(key, 60)!r} in an object (JSON keys must be unique)"
                )
            seen.add(key)
    return result


_DECODER: Final = json.JSONDecoder(
    parse_constant=_reject_constant, parse_float=_finite_float, object_pairs_hook=_unique_keys
)


_SURROGATE_MESSAGE: Final = (
    "the answer holds a lone UTF-16 surrogate (U+D800-U+DFFF, e.g. an emoji cut in half): not valid Unicode"
)
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


def strict_loads(text: str) -> Any:
    """``json.loads`` rejecting NaN/Infinity, overflowing numbers and duplicate keys (raises ``_Reject``)."""
    return _DECODER.decode(text)


def _refuse_remote(uri: str) -> Any:
    raise ValueError(f"{uri}: the guard never fetches a schema over the network")


def _compiled_validator(schema: Mapping[str, Any] | bool) -> Any:
    """jsonschema-rs's validator for ``schema`` (formats as annotations, as ``jsonschema`` treats them), or None.

    None when jsonschema-rs cannot build it (a ``$ref`` to a remote document, a regex dialect it does
    not take): the reference validator then decides alone, slower but the same verdicts.
    """
    try:
        return jsonschema_rs.validator_for(schema, validate_formats=False, retriever=_refuse_remote)  # type: ignore[arg-type]  # any Mapping works
    except (ValueError, TypeError):  # jsonschema_rs.ValidationError is a ValueError
        return None


class CompiledSchema:
    """A schema checked once and its validators built once, reusable for every call (thread-safe)."""

    __slots__ = ("_fallbacks", "_lock", "fast", "schema", "structure", "validator")

    def __init__(self, schema: Mapping[str, Any] | bool, validator: Any, fast: Any = None) -> None:
        #: the schema object as given (kept alive so an ``id()``-keyed cache entry stays valid)
        self.schema = schema
        #: the reference validator (``jsonschema``): explains rejections, decides when ``fast`` is None
        self.validator = validator
        #: the compiled validator (jsonschema-rs): decides every answer it can take
        self.fast = fast
        #: ``(arrays and objects, members)`` at most in a valid instance, or None when unbounded
        self.structure = structure_bound(schema)
        # id(fallback) -> (fallback, validated snapshot): a fallback is validated once per schema
        # and re-validated only when the caller's dict no longer equals the snapshot.
        self._fallbacks: dict[int, tuple[object, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def is_valid(self, instance: object) -> bool:
        if self.fast is not None:
            try:
                return bool(self.fast.is_valid(instance))
            except (ValueError, TypeError):  # a value JSON cannot hold (a set, a tuple key): the reference decides
                pass
        return bool(self.validator.is_valid(instance))

    def describe_errors(self, instance: object, limit: int) -> tuple[str, ...]:
        """One ``$.path: message`` line per error, at most ``limit``, then ``and N more``.

        Sizes over a stated bound come first and alone: past one, the reference validator would walk
        every member of a container that may hold 100,000 of them.
        """
        over = oversized(self.schema, instance, limit)
        if over:
            return tuple(over)
        errors = islice(self.validator.iter_errors(instance), _ERROR_COUNT_CAP)
        lines = [f"{e.json_path}: {clip(e.message)}" for e in islice(errors, limit)]
        if not lines and self.fast is not None:  # the validators disagree: the deciding one explains
            errors = islice(self.fast.iter_errors(instance), _ERROR_COUNT_CAP)
            lines = [f"{_rs_path(e.instance_path)}: {clip(e.message)}" for e in islice(errors, limit)]
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
        return f"CompiledSchema({clip(repr(self.schema), 80)})"


def compile_schema(schema: Mapping[str, Any] | bool | CompiledSchema) -> CompiledSchema:
    """Check a schema against its metaschema, then build its validator (2020-12 unless ``$schema`` says)."""
    if isinstance(schema, CompiledSchema):
        return schema
    if not isinstance(schema, (Mapping, bool)):
        raise TypeError(f"schema must be a JSON Schema (a dict or bool), got {type(schema).__name__}")
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)  # type: ignore[arg-type]  # the stubs say dict; jsonschema takes any Mapping or bool schema
    except SchemaError as exc:
        raise ValueError(f"invalid JSON Schema at {exc.json_path}: {exc.message}") from exc
    return CompiledSchema(schema, cls(schema), _compiled_validator(schema))


def _rs_path(parts: Any) -> str:
    """jsonschema-rs's instance path as the JSON path ``jsonschema`` would print (``$.notes[0]``)."""
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _find(text: str, compiled: CompiledSchema, max_input_bytes: int, max_depth: int) -> tuple[str, bool] | Rejection:
    """The JSON text to parse, once the size, the nesting and the structure the schema allows say it may be valid."""
    limit = max_input_bytes
    size = len(text)
    # Characters <= UTF-8 bytes <= 4 * characters: only encode when the cheap bounds disagree.
    if size > limit or (size * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit):
        return Rejection("too_large", f"the answer is over max_input_bytes={limit:,} ({size:,} characters)")
    structure = compiled.structure
    found = extract(text, max_depth, *(structure if structure is not None else (None, None)))
    if isinstance(found, Rejection):
        return found
    candidate, bracketed = found
    if bracketed and structure is not None and len(candidate) > STRUCTURE_CHECK_CHARS:
        over = over_structure(candidate, 0, structure)
        if over is not None:
            return over
    return found


def judge(
    text: object, compiled: CompiledSchema, *, max_input_bytes: int, max_depth: int, max_reported_errors: int
) -> Any:
    """The parsed value if ``text`` is acceptable, else a :class:`Rejection` saying why."""
    if not isinstance(text, str):
        return Rejection("no_json_found", f"expected the answer as a str, got {type(text).__name__}")
    found = _find(text, compiled, max_input_bytes, max_depth)
    if isinstance(found, Rejection):
        return found
    candidate, bracketed = found
    try:
        candidate.encode("utf-8")
    except UnicodeEncodeError:
        return Rejection("invalid_json", _SURROGATE_MESSAGE)
    try:
        value = strict_loads(candidate)
    except _Reject as exc:
        return Rejection(exc.reason, exc.message)
    except ValueError as exc:  # JSONDecodeError, and int() refusing a 5,000-digit number
        if not bracketed:
            return Rejection(
                "no_json_found", f"no JSON object found in the answer (it starts: {clip(text, 60)!r})"
            )
        return Rejection("invalid_json", f"invalid JSON: {exc}")
    if "\\u" in candidate and _has_lone_surrogate(candidate, value):
        # json.loads accepts "\ud83c" alone (a model cut off mid-emoji); such a string cannot be
        # encoded as UTF-8, so serving or caching it would fail later, far from its cause
        return Rejection("invalid_json", _SURROGATE_MESSAGE)
    try:
        if compiled.is_valid(value):
            return value
        details = compiled.describe_errors(value, max_reported_errors)
    except RecursionError:  # a recursive schema can descend further per level than json does
        return Rejection("too_deep", "JSON is nested too deeply to validate against this schema")
    return Rejection("schema_violation", "does not match the schema: " + "; ".join(details), details)
