"""The FastAPI app: fragrance briefs behind every guard, the health gate, guard settings and metrics.

Routes only translate HTTP to the shared :class:`GuardSystem` and back. No exception text ever
reaches a client: bad requests get a 422 naming the field by the schema's names and echoing nothing
(:mod:`~fragrance_ai.service.http_edge`), a body over ``service.max_body_bytes`` a 413 before it is
read, LLM faults a fallback brief (200, ``error: true``), anything unexpected a bare 500 with a fixed
code. Every status a route can answer is in the OpenAPI document, with the body models of
:mod:`~fragrance_ai.service.http_models`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, Final, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from fragrance_ai import __version__
from fragrance_ai.config_loader import Config
from fragrance_ai.llm.ensemble import NoModelAvailableError
from fragrance_ai.llm.health_check import overall_status
from fragrance_ai.metrics import CONTENT_TYPE
from fragrance_ai.service.admin import AdminTokens, install_admin
from fragrance_ai.service.http_edge import BodyLimit, clean_errors, invalid_request
from fragrance_ai.service.http_models import (
    MAX_PROMPT_CHARS,
    BodyTooLarge,
    BriefOut,
    BriefRequest,
    HealthAnswer,
    InternalError,
    InvalidRequest,
    NoModelAvailable,
    RequestTimeout,
)
from fragrance_ai.service.system import GuardSystem

__all__ = ["MAX_PROMPT_CHARS", "BriefRequest", "create_app"]

logger = logging.getLogger(__name__)

_JSON: Final = "application/json"
_INVALID: Final[dict[int | str, dict[str, Any]]] = {
    422: {"model": InvalidRequest, "description": "the request does not match this document"},
    500: {"model": InternalError, "description": "a bug: logged, never described to the client"},
}


def _json_content_type(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == _JSON or (media.startswith("application/") and media.endswith("+json"))


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


def _install_error_handlers(app: FastAPI, fields: dict[str, tuple[str, ...]], unknown: dict[str, Any]) -> None:
    """422 for every malformed request (``unknown``: the error for a model not configured), 500 for a bug."""

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [unknown if tuple(e.get("loc", ()))[:2] == ("query", "model") else e for e in exc.errors()]
        if request.method == "POST" and not _json_content_type(request):
            errors = [{"loc": ("body",), "type": "content_type"}]
        return invalid_request(clean_errors(errors, fields))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400:  # FastAPI could not decode the body (bytes that are not UTF-8)
            return invalid_request(clean_errors([{"loc": ("body",), "type": "json_encoding"}], fields))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"error": "internal_error"})


def create_app(
    config: Config | None = None, *, system: GuardSystem | None = None, environ: Mapping[str, str] | None = None
) -> FastAPI:
    """The service for ``config`` (default: ``get_config()``), or around an already wired ``system``.

    ``environ`` (default ``os.environ``) is where the admin tokens are read (:mod:`.admin`); a malformed
    ``FRAGRANCE_ADMIN_TOKENS`` raises :class:`~fragrance_ai.service.admin.AdminTokenError` (a ValueError).
    """
    admin_tokens = AdminTokens.from_env(environ)  # before anything is built: a bad value starts nothing
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
    fields = {"body": tuple(BriefRequest.model_fields), "query": ("model",)}
    expected = f"unknown model; expected one of: {', '.join(models)}, all"
    unknown = {"loc": ("query", "model"), "type": "unknown_model", "msg": expected}

    _install_error_handlers(app, fields, unknown)

    async def llm_health(model: str | None = None) -> Any:
        """One model: 200 healthy, 503 not. ``all`` (the default): 200 healthy or degraded, 503 when none is healthy."""
        if model is None or model == "all":
            results = await guarded.health_checker.check_all_models()
            status = overall_status(results)
            return JSONResponse(status_code=503 if status == "unhealthy" else 200, content={"status": status, "models": results})
        result = await guarded.health_checker.check_model(model)
        if result["status"] != "healthy":
            return JSONResponse(status_code=503, content={**result, "detail": f"Model {model} is unhealthy"})
        return result

    # the accepted names come from the config: published as an enum and enforced by the same annotation
    choice: Any = Literal.__getitem__((*models, "all"))
    llm_health.__annotations__["model"] = Annotated[choice | None, Query(description="a configured model, or all (the default)")]
    health_responses: dict[int | str, dict[str, Any]] = {
        200: {"model": HealthAnswer, "description": "healthy (one model), or healthy|degraded (all)"},
        503: {"model": HealthAnswer, "description": "the model is unhealthy; for all: no model is healthy"},
        **_INVALID,
    }
    app.get("/health/llm", response_model=None, responses=health_responses)(llm_health)

    @app.get("/health/guards", responses={500: _INVALID[500]})
    async def guards_health() -> dict[str, Any]:
        """Effective guard settings, every breaker's state, the current mode and cache stats (no secrets)."""
        return guarded.guard_settings()

    metrics_doc = {"description": "Prometheus text exposition", "content": {"text/plain": {"schema": {"type": "string"}}}}

    @app.get("/metrics", response_class=Response, responses={200: metrics_doc, 500: _INVALID[500]})
    async def metrics() -> Response:
        """Every guard metric in the Prometheus text format."""
        return Response(content=guarded.metrics.exposition(), media_type=CONTENT_TYPE)

    brief_responses: dict[int | str, dict[str, Any]] = {
        200: {"model": BriefOut, "description": "a brief (from a model, the cache, or the fallback)"},
        408: {"model": RequestTimeout, "description": "the body did not arrive in time"},
        413: {"model": BodyTooLarge, "description": "the body is longer than service.max_body_bytes"},
        503: {"model": NoModelAvailable, "description": "every model failed and the fallback is off"},
        **_INVALID,
    }

    @app.post("/v1/briefs", response_model=None, responses=brief_responses)
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

    install_admin(app, guarded, admin_tokens)
    app.add_middleware(BodyLimit, max_body_bytes=guarded.config.service.max_body_bytes)
    return app
