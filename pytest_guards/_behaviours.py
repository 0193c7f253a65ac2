"""The fault model of the fake LLMs: behaviours, scripts, their data format, and transport-neutral rendering.

A :class:`Behaviour` says how one chat-completions call goes wrong (or right); a :class:`Script` is an
ordered list of steps for one model; :func:`parse_behaviours` reads the same thing from plain
YAML/JSON data; :func:`render` turns a behaviour into an :class:`Outcome` (status, headers, body,
latency) that both transports (respx in ``_faulty_llm``, the real HTTP server in ``_fake_server``)
serve byte for byte alike. :class:`ScriptBook` is the thread-safe bookkeeping both share, and
:class:`ScriptedModels` the scripting API both expose.

What this module must not do: any I/O, sleeping or reading the clock (transports wait; this module
only says how long), use unseeded randomness, or read wall time (``created`` in a body is fixed so that
bodies are reproducible).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import random
import threading
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, cast

from fragrance_ai.llm.vocabulary import FAMILIES, LONGEVITY, NOTES_BY_FAMILY

__all__ = [
    "BEHAVIOUR_JSON_SCHEMA",
    "KINDS",
    "Behaviour",
    "BehaviourError",
    "CallRecord",
    "Flaky",
    "Outcome",
    "Script",
    "ScriptBook",
    "ScriptCursor",
    "ScriptedModels",
    "Step",
    "UnmatchedRequestError",
    "connection_error",
    "empty",
    "fenced",
    "flaky",
    "http_error",
    "invalid_json",
    "json_body",
    "malformed_body",
    "parse_behaviours",
    "prose",
    "render",
    "schema_violation",
    "timeout",
    "truncated",
    "valid",
    "valid_brief",
]

Kind = Literal[
    "valid",
    "invalid_json",
    "schema_violation",
    "fenced",
    "prose",
    "truncated",
    "http_error",
    "timeout",
    "connection_error",
    "empty",
    "malformed_body",
]
#: every behaviour kind, in the order the docs list them
KINDS: Final[tuple[str, ...]] = (
    "valid",
    "invalid_json",
    "schema_violation",
    "fenced",
    "prose",
    "truncated",
    "http_error",
    "timeout",
    "connection_error",
    "empty",
    "malformed_body",
)
OutcomeKind = Literal["response", "timeout", "connection_error"]

#: ``created`` of every fake completion: fixed, so that a body depends only on (behaviour, index, model)
CREATED: Final = 1_700_000_000
INVALID_JSON_TEXT: Final = '{"description": "x", "notes": ['
SCHEMA_VIOLATION: Final = {
    "description": "A brief of the wrong shape",
    "notes": [],
    "families": ["disco"],
    "intensity": "high",
    "longevity": "forever",
}
MALFORMED_BODY: Final = "<html><body><h1>502 Bad Gateway</h1><p>upstream busy</p></body></html>"


class BehaviourError(ValueError):
    """A behaviour or scenario entry that cannot be used; the message names where and what was expected."""


class UnmatchedRequestError(AssertionError):
    """Requests reached a fake LLM that no configured model answers (raised by ``check()``, never in the client)."""


# ----------------------------------------------------------------------------------------- validation


def _show(value: object) -> str:
    """A value as an error message shows it: short, and saying its type where the value alone would not."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, Mapping):
        return f"a mapping with keys {', '.join(map(str, value)) or '(none)'}"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    if isinstance(value, (Behaviour, Flaky, Script)):
        return f"{type(value).__name__} {value!r}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _number(value: object) -> float | None:
    """``value`` as a finite float, or None when it is not a real number (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _whole(value: object) -> int | None:
    """``value`` as an int when it is a whole number (``3`` or ``3.0``), else None."""
    number = _number(value)
    if number is None or not number.is_integer():
        return None
    return int(number)


def _check_times(value: object, where: str) -> int:
    times = _whole(value)
    if times is None or times < 1:
        raise BehaviourError(f"{where}: expected a whole number >= 1, found {_show(value)}")
    return times


def _check_seconds(value: object, where: str) -> float:
    seconds = _number(value)
    if seconds is None or seconds < 0:
        raise BehaviourError(f"{where}: expected seconds >= 0, found {_show(value)}")
    return seconds


def _check_status(value: object, where: str) -> int:
    status = _whole(value)
    if status is None or not 400 <= status <= 599:
        raise BehaviourError(f"{where}: expected an HTTP status 400-599, found {_show(value)}")
    return status


def _check_probability(value: object, where: str) -> float:
    probability = _number(value)
    if probability is None or not 0.0 <= probability <= 1.0:
        raise BehaviourError(f"{where}: expected a probability from 0 to 1, found {_show(value)}")
    return probability


def _check_seed(value: object, where: str) -> int:
    seed = _whole(value)
    if seed is None:
        raise BehaviourError(f"{where}: expected a whole number, found {_show(value)}")
    return seed


def _check_body(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise BehaviourError(f"{where}: expected a string, found {_show(value)}")
    return value


def _check_brief(value: object, where: str) -> str:
    """The brief override as canonical JSON text (frozen, hashable, and proven serialisable)."""
    if not isinstance(value, Mapping):
        raise BehaviourError(f"{where}: expected a mapping of brief fields, found {_show(value)}")
    try:
        return json.dumps(dict(value), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BehaviourError(f"{where}: expected JSON-compatible brief fields, found {exc}") from None


# ----------------------------------------------------------------------------------------- behaviours


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How one call goes: a ``kind`` from :data:`KINDS`, its parameters, a repeat ``count`` and a ``latency``.

    Build one with the constructors (:func:`valid`, :func:`http_error`, ...) rather than directly:
    they check their arguments. ``count`` None means "once, or forever when last in a script".
    """

    kind: Kind
    count: int | None = None
    latency: float = 0.0
    status: int | None = None
    retry_after: float | None = None
    body: str | None = None
    brief_json: str | None = None

    def times(self, n: int) -> Behaviour:
        """This behaviour for ``n`` consecutive calls."""
        return dataclasses.replace(self, count=_check_times(n, f"{self.kind}().times({n!r})"))

    def after(self, seconds: float) -> Behaviour:
        """This behaviour, answered ``seconds`` after the request arrives (virtual with respx, real with the server)."""
        return dataclasses.replace(self, latency=_check_seconds(seconds, f"{self.kind}().after({seconds!r})"))

    with_latency = after

    @property
    def brief(self) -> dict[str, Any] | None:
        """The ``valid(brief=...)`` override (a fresh copy), or None."""
        return None if self.brief_json is None else json.loads(self.brief_json)

    def __repr__(self) -> str:
        args = []
        if self.status is not None and (self.kind != "http_error" or self.status != 500):
            args.append(f"{self.status}" if self.kind == "http_error" else f"status={self.status}")
        if self.retry_after is not None:
            args.append(f"retry_after={self.retry_after:g}")
        if self.body is not None:
            args.append(f"body={self.body!r}")
        if self.brief_json is not None:
            args.append(f"brief={self.brief_json}")
        text = f"{self.kind}({', '.join(args)})"
        if self.count is not None:
            text += f".times({self.count})"
        if self.latency:
            text += f".after({self.latency:g})"
        return text


