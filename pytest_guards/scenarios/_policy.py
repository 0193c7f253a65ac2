"""The checklist's policy as data: the bounds each config value must meet, with the reason for each.

``policy.yaml`` ships beside the checklist scenarios; for each checklist item it maps a config key to
its bound (the scenario operators: ``eq``, ``ge``, ``le``, ``gt``, ``lt``, ``range``, ``in``,
``regex``) and a one-line ``reason``. A team may pass its own policy file: its bounds replace the
shipped ones key by key, and any bound that lets through a value the shipped one refused is
reported as *loosened* (in the verdict and the report) rather than silently accepted.

What this module must not do: read the config under test or decide the verdict; it only says what the
bounds are, where they were written, and which ones a team loosened.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fragrance_ai.yaml_positions import KeyPath, Position, format_path, load_yaml_with_positions
from pytest_guards.scenarios._expressions import MISSING, check, describe, lookup, show
from pytest_guards.scenarios._schema import CHECKLIST_ITEMS

__all__ = ["CHECKLIST_DIR", "POLICY_FILE", "Bound", "Loosened", "Policy", "PolicyError", "load_policy", "shipped_policy"]

#: the checklist scenarios and policy shipped in the package (``fragrance-ai verify`` runs them by default)
CHECKLIST_DIR: Final = Path(__file__).resolve().parent.parent / "checklist"
POLICY_FILE: Final = CHECKLIST_DIR / "policy.yaml"
_NUMERIC_OPS: Final = ("ge", "le", "gt", "lt", "range")
_OPS: Final = (*_NUMERIC_OPS, "eq", "ne", "in", "regex")
_MAX_BYTES: Final = 256 * 1024


class PolicyError(Exception):
    """A policy file that cannot be used; ``issues`` are ``file:line: key: message`` lines."""

    def __init__(self, issues: list[str]) -> None:
        super().__init__("\n".join(issues))
        self.issues = issues


@dataclass(frozen=True, slots=True)
class Bound:
    """One config key's bound: ``ops`` as in scenario expectations, and why it is there."""

    item: str
    key: str
    ops: Mapping[str, Any]
    reason: str
    where: str  # file:line

    def spec(self) -> dict[str, Any]:
        return dict(self.ops)

    def judge(self, settings: dict[str, Any]) -> str | None:
        """None when the effective ``settings`` meet this bound, else the report line (key, bound, found, reason)."""
        actual = lookup(settings, self.key)
        if actual is MISSING:
            return f"config {self.key}: expected {describe(self.spec())}, but it is absent (policy: {self.reason}; {self.where})"
        problem = check(self.spec(), actual)
        if problem is None:
            return None
        return f"config {self.key}: expected {problem}, found {show(actual)} (policy: {self.reason}; {self.where})"


@dataclass(frozen=True, slots=True)
class Loosened:
    """A team bound that admits a value the shipped policy refuses."""

    key: str
    shipped: Bound
    team: Bound


@dataclass(frozen=True)
class Policy:
    """Bounds by checklist item, in file order, and the team bounds that loosened the shipped ones."""

    bounds: tuple[Bound, ...]
    sources: tuple[str, ...]
    loosened: tuple[Loosened, ...] = field(default=())

    def for_item(self, item: str) -> tuple[Bound, ...]:
        return tuple(b for b in self.bounds if b.item == item)

    def with_team(self, team: Policy) -> Policy:
        """The shipped bounds with ``team``'s replacing them key by key, and what that loosened."""
        by_key = {b.key: b for b in self.bounds}
        loosened = [
            Loosened(b.key, by_key[b.key], b) for b in team.bounds if b.key in by_key and _looser(b.ops, by_key[b.key].ops)
        ]
        merged = {**by_key, **{b.key: b for b in team.bounds}}
        return Policy(tuple(merged.values()), (*self.sources, *team.sources), tuple(loosened))

    def describe_loosened(self) -> list[str]:
        """One line per loosened bound: the team's bound, the shipped one, and where the team wrote it."""
        return [
            f"{x.key} {describe(x.team.spec())} (shipped: {describe(x.shipped.spec())}; {x.team.where})" for x in self.loosened
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources": list(self.sources),
            "bounds": [
                {"item": b.item, "key": b.key, "bound": b.spec(), "reason": b.reason, "where": b.where} for b in self.bounds
            ],
            "loosened": [
                {"key": x.key, "shipped": x.shipped.spec(), "team": x.team.spec(), "where": x.team.where} for x in self.loosened
            ],
        }


@functools.cache
def shipped_policy() -> Policy:
    """The policy shipped with the checklist (read once); its bounds say ``shipped policy.yaml:LINE``."""
    return load_policy(POLICY_FILE, label="shipped policy.yaml")


