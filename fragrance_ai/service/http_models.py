"""The service's request and response bodies as pydantic models: what the OpenAPI document publishes.

The routes in :mod:`fragrance_ai.service.app` return plain dicts; these models are the contract they
are checked against (``tests/fragrance_ai/service/test_openapi_contract.py`` runs schemathesis over
it). A constraint written here is one the server enforces, with the same rule: the prompt's
:data:`PROMPT_PATTERN` is published in the schema and checked with Python's ``re``, as schemathesis
and jsonschema read it. What this module must not do: hold behaviour beyond validating a request.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from fragrance_ai.constants import Mode
from fragrance_ai.service.http_edge import MAX_REPORTED_ERRORS

__all__ = [
    "MAX_PROMPT_CHARS",
    "PROMPT_PATTERN",
    "BodyTooLarge",
    "BriefOut",
    "BriefRequest",
    "FieldError",
    "HealthAnswer",
    "InternalError",
    "InvalidRequest",
    "NoModelAvailable",
    "RequestTimeout",
]

MAX_PROMPT_CHARS: Final = 4000
#: a prompt must hold one character that is not whitespace (``str.isspace``; Python's ``\S``)
PROMPT_PATTERN: Final = r"\S"
_PROMPT = re.compile(PROMPT_PATTERN)


class BriefRequest(BaseModel):
    """``POST /v1/briefs`` body."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="What the fragrance should be; not only whitespace.",
        json_schema_extra={"pattern": PROMPT_PATTERN},
    )
    mode: Mode | None = Field(
        default=None, description="Service mode; the current (possibly downshifted) mode when omitted."
    )

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if _PROMPT.search(value) is None:
            raise ValueError("must not be blank")
        return value


class FieldError(BaseModel):
    field: str = Field(description="where: body, body.prompt, query.model (the schema's names, never the client's)")
    message: str
    type: str


class InvalidRequest(BaseModel):
    """422: the request does not match this document (nothing it sent is echoed)."""

    error: Literal["invalid_request"]
    detail: list[FieldError] = Field(min_length=1, max_length=MAX_REPORTED_ERRORS)


class BodyTooLarge(BaseModel):
    """413: the body is longer than ``service.max_body_bytes``; it was not read."""

    error: Literal["body_too_large"]
    max_body_bytes: int


class RequestTimeout(BaseModel):
    """408: the body did not arrive in time."""

    error: Literal["request_timeout"]


class InternalError(BaseModel):
    error: Literal["internal_error"]


class TriedModel(BaseModel):
    model: str
    outcome: str


class NoModelAvailable(BaseModel):
    """503 from ``POST /v1/briefs``: every model failed and ``json_guard.fallback_enabled`` is off."""

    error: Literal["no_model_available"]
    mode: Mode
    models_tried: list[TriedModel]


class BriefOut(BaseModel):
    """200 from ``POST /v1/briefs``: a brief from a model, the cache, or the fallback (``brief.error: true``)."""

    brief: dict[str, Any]
    source: Literal["model", "cache", "fallback"]
    model: str | None
    mode: Mode
    attempts: int = Field(ge=0)
    models_tried: list[TriedModel]


class ModelHealth(BaseModel):
    """One model's health (``reason`` when unhealthy: a fixed code)."""

    model: str
    status: Literal["healthy", "unhealthy"]
    circuit_state: str
    reason: str | None = None
    latency_ms: int | None = None
    retry_after_s: float | None = None
    detail: str | None = None


class AllHealth(BaseModel):
    """Every model: ``healthy`` (all are), ``degraded`` (some are; 200), ``unhealthy`` (none is; 503)."""

    status: Literal["healthy", "degraded", "unhealthy"]
    models: dict[str, ModelHealth]


class HealthAnswer(RootModel[ModelHealth | AllHealth]):
    """``GET /health/llm``: one model's health, or every model's for ``all``."""