def valid(brief: Mapping[str, Any] | None = None) -> Behaviour:
    """A schema-valid brief (varied by call index); ``brief`` fields replace the generated ones."""
    return Behaviour("valid", brief_json=None if brief is None else _check_brief(brief, "valid(brief=...)"))


def invalid_json() -> Behaviour:
    """Content that is broken JSON: ``{"description": "x", "notes": [``."""
    return Behaviour("invalid_json")


def schema_violation() -> Behaviour:
    """Content that is valid JSON of the wrong shape (``intensity: "high"``, ``notes: []``, unknown family)."""
    return Behaviour("schema_violation")


def fenced() -> Behaviour:
    """A valid brief inside a ```json fence, after a sentence."""
    return Behaviour("fenced")


def prose() -> Behaviour:
    """A valid brief embedded in prose: ``Sure! Here is your brief: {...} Enjoy.``"""
    return Behaviour("prose")


def truncated() -> Behaviour:
    """The first half of a valid brief's text, with ``finish_reason: "length"``."""
    return Behaviour("truncated")


def http_error(status: int = 500, retry_after: float | None = None, body: str | None = None) -> Behaviour:
    """An HTTP error ``status`` (400-599), with a ``Retry-After`` header when ``retry_after`` is given."""
    where = f"http_error(status={status!r})"
    return Behaviour(
        "http_error",
        status=_check_status(status, where),
        retry_after=None if retry_after is None else _check_seconds(retry_after, f"{where}: retry_after"),
        body=None if body is None else _check_body(body, f"{where}: body"),
    )


