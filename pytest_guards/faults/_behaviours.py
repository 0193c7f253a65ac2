"""The behaviour model of the fake LLMs: how one call goes wrong (or right), and scripts of such steps.

A :class:`Behaviour` says how one chat-completions call goes; :class:`Flaky` fails at random (seeded);
a :class:`Script` is one model's ordered steps and :class:`ScriptCursor` walks it call by call. The
constructors (:func:`valid`, :func:`http_error`, ...) check their arguments with the same checks the
data format (``_format``) uses, so a value means the same thing in Python and in YAML.

What this module must not do: any I/O, sleeping or reading the clock (transports wait; a behaviour
only says how long), or use unseeded randomness.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

__all__ = [
    "DEFAULT_BEHAVIOUR",
    "KINDS",
    "Behaviour",
    "BehaviourError",
    "Flaky",
    "Kind",
    "Script",
    "ScriptCursor",
    "Step",
    "UnmatchedRequestError",
    "check_body",
    "check_brief",
    "check_bytes",
    "check_probability",
    "check_seconds",
    "check_seed",
    "check_status",
    "check_times",
    "connection_error",
    "cut_stream",
    "empty",
    "fenced",
    "finish_length",
    "flaky",
    "http_error",
    "invalid_json",
    "malformed_body",
    "prose",
    "schema_violation",
    "show_value",
    "stall",
    "timeout",
    "truncated",
    "valid",
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
    "cut_stream",
    "stall",
    "finish_length",
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
    "cut_stream",
    "stall",
    "finish_length",
)


class BehaviourError(ValueError):
    """A behaviour or scenario entry that cannot be used; the message names where and what was expected."""


class UnmatchedRequestError(AssertionError):
    """Requests reached a fake LLM that no configured model answers (raised by ``check()``, never in the client)."""


# ----------------------------------------------------------------------------------- argument checks


def show_value(value: object) -> str:
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


def check_times(value: object, where: str) -> int:
    times = _whole(value)
    if times is None or times < 1:
        raise BehaviourError(f"{where}: expected a whole number >= 1, found {show_value(value)}")
    return times


def check_seconds(value: object, where: str) -> float:
    seconds = _number(value)
    if seconds is None or seconds < 0:
        raise BehaviourError(f"{where}: expected seconds >= 0, found {show_value(value)}")
    return seconds


def check_status(value: object, where: str) -> int:
    status = _whole(value)
    if status is None or not 400 <= status <= 599:
        raise BehaviourError(f"{where}: expected an HTTP status 400-599, found {show_value(value)}")
    return status


def check_probability(value: object, where: str) -> float:
    probability = _number(value)
    if probability is None or not 0.0 <= probability <= 1.0:
        raise BehaviourError(f"{where}: expected a probability from 0 to 1, found {show_value(value)}")
    return probability


def check_seed(value: object, where: str) -> int:
    seed = _whole(value)
    if seed is None:
        raise BehaviourError(f"{where}: expected a whole number, found {show_value(value)}")
    return seed


def check_bytes(value: object, where: str) -> int:
    count = _whole(value)
    if count is None or count < 0:
        raise BehaviourError(f"{where}: expected a whole number of bytes >= 0, found {show_value(value)}")
    return count


def check_body(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise BehaviourError(f"{where}: expected a string, found {show_value(value)}")
    return value


def check_brief(value: object, where: str) -> str:
    """The brief override as canonical JSON text (frozen, hashable, and proven serialisable)."""
    if not isinstance(value, Mapping):
        raise BehaviourError(f"{where}: expected a mapping of brief fields, found {show_value(value)}")
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
    #: ``cut_stream``: bytes of the answer sent before the connection drops
    after_bytes: int | None = None
    #: ``stall``: seconds of silence between chunks
    stall: float | None = None

    def times(self, n: int) -> Behaviour:
        """This behaviour for ``n`` consecutive calls."""
        return dataclasses.replace(self, count=check_times(n, f"{self.kind}().times({n!r})"))

    def after(self, seconds: float) -> Behaviour:
        """This behaviour, answered ``seconds`` after the request arrives (virtual with respx, real with the server)."""
        return dataclasses.replace(self, latency=check_seconds(seconds, f"{self.kind}().after({seconds!r})"))

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
        if self.after_bytes is not None:
            args.append(f"after_bytes={self.after_bytes}")
        if self.stall is not None:
            args.append(f"seconds={self.stall:g}")
        text = f"{self.kind}({', '.join(args)})"
        if self.count is not None:
            text += f".times({self.count})"
        if self.latency:
            text += f".after({self.latency:g})"
        return text


def valid(brief: Mapping[str, Any] | None = None) -> Behaviour:
    """A schema-valid brief (varied by call index); ``brief`` fields replace the generated ones."""
    return Behaviour("valid", brief_json=None if brief is None else check_brief(brief, "valid(brief=...)"))


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
        status=check_status(status, where),
        retry_after=None if retry_after is None else check_seconds(retry_after, f"{where}: retry_after"),
        body=None if body is None else check_body(body, f"{where}: body"),
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
    return Behaviour("malformed_body", body=None if body is None else check_body(body, "malformed_body(body=...)"))


def cut_stream(after_bytes: int = 0) -> Behaviour:
    """A valid answer whose connection drops after ``after_bytes`` bytes of the body (mid-stream when streamed)."""
    return Behaviour("cut_stream", after_bytes=check_bytes(after_bytes, f"cut_stream(after_bytes={after_bytes!r})"))


def stall(seconds: float) -> Behaviour:
    """A valid answer that goes silent for ``seconds`` between chunks (between every SSE chunk when streamed;
    between the two halves of the body when not)."""
    return Behaviour("stall", stall=check_seconds(seconds, f"stall(seconds={seconds!r})"))


def finish_length() -> Behaviour:
    """A valid brief cut at the request's ``max_tokens`` (4 characters a token; always short of the whole
    brief), with ``finish_reason: "length"`` and ``usage.completion_tokens`` = the limit."""
    return Behaviour("finish_length")


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
        return dataclasses.replace(self, count=check_times(n, f"flaky(...).times({n!r})"))

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
            raise BehaviourError(f"{where}: {label}: expected a behaviour that is not flaky, found {show_value(inner)}")
        if inner is not None and inner.count is not None:
            raise BehaviourError(f"{where}: {label}: put .times() on the flaky step, not on the behaviour inside it")
    return Flaky(
        behaviour,
        check_probability(probability, f"{where}: probability"),
        check_seed(seed, f"{where}: seed"),
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
                raise BehaviourError(f"Script.of(...)[{index}]: expected a behaviour or flaky step, found {show_value(step)}")
        return cls(tuple(steps))

    def cursor(self) -> ScriptCursor:
        """A fresh position at the start of the script (flaky steps get fresh seeded generators)."""
        return ScriptCursor(self)

    def __repr__(self) -> str:
        return f"Script({', '.join(map(repr, self.steps))})"


class ScriptCursor:
    """Walks a script call by call. Not thread-safe on its own: :class:`ScriptBook` serialises it."""

    __slots__ = ("_rngs", "_step", "_steps", "_used")

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
