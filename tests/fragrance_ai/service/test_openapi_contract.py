"""The OpenAPI document is the truth: schemathesis runs every check it has against the app in-process.

Positive and negative cases (bounded examples, derandomized) for every operation; any finding fails
the test: a status the document does not list, a body that does not match its model, a content type,
an invalid request the server accepts or a valid one it refuses, a 5xx.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks

from fragrance_ai.config_loader import get_config
from fragrance_ai.service.app import create_app

load_all_checks()
#: every check schemathesis ships (``--checks all``), not only those on by default
ALL_CHECKS: list[Any] = list(CHECKS.get_all())

app = create_app(get_config())
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=60, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_its_contract(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(checks=ALL_CHECKS)


def test_the_contract_covers_every_route_and_status() -> None:
    document = app.openapi()
    statuses = {path: sorted(op["responses"]) for path, ops in document["paths"].items() for op in ops.values()}
    assert statuses == {
        "/health/llm": ["200", "422", "500", "503"],
        "/health/guards": ["200", "500"],
        "/metrics": ["200", "500"],
        "/v1/briefs": ["200", "408", "413", "422", "500", "503"],
    }
    model = document["paths"]["/health/llm"]["get"]["parameters"][0]["schema"]
    assert model["anyOf"][0]["enum"] == ["qwen", "mistral", "llama", "all"]
    assert list(document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