def timeout() -> Behaviour:
    """No answer: the client's read timeout fires (respx) or the server holds the request (real server)."""
    return Behaviour("timeout")


def connection_error() -> Behaviour:
    """The connection is refused or reset before any response."""
    return Behaviour("connection_error")


def empty() -> Behaviour:
    """A well-formed completion whose content is ``""``."""
    return Behaviour("empty")


def malformed_body(body: str | None = None) -> Behaviour:
    """A 200 whose body is not chat-completions JSON (an HTML proxy page unless ``body`` is given)."""
    return Behaviour("malformed_body", body=None if body is None else _check_body(body, "malformed_body(body=...)"))


@dataclass(frozen=True, slots=True)
class Flaky:
    """A script step where each call independently fails with ``behaviour`` with ``probability``, else ``otherwise``.

    Draws come from ``random.Random(seed)``, made anew whenever the script is (re)set, so a run is
    reproducible. ``count`` as for :class:`Behaviour`.
    """

    behaviour: Behaviour
    probability: float
    seed: int = 0
    otherwise: Behaviour = dataclasses.field(default_factory=valid)
    count: int | None = None

    def times(self, n: int) -> Flaky:
        """This flaky step for ``n`` consecutive calls."""
        return dataclasses.replace(self, count=_check_times(n, f"flaky(...).times({n!r})"))

    def __repr__(self) -> str:
        text = f"flaky({self.behaviour!r}, {self.probability:g}, seed={self.seed}"
        if self.otherwise != valid():
            text += f", otherwise={self.otherwise!r}"
        text += ")"
        return text if self.count is None else f"{text}.times({self.count})"


def flaky(behaviour: Behaviour, probability: float, seed: int = 0, *, otherwise: Behaviour | None = None) -> Flaky:
    """Fail with ``behaviour`` with ``probability`` on each call (seeded, reproducible), else ``otherwise`` (valid)."""
    where = f"flaky({behaviour!r}, {probability!r})"
    for label, inner in (("behaviour", behaviour), ("otherwise", otherwise)):
        if inner is not None and not isinstance(inner, Behaviour):
            raise BehaviourError(f"{where}: {label}: expected a behaviour that is not flaky, found {_show(inner)}")
        if inner is not None and inner.count is not None:
            raise BehaviourError(f"{where}: {label}: put .times() on the flaky step, not on the behaviour inside it")
    return Flaky(
        behaviour,
        _check_probability(probability, f"{where}: probability"),
        _check_seed(seed, f"{where}: seed"),
        valid() if otherwise is None else otherwise,
    )


Step: TypeAlias = "Behaviour | Flaky"

#: what a model answers once its script is used up, and before any script is set
DEFAULT_BEHAVIOUR: Final = valid()


@dataclass(frozen=True, slots=True)
class Script:
    """One model's ordered steps.

    Each step runs ``count`` times; a step without a count runs once, except the last, which then
    repeats forever. When a finite script is used up the model answers :data:`DEFAULT_BEHAVIOUR`
    (``valid()``) from then on. An empty script is ``valid()`` forever.
    """

    steps: tuple[Step, ...] = ()

    @classmethod
    def of(cls, *steps: Step) -> Script:
        """A script of these steps."""
        for index, step in enumerate(steps):
            if not isinstance(step, (Behaviour, Flaky)):
                raise BehaviourError(f"Script.of(...)[{index}]: expected a behaviour or flaky step, found {_show(step)}")
        return cls(tuple(steps))

    def cursor(self) -> ScriptCursor:
        """A fresh position at the start of the script (flaky steps get fresh seeded generators)."""
        return ScriptCursor(self)

    def __repr__(self) -> str:
        return f"Script({', '.join(map(repr, self.steps))})"


