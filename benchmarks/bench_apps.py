"""The servers the per-core service benchmark starts with uvicorn (``--factory``): ours, and the bare anchor.

Each factory builds a whole app from scratch in the worker process, so ``--workers 2`` gives every worker
its own state (cache and breakers per worker, as the service runs without a shared backend). Nothing here
is measured; ``bench_service_load`` starts these servers, drives them with hey and stops them.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from fragrance_ai.config_loader import get_config
from fragrance_ai.llm.backends import SimulatedBackend
from fragrance_ai.llm.backends.base import CompletionRequest
from fragrance_ai.service.app import create_app


def ours_full() -> FastAPI:
    """The full brief path with the cache off: breaker, simulated model, JSON guard, every request."""
    return create_app(get_config().with_overrides({"cache": {"enabled": False}}))


def ours_cached() -> FastAPI:
    """The shipped config: after the first request for a prompt, every one is a cache hit."""
    return create_app(get_config())


def anchor() -> FastAPI:
    """A bare FastAPI endpoint doing the same backend call (the first model, simulated) and returning its JSON."""
    backend = SimulatedBackend("qwen")
    app = FastAPI()

    @app.post("/v1/briefs")
    async def create_brief(body: dict[str, Any]) -> dict[str, Any]:
        response = await backend.complete(CompletionRequest.from_prompt(str(body.get("prompt", "")), system="brief"))
        brief: dict[str, Any] = json.loads(response.text)
        return {"brief": brief, "source": "model", "model": "qwen"}

    return app