def load_policy(path: Path, *, label: str | None = None) -> Policy:
    """Read and check a policy file; PolicyError with every problem at once, each with file:line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read the policy file ({exc.strerror or type(exc).__name__})"]) from None
    if len(raw) > _MAX_BYTES:
        raise PolicyError([f"{path}: a policy file is at most {_MAX_BYTES} bytes, found {len(raw)}"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    data, positions, problems = load_yaml_with_positions(text)
    issues = [f"{path}:{p.position.line if p.position else 1}: {format_path(p.path) or '(file)'}: {p.message}" for p in problems]
    if issues:
        raise PolicyError(issues)
    bounds = list(_bounds(path, data, positions, issues))
    if issues:
        raise PolicyError(issues)
    if label is not None:
        bounds = [dataclasses.replace(b, where=label + b.where[len(str(path)):]) for b in bounds]
    return Policy(tuple(bounds), (label or str(path),))


def _bounds(path: Path, data: Any, positions: dict[KeyPath, Position], issues: list[str]) -> Iterable[Bound]:
    def report(at: KeyPath, message: str) -> None:
        line = positions.get(at, positions.get(at[:-1], Position(1, 1))).line
        issues.append(f"{path}:{line}: {format_path(at) or '(file)'}: {message}")

    if not isinstance(data, dict):
        report((), "expected a mapping of checklist items (json_guard, circuit_breaker, cache, health_check)")
        return
    for item, keys in data.items():
        if item not in CHECKLIST_ITEMS:
            report((item,), f"unknown checklist item; expected one of {', '.join(CHECKLIST_ITEMS)}")
            continue
        if not isinstance(keys, dict):
            report((item,), "expected a mapping of config keys to bounds")
            continue
        for key, entry in keys.items():
            at: KeyPath = (item, key)
            problem = _entry_problem(key, entry)
            if problem is not None:
                report(at, problem)
                continue
            ops = {op: value for op, value in entry.items() if op != "reason"}
            yield Bound(item, key, ops, entry["reason"].strip(), f"{path}:{positions.get(at, Position(1, 1)).line}")


def _entry_problem(key: Any, entry: Any) -> str | None:
    if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
        return "expected a dotted config key such as json_guard.max_retries"
    if not isinstance(entry, dict):
        return "expected a mapping with a bound (eq, ge, le, gt, lt, range, in, regex) and a reason"
    reason = entry.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        return "every bound needs a one-line reason: why the checklist asks for it"
    ops = [op for op in entry if op != "reason"]
    if not ops:
        return "expected at least one bound (eq, ge, le, gt, lt, range, in, regex)"
    for op in ops:
        if op not in _OPS:
            return f"unknown bound {op!r}; expected one of {', '.join(_OPS)}"
        problem = _value_problem(op, entry[op])
        if problem is not None:
            return f"{op}: {problem}"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _value_problem(op: str, value: Any) -> str | None:
    if op == "range":
        ok = isinstance(value, list) and len(value) == 2 and all(map(_is_number, value)) and value[0] <= value[1]
        return None if ok else "expected [low, high] with low <= high"
    if op in _NUMERIC_OPS:
        return None if _is_number(value) else "expected a finite number"
    if op == "in":
        return None if isinstance(value, list) and value else "expected a non-empty list"
    if op == "regex":
        return None if isinstance(value, str) else "expected a regular expression"
    return None


# --------------------------------------------------------------------- is a team bound looser?

_Interval = tuple[float, bool, float, bool]  # low, low included, high, high included


def _interval(ops: Mapping[str, Any]) -> _Interval | None:
    """The numbers ``ops`` admit as one interval, or None when ``ops`` is not purely numeric."""
    low, low_in, high, high_in = -math.inf, True, math.inf, True
    for op, value in ops.items():
        if op == "eq" and _is_number(value):
            op, value = "range", [value, value]
        if op not in _NUMERIC_OPS:
            return None
        candidates = [("ge", value[0]), ("le", value[1])] if op == "range" else [(op, value)]
        for kind, number in candidates:
            if kind in ("ge", "gt") and (number > low or (number == low and kind == "gt")):
                low, low_in = float(number), kind == "ge"
            if kind in ("le", "lt") and (number < high or (number == high and kind == "lt")):
                high, high_in = float(number), kind == "le"
    return low, low_in, high, high_in


def _inside(inner: _Interval, outer: _Interval) -> bool:
    (lo, lo_in, hi, hi_in), (olo, olo_in, ohi, ohi_in) = inner, outer
    low_ok = lo > olo or (lo == olo and (olo_in or not lo_in))
    high_ok = hi < ohi or (hi == ohi and (ohi_in or not hi_in))
    return low_ok and high_ok


def _values(ops: Mapping[str, Any]) -> list[Any] | None:
    if set(ops) == {"eq"}:
        return [ops["eq"]]
    if set(ops) == {"in"}:
        return list(ops["in"])
    return None


def _looser(team: Mapping[str, Any], shipped: Mapping[str, Any]) -> bool:
    """True when ``team`` may admit a value ``shipped`` refuses (unknown comparisons count as looser)."""
    team_interval, shipped_interval = _interval(team), _interval(shipped)
    if team_interval is not None and shipped_interval is not None:
        return not _inside(team_interval, shipped_interval)
    team_values, shipped_values = _values(team), _values(shipped)
    if team_values is not None and shipped_interval is not None:
        return not all(_is_number(v) and _inside((v, True, v, True), shipped_interval) for v in team_values)
    if team_values is not None and shipped_values is not None:
        return any(not any(_same(v, s) for s in shipped_values) for v in team_values)
    return dict(team) != dict(shipped)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b