class ScriptCursor:
    """Walks a script call by call. Not thread-safe on its own: :class:`ScriptBook` serialises it."""

    __slots__ = ("_steps", "_step", "_used", "_rngs")

    def __init__(self, script: Script) -> None:
        self._steps = script.steps
        self._step = 0
        self._used = 0
        self._rngs: dict[int, random.Random] = {}

    def next(self) -> Behaviour:
        """The behaviour of the next call."""
        steps = self._steps
        while self._step < len(steps):
            step = steps[self._step]
            limit = step.count
            if limit is None and self._step < len(steps) - 1:
                limit = 1
            if limit is None or self._used < limit:
                self._used += 1
                if isinstance(step, Behaviour):
                    return step
                rng = self._rngs.get(self._step)
                if rng is None:
                    rng = self._rngs[self._step] = random.Random(step.seed)
                return step.behaviour if rng.random() < step.probability else step.otherwise
            self._step += 1
            self._used = 0
        return DEFAULT_BEHAVIOUR


# ------------------------------------------------------------------------------------ the data format

_COMMON_KEYS: Final = ("times", "latency")
#: parameters each kind takes, besides times and latency
_PARAMS: Final[Mapping[str, tuple[str, ...]]] = {
    "valid": ("brief",),
    "http_error": ("status", "retry_after", "body"),
    "malformed_body": ("body",),
}
_FLAKY_KEYS: Final = ("flaky", "probability", "seed", "otherwise", "times")
_EXPECTED_NAME: Final = f"a behaviour name ({', '.join(KINDS)}, or http_NNN like http_503)"


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _from_name(name: str, where: str) -> Behaviour:
    if name in KINDS:
        return Behaviour(cast(Kind, name), status=500 if name == "http_error" else None)
    if name.startswith("http_") and name[5:].isdigit():
        return Behaviour("http_error", status=_check_status(int(name[5:]), where))
    if name == "flaky":
        raise BehaviourError(f"{where}: flaky needs a mapping: {{flaky: timeout, probability: 0.3, seed: 7}}")
    raise BehaviourError(f"{where}: expected {_EXPECTED_NAME}, found {name!r}{_suggest(name, (*KINDS, 'flaky'))}")


def _behaviour_from_mapping(data: Mapping[Any, Any], where: str, *, allow_times: bool) -> Behaviour:
    kinds = [key for key in data if key in KINDS]
    if "flaky" in data:
        raise BehaviourError(f"{where}: expected a behaviour that is not flaky, found a flaky step")
    if len(kinds) != 1:
        found = f"{len(kinds)}: {', '.join(kinds)}" if kinds else f"keys {', '.join(map(str, data)) or '(none)'}"
        hint = ""
        if not kinds:
            for key in data:
                if isinstance(key, str) and (hint := _suggest(key, KINDS)):
                    break
        raise BehaviourError(f"{where}: expected exactly one behaviour key ({', '.join(KINDS)}), found {found}{hint}")
    kind = kinds[0]
    allowed = (*_PARAMS.get(kind, ()), *(_COMMON_KEYS if allow_times else ("latency",)))
    params: dict[str, tuple[object, str]] = {}

    def take(key: object, value: object, at: str) -> None:
        if key not in allowed:
            if key == "times" and not allow_times:
                raise BehaviourError(f"{at}: put times on the flaky step, not on the behaviour inside it")
            raise BehaviourError(
                f"{at}: unknown key for {kind}; expected one of: {', '.join(sorted(allowed)) or '(none)'}"
                f"{_suggest(str(key), allowed)}"
            )
        if key in params:
            raise BehaviourError(f"{at}: {key} is given twice (inside {kind} and beside it); keep one")
        params[str(key)] = (value, at)

    arg = data[kind]
    if isinstance(arg, Mapping):
        for key, value in arg.items():
            take(key, value, f"{where}.{kind}.{key}")
    elif arg is not None:
        if kind == "http_error":
            take("status", arg, f"{where}.{kind}")
        else:
            raise BehaviourError(f"{where}.{kind}: expected nothing or a mapping of parameters, found {_show(arg)}")
    for key, value in data.items():
        if key != kind:
            take(key, value, f"{where}.{key}")

    fields: dict[str, Any] = {}
    for key, (value, at) in params.items():
        if key == "times":
            fields["count"] = _check_times(value, at)
        elif key == "latency":
            fields["latency"] = _check_seconds(value, at)
        elif key == "status":
            fields["status"] = _check_status(value, at)
        elif key == "retry_after":
            fields["retry_after"] = _check_seconds(value, at)
        elif key == "body":
            fields["body"] = _check_body(value, at)
        elif key == "brief":
            fields["brief_json"] = _check_brief(value, at)
    if kind == "http_error":
        fields.setdefault("status", 500)
    return Behaviour(cast(Kind, kind), **fields)


