"""The behaviour data format (plain YAML/JSON): one validator, :func:`parse_behaviours`, and its JSON Schema.

The format is defined once, in the tables below (kinds, each kind's parameters, each parameter's
check and schema). :func:`parse_behaviours` is the only place that validates behaviour data: it reads
it into objects and raises :class:`BehaviourError` naming the key path, what was expected and what was
found (with a "did you mean"). :data:`BEHAVIOUR_JSON_SCHEMA` is derived from the same tables for
editors and the shipped scenario schema; scenario loading does not validate behaviours with it again.

What this module must not do: I/O, or accept anything the JSON Schema rejects (a test keeps the two
agreeing case by case).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from pytest_guards.faults._behaviours import (
    KINDS,
    Behaviour,
    BehaviourError,
    Flaky,
    Kind,
    Script,
    Step,
    check_body,
    check_brief,
    check_bytes,
    check_probability,
    check_seconds,
    check_seed,
    check_status,
    check_times,
    show_value,
    valid,
)

__all__ = ["BEHAVIOUR_JSON_SCHEMA", "parse_behaviours"]

_SECONDS: Final = {"type": "number", "minimum": 0}
_STATUS: Final = {"type": "integer", "minimum": 400, "maximum": 599}


@dataclass(frozen=True, slots=True)
class _Parameter:
    """One key of a behaviour mapping: the Behaviour field it sets, its check, and its JSON Schema."""

    field: str
    check: Callable[[object, str], object]
    schema: Mapping[str, Any]


_PARAMETERS: Final[Mapping[str, _Parameter]] = {
    "times": _Parameter("count", check_times, {"type": "integer", "minimum": 1, "description": "how many consecutive calls"}),
    "latency": _Parameter("latency", check_seconds, {**_SECONDS, "description": "seconds before the answer"}),
    "status": _Parameter("status", check_status, _STATUS),
    "retry_after": _Parameter("retry_after", check_seconds, {**_SECONDS, "description": "seconds, sent as a Retry-After header"}),
    "body": _Parameter("body", check_body, {"type": "string"}),
    "brief": _Parameter(
        "brief_json", check_brief, {"type": "object", "description": "fields that replace the generated brief's"}
    ),
    "after_bytes": _Parameter(
        "after_bytes", check_bytes, {"type": "integer", "minimum": 0, "description": "bytes sent before the connection drops"}
    ),
    "seconds": _Parameter("stall", check_seconds, {**_SECONDS, "description": "seconds of silence between chunks"}),
}
_COMMON_KEYS: Final = ("times", "latency")
#: parameters each kind takes, besides times and latency
_PARAMS: Final[Mapping[str, tuple[str, ...]]] = {
    "valid": ("brief",),
    "http_error": ("status", "retry_after", "body"),
    "malformed_body": ("body",),
    "cut_stream": ("after_bytes",),
    "stall": ("seconds",),
}
#: the parameter a kind's scalar value sets (``{http_error: 503}``, ``{stall: 2}``, ``{cut_stream: 120}``)
_SCALAR: Final[Mapping[str, str]] = {"http_error": "status", "cut_stream": "after_bytes", "stall": "seconds"}
#: parameters a kind cannot do without, with an example of how to give them
_REQUIRED: Final[Mapping[str, tuple[str, str]]] = {"stall": ("seconds", "{stall: 2} or {stall: {seconds: 2}}")}
_FLAKY_KEYS: Final = ("flaky", "probability", "seed", "otherwise", "times")
_EXPECTED_NAME: Final = f"a behaviour name ({', '.join(KINDS)}, or http_NNN like http_503)"
_TIMES_INSIDE_FLAKY: Final = "put times on the flaky step, not on the behaviour inside it"


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -------------------------------------------------------------------------------------------- reading


def _from_name(name: str, where: str) -> Behaviour:
    if name in _REQUIRED:
        key, example = _REQUIRED[name]
        raise BehaviourError(f"{where}: {name} needs {key}: {example}")
    if name in KINDS:
        return Behaviour(cast(Kind, name), status=500 if name == "http_error" else None)
    if name.startswith("http_") and name[5:].isdigit():
        return Behaviour("http_error", status=check_status(int(name[5:]), where))
    if name == "flaky":
        raise BehaviourError(f"{where}: flaky needs a mapping: {{flaky: timeout, probability: 0.3, seed: 7}}")
    raise BehaviourError(f"{where}: expected {_EXPECTED_NAME}, found {name!r}{_suggest(name, (*KINDS, 'flaky'))}")


def _kind_of(data: Mapping[Any, Any], where: str) -> str:
    """The one behaviour key of a mapping."""
    if "flaky" in data:
        raise BehaviourError(f"{where}: expected a behaviour that is not flaky, found a flaky step")
    kinds = [key for key in data if key in KINDS]
    if len(kinds) == 1:
        return str(kinds[0])
    if kinds:
        found = f"{len(kinds)}: {', '.join(kinds)}"
        hint = ""
    else:
        found = f"keys {', '.join(map(str, data)) or '(none)'}"
        hint = next((h for key in data if isinstance(key, str) and (h := _suggest(key, KINDS))), "")
    raise BehaviourError(f"{where}: expected exactly one behaviour key ({', '.join(KINDS)}), found {found}{hint}")


class _Parameters:
    """The parameters of one behaviour mapping, gathered from inside its kind's value and beside it."""

    def __init__(self, kind: str, *, allow_times: bool) -> None:
        self.kind = kind
        self.allow_times = allow_times
        self.allowed = (*_PARAMS.get(kind, ()), *(_COMMON_KEYS if allow_times else ("latency",)))
        self.given: dict[str, tuple[object, str]] = {}

    def take(self, key: object, value: object, at: str) -> None:
        if key not in self.allowed:
            if key == "times" and not self.allow_times:
                raise BehaviourError(f"{at}: {_TIMES_INSIDE_FLAKY}")
            raise BehaviourError(
                f"{at}: unknown key for {self.kind}; expected one of: {', '.join(sorted(self.allowed)) or '(none)'}"
                f"{_suggest(str(key), self.allowed)}"
            )
        if key in self.given:
            raise BehaviourError(f"{at}: {key} is given twice (inside {self.kind} and beside it); keep one")
        self.given[str(key)] = (value, at)

    def fields(self) -> dict[str, Any]:
        """The Behaviour fields, each value checked where it was written."""
        out = {_PARAMETERS[key].field: _PARAMETERS[key].check(value, at) for key, (value, at) in self.given.items()}
        if self.kind == "http_error":
            out.setdefault("status", 500)
        if self.kind == "cut_stream":
            out.setdefault("after_bytes", 0)
        return out

    def require(self, where: str) -> None:
        """Raise when a parameter the kind cannot do without is missing."""
        if self.kind in _REQUIRED and _REQUIRED[self.kind][0] not in self.given:
            key, example = _REQUIRED[self.kind]
            raise BehaviourError(f"{where}.{self.kind}: {self.kind} needs {key}, found nothing (write {example})")


