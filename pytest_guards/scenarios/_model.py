"""Scenario files: load, substitute ``${env:NAME}``, validate, and build a Scenario.

Numbers written as ``${config:...}`` expressions are parsed and checked at load, validated with a
stand-in value, and filled in from the config under test by :func:`resolve_scenario` before a run.

The file is validated against the scenario schema, except the LLM behaviours in it, which the fault
package's one validator (``parse_behaviours``) reads once into scripts. Every problem in a file is
reported at once with file, line, column and key path; nothing here raises anything else for bad
input. Running scenarios is ``_run``'s job.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import jsonschema

from fragrance_ai.config_loader import default_config_path, load_config
from fragrance_ai.yaml_positions import KeyPath, Position, decode_yaml, format_path, load_yaml_with_positions
from pytest_guards.faults import BehaviourError, Script, parse_behaviours
from pytest_guards.scenarios._config_expr import ConfigExpression, ExpressionError, parse_expression, walk_expressions
from pytest_guards.scenarios._expressions import lookup, substitute
from pytest_guards.scenarios._schema import SCENARIO_SCHEMA

__all__ = ["Problem", "Scenario", "ScenarioFileError", "Step", "load_scenario", "resolve_scenario"]

#: what stands in for a ``${config:...}`` value while the file is validated at load
_STAND_IN: Final = 1

_VALIDATOR: Final = jsonschema.Draft202012Validator(SCENARIO_SCHEMA)
#: scenario paths -> the scripts read from the LLM behaviours there (``given.llm.qwen``, ``steps.3.llm.qwen``)
_Scripts = dict[KeyPath, Script]
_Report = Callable[[KeyPath, str], None]
#: what a live target (a running service reached over HTTP) cannot do
_IN_PROCESS_STEPS: Final = {
    "advance": "move virtual time",
    "llm": "script LLM faults",
    "cache": "reach the cache",
    "network": "inject network faults",
    "wait": "wait in real time",
    "traffic": "move virtual time between briefs",
}
_IN_PROCESS_EXPECT: Final = {
    "config": "the local config",
    "calls": "LLM call logs",
    "call_log": "LLM call logs",
    "requests": "the requests its models received",
    "elapsed": "virtual time",
    "rates": "a traffic step's tally",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a scenario file."""

    file: str
    line: int | None
    column: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ScenarioFileError(Exception):
    """A scenario file is invalid; ``problems`` lists every mistake with its position."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.column or 0))
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a scenario, with where it is written."""

    kind: str
    value: Any
    path: KeyPath
    line: int
    steps: tuple[Step, ...] = ()  # a repeat's body
    #: an ``llm`` step's behaviours as written (what a live run sends to the fake LLM's control plane)
    spec: Any = None


@dataclass(frozen=True, slots=True)
class Scenario:
    id: str
    title: str
    checklist: str
    target: str
    markers: tuple[str, ...]
    config: dict[str, Any]
    given_mode: str | None
    given_llm: dict[str, Script]
    steps: tuple[Step, ...]
    requires: tuple[str, ...]
    given_network: dict[str, Any]
    file: Path
    line: int
    positions: dict[KeyPath, Position] = field(repr=False)
    #: systems sharing one Redis and one clock (1: the usual single system)
    replicas: int = 1
    #: ``${config:...}`` expressions by where they are written, and the file's data they sit in
    expressions: dict[KeyPath, ConfigExpression] = field(default_factory=dict, repr=False)
    data: dict[str, Any] = field(default_factory=dict, repr=False)
    #: ``given.llm`` as written (what a live run sends to the fake LLM's control plane)
    given_llm_spec: dict[str, Any] = field(default_factory=dict, repr=False)

    def line_of(self, path: KeyPath) -> int:
        """The line of ``path`` (or of its closest written ancestor)."""
        while path:
            if path in self.positions:
                return self.positions[path].line
            path = path[:-1]
        return self.line

    @property
    def live_capable(self) -> bool:
        return self.target in ("live", "both")

    @property
    def needs_toxiproxy(self) -> bool:
        """Runs the real service on a socket, its models behind Toxiproxy, in real time (in process)."""
        return "toxiproxy" in self.requires and self.target == "in_process"

    @property
    def network_names(self) -> frozenset[str]:
        """The proxies its ``network`` faults name: models, or ``redis`` (the service's shared state)."""
        names = set(self.given_network)
        for step in _walk(self.steps):
            if step.kind == "network" and isinstance(step.value, dict):
                names.update(step.value)
        return frozenset(names)

    @property
    def injects_live_faults(self) -> bool:
        """A live scenario that scripts the canary's models (control plane) or its network (Toxiproxy)."""
        return self.target == "live" and bool(self.requires)