def _inner(data: object, where: str) -> Behaviour:
    """A behaviour inside a flaky step (no times, no flaky)."""
    if isinstance(data, Behaviour):
        if data.count is not None:
            raise BehaviourError(f"{where}: put times on the flaky step, not on the behaviour inside it")
        return data
    if isinstance(data, str):
        return _from_name(data, where)
    if isinstance(data, Mapping):
        return _behaviour_from_mapping(data, where, allow_times=False)
    raise BehaviourError(f"{where}: expected a behaviour that is not flaky ({_EXPECTED_NAME} or a mapping), found {_show(data)}")


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
    probability = _check_probability(data["probability"], f"{where}.probability")
    seed = _check_seed(data.get("seed", 0), f"{where}.seed")
    otherwise = _inner(data["otherwise"], f"{where}.otherwise") if "otherwise" in data else valid()
    count = _check_times(data["times"], f"{where}.times") if "times" in data else None
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
    raise BehaviourError(f"{where}: expected {_EXPECTED_NAME} or a mapping like {{http_error: 503}}, found {_show(data)}")


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
        steps = []
        for index, item in enumerate(data):
            at = f"{where}[{index}]"
            if isinstance(item, (list, tuple, Script)):
                raise BehaviourError(f"{at}: expected one behaviour (a name or a mapping), found {_show(item)}")
            steps.append(_step(item, at))
        return Script(tuple(steps))
    if isinstance(data, (str, Mapping, Behaviour, Flaky)):
        return Script((_step(data, where),))
    raise BehaviourError(
        f"{where}: expected {_EXPECTED_NAME}, a mapping like {{http_error: 503}}, or a list of them, found {_show(data)}"
    )


def _json_schema() -> dict[str, Any]:
    """The data format of :func:`parse_behaviours` as a JSON Schema with no ``$ref`` (so it embeds anywhere)."""
    seconds = {"type": "number", "minimum": 0}
    times = {"type": "integer", "minimum": 1}
    status = {"type": "integer", "minimum": 400, "maximum": 599}
    param_schemas: dict[str, dict[str, Any]] = {
        "brief": {"type": "object", "description": "fields that replace the generated brief's"},
        "status": status,
        "retry_after": {**seconds, "description": "seconds, sent as a Retry-After header"},
        "body": {"type": "string"},
    }
    name = {
        "type": "string",
        "anyOf": [{"enum": list(KINDS)}, {"pattern": "^http_[45][0-9][0-9]$"}],
        "description": "a behaviour by name; http_NNN is an HTTP error with that status",
    }

    def mapping(kind: str, *, with_times: bool) -> dict[str, Any]:
        extra = {key: param_schemas[key] for key in _PARAMS.get(kind, ())}
        common: dict[str, Any] = {"latency": {**seconds, "description": "seconds before the answer"}}
        if with_times:
            common["times"] = {**times, "description": "how many consecutive calls"}
        inner_object = {"type": "object", "additionalProperties": False, "properties": {**extra, **common}}
        arg: list[dict[str, Any]] = [{"type": "null"}, inner_object]
        if kind == "http_error":
            arg.insert(1, status)
        return {
            "type": "object",
            "required": [kind],
            "additionalProperties": False,
            "properties": {kind: {"anyOf": arg}, **extra, **common},
        }

    def behaviour(*, with_times: bool) -> dict[str, Any]:
        return {"anyOf": [name, {"oneOf": [mapping(kind, with_times=with_times) for kind in KINDS]}]}

    flaky_schema = {
        "type": "object",
        "required": ["flaky", "probability"],
        "additionalProperties": False,
        "properties": {
            "flaky": behaviour(with_times=False),
            "probability": {"type": "number", "minimum": 0, "maximum": 1},
            "seed": {"type": "integer", "description": "seed of random.Random; default 0"},
            "otherwise": behaviour(with_times=False),
            "times": times,
        },
    }
    step = {"anyOf": [name, {"oneOf": [*(mapping(kind, with_times=True) for kind in KINDS), flaky_schema]}]}
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


