"""Expressions of scenario files: the expectation operators of ``expect``, and ``${...}`` substitution.

``check(spec, actual)`` says whether a value satisfies a check (a scalar means ``eq``; a mapping names
operators, all of which must hold) and, if not, what was expected; ``lookup`` reads dotted paths;
``substitute`` replaces ``${env:NAME}`` in strings. New ``${...}`` sources belong here.

What this module must not do: raise for a value it cannot compare (say so instead), or read anything
but what it is given (the environment is passed in).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from fragrance_ai.yaml_positions import KeyPath

__all__ = ["MISSING", "Judge", "check", "describe", "lookup", "show", "substitute"]

#: what ``lookup`` returns for a path that is not there
MISSING: Final = object()
#: how the comparison operators read in a report (``in``, ``range`` and ``regex`` read as words)
_SYMBOLS: Final = {"eq": "==", "ne": "!=", "ge": ">=", "le": "<=", "gt": ">", "lt": "<"}
_ENV = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_COMPARE: Final[Mapping[str, Callable[[float, Any], bool]]] = {
    "ge": lambda number, want: bool(number >= want),
    "le": lambda number, want: bool(number <= want),
    "gt": lambda number, want: bool(number > want),
    "lt": lambda number, want: bool(number < want),
    "range": lambda number, want: float(want[0]) <= number <= float(want[1]),
}


def show(value: Any) -> str:
    """A value as a report shows it (YAML spelling: true, false, null)."""
    if isinstance(value, str):
        return repr(value)
    return str(value).replace("True", "true").replace("False", "false").replace("None", "null")


def check(spec: Any, actual: Any) -> str | None:
    """``None`` when ``actual`` satisfies ``spec`` (a scalar means ``eq``), else what was expected."""
    try:
        return _check(spec, actual)
    except (OverflowError, TypeError, ValueError) as exc:  # say a 400-digit number: not comparable, not a crash
        return f"{describe(spec)} (cannot compare: {exc})"


def _check(spec: Any, actual: Any) -> str | None:
    if not isinstance(spec, dict):
        return None if _equal(actual, spec) else f"== {show(spec)}"
    failures = []
    for op, want in spec.items():
        if not _holds(op, want, actual):
            failures.append(_describe(op, want))
    return " and ".join(failures) if failures else None


def describe(spec: Any) -> str:
    """What ``spec`` asks for, in words: ``>= 3``, ``one of [...]``, ``== 'open'``."""
    if not isinstance(spec, dict):
        return f"== {show(spec)}"
    return " and ".join(_describe(op, want) for op, want in spec.items())


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected or (type(actual) is type(expected) and actual == expected)
    if isinstance(actual, (int, float)) and isinstance(expected, (int, float)):
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9)
    return bool(actual == expected)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _holds(op: str, want: Any, actual: Any) -> bool:
    if op == "eq":
        return _equal(actual, want)
    if op == "ne":
        return not _equal(actual, want)
    if op == "in":
        return any(_equal(actual, w) for w in want)
    if op == "regex":
        return actual is not None and re.search(want, str(actual)) is not None
    number = _number(actual)
    return number is not None and _COMPARE[op](number, want)


def _describe(op: str, want: Any) -> str:
    symbol = _SYMBOLS.get(op)
    if symbol is not None:
        return f"{symbol} {show(want)}"
    if op == "in":
        return "one of [" + ", ".join(show(w) for w in want) + "]"
    if op == "range":
        return f"in range [{show(want[0])}, {show(want[1])}]"
    return f"matching /{want}/"


def lookup(data: Any, dotted: str) -> Any:
    """``models.qwen.reason`` in nested dicts/lists; ``MISSING`` when absent."""
    current = data
    for part in dotted.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return MISSING
    return current

class Judge:
    """Collects the failed checks of one ``expect`` step as report lines."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def __call__(self, label: str, spec: Any, actual: Any) -> None:
        if actual is MISSING:
            self.failures.append(f"{label}: expected {describe(spec)}, but it is absent")
            return
        problem = check(spec, actual)
        if problem is not None:
            self.failures.append(f"{label}: expected {problem}, found {show(actual)}")

    def fail(self, line: str) -> None:
        self.failures.append(line)


def substitute(value: Any, path: KeyPath, env: Mapping[str, str], report: Callable[[KeyPath, str], None]) -> Any:
    """Replace ``${env:NAME}`` (or ``${env:NAME:-default}``) in every string; nothing else is a variable."""
    if isinstance(value, str) and "${" in value:
        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return str(env[name])
            if default is not None:
                return default
            report(path, f"environment variable {name} is not set (write ${{env:{name}:-default}} for a default)")
            return ""

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: substitute(v, (*path, k), env, report) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, (*path, i), env, report) for i, v in enumerate(value)]
    return value