def load_scenario(path: Path, environ: dict[str, str] | None = None) -> Scenario:
    """Read and validate one scenario file; raises :class:`ScenarioFileError` listing every problem."""
    name = str(path)
    try:
        text, undecodable = decode_yaml(path.read_bytes())
    except OSError as exc:
        raise ScenarioFileError(name, [Problem(name, None, None, "", f"cannot read: {exc}")]) from None
    data, positions, yaml_problems = load_yaml_with_positions(text) if undecodable is None else (None, {}, [undecodable])
    problems = [_problem(name, positions, p.path, p.message, p.position) for p in yaml_problems]
    if data is None:
        raise ScenarioFileError(name, problems or [Problem(name, 1, 1, "", "the file is empty")])
    if not isinstance(data, dict):
        raise ScenarioFileError(name, [Problem(name, 1, 1, "", "a scenario file holds one mapping (id, title, ...)")])

    def report(path_: KeyPath, message: str) -> None:
        problems.append(_problem(name, positions, path_, message))

    data = substitute(data, (), os.environ if environ is None else environ, report)
    expressions = _expressions(data, report)
    raw, data = data, _filled(data, dict.fromkeys(expressions, _STAND_IN))
    scripts = _validate(data, report)
    if problems:
        raise ScenarioFileError(name, problems)
    _check_patterns(data, (), report)
    steps = _steps(data["steps"], ("steps",), positions, scripts)
    if data.get("target", "in_process") in ("live", "both"):
        _check_live(data, steps, report)
    _check_time(data, steps, report)
    _check_replicas(data, steps, report)
    if problems:
        raise ScenarioFileError(name, problems)
    scenario = _scenario(data, path, steps, scripts, positions)
    return dataclasses.replace(scenario, expressions=expressions, data=raw) if expressions else scenario


def resolve_scenario(scenario: Scenario, settings: dict[str, Any]) -> tuple[Scenario, list[str]]:
    """The scenario with every ``${config:...}`` computed from ``settings`` (the effective config as a dict).

    Returns the scenario and the problems (``key (line N): ${...}: why``); with problems, the scenario
    is unchanged and must not run.
    """
    if not scenario.expressions:
        return scenario, []
    values: dict[KeyPath, Any] = {}
    problems: list[str] = []
    for at, expression in scenario.expressions.items():
        try:
            values[at] = expression.evaluate(lambda key: lookup(settings, key))
        except ExpressionError as exc:
            problems.append(f"{format_path(at)} (line {scenario.line_of(at)}): {exc}")
    if problems:
        return scenario, problems
    data = _filled(scenario.data, values)
    found: list[str] = []

    def report(at: KeyPath, message: str) -> None:
        shown = scenario.expressions.get(at)
        found.append(f"{format_path(at)} (line {scenario.line_of(at)}): {message}" + (f" (from {shown})" if shown else ""))

    scripts = _validate(data, report)
    if found:
        return scenario, found
    steps = _steps(data["steps"], ("steps",), scenario.positions, scripts)
    resolved = _scenario(data, scenario.file, steps, scripts, scenario.positions)
    return dataclasses.replace(resolved, expressions=scenario.expressions, data=scenario.data), []