# ------------------------------------------------------------------------------------------ rendering


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a transport does with one call: answer (``response``), never answer (``timeout``), or drop it.

    ``status``/``headers``/``body`` matter for ``response`` only; ``latency`` is seconds to wait first.
    """

    kind: OutcomeKind
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    latency: float = 0.0

    @property
    def body_bytes(self) -> bytes:
        """Alias of ``body``."""
        return self.body


def valid_brief(call_index: int, model: str) -> dict[str, Any]:
    """A schema-valid brief that varies with ``call_index`` and ``model`` and depends on nothing else."""
    seed = zlib.crc32(model.encode("utf-8"))
    i = call_index + seed
    first = FAMILIES[i % len(FAMILIES)]
    second = FAMILIES[(i * 7 + 3) % len(FAMILIES)]
    families = [first] if second == first else [first, second]
    pool = [note for family in families for note in NOTES_BY_FAMILY[family]]
    notes = list(dict.fromkeys(pool[(i + k * 3) % len(pool)] for k in range(3)))
    longevity = LONGEVITY[i % len(LONGEVITY)]
    return {
        "description": f"A {' and '.join(families)} fragrance with {', '.join(notes)} ({model} #{call_index}).",
        "notes": notes,
        "families": families,
        "intensity": (call_index * 37 + seed) % 101,
        "longevity": longevity,
    }


def _brief_text(behaviour: Behaviour, call_index: int, model: str, *, indent: int | None = None) -> str:
    brief = valid_brief(call_index, model)
    if behaviour.brief_json is not None:
        brief.update(json.loads(behaviour.brief_json))
    return json.dumps(brief, ensure_ascii=False, indent=indent)


_JSON: Final = ("content-type", "application/json")


def _content(behaviour: Behaviour, call_index: int, model: str) -> str:
    kind = behaviour.kind
    if kind == "valid":
        return _brief_text(behaviour, call_index, model)
    if kind == "fenced":
        return f"Here is the brief you asked for:\n```json\n{_brief_text(behaviour, call_index, model, indent=2)}\n```"
    if kind == "prose":
        return f"Sure! Here is your brief: {_brief_text(behaviour, call_index, model)} Enjoy."
    if kind == "truncated":
        text = _brief_text(behaviour, call_index, model)
        return text[: len(text) // 2]
    if kind == "invalid_json":
        return INVALID_JSON_TEXT
    if kind == "schema_violation":
        return json.dumps(SCHEMA_VIOLATION)
    return ""  # empty


def _prompt_tokens(request: object) -> int:
    """A rough token count of the request's messages (4 characters a token), for a plausible ``usage``."""
    if not isinstance(request, Mapping) or not isinstance(request.get("messages"), list):
        return 0
    chars = sum(len(m["content"]) for m in request["messages"] if isinstance(m, Mapping) and isinstance(m.get("content"), str))
    return (chars + 3) // 4