def _behaviour_from_mapping(data: Mapping[Any, Any], where: str, *, allow_times: bool) -> Behaviour:
    kind = _kind_of(data, where)
    params = _Parameters(kind, allow_times=allow_times)
    arg = data[kind]
    if isinstance(arg, Mapping):
        for key, value in arg.items():
            params.take(key, value, f"{where}.{kind}.{key}")
    elif arg is not None and kind in _SCALAR:
        params.take(_SCALAR[kind], arg, f"{where}.{kind}")
    elif arg is not None:
        raise BehaviourError(f"{where}.{kind}: expected nothing or a mapping of parameters, found {show_value(arg)}")
    for key, value in data.items():
        if key != kind:
            params.take(key, value, f"{where}.{key}")
    params.require(where)
    return Behaviour(cast(Kind, kind), **params.fields())


def _inner(data: object, where: str) -> Behaviour:
    """A behaviour inside a flaky step (no times, no flaky)."""
    if isinstance(data, Behaviour):
        if data.count is not None:
            raise BehaviourError(f"{where}: {_TIMES_INSIDE_FLAKY}")
        return data
    if isinstance(data, str):
        return _from_name(data, where)
    if isinstance(data, Mapping):
        return _behaviour_from_mapping(data, where, allow_times=False)
    raise BehaviourError(
        f"{where}: expected a behaviour that is not flaky ({_EXPECTED_NAME} or a mapping), found {show_value(data)}"
    )


def _flaky_from_mapping(data: Mapping[Any, Any], where: str) -> Flaky:
    for key in data:
        if key not in _FLAKY_KEYS:
            hint = " (put latency on the behaviour inside flaky or on otherwise)" if key == "latency" else ""
            raise BehaviourError(
                f"{where}.{key}: unknown key for flaky; expected one of: {', '.join(sorted(_FLAKY_KEYS))}"
                f"{hint or _suggest(str(key), _FLAKY_KEYS)}"
            )
    if data["flaky"] is None:
        raise BehaviourError(f"{where}.flaky: expected the behaviour that fails (e.g. timeout), found nothing (null)")
    behaviour = _inner(data["flaky"], f"{where}.flaky")
    if "probability" not in data:
        raise BehaviourError(f"{where}.probability: expected a probability from 0 to 1, found nothing (it is required)")
    probability = check_probability(data["probability"], f"{where}.probability")
    seed = check_seed(data.get("seed", 0), f"{where}.seed")
    otherwise = _inner(data["otherwise"], f"{where}.otherwise") if "otherwise" in data else valid()
    count = check_times(data["times"], f"{where}.times") if "times" in data else None
    return Flaky(behaviour, probability, seed, otherwise, count)


