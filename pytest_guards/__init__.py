"""pytest_guards: a pytest plugin and chaos harness for the production guards of LLM services.

The public surface: fault builders (``valid``, ``http_error``, ``timeout``, ``flaky``, ``Script``,
``parse_behaviours``...), the types behind the fixtures (``FaultyLLM``, ``FakeLLMServer``,
``GuardClock``, ``MetricsProbe``, ``GuardHarness`` and ``open_harness``, ``ToxiproxyServer``,
``ToxicProxies``, ``ToxicProxy``), ``LiveService``, and the scenario runner (``load_scenario``,
``run_scenario``, ``Verdict``). The plugin itself is ``pytest_guards.plugin`` (entry point ``guards``).

Every name is imported on first use: pytest loads this package in every run of every environment
that installs it, and importing it must not import toxiproxy-python, ``requests`` or a web server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_guards.clock import (
        ClockMisuseError,
        GuardClock,
    )
    from pytest_guards.faults import (
        BEHAVIOUR_JSON_SCHEMA,
        KINDS,
        Behaviour,
        BehaviourError,
        CallRecord,
        FakeLLMServer,
        FaultyLLM,
        Flaky,
        Outcome,
        Script,
        UnmatchedRequestError,
        connection_error,
        empty,
        fenced,
        flaky,
        http_error,
        invalid_json,
        malformed_body,
        parse_behaviours,
        prose,
        render,
        schema_violation,
        timeout,
        truncated,
        valid,
        valid_brief,
    )
    from pytest_guards.harness import (
        GuardHarness,
        open_harness,
        point_models_at,
    )
    from pytest_guards.metrics import (
        MetricNotFoundError,
        MetricsProbe,
    )
    from pytest_guards.network import (
        LiveService,
        ToxicProxies,
        ToxicProxy,
        ToxiproxyError,
        ToxiproxyServer,
        ToxiproxyUnavailable,
    )
    from pytest_guards.scenarios import (
        SCENARIO_SCHEMA,
        InProcessTarget,
        LiveTarget,
        NetworkTarget,
        Scenario,
        ScenarioFailure,
        ScenarioFileError,
        ScenarioResult,
        Target,
        Verdict,
        load_scenario,
        run_scenario,
    )

#: public name -> the module that defines it (imported on first use)
_EXPORTS: dict[str, str] = {
    "BEHAVIOUR_JSON_SCHEMA": "pytest_guards.faults",
    "KINDS": "pytest_guards.faults",
    "Behaviour": "pytest_guards.faults",
    "BehaviourError": "pytest_guards.faults",
    "CallRecord": "pytest_guards.faults",
    "FakeLLMServer": "pytest_guards.faults",
    "FaultyLLM": "pytest_guards.faults",
    "Flaky": "pytest_guards.faults",
    "Outcome": "pytest_guards.faults",
    "Script": "pytest_guards.faults",
    "UnmatchedRequestError": "pytest_guards.faults",
    "connection_error": "pytest_guards.faults",
    "empty": "pytest_guards.faults",
    "fenced": "pytest_guards.faults",
    "flaky": "pytest_guards.faults",
    "http_error": "pytest_guards.faults",
    "invalid_json": "pytest_guards.faults",
    "malformed_body": "pytest_guards.faults",
    "parse_behaviours": "pytest_guards.faults",
    "prose": "pytest_guards.faults",
    "render": "pytest_guards.faults",
    "schema_violation": "pytest_guards.faults",
    "timeout": "pytest_guards.faults",
    "truncated": "pytest_guards.faults",
    "valid": "pytest_guards.faults",
    "valid_brief": "pytest_guards.faults",
    "ClockMisuseError": "pytest_guards.clock",
    "GuardClock": "pytest_guards.clock",
    "MetricNotFoundError": "pytest_guards.metrics",
    "MetricsProbe": "pytest_guards.metrics",
    "GuardHarness": "pytest_guards.harness",
    "open_harness": "pytest_guards.harness",
    "point_models_at": "pytest_guards.harness",
    "LiveService": "pytest_guards.network",
    "ToxicProxies": "pytest_guards.network",
    "ToxicProxy": "pytest_guards.network",
    "ToxiproxyError": "pytest_guards.network",
    "ToxiproxyServer": "pytest_guards.network",
    "ToxiproxyUnavailable": "pytest_guards.network",
    "SCENARIO_SCHEMA": "pytest_guards.scenarios",
    "InProcessTarget": "pytest_guards.scenarios",
    "LiveTarget": "pytest_guards.scenarios",
    "NetworkTarget": "pytest_guards.scenarios",
    "Scenario": "pytest_guards.scenarios",
    "ScenarioFailure": "pytest_guards.scenarios",
    "ScenarioFileError": "pytest_guards.scenarios",
    "ScenarioResult": "pytest_guards.scenarios",
    "Target": "pytest_guards.scenarios",
    "Verdict": "pytest_guards.scenarios",
    "load_scenario": "pytest_guards.scenarios",
    "run_scenario": "pytest_guards.scenarios",
}

__all__ = [
    "BEHAVIOUR_JSON_SCHEMA",
    "KINDS",
    "SCENARIO_SCHEMA",
    "Behaviour",
    "BehaviourError",
    "CallRecord",
    "ClockMisuseError",
    "FakeLLMServer",
    "FaultyLLM",
    "Flaky",
    "GuardClock",
    "GuardHarness",
    "InProcessTarget",
    "LiveService",
    "LiveTarget",
    "MetricNotFoundError",
    "MetricsProbe",
    "NetworkTarget",
    "Outcome",
    "Scenario",
    "ScenarioFailure",
    "ScenarioFileError",
    "ScenarioResult",
    "Script",
    "Target",
    "ToxicProxies",
    "ToxicProxy",
    "ToxiproxyError",
    "ToxiproxyServer",
    "ToxiproxyUnavailable",
    "UnmatchedRequestError",
    "Verdict",
    "connection_error",
    "empty",
    "fenced",
    "flaky",
    "http_error",
    "invalid_json",
    "load_scenario",
    "malformed_body",
    "open_harness",
    "parse_behaviours",
    "point_models_at",
    "prose",
    "render",
    "run_scenario",
    "schema_violation",
    "timeout",
    "truncated",
    "valid",
    "valid_brief",
]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (and then cached here)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
