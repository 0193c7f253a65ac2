"""Build one guarded system from a config: one metrics registry, one mode controller, one breaker
manager, one cache, one JSON guard, the backends, the ensemble and the health checker, each built once
and handed to whoever needs it. The service and the pytest plugin both build through here.

Time, sleeps, timeouts and randomness are parameters, so tests run the whole system on a virtual clock.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
from prometheus_client import CollectorRegistry

from fragrance_ai.cache.lru_cache import LRUCacheWithTTL
from fragrance_ai.clock import AsyncSleepFn, AsyncTimeoutFn, Clock, SleepFn, monotonic
from fragrance_ai.config_loader import Config, get_config
from fragrance_ai.llm.backends import LLMBackend, build_backend, default_ssl_context
from fragrance_ai.llm.circuit_breaker import LLMCircuitBreakerManager
from fragrance_ai.llm.ensemble import BriefResult, LLMEnsemble, ModelAttempt
from fragrance_ai.llm.guards import JSONHardGuard
from fragrance_ai.llm.health_check import LLMHealthChecker
from fragrance_ai.llm.mode_controller import ModeController
from fragrance_ai.llm.panic import PanicRule
from fragrance_ai.llm.retry_budget import RetryBudget
from fragrance_ai.llm.schemas import brief_schema
from fragrance_ai.metrics import GuardMetrics
from fragrance_ai.state import RedisLink, SharedCircuitBreaker, SharedLRUCache, SharedModeController, open_link

__all__ = ["GuardSystem"]


@dataclass(eq=False)
class GuardSystem:
    """Every guard of one service, wired together."""

    config: Config
    metrics: GuardMetrics
    mode_controller: ModeController
    breakers: LLMCircuitBreakerManager
    cache: LRUCacheWithTTL[str, BriefResult] | None
    guard: JSONHardGuard
    backends: dict[str, LLMBackend]
    ensemble: LLMEnsemble
    health_checker: LLMHealthChecker
    clock: Clock
    asleep: AsyncSleepFn = field(default=asyncio.sleep, repr=False)
    #: the replica's link to the fleet's Redis (``state.backend: redis``), else None
    state: RedisLink | None = None
    _owned_client: httpx.AsyncClient | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        config: Config | None = None,
        *,
        clock: Clock | None = None,
        sleep: SleepFn | None = None,
        asleep: AsyncSleepFn | None = None,
        atimeout: AsyncTimeoutFn | None = None,
        rng: random.Random | None = None,
        registry: CollectorRegistry | None = None,
        backends: Mapping[str, LLMBackend] | None = None,
        http_client: httpx.AsyncClient | None = None,
        start_cleanup: bool = True,
    ) -> GuardSystem:
        """Wire a system; pass ``clock``/``asleep``/``atimeout`` from a VirtualClock to run it in virtual time."""
        config = config if config is not None else get_config()
        clock = clock if clock is not None else monotonic
        atimeout = atimeout if atimeout is not None else asyncio.timeout
        metrics = GuardMetrics(registry, models=config.model_names)
        mc = config.mode_controller
        link: RedisLink | None = None
        if config.state.backend == "redis":
            # the real monotonic clock differs between hosts: shared durations then use Redis's TIME;
            # an injected clock (a test's virtual time) drives the scripts too
            link = open_link(config.state, clock=clock, shared_clock=None if clock is monotonic else clock)
            link.track(metrics.registry)
            mode_controller: ModeController = SharedModeController(
                link, mc.initial_mode, upshift_quiet_period=mc.upshift_quiet_period, clock=clock
            )
            factory = functools.partial(SharedCircuitBreaker, link=link)
            breakers = LLMCircuitBreakerManager(config, mode_controller, clock=clock, breaker_factory=factory)
        else:
            mode_controller = ModeController(mc.initial_mode, upshift_quiet_period=mc.upshift_quiet_period, clock=clock)
            breakers = LLMCircuitBreakerManager(config, mode_controller, clock=clock)
        cache: LRUCacheWithTTL[str, BriefResult] | None = None
        if config.cache.enabled and link is not None:
            cache = SharedLRUCache(
                link,
                encode=_encode_brief,
                decode=_decode_brief,
                asleep=asleep if asleep is not None else asyncio.sleep,
                # a leader's lease must outlast one pass over the longest mode's models
                lease_seconds=config.json_guard.deadline * max(len(m.models) for m in config.modes.values()),
                max_size=config.cache.max_size,
                ttl_seconds=config.cache.ttl_seconds,
                cleanup_interval=config.cache.cleanup_interval,
                clock=clock,
                start_cleanup=start_cleanup,
            )
        elif config.cache.enabled:
            cache = LRUCacheWithTTL(
                max_size=config.cache.max_size,
                ttl_seconds=config.cache.ttl_seconds,
                cleanup_interval=config.cache.cleanup_interval,
                clock=clock,
                start_cleanup=start_cleanup,
            )
        jg = config.json_guard
        guard = JSONHardGuard(
            max_retries=jg.max_retries if jg.enabled else 0,
            backoff_base=jg.backoff_base,
            jitter=jg.jitter,
            backoff_max=jg.backoff_max,
            deadline=jg.deadline,
            fallback_enabled=jg.fallback_enabled,
            max_input_bytes=jg.max_input_bytes,
            max_depth=jg.max_depth,
            max_reported_errors=jg.max_reported_errors,
            clock=clock,
            sleep=sleep,
            asleep=asleep,
            rng=rng,
        )
        owned: httpx.AsyncClient | None = None
        if backends is None:
            needs_http = any(m.backend == "openai" for m in config.llm.models.values())
            if needs_http and http_client is None:
                http_client = owned = httpx.AsyncClient(verify=default_ssl_context())
            backends = {name: build_backend(m, client=http_client, atimeout=atimeout) for name, m in config.llm.models.items()}
        ensemble = LLMEnsemble(
            config,
            backends=backends,
            breakers=breakers,
            guard=guard,
            schema=brief_schema(strict=jg.strict_schema),
            cache=cache,
            atimeout=atimeout,
            # per process, also with state.backend: redis (each replica against its own first attempts)
            retry_budget=RetryBudget(
                enabled=jg.retry_budget_enabled,
                ratio=jg.retry_budget_ratio,
                min_per_second=jg.retry_budget_min_per_second,
                window=jg.retry_budget_window,
                clock=clock,
            ),
            panic=PanicRule(
                enabled=config.circuit_breaker.panic_enabled,
                interval=config.circuit_breaker.panic_interval,
                clock=clock,
                # shared breakers (Redis) are read, never released from one replica
                release_on_success=config.state.backend == "memory",
            ),
        )
        health = LLMHealthChecker(ensemble, breakers, clock=clock, atimeout=atimeout, metrics=metrics)
        metrics.track_breakers(breakers)
        metrics.track_modes(mode_controller)
        metrics.track_guard(guard)
        metrics.track_ensemble(ensemble)
        if ensemble.retry_budget is not None:
            metrics.track_retry_budget(ensemble.retry_budget)
        if ensemble.panic is not None:
            metrics.track_panic(ensemble.panic)
        if cache is not None:
            metrics.track_cache(cache)
        return cls(
            config=config,
            metrics=metrics,
            mode_controller=mode_controller,
            breakers=breakers,
            cache=cache,
            guard=guard,
            backends=dict(backends),
            ensemble=ensemble,
            health_checker=health,
            clock=clock,
            asleep=asleep if asleep is not None else asyncio.sleep,
            state=link,
            _owned_client=owned,
        )

    def guard_settings(self) -> dict[str, Any]:
        """What a remote pre-promotion check needs to see: effective guard settings and live states, no secrets.

        The settings are a selection of ``config.to_dict(redact=True)`` (the one serialisation of a config)
        next to the live breaker states, mode and cache stats.
        """
        settings = self.config.to_dict(redact=True)
        cb = settings["circuit_breaker"]
        return {
            # which backend serves each model; never its base_url (it may carry credentials) or key
            "models": {name: _pick(m, _MODEL_KEYS) for name, m in settings["llm"]["models"].items()},
            "json_guard": _pick(settings["json_guard"], _JSON_GUARD_KEYS),
            "circuit_breaker": {
                "enabled": cb["enabled"],
                "auto_downshift": cb["auto_downshift"],
                "panic_enabled": cb["panic_enabled"],
                "panic_interval": cb["panic_interval"],
                "models": {
                    model: {**s, "state": self.breakers.breakers[model].state} for model, s in cb["models"].items()
                },
            },
            "mode": {
                "current": self.mode_controller.get_current_mode(),
                "initial": settings["mode_controller"]["initial_mode"],
                "modes": {name: m["models"] for name, m in settings["modes"].items()},
                "seconds_until_upshift": self.mode_controller.seconds_until_upshift(),
                "downshifts_total": self.mode_controller.downshifts_total,
                "upshifts_total": self.mode_controller.upshifts_total,
            },
            "cache": {
                **_pick(settings["cache"], _CACHE_KEYS),
                "stats": self.cache.stats() if self.cache is not None else None,
            },
            "health_check": _pick(settings["health_check"], _HEALTH_KEYS),
            "state": self.state.status() if self.state is not None else {"backend": "memory"},
            # every effective setting, as check-config prints it, for remote checks against a policy;
            # models show what serves them, never where (a base_url may name internal hosts)
            "settings": {
                **settings,
                "llm": {**settings["llm"], "models": {n: _pick(m, _MODEL_KEYS) for n, m in settings["llm"]["models"].items()}},
            },
        }

    async def aclose(self) -> None:
        """Release what the system owns: backends' HTTP clients and the cache's cleanup registration."""
        for backend in self.backends.values():
            await backend.aclose()
        if self._owned_client is not None:
            await self._owned_client.aclose()
        if self.cache is not None:
            self.cache.close()
        if self.state is not None:
            self.state.close()


#: what ``/health/guards`` shows of each section of the config
_MODEL_KEYS: Final = ("backend", "model_id", "timeout", "stream", "chunk_timeout")
_JSON_GUARD_KEYS: Final = (
    "enabled", "max_retries", "backoff_base", "jitter", "backoff_max", "deadline", "fallback_enabled", "strict_schema",
    "retry_budget_enabled", "retry_budget_ratio", "retry_budget_min_per_second", "retry_budget_window",
)
_CACHE_KEYS: Final = ("enabled", "max_size", "ttl_seconds", "cleanup_interval")
_HEALTH_KEYS: Final = ("timeout", "cache_seconds", "probe_interval")


def _encode_brief(result: BriefResult) -> str:
    """A brief as the fleet's cache holds it (a fallback only travels to its leader's waiters, never cached),
    with the models the leader tried: a waiter of a shared failure reports them (``models_tried``)."""
    data = {"brief": result.brief, "source": result.source, "model": result.model, "mode": result.mode}
    tried = [[a.model, a.outcome, a.answers] for a in result.tried]
    return json.dumps({**data, "attempts": result.attempts, "tried": tried})


def _decode_brief(text: str) -> BriefResult:
    data = json.loads(text)
    tried = tuple(ModelAttempt(str(m), str(o), int(n)) for m, o, n in data.get("tried", ()))
    return BriefResult(data["brief"], data["source"], data["model"], data["mode"], data["attempts"], tried)


def _pick(section: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: section[key] for key in keys}