def _step(data: object, where: str) -> Step:
    if isinstance(data, (Behaviour, Flaky)):
        return data
    if isinstance(data, str):
        return _from_name(data, where)
    if isinstance(data, Mapping):
        if "flaky" in data:
            return _flaky_from_mapping(data, where)
        return _behaviour_from_mapping(data, where, allow_times=True)
    raise BehaviourError(f"{where}: expected {_EXPECTED_NAME} or a mapping like {{http_error: 503}}, found {show_value(data)}")


def _list_step(item: object, at: str) -> Step:
    if isinstance(item, (list, tuple, Script)):
        raise BehaviourError(f"{at}: expected one behaviour (a name or a mapping), found {show_value(item)}")
    return _step(item, at)


def parse_behaviours(data: object, where: str = "given.llm.qwen") -> Script:
    """Read one model's script from plain YAML/JSON data (see :data:`BEHAVIOUR_JSON_SCHEMA`).

    ``data`` is a behaviour name (``"timeout"``, ``"http_503"``), a mapping (``{http_error: 503,
    retry_after: 2, times: 3, latency: 1.5}``, ``{flaky: timeout, probability: 0.3, seed: 7}``), or a
    list of those run in order. Behaviour objects and a :class:`Script` pass through. Every problem
    raises :class:`BehaviourError` naming ``where`` plus the index/key path.
    """
    if isinstance(data, Script):
        return data
    if isinstance(data, (list, tuple)):
        if not data:
            raise BehaviourError(f"{where}: expected at least one behaviour, found an empty list")
        return Script(tuple(_list_step(item, f"{where}[{index}]") for index, item in enumerate(data)))
    if isinstance(data, (str, Mapping, Behaviour, Flaky)):
        return Script((_step(data, where),))
    raise BehaviourError(
        f"{where}: expected {_EXPECTED_NAME}, a mapping like {{http_error: 503}}, or a list of them, found {show_value(data)}"
    )


# ------------------------------------------------------------------------------------- the JSON Schema


def _mapping_schema(kind: str, *, with_times: bool) -> dict[str, Any]:
    extra = {key: dict(_PARAMETERS[key].schema) for key in _PARAMS.get(kind, ())}
    common = {key: dict(_PARAMETERS[key].schema) for key in (_COMMON_KEYS if with_times else ("latency",))}
    inner_object = {"type": "object", "additionalProperties": False, "properties": {**extra, **common}}
    arg: list[dict[str, Any]] = [{"type": "null"}, inner_object]
    if kind in _SCALAR:
        arg.insert(1, dict(_PARAMETERS[_SCALAR[kind]].schema))
    schema: dict[str, Any] = {
        "type": "object",
        "required": [kind],
        "additionalProperties": False,
        "properties": {kind: {"anyOf": arg}, **extra, **common},
    }
    if kind in _REQUIRED:
        key = _REQUIRED[kind][0]
        inner_object["required"] = [key]
        schema["anyOf"] = [{"required": [key]}, {"properties": {kind: {"not": {"type": "null"}}}}]
    return schema


def _json_schema() -> dict[str, Any]:
    """The data format of :func:`parse_behaviours` as a JSON Schema with no ``$ref`` (so it embeds anywhere)."""
    name = {
        "type": "string",
        "anyOf": [{"enum": [k for k in KINDS if k not in _REQUIRED]}, {"pattern": "^http_[45][0-9][0-9]$"}],
        "description": "a behaviour by name; http_NNN is an HTTP error with that status",
    }

    def behaviour(*, with_times: bool) -> dict[str, Any]:
        return {"anyOf": [name, {"oneOf": [_mapping_schema(kind, with_times=with_times) for kind in KINDS]}]}

    flaky_schema = {
        "type": "object",
        "required": ["flaky", "probability"],
        "additionalProperties": False,
        "properties": {
            "flaky": behaviour(with_times=False),
            "probability": {"type": "number", "minimum": 0, "maximum": 1},
            "seed": {"type": "integer", "description": "seed of random.Random; default 0"},
            "otherwise": behaviour(with_times=False),
            "times": {"type": "integer", "minimum": 1},
        },
    }
    step = {"anyOf": [name, {"oneOf": [*(_mapping_schema(kind, with_times=True) for kind in KINDS), flaky_schema]}]}
    return {
        "title": "LLM behaviours",
        "description": (
            "How one fake model answers: a behaviour, or a list of them run in order. A step without times "
            "runs once, except the last, which repeats forever; after a finite list the model answers valid."
        ),
        "anyOf": [step, {"type": "array", "minItems": 1, "items": step}],
    }


#: JSON Schema (draft 2020-12, no ``$ref``/``$schema``: embed it as a subschema) of :func:`parse_behaviours` data
BEHAVIOUR_JSON_SCHEMA: Final[dict[str, Any]] = _json_schema()
