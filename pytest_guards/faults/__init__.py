"""Fault injection at the LLM's HTTP boundary: the behaviour DSL, its data format, and the two fake LLMs.

Use it with the ``faulty_llm`` (respx) and ``fake_llm_server`` (real HTTP) fixtures::

    from pytest_guards.faults import http_error, timeout, valid

    faulty_llm.set("qwen", http_error(503, retry_after=2).times(3), timeout(), valid())

The model is in ``_behaviours``, the data format (its one validator and JSON Schema) in ``_format``,
rendering in ``_render``, the shared bookkeeping in ``_book``, the respx router in ``_faulty_llm`` and
the real HTTP server in ``_fake_server`` (its command line: ``python -m
pytest_guards.faults.fake_llm_server``). :class:`FakeLLMServer` is imported on first use, so loading
the plugin does not start importing a web server. This package never imports ``pytest_guards.scenarios``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_guards.faults._behaviours import (
    DEFAULT_BEHAVIOUR,
    KINDS,
    Behaviour,
    BehaviourError,
    Flaky,
    Script,
    ScriptCursor,
    Step,
    UnmatchedRequestError,
    connection_error,
    cut_stream,
    empty,
    fenced,
    finish_length,
    flaky,
    http_error,
    invalid_json,
    malformed_body,
    prose,
    schema_violation,
    stall,
    timeout,
    truncated,
    valid,
)
from pytest_guards.faults._book import CallRecord, ScriptBook, ScriptedModels, call_record, json_body
from pytest_guards.faults._faulty_llm import FaultyLLM, default_base_url
from pytest_guards.faults._format import BEHAVIOUR_JSON_SCHEMA, parse_behaviours
from pytest_guards.faults._render import INVALID_JSON_TEXT, MALFORMED_BODY, SCHEMA_VIOLATION, Outcome, render, valid_brief

if TYPE_CHECKING:
    from pytest_guards.faults._fake_server import FakeLLMServer

__all__ = [
    "BEHAVIOUR_JSON_SCHEMA",
    "DEFAULT_BEHAVIOUR",
    "INVALID_JSON_TEXT",
    "KINDS",
    "MALFORMED_BODY",
    "SCHEMA_VIOLATION",
    "Behaviour",
    "BehaviourError",
    "CallRecord",
    "FakeLLMServer",
    "FaultyLLM",
    "Flaky",
    "Outcome",
    "Script",
    "ScriptBook",
    "ScriptCursor",
    "ScriptedModels",
    "Step",
    "UnmatchedRequestError",
    "call_record",
    "connection_error",
    "cut_stream",
    "default_base_url",
    "empty",
    "fenced",
    "finish_length",
    "flaky",
    "http_error",
    "invalid_json",
    "json_body",
    "malformed_body",
    "parse_behaviours",
    "prose",
    "render",
    "schema_violation",
    "stall",
    "timeout",
    "truncated",
    "valid",
    "valid_brief",
]


def __getattr__(name: str) -> Any:
    """``FakeLLMServer`` on first use (it imports starlette and uvicorn)."""
    if name == "FakeLLMServer":
        from pytest_guards.faults._fake_server import FakeLLMServer

        return FakeLLMServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