def _expressions(data: dict[str, Any], report: _Report) -> dict[KeyPath, ConfigExpression]:
    """Every ``${...}`` in the file, parsed; a bad one is reported where it is written."""
    found: dict[KeyPath, ConfigExpression] = {}

    def collect(at: KeyPath, text: str) -> None:
        try:
            found[at] = parse_expression(text, known_key=_known_key)
        except ExpressionError as exc:
            report(at, str(exc))

    walk_expressions(data, collect)
    return found


def _filled(data: Any, values: dict[KeyPath, Any], path: KeyPath = ()) -> Any:
    """A copy of ``data`` with the value at each path of ``values`` replaced."""
    if path in values:
        return values[path]
    if isinstance(data, dict):
        return {key: _filled(item, values, (*path, key)) for key, item in data.items()}
    if isinstance(data, list):
        return [_filled(item, values, (*path, index)) for index, item in enumerate(data)]
    return data


@functools.cache
def _reference_settings() -> dict[str, Any]:
    return load_config(default_config_path()).to_dict()


def _known_key(key: str) -> bool:
    """Whether ``key`` names a setting of the reference config (any model name stands for a model's settings)."""
    current: Any = _reference_settings()
    parts = key.split(".")
    for index, part in enumerate(parts):
        if not isinstance(current, dict):
            return False
        if part not in current and index > 0 and parts[index - 1] == "models" and current:
            part = next(iter(current))  # another model's name: check against the first model's settings
        if part not in current:
            return False
        current = current[part]
    return not isinstance(current, (dict, list))


def _scenario(
    data: dict[str, Any], path: Path, steps: tuple[Step, ...], scripts: _Scripts, positions: dict[KeyPath, Position]
) -> Scenario:
    given = data.get("given", {})
    return Scenario(
        id=data["id"],
        title=data["title"],
        checklist=data["checklist"],
        target=data.get("target", "in_process"),
        markers=tuple(data.get("markers", ())),
        config=data.get("config", {}),
        given_mode=given.get("mode"),
        given_llm={str(key[-1]): script for key, script in scripts.items() if key[:2] == ("given", "llm")},
        steps=steps,
        requires=tuple(data.get("requires", ())),
        given_network=dict(given.get("network", {})),
        file=path,
        line=positions.get(("id",), Position(1, 1)).line,
        positions=positions,
        replicas=data.get("replicas", 1),
        given_llm_spec=dict(given.get("llm", {})),
    )


def _validate(data: dict[str, Any], report: _Report) -> _Scripts:
    """Report every schema error (but for LLM behaviours) and every behaviour error; the scripts read."""
    for error in _VALIDATOR.iter_errors(data):
        for found, message in _specific(error):
            if not _is_behaviour(tuple(found)):
                report(tuple(found), message)
    scripts: _Scripts = {}
    for at, spec in _behaviours(data):
        try:
            scripts[at] = parse_behaviours(spec, where=format_path(at))
        except BehaviourError as exc:
            text, prefix = str(exc), format_path(at) + ": "
            report(at, text[len(prefix):] if text.startswith(prefix) else text)
    return scripts


def _is_behaviour(path: KeyPath) -> bool:
    """Whether ``path`` is (inside) one model's behaviours: ``parse_behaviours`` reports those, not the schema."""
    return any(key == "llm" and index < len(path) - 1 for index, key in enumerate(path))


def _behaviours(data: dict[str, Any]) -> Iterator[tuple[KeyPath, object]]:
    """Every model's behaviours in the file, with their paths: under ``given.llm`` and in ``llm`` steps."""
    given = data.get("given")
    if isinstance(given, dict) and isinstance(given.get("llm"), dict):
        for model, spec in given["llm"].items():
            yield ("given", "llm", model), spec
    yield from _step_behaviours(data.get("steps"), ("steps",))


def _step_behaviours(items: object, path: KeyPath) -> Iterator[tuple[KeyPath, object]]:
    if not isinstance(items, list):
        return
    for index, item in enumerate(items):
        if not isinstance(item, dict) or len(item) != 1:
            continue
        (kind, value), = item.items()
        if kind == "llm" and isinstance(value, dict):
            for model, spec in value.items():
                yield (*path, index, "llm", model), spec
        elif kind in ("repeat", "parallel") and isinstance(value, dict):
            yield from _step_behaviours(value.get("steps"), (*path, index, kind, "steps"))


