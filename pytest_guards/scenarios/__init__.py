"""Scenario files (``*.scenario.yaml``): model, schema, expressions, pytest items, the runner, targets, timelines, verdict.

The flow: ``_model`` loads a file (``${env:}`` substitution via ``_expressions``, validation against
``_schema``'s shipped schema) into a :class:`Scenario`; ``_items`` collects it as a pytest item, which
runs it with ``_run`` against one of ``_targets`` (a live one injects faults through ``_live_faults``),
recording a ``_timeline``; ``_verdict`` turns the results into SAFE / DO NOT PROMOTE. This package
uses ``pytest_guards.faults`` and ``pytest_guards.network``; they never use it.
"""

from __future__ import annotations

from pytest_guards.scenarios._config_expr import ConfigExpression, ExpressionError, parse_expression
from pytest_guards.scenarios._expressions import MISSING, Judge, check, describe, lookup, show, substitute
from pytest_guards.scenarios._items import InvalidScenarioItem, ScenarioFile, ScenarioItem
from pytest_guards.scenarios._live_faults import (
    CONTROL_TOKEN_ENV,
    LiveDependencies,
    LiveFaults,
    TargetFileError,
    load_target_file,
)
from pytest_guards.scenarios._model import Problem, Scenario, ScenarioFileError, Step, load_scenario, resolve_scenario
from pytest_guards.scenarios._observations import REQUEST_FIELDS, request_fields
from pytest_guards.scenarios._policy import (
    CHECKLIST_DIR,
    POLICY_FILE,
    Bound,
    Loosened,
    Policy,
    PolicyError,
    load_policy,
    shipped_policy,
)
from pytest_guards.scenarios._run import ScenarioFailure, run_scenario
from pytest_guards.scenarios._schema import (
    CHECKLIST_ITEMS,
    OPERATORS,
    REQUIREMENTS,
    SCENARIO_SCHEMA,
    SCHEMA_FILE,
    TARGETS,
    TOXIC_ATTRIBUTES,
)
from pytest_guards.scenarios._targets import InProcessTarget, LiveTarget, NetworkTarget, Response, Target
from pytest_guards.scenarios._timeline import Timeline, health_of
from pytest_guards.scenarios._verdict import INCONCLUSIVE, ITEM_TITLES, SAFE, UNSAFE, ScenarioResult, Verdict

__all__ = [
    "CHECKLIST_DIR",
    "CHECKLIST_ITEMS",
    "CONTROL_TOKEN_ENV",
    "INCONCLUSIVE",
    "ITEM_TITLES",
    "MISSING",
    "OPERATORS",
    "POLICY_FILE",
    "REQUEST_FIELDS",
    "REQUIREMENTS",
    "SAFE",
    "SCENARIO_SCHEMA",
    "SCHEMA_FILE",
    "TARGETS",
    "TOXIC_ATTRIBUTES",
    "UNSAFE",
    "Bound",
    "ConfigExpression",
    "ExpressionError",
    "InProcessTarget",
    "InvalidScenarioItem",
    "Judge",
    "LiveDependencies",
    "LiveFaults",
    "LiveTarget",
    "Loosened",
    "NetworkTarget",
    "Policy",
    "PolicyError",
    "Problem",
    "Response",
    "Scenario",
    "ScenarioFailure",
    "ScenarioFile",
    "ScenarioFileError",
    "ScenarioItem",
    "ScenarioResult",
    "Step",
    "Target",
    "TargetFileError",
    "Timeline",
    "Verdict",
    "check",
    "describe",
    "health_of",
    "load_policy",
    "load_scenario",
    "load_target_file",
    "lookup",
    "parse_expression",
    "request_fields",
    "resolve_scenario",
    "run_scenario",
    "shipped_policy",
    "show",
    "substitute",
]
