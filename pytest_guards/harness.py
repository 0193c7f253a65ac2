"""GuardHarness: the reference system wired for one test, on the test's clock, LLMs and registry.

``async with open_harness(config, clock=..., llm=...) as harness:`` is the one place that builds the
system and closes it again: the ``guard_system`` fixture, the scenario items and the service tests all
go through it. Every model is pointed at the ``llm`` fault injector through the real OpenAI-compatible
backend, so faults travel the real request path: HTTP client -> backend -> breaker -> guard -> cache.

What this module must not do: start the fault injector or the clock (their owners do, and stop them),
or read real time.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from fragrance_ai.clock import VirtualClock
from fragrance_ai.config_loader import Config
from pytest_guards.clock import GuardClock
from pytest_guards.faults import FaultyLLM
from pytest_guards.metrics import MetricsProbe

if TYPE_CHECKING:  # the service and the types of its parts; the plugin loads this module, so not at run time
    from fastapi import FastAPI

    from fragrance_ai.cache.lru_cache import LRUCacheWithTTL
    from fragrance_ai.llm.backends import LLMBackend
    from fragrance_ai.llm.circuit_breaker import CircuitBreaker, LLMCircuitBreakerManager
    from fragrance_ai.llm.ensemble import BriefResult, LLMEnsemble
    from fragrance_ai.llm.guards import JSONHardGuard
    from fragrance_ai.llm.health_check import LLMHealthChecker
    from fragrance_ai.llm.mode_controller import ModeController
    from fragrance_ai.service.system import GuardSystem

__all__ = ["GuardHarness", "HarnessClock", "open_harness", "point_models_at"]

#: the clocks a harness runs on: the plugin's (which also moves freezegun) or a bare VirtualClock
HarnessClock = GuardClock | VirtualClock


def point_models_at(config: Config, base_url_for: Callable[[str], str]) -> Config:
    """``config`` with every model served by the OpenAI-compatible backend at ``base_url_for(model)``."""
    models = {
        name: {"backend": "openai", "base_url": base_url_for(name), "model_id": m.model_id, "api_key_env": None}
        for name, m in config.llm.models.items()
    }
    return config.with_overrides({"llm": {"models": models}}, source=config.source)


@asynccontextmanager
async def open_harness(
    config: Config,
    *,
    clock: HarnessClock,
    llm: FaultyLLM,
    metrics: MetricsProbe | None = None,
    backends: Mapping[str, LLMBackend] | None = None,
    seed: int = 0,
) -> AsyncIterator[GuardHarness]:
    """The system for ``config`` on ``clock``, its models served by ``llm``; closed on exit, pass or fail.

    ``metrics`` (default: a fresh registry) is marked once the system is built, so ``delta`` counts
    from there. ``backends`` replaces models' backends (a backend with a bug, say). Settings the config
    loader accepts but a guard refuses raise ``ValueError`` here, before anything is opened.
    """
    harness = GuardHarness.build(config, clock, llm, metrics, backends=backends, seed=seed)
    try:
        yield harness
    finally:
        await harness.aclose()


@dataclass(eq=False)
class GuardHarness:
    """The wired system of one test: its parts, an HTTP client on its app, and its clock, LLMs and metrics."""

    system: GuardSystem
    app: FastAPI
    client: httpx.AsyncClient
    clock: HarnessClock
    llm: FaultyLLM
    metrics: MetricsProbe

    @classmethod
    def build(
        cls,
        config: Config,
        clock: HarnessClock,
        llm: FaultyLLM,
        metrics: MetricsProbe | None = None,
        *,
        backends: Mapping[str, LLMBackend] | None = None,
        seed: int = 0,
    ) -> GuardHarness:
        """Wire the parts (prefer :func:`open_harness`, which also closes them)."""
        from fragrance_ai.service.app import create_app  # FastAPI: imported when a system is built
        from fragrance_ai.service.system import GuardSystem

        system = GuardSystem.build(
            point_models_at(config, llm.base_url),
            clock=clock,
            sleep=clock.sleep,
            asleep=clock.asleep,
            atimeout=clock.timeout,
            rng=random.Random(seed),
            registry=None if metrics is None else metrics.registry,
            backends=backends,
            start_cleanup=False,
        )
        probe = metrics if metrics is not None else MetricsProbe(system.metrics.registry)
        app = create_app(system=system)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="http://guards.test")
        probe.mark()
        return cls(system=system, app=app, client=client, clock=clock, llm=llm, metrics=probe)

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.system.aclose()

    # shortcuts to the parts ---------------------------------------------------------------------------
    @property
    def config(self) -> Config:
        return self.system.config

    @property
    def ensemble(self) -> LLMEnsemble:
        return self.system.ensemble

    @property
    def breakers(self) -> LLMCircuitBreakerManager:
        return self.system.breakers

    @property
    def mode_controller(self) -> ModeController:
        return self.system.mode_controller

    @property
    def cache(self) -> LRUCacheWithTTL[str, BriefResult] | None:
        return self.system.cache

    @property
    def guard(self) -> JSONHardGuard:
        return self.system.guard

    @property
    def health_checker(self) -> LLMHealthChecker:
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
