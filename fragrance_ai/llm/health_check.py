"""Per-model LLM health checks: the gate before a canary is promoted to production.

:class:`LLMHealthChecker` reads the service's live, shared breaker manager (an open breaker reports
``circuit_breaker_open`` without spending an inference), runs one test inference per model with the
timeout enforced by cancellation, checks every model concurrently, and reuses a result for a few
seconds so that frequent probes do not each cost an inference. Sharing and reuse are the cache's single
flight and TTL (an :class:`~fragrance_ai.cache.lru_cache.LRUCacheWithTTL` of results on the injected
clock), not a second implementation. Results carry fixed reason codes only (classified by
:func:`~fragrance_ai.llm.failures.failure_reason`): exception text, URLs and keys never leave this module.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

from fragrance_ai.cache.lru_cache import Loaded, LRUCacheWithTTL
from fragrance_ai.clock import AsyncSleepFn, AsyncTimeoutFn, Clock, monotonic
from fragrance_ai.constants import CIRCUIT_BREAKER_OPEN, HEALTH_REASONS
from fragrance_ai.llm.circuit_breaker import CLOSED, OPEN, LLMCircuitBreakerManager
from fragrance_ai.llm.failures import failure_reason

if TYPE_CHECKING:
    from fragrance_ai.llm.ensemble import LLMEnsemble
    from fragrance_ai.metrics import GuardMetrics

__all__ = ["REASONS", "LLMHealthChecker", "overall_status"]

logger = logging.getLogger(__name__)

#: every reason an unhealthy result can carry
REASONS: Final = HEALTH_REASONS


def overall_status(results: dict[str, dict[str, Any]]) -> str:
    """``healthy`` when every model is, ``degraded`` when some are, ``unhealthy`` when none is (503 for ``all``)."""
    healthy = sum(r["status"] == "healthy" for r in results.values())
    if not healthy:
        return "unhealthy"
    return "healthy" if healthy == len(results) else "degraded"


class LLMHealthChecker:
    """Health of each configured model, from the shared ensemble and breaker manager it is given."""

    def __init__(
        self,
        ensemble: LLMEnsemble,
        breaker_manager: LLMCircuitBreakerManager | None = None,
        *,
        timeout: float | None = None,
        cache_seconds: float | None = None,
        prompt: str | None = None,
        clock: Clock | None = None,
        atimeout: AsyncTimeoutFn = asyncio.timeout,
        metrics: GuardMetrics | None = None,
    ) -> None:
        settings = ensemble.config.health_check
        self.ensemble = ensemble
        self.circuit_breaker_manager = breaker_manager if breaker_manager is not None else ensemble.breakers
        self.timeout = settings.timeout if timeout is None else timeout
        self.cache_seconds = settings.cache_seconds if cache_seconds is None else cache_seconds
        self.prompt = settings.prompt if prompt is None else prompt
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds; got {self.timeout!r}")
        if self.cache_seconds < 0:
            raise ValueError(f"cache_seconds must be >= 0; got {self.cache_seconds!r}")
        self.models: tuple[str, ...] = tuple(ensemble.config.model_names)
        self._clock: Clock = clock if clock is not None else monotonic
        self._atimeout = atimeout
        self._metrics = metrics
        # fresh results by model; its single flight shares one check among concurrent probes. With
        # cache_seconds 0 nothing is stored (the TTL must still be > 0: any value will do)
        self._results: LRUCacheWithTTL[str, dict[str, Any]] = LRUCacheWithTTL(
            max_size=max(1, len(self.models)),
            ttl_seconds=self.cache_seconds or 1.0,
            clock=self._clock,
            name="health_results",
            start_cleanup=False,
        )
        #: test inferences actually run (cached and shared probes do not add to it)
        self.inferences_total = 0

    async def check_model(self, model: str) -> dict[str, Any]:
        """The health of one configured model (``ValueError`` for an unknown one)."""
        if model not in self.models:
            raise ValueError(f"unknown model {model!r}; expected one of: {', '.join(self.models)}")
        breaker = self.circuit_breaker_manager.get_breaker(model)
        if breaker is not None and breaker.state == OPEN:
            result = {
                "model": model,
                "status": "unhealthy",
                "reason": CIRCUIT_BREAKER_OPEN,
                "circuit_state": OPEN,
                "retry_after_s": round(breaker.retry_after(), 3),
            }
            self._record(model, result, None)
            return result
        # detach: a probe that gives up must not cancel the check other probes are waiting for
        fetched = await self._results.aget_or_load(model, lambda: self._load(model), detach=True)
        if fetched.origin == "hit":
            # the inference result may be reused; the breaker state is live and read again
            return {**fetched.value, "circuit_state": breaker.state if breaker is not None else CLOSED}
        return dict(fetched.value)

    async def probe_forever(self, interval: float, asleep: AsyncSleepFn = asyncio.sleep) -> None:
        """Check every model each ``interval`` seconds until cancelled (the service's background probe).

        Keeps ``llm_health_status`` fresh when nobody calls ``/health/llm``, and lets the mode upshift
        while there is no traffic. A failing round is logged; the next one still runs.
        """
        if interval <= 0:
            raise ValueError(f"interval must be > 0 seconds; got {interval!r}")
        while True:
            try:
                await self.check_all_models()
                self.circuit_breaker_manager.evaluate_upshift()
            except Exception:
                logger.exception("background health probe failed")
            await asleep(interval)

    async def check_all_models(self) -> dict[str, dict[str, Any]]:
        """Every configured model's health, checked concurrently (wall time is the slowest, not the sum)."""
        results = await asyncio.gather(*(self.check_model(m) for m in self.models))
        return dict(zip(self.models, results, strict=True))

    async def _load(self, model: str) -> Loaded[dict[str, Any]]:
        result = await self._run_check(model)
        return Loaded(result, store=self.cache_seconds > 0)

    async def _run_check(self, model: str) -> dict[str, Any]:
        self.inferences_total += 1
        started = self._clock()
        reason: str | None = None
        try:
            # the deadline cancels the whole check (inference and judging), not only the backend call
            async with self._atimeout(self.timeout):
                brief = await self.ensemble.generate_single(self.prompt, model, timeout=self.timeout)
            if not brief:
                reason = "invalid_response"
        except AssertionError:
            raise  # a test double's complaint (respx: unmatched request) must reach the test
        except Exception as exc:
            reason = failure_reason(exc)
            if reason == "error":
                logger.error("health check of %s failed unexpectedly", model, exc_info=exc)
        elapsed = max(0.0, self._clock() - started)
        breaker = self.circuit_breaker_manager.get_breaker(model)
        result: dict[str, Any] = {"model": model, "status": "healthy" if reason is None else "unhealthy"}
        if reason is not None:
            result["reason"] = reason if reason in REASONS else "error"
        result["latency_ms"] = int(elapsed * 1000)
        result["circuit_state"] = breaker.state if breaker is not None else CLOSED
        self._record(model, result, elapsed)
        return result

    def _record(self, model: str, result: dict[str, Any], elapsed: float | None) -> None:
        metrics = self._metrics
        if metrics is None:
            return
        healthy = result["status"] == "healthy"
        metrics.health_status.labels(model=model).set(1 if healthy else 0)
        if elapsed is not None:
            metrics.health_check_duration.labels(model=model).observe(elapsed)
        if not healthy:
            metrics.health_check_failures.labels(model=model).inc()
