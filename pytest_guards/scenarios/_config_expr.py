"""``${config:circuit_breaker.timeout + 1}``: numbers in scenario files taken from the config under test.

A scenario that says "advance past the breaker timeout" must hold for a team whose timeout is 120 s,
not only for the reference 60 s. So a scalar in a scenario file may be one expression: ``${...}``
around arithmetic (``+ - * / //``, unary minus, parentheses, ``min``, ``max``, ``ceil``, ``floor``, and
``backoff(base, cap, retries)``: the total exponential backoff of that many re-asks, without jitter)
over numbers and ``config:dotted.key`` references. It is parsed and checked when the file is loaded
(syntax, known keys, a length cap) and evaluated when the scenario runs, against the effective
config of the target (the in-process config, or a live service's ``/health/guards``).

What this module must not do: evaluate anything but that arithmetic (no names, attributes,
subscripts or calls beyond the four functions: it never reaches Python's ``eval``), or read a
config itself; the caller hands it a lookup.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pytest_guards.scenarios._expressions import MISSING

__all__ = ["ConfigExpression", "ExpressionError", "is_expression", "parse_expression", "walk_expressions"]

MAX_LENGTH: Final = 200
_WHOLE = re.compile(r"\A\$\{(?!env:)(.*)\}\Z", re.DOTALL)
_REF = re.compile(r"config:([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)")
_MAX_BACKOFF_STEPS: Final = 100


def _backoff(base: float, cap: float, retries: float) -> float:
    """The total wait of ``retries`` re-asks with exponential backoff: sum of min(base * 2**i, cap), no jitter."""
    if retries != int(retries) or not 0 <= retries <= _MAX_BACKOFF_STEPS:
        raise ExpressionError(f"backoff(): the number of re-asks is a whole number 0-{_MAX_BACKOFF_STEPS}")
    total: float = sum(min(base * 2.0**i, cap) for i in range(int(retries)))
    return total


_FUNCTIONS: Final[Mapping[str, Callable[..., float]]] = {
    "min": min,
    "max": max,
    "ceil": math.ceil,
    "floor": math.floor,
    "backoff": _backoff,
}
_ARITY: Final[Mapping[str, int]] = {"ceil": 1, "floor": 1, "backoff": 3}
_BINARY: Final[Mapping[type[ast.operator], Callable[[float, float], float]]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
}


class ExpressionError(ValueError):
    """An expression that cannot be parsed or evaluated; the message says why, never echoing more than the key."""


def is_expression(value: object) -> bool:
    """True for a string that is one ``${...}`` expression (``${env:...}`` is the loader's, not ours)."""
    return isinstance(value, str) and _WHOLE.match(value.strip()) is not None


@dataclass(frozen=True, slots=True)
class ConfigExpression:
    """One parsed ``${...}``: evaluate it with a lookup of the config under test."""

    source: str
    refs: tuple[str, ...]
    _tree: ast.expr

    def evaluate(self, lookup: Callable[[str], object]) -> int | float:
        """The value with every ``config:`` key read through ``lookup`` (``MISSING`` when absent).

        Raises ExpressionError if it cannot be computed.
        """
        values: list[float] = []
        for key in self.refs:
            value = lookup(key)
            if value is MISSING:
                raise ExpressionError(f"{self.source}: the config under test has no key {key}")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ExpressionError(f"{self.source}: config key {key} is not a number")
            values.append(value)
        try:
            result = _evaluate(self._tree, values)
        except ZeroDivisionError:
            raise ExpressionError(f"{self.source}: division by zero") from None
        except OverflowError:
            raise ExpressionError(f"{self.source}: the result is too large") from None
        if isinstance(result, bool) or not isinstance(result, (int, float)):
            raise ExpressionError(f"{self.source}: the result is not a number")
        if isinstance(result, float) and not math.isfinite(result):
            raise ExpressionError(f"{self.source}: the result is not a finite number")
        return result

    def __str__(self) -> str:
        return self.source


def parse_expression(text: str, known_key: Callable[[str], bool] | None = None) -> ConfigExpression:
    """Parse ``${...}``; ExpressionError naming the problem (syntax, an unknown key, a forbidden construct)."""
    match = _WHOLE.match(text.strip())
    if match is None:
        raise ExpressionError("an expression is a whole value of the form ${...}")
    body = match.group(1)
    if len(body) > MAX_LENGTH:
        raise ExpressionError(f"an expression is at most {MAX_LENGTH} characters, found {len(body)}")
    refs: list[str] = []

    def placeholder(ref: re.Match[str]) -> str:
        refs.append(ref.group(1))
        return f" _ref{len(refs) - 1} "

    python = _REF.sub(placeholder, body)
    for key in refs:
        if known_key is not None and not known_key(key):
            raise ExpressionError(f"${{...}} names config:{key}, which is not a config key")
    try:
        tree = ast.parse(python.strip(), mode="eval").body
    except SyntaxError:
        raise ExpressionError("${...} is not valid arithmetic (numbers, config:key, + - * / //, min, max, ceil, floor)") from None
    problem = _check(tree, len(refs))
    if problem is not None:
        raise ExpressionError(problem)
    return ConfigExpression(text.strip(), tuple(refs), tree)


def walk_expressions(
    data: Any, on_expression: Callable[[tuple[str | int, ...], str], None], path: tuple[str | int, ...] = ()
) -> None:
    """Call ``on_expression(path, text)`` for every ``${...}`` scalar in nested dicts and lists."""
    if isinstance(data, dict):
        for key, value in data.items():
            walk_expressions(value, on_expression, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            walk_expressions(value, on_expression, (*path, index))
    elif is_expression(data):
        on_expression(path, data)


def _check(node: ast.expr, ref_count: int) -> str | None:
    """None when ``node`` uses only the allowed arithmetic, else what is not allowed."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            return "${...} may hold numbers only (no strings, booleans or null)"
        return None
    if isinstance(node, ast.Name):
        ok = node.id.startswith("_ref") and node.id[4:].isdigit() and int(node.id[4:]) < ref_count
        return None if ok else "${...} names a config key as config:section.key"
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            return "${...} allows unary + and - only"
        return _check(node.operand, ref_count)
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            return "${...} allows + - * / // only"
        return _check(node.left, ref_count) or _check(node.right, ref_count)
    if isinstance(node, ast.Call):
        return _check_call(node, ref_count)
    return "${...} allows numbers, config:key, + - * / //, min, max, ceil, floor and backoff only"


def _check_call(node: ast.Call, ref_count: int) -> str | None:
    """:func:`_check` for a call: one of the allowed functions, with its arity, on allowed arguments."""
    if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords or not node.args:
        return "${...} calls min(...), max(...), ceil(x), floor(x) or backoff(base, cap, retries) only"
    arity = _ARITY.get(node.func.id)
    if arity is not None and len(node.args) != arity:
        return f"{node.func.id}() takes {arity} argument(s)"
    for arg in node.args:
        problem = _check(arg, ref_count)
        if problem is not None:
            return problem
    return None


def _evaluate(node: ast.expr, refs: list[float]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return refs[int(node.id[4:])]
    if isinstance(node, ast.UnaryOp):
        value = _evaluate(node.operand, refs)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, refs), _evaluate(node.right, refs))
    assert isinstance(node, ast.Call)
    assert isinstance(node.func, ast.Name)
    return _FUNCTIONS[node.func.id](*(_evaluate(arg, refs) for arg in node.args))