def render(behaviour: Behaviour, call_index: int, model: str, *, request: object = None) -> Outcome:
    """The transport-neutral outcome of ``behaviour`` on call ``call_index`` to ``model``.

    ``request`` (the parsed request body, optional) only flavours the body: its ``model`` is echoed
    and its messages give ``usage.prompt_tokens``. Same arguments, same bytes.
    """
    kind = behaviour.kind
    latency = behaviour.latency
    if kind == "timeout":
        return Outcome("timeout", latency=latency)
    if kind == "connection_error":
        return Outcome("connection_error", latency=latency)
    if kind == "http_error":
        status = behaviour.status or 500
        headers: list[tuple[str, str]] = []
        if behaviour.body is None:
            error = {"message": f"fake {model}: HTTP {status}", "type": "server_error" if status >= 500 else "invalid_request_error", "code": status}
            body = json.dumps({"error": error}).encode()
            headers.append(_JSON)
        else:
            body = behaviour.body.encode()
            headers.append(_JSON if _is_json(behaviour.body) else ("content-type", "text/plain; charset=utf-8"))
        if behaviour.retry_after is not None:
            headers.append(("retry-after", f"{behaviour.retry_after:g}"))
        return Outcome("response", status, tuple(headers), body, latency)
    if kind == "malformed_body":
        text = MALFORMED_BODY if behaviour.body is None else behaviour.body
        content_type = "application/json" if _is_json(text) else "text/html; charset=utf-8"
        return Outcome("response", 200, (("content-type", content_type),), text.encode(), latency)
    content = _content(behaviour, call_index, model)
    echoed = request.get("model") if isinstance(request, Mapping) else None
    prompt_tokens = _prompt_tokens(request)
    completion_tokens = (len(content) + 3) // 4
    completion = {
        "id": f"chatcmpl-fake-{model}-{call_index}",
        "object": "chat.completion",
        "created": CREATED,
        "model": echoed if isinstance(echoed, str) else model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "length" if kind == "truncated" else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    try:
        body = json.dumps(completion, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate (an answer cut mid-emoji): servers send it as a \u escape
        body = json.dumps(completion).encode()
    return Outcome("response", 200, (_JSON,), body, latency)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------- bookkeeping


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call a fake model received: its 0-based ``index``, the parsed request body (None when not JSON),
    the behaviour it was scripted to get, and the outcome (``status`` None when no response was sent)."""

    index: int
    model: str
    request: Any
    behaviour: str
    outcome: OutcomeKind
    status: int | None


class ScriptBook:
    """Thread-safe scripts, call logs and unmatched requests of a set of fake models (shared by both transports).

    The lock guards bookkeeping only; transports wait and answer outside it.
    """

    def __init__(self, models: Iterable[str], *, label: str) -> None:
        self.models: tuple[str, ...] = tuple(dict.fromkeys(models))
        if not self.models:
            raise ValueError(f"{label}: expected at least one model name, found none")
        for model in self.models:
            if not isinstance(model, str) or not model:
                raise ValueError(f"{label}: expected model names as non-empty strings, found {model!r}")
        self.label = label
        self._lock = threading.Lock()
        self._scripts: dict[str, Script] = {m: Script() for m in self.models}
        self._cursors: dict[str, ScriptCursor] = {m: Script().cursor() for m in self.models}
        self._calls: dict[str, list[CallRecord]] = {m: [] for m in self.models}
        self._unmatched: list[str] = []

    def _known(self, model: str) -> None:
        if model not in self._scripts:
            raise ValueError(f"{self.label}: unknown model {model!r}; configured models: {', '.join(self.models)}")

    def set(self, model: str, *steps: object) -> None:
        """Replace ``model``'s script with ``steps`` (behaviours, flaky steps, a Script or plain data) and restart its call index."""
        self._known(model)
        if not steps:
            raise BehaviourError(f"{self.label}.set({model!r}): expected at least one behaviour, found none")
        where = f"{self.label}.set({model!r})"
        script = parse_behaviours(steps[0] if len(steps) == 1 else list(steps), where)
        cursor = script.cursor()
        with self._lock:
            self._scripts[model] = script
            self._cursors[model] = cursor
            self._calls[model] = []

    def script(self, model: str) -> Script:
        """The script ``model`` runs."""
        self._known(model)
        return self._scripts[model]

    def reset(self) -> None:
        """Every model back to ``valid()`` forever; call logs and unmatched requests cleared."""
        with self._lock:
            for model in self.models:
                self._scripts[model] = Script()
                self._cursors[model] = Script().cursor()
                self._calls[model] = []
            self._unmatched.clear()

    def take_call(self, model: str, request: object) -> tuple[int, Outcome]:
        """Advance ``model``'s script for one arriving call; log it and return its index and outcome.

        Rendering is pure and takes microseconds, so it happens under the lock: the log then always
        matches the order in which calls took their behaviours.
        """
        with self._lock:
            calls = self._calls[model]
            index = len(calls)
            behaviour = self._cursors[model].next()
            outcome = render(behaviour, index, model, request=request)
            calls.append(CallRecord(index, model, request, behaviour.kind, outcome.kind, outcome.status))
        return index, outcome

    def calls(self, model: str) -> list[CallRecord]:
        """The calls ``model`` received since its script was last set (a copy)."""
        self._known(model)
        with self._lock:
            return list(self._calls[model])

    def call_count(self, model: str) -> int:
        """How many calls ``model`` received since its script was last set."""
        self._known(model)
        with self._lock:
            return len(self._calls[model])

    def record_unmatched(self, description: str) -> None:
        """Note a request that no configured model answers (``"POST http://..."``)."""
        with self._lock:
            self._unmatched.append(description)

    @property
    def unmatched(self) -> list[str]:
        """Requests that matched no configured model, as ``"METHOD URL"`` (a copy)."""
        with self._lock:
            return list(self._unmatched)

    def check(self) -> None:
        """Raise :class:`UnmatchedRequestError` naming every request that matched no configured model."""
        unmatched = self.unmatched
        if not unmatched:
            return
        noun = "request" if len(unmatched) == 1 else "requests"
        lines = "\n  ".join(unmatched)
        separator = " " if len(unmatched) == 1 else "\n  "
        raise UnmatchedRequestError(
            f"{self.label}: {len(unmatched)} {noun} matched no configured model:{separator}{lines}\n"
            f"(configured models: {', '.join(self.models)})"
        )


def json_body(content: bytes) -> object:
    """A request's body as the call log records it: the parsed JSON, or None when it is not JSON."""
    try:
        return json.loads(content)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError: not a JSON body
        return None


class ScriptedModels:
    """The scripting and inspection API of a fake LLM (``set``, ``calls``, ``check``...), kept in one ScriptBook.

    Shared by both transports (``FaultyLLM``, ``FakeLLMServer``), so the two read alike; a subclass
    says in :meth:`_where` whether and where it is running, for its ``repr``.
    """

    def __init__(self, models: Iterable[str], *, label: str) -> None:
        self._book = ScriptBook(models, label=label)
        self.models: tuple[str, ...] = self._book.models

    def set(self, model: str, *steps: object) -> None:
        """Replace ``model``'s script (behaviours, ``flaky`` steps, a ``Script`` or plain data) and restart its call index."""
        self._book.set(model, *steps)

    def reset(self) -> None:
        """Every model back to ``valid()`` forever; call logs and unmatched requests cleared."""
        self._book.reset()

    def calls(self, model: str) -> list[CallRecord]:
        """The calls ``model`` received since its script was last set."""
        return self._book.calls(model)

    def call_count(self, model: str) -> int:
        """How many calls ``model`` received since its script was last set."""
        return self._book.call_count(model)

    @property
    def unmatched(self) -> list[str]:
        """Requests that matched no configured model, as ``"METHOD URL"``."""
        return self._book.unmatched

    def check(self) -> None:
        """Raise :class:`UnmatchedRequestError` naming every request that matched no configured model."""
        self._book.check()

    def _where(self) -> str:
        """Where the fake is, for ``repr``: ``"stopped"``, ``"started"``, ``"127.0.0.1:8000"``..."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(models={list(self.models)!r}, {self._where()})"
