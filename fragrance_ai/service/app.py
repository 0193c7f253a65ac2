"""The FastAPI app: fragrance briefs behind every guard, the health gate, guard settings and metrics.

Routes only translate HTTP to the shared :class:`GuardSystem` and back. No exception text ever
reaches a client: bad requests get a 422 naming the field, LLM faults become a fallback brief (200,
``error: true``), anything unexpected a bare 500 with a fixed code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from fragrance_ai import __version__
from fragrance_ai.config_loader import Config
from fragrance_ai.constants import Mode
from fragrance_ai.llm.ensemble import NoModelAvailableError
from fragrance_ai.llm.health_check import overall_status
from fragrance_ai.metrics import CONTENT_TYPE
from fragrance_ai.service.system import GuardSystem

__all__ = ["MAX_PROMPT_CHARS", "BriefRequest", "create_app"]

logger = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 4000


class BriefRequest(BaseModel):
    """``POST /v1/briefs`` body."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="What the fragrance should be.")
    mode: Mode | None = Field(
        default=None, description="Service mode; the current (possibly downshifted) mode when omitted."
    )

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


def _clean_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Validation errors without the offending input echoed back (it may be huge or sensitive)."""
    out = []
    for err in exc.errors():
        loc = ".".join(str(part)[:64] for part in err.get("loc", ()))  # an unknown key is the client's text
        out.append({"field": loc, "message": err.get("msg", "invalid"), "type": err.get("type", "invalid")})
    return out


def _lifespan(guarded: GuardSystem, owned: bool) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start the background health probe (when configured) for the app's life; close an owned system after."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        interval = guarded.config.health_check.probe_interval
        probe = (
            asyncio.create_task(guarded.health_checker.probe_forever(interval, guarded.asleep), name="health-probe")
            if interval > 0
            else None
        )
        try:
            yield
        finally:
            if probe is not None:
                probe.cancel()
                await asyncio.wait({probe})  # never re-raises: a cancellation of the lifespan itself is not swallowed
            if owned:
                await guarded.aclose()

    return lifespan


def _unknown_model(model: str, models: tuple[str, ...]) -> JSONResponse:
    return JSONResponse(
        status_code=422,
        content={
            "error": "invalid_request",
            "detail": [
                {
                    "field": "query.model",
                    "message": f"unknown model {model[:64]!r}; expected one of: {', '.join(models)}, all",
                    "type": "unknown_model",
                }
            ],
        },
    )


def create_app(config: Config | None = None, *, system: GuardSystem | None = None) -> FastAPI:
    """The service for ``config`` (default: ``get_config()``), or around an already wired ``system``."""
    owned = system is None
    guarded = system if system is not None else GuardSystem.build(config)
    app = FastAPI(
        title="fragrance-ai",
        summary="Fragrance briefs from LLMs behind production guards.",
        version=__version__,
        lifespan=_lifespan(guarded, owned),
    )
    app.state.system = guarded
    models = guarded.config.model_names

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": "invalid_request", "detail": _clean_errors(exc)})

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"error": "internal_error"})

    @app.get("/health/llm")
    async def llm_health(
        model: str | None = Query(None, description=f"one of: {', '.join(models)}, all"),
    ) -> Any:
        """200 when the model is healthy, 503 when not; ``all`` (the default) is 200 with healthy|degraded."""
        if model is None or model == "all":
            results = await guarded.health_checker.check_all_models()
            return {"status": overall_status(results), "models": results}
        if model not in models:
            return _unknown_model(model, models)
        result = await guarded.health_checker.check_model(model)
        if result["status"] != "healthy":
            return JSONResponse(status_code=503, content={**result, "detail": f"Model {model} is unhealthy"})
        return result

    @app.get("/health/guards")
    async def guards_health() -> dict[str, Any]:
        """Effective guard settings, every breaker's state, the current mode and cache stats (no secrets)."""
        return guarded.guard_settings()

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(content=guarded.metrics.exposition(), media_type=CONTENT_TYPE)

    @app.post("/v1/briefs")
    async def create_brief(body: BriefRequest) -> Any:
        """A fragrance brief; on LLM faults the fallback brief (``error: true``), never a 5xx unless fallback is off."""
        try:
            result = await guarded.ensemble.generate_brief(body.prompt, body.mode)
        except NoModelAvailableError as exc:
            return JSONResponse(
                status_code=503,
                content={
                    "error": "no_model_available",
                    "mode": exc.mode,
                    "models_tried": [{"model": a.model, "outcome": a.outcome} for a in exc.tried],
                },
            )
        return result.to_dict()

    return app
