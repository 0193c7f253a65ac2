"""The public fault DSL of pytest_guards: behaviour constructors, ``flaky``, ``Script`` and ``parse_behaviours``.

Use it with the ``faulty_llm`` (respx) and ``fake_llm_server`` (real HTTP) fixtures::

    from pytest_guards.faults import http_error, timeout, valid

    faulty_llm.set("qwen", http_error(503, retry_after=2).times(3), timeout(), valid())

This module only re-exports; the model lives in ``pytest_guards._behaviours``.
"""

from __future__ import annotations

from pytest_guards._behaviours import (
    BEHAVIOUR_JSON_SCHEMA,
    KINDS,
    Behaviour,
    BehaviourError,
    CallRecord,
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

__all__ = [
    "BEHAVIOUR_JSON_SCHEMA",
    "KINDS",
    "Behaviour",
    "BehaviourError",
    "CallRecord",
    "Flaky",
    "Outcome",
    "Script",
    "UnmatchedRequestError",
    "connection_error",
    "empty",
    "fenced",
    "flaky",
    "http_error",
    "invalid_json",
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