def _problem(
    file: str, positions: dict[KeyPath, Position], path: KeyPath, message: str, at: Position | None = None
) -> Problem:
    if at is None:
        probe = path
        while probe and probe not in positions:
            probe = probe[:-1]
        at = positions.get(probe)
    return Problem(file, at.line if at else None, at.column if at else None, format_path(path), message)


def _branch_matches(schema: Any, instance: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    if "required" in schema:
        return isinstance(instance, dict) and all(k in instance for k in schema["required"])
    kinds = schema.get("type")
    if kinds is None:
        return False
    kinds = [kinds] if isinstance(kinds, str) else kinds
    checker = _VALIDATOR.TYPE_CHECKER
    return any(checker.is_type(instance, k) for k in kinds)


def _specific(error: jsonschema.ValidationError) -> list[tuple[list[Any], str]]:
    """Turn a oneOf/anyOf failure into the errors of the branch the author meant (by key or by type)."""
    path = list(error.absolute_path)
    if error.validator in ("oneOf", "anyOf") and isinstance(error.validator_value, list):
        branches = error.validator_value
        for index, branch in enumerate(branches):
            if _branch_matches(branch, error.instance):
                inner = [e for e in (error.context or []) if e.relative_schema_path and e.relative_schema_path[0] == index]
                if inner:
                    return [item for e in inner for item in _specific(e)]
        if branches and all(isinstance(b, dict) and "required" in b for b in branches):
            kinds = ", ".join(b["required"][0] for b in branches)
            if isinstance(error.instance, dict):
                found = ", ".join(map(str, error.instance)) or "nothing"
                if len(error.instance) > 1:
                    return [(path, f"a step has exactly one key (one of: {kinds}); found {found}")]
                return [(path, f"unknown step {found!r}; expected one of: {kinds}")]
            return [(path, f"expected a step (a mapping with one of: {kinds}), found {error.instance!r}")]
    message = error.message
    if error.validator == "additionalProperties" and isinstance(error.instance, dict) and isinstance(error.schema, Mapping):
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        extra = [k for k in error.instance if k not in error.schema.get("properties", {})]
        return [([*path, k], f"unknown key (allowed: {allowed})") for k in extra] or [(path, message)]
    return [(path, message)]


def _steps(items: list[Any], path: KeyPath, positions: dict[KeyPath, Position], scripts: _Scripts) -> tuple[Step, ...]:
    out: list[Step] = []
    for index, item in enumerate(items):
        step_path = (*path, index)
        (kind, value), = item.items()
        line = positions[step_path].line if step_path in positions else 0
        children: tuple[Step, ...] = ()
        spec = None
        if kind in ("repeat", "parallel"):
            children = _steps(value["steps"], (*step_path, kind, "steps"), positions, scripts)
        elif kind == "llm":
            spec, value = value, {model: scripts[(*step_path, "llm", model)] for model in value}
        out.append(Step(kind, value, step_path, line, children, spec))
    return tuple(out)


def _check_patterns(value: Any, path: KeyPath, report: Any) -> None:
    """Every ``regex:`` check must compile: a bad pattern is a mistake in the file, found at load."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "regex" and isinstance(item, str):
                try:
                    re.compile(item)
                except re.error as exc:
                    report((*path, key), f"invalid regular expression {item!r}: {exc}")
            else:
                _check_patterns(item, (*path, key), report)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_patterns(item, (*path, index), report)


def _check_replicas(data: dict[str, Any], steps: tuple[Step, ...], report: Any) -> None:
    """A ``replica: N`` step names one of the scenario's replicas; replicas run in process only."""
    replicas = data.get("replicas", 1)
    if replicas > 1 and data.get("target", "in_process") != "in_process":
        report(("replicas",), "several replicas run in process only (target: in_process)")
    for step in _walk(steps):
        if step.kind in ("replica", "restart") and step.value > replicas:
            report((*step.path, step.kind), f"replica {step.value}, but the scenario runs {replicas} (replicas: N)")
        elif step.kind == "redis" and replicas == 1:
            report((*step.path, step.kind), "stopping Redis needs a fleet: declare replicas: N (N >= 2)")


def _walk(steps: tuple[Step, ...]) -> Any:
    for step in steps:
        yield step
        yield from _walk(step.steps)


def _check_time(data: dict[str, Any], steps: tuple[Step, ...], report: Any) -> None:
    """Network scenarios run in real time (Toxiproxy cannot be fooled by a virtual clock); the others never do."""
    network = "toxiproxy" in data.get("requires", ())
    real_time = network or "llm_control" in data.get("requires", ())
    if data.get("given", {}).get("network") and not network:
        report(("given", "network"), "network faults need `requires: [toxiproxy]`")
    for step in _walk(steps):
        if step.kind == "network" and not network:
            report(step.path, "network faults need `requires: [toxiproxy]`")
        elif step.kind == "wait" and not real_time:
            report(step.path, "`wait` is real time, for toxiproxy and live fault scenarios only; use `advance` (virtual time)")
        elif step.kind == "advance" and real_time:
            report(step.path, "a toxiproxy or live fault scenario runs in real time: use `wait: seconds`, not `advance`")
        elif step.kind == "traffic" and real_time:
            report(step.path, "a toxiproxy or live fault scenario runs in real time: `traffic` moves virtual time between briefs")


def _live_allowed(target: Any, requires: set[str]) -> set[str]:
    """The in-process-only steps and expectations a live scenario may use, given what it ``requires``."""
    if target != "live" or not requires:
        return set()
    allowed = {"wait"}
    if "llm_control" in requires:
        allowed |= {"llm", "calls", "call_log", "elapsed"}
    if "toxiproxy" in requires:
        allowed |= {"network", "elapsed"}
    return allowed


def _check_live(data: dict[str, Any], steps: tuple[Step, ...], report: Any) -> None:
    """What a live scenario may do: only what the HTTP surface shows, plus faults through what it ``requires``.

    ``requires: [llm_control]`` (``target: live``): ``given.llm``, ``llm`` steps, ``wait`` and the
    ``calls`` / ``call_log`` / ``elapsed`` expectations, through the fake LLM's control plane;
    ``requires: [toxiproxy]`` (``target: live``) adds ``network`` steps through Toxiproxy.
    """
    target = data.get("target")
    why = f"target {target!r} runs against a live service, which cannot"
    requires = set(data.get("requires", ()))
    allowed = _live_allowed(target, requires)
    if "config" in data:
        report(("config",), f"{why} take config overrides (use target: in_process)")
    if requires and target != "live":
        report(("requires",), f"{why} be given faults unless the scenario is target: live (use target: live or in_process)")
    given = data.get("given", {})
    for key, step, need in (("llm", "llm", "llm_control"), ("network", "network", "toxiproxy")):
        if given.get(key) and step not in allowed:
            report(("given", key), f"{why} have {key} faults without `requires: [{need}]`")
    if given.get("mode"):
        report(("given", "mode"), f"{why} have its mode set (ask for a mode in each brief instead)")
    for step in _walk(steps):
        if step.kind in _IN_PROCESS_STEPS and step.kind not in allowed:
            report(step.path, f"{why} {_IN_PROCESS_STEPS[step.kind]} (step {step.kind!r})")
        if step.kind == "expect":
            for key in (k for k in _IN_PROCESS_EXPECT if k in step.value and k not in allowed):
                report((*step.path, "expect", key), f"{why} read {_IN_PROCESS_EXPECT[key]}")
        if step.kind == "brief" and isinstance(step.value, dict) and step.value.get("via") == "ensemble":
            report((*step.path, "brief", "via"), f"{why} call the ensemble directly (use via: http)")
