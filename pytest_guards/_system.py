"""GuardHarness: the reference system wired for one test, on the test's clock, LLMs and registry.

Every model is pointed at the ``faulty_llm`` fault injector through the real OpenAI-compatible
backend, so faults travel the real request path: HTTP client -> backend -> breaker -> guard -> cache.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from fragrance_ai.config_loader import Config
from fragrance_ai.llm.circuit_breaker import CircuitBreaker
from fragrance_ai.llm.ensemble import BriefResult
from fragrance_ai.service.app import create_app
from fragrance_ai.service.system import GuardSystem
from pytest_guards._clock import GuardClock
from pytest_guards._faulty_llm import FaultyLLM
from pytest_guards._metrics import MetricsProbe

__all__ = ["GuardHarness", "point_models_at"]


def point_models_at(config: Config, base_url_for: Any) -> Config:
    """``config`` with every model served by the OpenAI-compatible backend at ``base_url_for(model)``."""
    models = {
        name: {"backend": "openai", "base_url": base_url_for(name), "model_id": m.model_id, "api_key_env": None}
        for name, m in config.llm.models.items()
    }
    return config.with_overrides({"llm": {"models": models}}, source=config.source)


@dataclass(eq=False)
class GuardHarness:
    """The wired system of one test: its parts, an HTTP client on its app, and its clock, LLMs and metrics."""

    system: GuardSystem
    app: FastAPI
    client: httpx.AsyncClient
    clock: GuardClock
    llm: FaultyLLM
    metrics: MetricsProbe

    @classmethod
    def build(cls, config: Config, clock: GuardClock, llm: FaultyLLM, metrics: MetricsProbe, *, seed: int = 0) -> GuardHarness:
        system = GuardSystem.build(
            point_models_at(config, llm.base_url),
            clock=clock,
            sleep=clock.sleep,
            asleep=clock.asleep,
            atimeout=clock.timeout,
            rng=random.Random(seed),
            registry=metrics.registry,
            start_cleanup=False,
        )
        app = create_app(system=system)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="http://guards.test")
        metrics.mark()
        return cls(system=system, app=app, client=client, clock=clock, llm=llm, metrics=metrics)

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.system.aclose()

    # shortcuts to the parts ---------------------------------------------------------------------------
    @property
    def config(self) -> Config:
        return self.system.config

    @property
    def ensemble(self) -> Any:
        return self.system.ensemble

    @property
    def breakers(self) -> Any:
        return self.system.breakers

    @property
    def mode_controller(self) -> Any:
        return self.system.mode_controller

    @property
    def cache(self) -> Any:
        return self.system.cache

    @property
    def guard(self) -> Any:
        return self.system.guard

    @property
    def health_checker(self) -> Any:
        return self.system.health_checker

    @property
    def mode(self) -> str:
        """The service's current mode."""
        return self.system.mode_controller.get_current_mode()

    def breaker(self, model: str) -> CircuitBreaker:
        breaker = self.system.breakers.get_breaker(model)
        if breaker is None:
            raise KeyError(f"no breaker for model {model!r}; configured: {', '.join(self.config.model_names)}")
        return breaker

    def state(self, model: str) -> str:
        """The breaker state of ``model``: closed, open or half_open."""
        return self.breaker(model).state

    async def brief(self, prompt: str, mode: str | None = None) -> BriefResult:
        """One brief through the ensemble (cache, breakers, guard, fallback), without HTTP."""
        result: BriefResult = await self.system.ensemble.generate_brief(prompt, mode)
        return result

    async def post_brief(self, prompt: str, mode: str | None = None) -> httpx.Response:
        """``POST /v1/briefs`` on the in-process app."""
        body: dict[str, Any] = {"prompt": prompt}
        if mode is not None:
            body["mode"] = mode
        return await self.client.post("/v1/briefs", json=body)
