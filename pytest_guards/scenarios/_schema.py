"""The JSON Schema of ``*.scenario.yaml`` files, built in Python and shipped as ``scenario.schema.json``.

``python -m pytest_guards.scenarios._schema`` prints it; a test keeps the shipped file
(``pytest_guards/scenarios/scenario.schema.json``) in step. Editors (VS Code's YAML extension,
JetBrains) can use the shipped file for completion and inline errors. LLM behaviours are embedded from
the fault package's format (:data:`~pytest_guards.faults.BEHAVIOUR_JSON_SCHEMA`), defined there once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from pytest_guards.faults import BEHAVIOUR_JSON_SCHEMA

__all__ = ["CHECKLIST_ITEMS", "OPERATORS", "REQUIREMENTS", "SCENARIO_SCHEMA", "SCHEMA_FILE", "TARGETS", "TOXIC_ATTRIBUTES"]

#: the shipped copy of :data:`SCENARIO_SCHEMA` (package data)
SCHEMA_FILE: Final = Path(__file__).with_name("scenario.schema.json")
CHECKLIST_ITEMS: Final = ("json_guard", "circuit_breaker", "cache", "health_check")
TARGETS: Final = ("in_process", "live", "both")
OPERATORS: Final = ("eq", "ne", "ge", "le", "gt", "lt", "in", "range", "regex")
_MODES: Final = ["creative", "balanced", "fast"]
#: toxiproxy: network faults (in process: the service on a socket behind Toxiproxy; live: the canary's
#: proxies); llm_control: a live canary's models scripted through the fake LLM's control plane
REQUIREMENTS: Final = ("toxiproxy", "llm_control")
#: Toxiproxy's toxic types and their attribute names (as its API spells them)
TOXIC_ATTRIBUTES: Final = {
    "latency": ("latency", "jitter"),
    "bandwidth": ("rate",),
    "slow_close": ("delay",),
    "timeout": ("timeout",),
    "reset_peer": ("timeout",),
    "slicer": ("average_size", "size_variation", "delay"),
    "limit_data": ("bytes",),
}
_NAME: Final = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,62}$"}

_SCALAR: Final = {"type": ["string", "number", "boolean", "null"]}
_CHECK_OBJECT: Final = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "eq": {},
        "ne": {},
        "ge": {"type": "number"},
        "le": {"type": "number"},
        "gt": {"type": "number"},
        "lt": {"type": "number"},
        "in": {"type": "array", "minItems": 1},
        "range": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
        "regex": {"type": "string"},
    },
}
#: a value to compare with: a plain scalar means ``eq``; a mapping names its operators (all must hold)
CHECK: Final = {"anyOf": [_SCALAR, {"type": "array"}, _CHECK_OBJECT]}

_METRIC_CHECK: Final = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "value": CHECK,
        "delta": CHECK,
        # the change since the previous expectation that read this series: a counter's shape, step by step
        "increases_by": CHECK,
    },
    "anyOf": [{"required": ["value"]}, {"required": ["delta"]}, {"required": ["increases_by"]}],
}

#: the fields of one request a model received (``pytest_guards.scenarios._observations.request_fields``)
_REQUEST_FIELDS: Final = {"type": "object", "additionalProperties": CHECK, "minProperties": 1}
_REQUESTS_CHECK: Final = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "count": CHECK,
        "increases_by": CHECK,
        "last": _REQUEST_FIELDS,
        "every": _REQUEST_FIELDS,
    },
}

_EXPECT: Final = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "breaker": {"type": "object", "additionalProperties": CHECK, "minProperties": 1},
        "mode": CHECK,
        "cache": {"type": "object", "additionalProperties": CHECK, "minProperties": 1},
        "health": {"type": "object", "additionalProperties": CHECK, "minProperties": 1},
        "response": {"type": "object", "additionalProperties": CHECK, "minProperties": 1},
        "metric": {"type": "array", "items": _METRIC_CHECK, "minItems": 1},
        "config": {"type": "object", "additionalProperties": CHECK, "minProperties": 1},
        "calls": {"type": "object", "additionalProperties": CHECK, "minProperties": 1},
        # per model: checks on its call log, keys looked up in {count, first, last, calls: [...]}
        "call_log": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"type": "object", "additionalProperties": CHECK, "minProperties": 1},
        },
        # the requests each (fake) model received: count, increases_by, fields of the last / every new one
        "requests": {"type": "object", "additionalProperties": _REQUESTS_CHECK, "minProperties": 1},
        "elapsed": CHECK,
        # shares over the last traffic step: fallback_rate, error_rate, and per model or mode
        "rates": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {
                "fallback_rate": CHECK,
                "error_rate": CHECK,
                "model_share": {"type": "object", "additionalProperties": CHECK, "minProperties": 1},
                "open_share": {"type": "object", "additionalProperties": CHECK, "minProperties": 1},
                "mode_share": {"type": "object", "additionalProperties": CHECK, "minProperties": 1},
            },
        },
        # every bound of this checklist item in the policy (policy.yaml, or a team's tighter one)
        "policy": {"enum": list(CHECKLIST_ITEMS)},
    },
}

_LLM_MAP: Final = {"type": "object", "propertyNames": _NAME, "additionalProperties": BEHAVIOUR_JSON_SCHEMA}

_TOXIC: Final = {
    "oneOf": [
        {
            "type": "object",
            "additionalProperties": False,
            "required": [kind],
            "properties": {
                kind: {
                    "type": ["object", "null"],
                    "additionalProperties": False,
                    "properties": {name: {"type": "integer", "minimum": 0} for name in names},
                },
                "direction": {"enum": ["downstream", "upstream"]},
                "toxicity": {"type": "number", "minimum": 0, "maximum": 1},
            },
        }
        for kind, names in TOXIC_ATTRIBUTES.items()
    ]
}
#: per model: ``down`` (the proxy stops listening), ``up``, ``clear`` (toxics removed, proxy up), or toxics
_NETWORK_MAP: Final = {
    "type": "object",
    "propertyNames": _NAME,
    "additionalProperties": {
        "anyOf": [{"enum": ["down", "up", "clear"]}, _TOXIC, {"type": "array", "items": _TOXIC, "minItems": 1}]
    },
}

_BRIEF: Final = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["prompt"],
            "properties": {
                "prompt": {"type": "string", "minLength": 1},
                "mode": {"enum": _MODES},
                "via": {"enum": ["http", "ensemble"]},
                "distinct": {"type": "boolean"},
            },
        },
    ]
}


#: ``repeat`` runs its steps ``times`` times in turn; ``parallel`` runs ``times`` copies at once
_REPEAT: Final = {
    "type": "object",
    "additionalProperties": False,
    "required": ["times", "steps"],
    "properties": {
        "times": {"type": "integer", "minimum": 1, "maximum": 1000},
        "steps": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"}},
    },
}


#: ``parallel`` may spread its copies over the replicas (copy i on replica i mod N + 1)
_PARALLEL: Final = {
    **_REPEAT,
    "properties": {**_REPEAT["properties"], "across_replicas": {"type": "boolean"}},  # type: ignore[dict-item]
}
#: the most replicas a scenario may run (each is a whole system in one process)
MAX_REPLICAS: Final = 8


def _step(key: str, value: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": [key], "properties": {key: value}}


STEP: dict[str, Any] = {
    "oneOf": [
        _step("brief", _BRIEF),
        _step("advance", {"type": "number", "minimum": 0, "maximum": 315_360_000}),  # ten years of virtual time
        _step(
            "health",
            {
                "anyOf": [
                    {"type": "string"},
                    {"type": "object", "additionalProperties": False, "properties": {"model": {"type": "string"}}},
                ]
            },
        ),
        _step(
            "request",
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["path"],
                "properties": {
                    "method": {"enum": ["GET", "POST"]},
                    "path": {"type": "string", "pattern": "^/"},
                    "json": {},
                },
            },
        ),
        _step("llm", _LLM_MAP),
        _step("network", _NETWORK_MAP),
        # real seconds (toxiproxy and live fault scenarios); a live run leaves out a scenario whose waits
        # add up past its --live-max-wait
        _step("wait", {"type": "number", "exclusiveMinimum": 0, "maximum": 3600}),
        _step("cache", {"enum": ["cleanup", "clear"]}),
        # many distinct briefs in turn, the virtual clock moved `every` seconds after each (partial failure)
        _step(
            "traffic",
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["briefs"],
                "properties": {
                    "briefs": {"type": "integer", "minimum": 1, "maximum": 20_000},
                    "every": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
                    "prompt": {"type": "string", "minLength": 1},
                    "mode": {"enum": _MODES},
                    "via": {"enum": ["http", "ensemble"]},
                },
            },
        ),
        _step("expect", _EXPECT),
        _step("repeat", _REPEAT),
        _step("parallel", _PARALLEL),
        # the steps after it in this block (expectations too) go to replica N (1-based)
        _step("replica", {"type": "integer", "minimum": 1, "maximum": MAX_REPLICAS}),
        # replica N stops and a new one starts in its place (it must join the fleet's state)
        _step("restart", {"type": "integer", "minimum": 1, "maximum": MAX_REPLICAS}),
        # stop or start again the fleet's redis-server (real process; a stopped one loses its data)
        _step("redis", {"enum": ["down", "up"]}),
    ]
}

SCENARIO_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://fragrance-ai.local/schemas/guards.scenario.schema.json",
    "title": "pytest_guards scenario",
    "description": "A fault, a passage of time and what must be true afterwards, for one checklist item.",
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "title", "checklist", "steps"],
    "properties": {
        "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,80}$"},
        "title": {"type": "string", "minLength": 1},
        "checklist": {"enum": list(CHECKLIST_ITEMS)},
        # skip/xfail would let a failing scenario through the verdict: a scenario either holds or not
        "markers": {
            "type": "array",
            "items": {
                "type": "string",
                "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                "not": {"enum": ["skip", "skipif", "xfail", "usefixtures", "filterwarnings", "parametrize"]},
            },
        },
        "target": {"enum": list(TARGETS)},
        "requires": {"type": "array", "items": {"enum": list(REQUIREMENTS)}, "uniqueItems": True},
        # N systems on one virtual clock sharing one Redis (state.backend: redis) and the same models
        "replicas": {"type": "integer", "minimum": 1, "maximum": MAX_REPLICAS},
        "config": {"type": "object"},
        "given": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"mode": {"enum": _MODES}, "llm": _LLM_MAP, "network": _NETWORK_MAP},
        },
        "steps": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"}},
    },
    "$defs": {"step": STEP},
}


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(SCENARIO_SCHEMA, indent=2, ensure_ascii=False))
