"""Per-model LLM health checks: the gate before a canary is promoted to production.

:class:`LLMHealthChecker` reads the service's live, shared breaker manager (an open breaker reports
``circuit_breaker_open`` without spending an inference), runs one test inference per model with the
timeout enforced by cancellation, checks every model concurrently, and reuses a result for a few
seconds so that frequent probes do not each cost an inference. Results carry fixed reason codes only:
exception text, URLs and keys never leave this module.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING, Any, Final

from fragrance_ai.clock import AsyncSleepFn, AsyncTimeoutFn, Clock, monotonic
from fragrance_ai.llm.backends import BackendError, error_kind
from fragrance_ai.llm.circuit_breaker import CLOSED, OPEN, LLMCircuitBreakerManager
from fragrance_ai.llm.guards import JSONGuardError

if TYPE_CHECKING:
    from fragrance_ai.llm.ensemble import LLMEnsemble
    from fragrance_ai.metrics import GuardMetrics

__all__ = ["LLMHealthChecker", "REASONS", "overall_status"]

logger = logging.getLogger(__name__)

#: every reason an unhealthy result can carry
REASONS: Final = ("circuit_breaker_open", "timeout", "invalid_response", "connection_error", "http_error", "error")


def overall_status(results: dict[str, dict[str, Any]]) -> str:
    """``healthy`` when every model is, else ``degraded``."""
    return "healthy" if results and all(r["status"] == "healthy" for r in results.values()) else "degraded"


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
        self._results: dict[str, tuple[float, dict[str, Any]]] = {}
        self._inflight: dict[str, asyncio.Task[dict[str, Any]]] = {}
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
                "reason": "circuit_breaker_open",
                "circuit_state": OPEN,
                "retry_after_s": round(breaker.retry_after(), 3),
            }
            self._record(model, result, None)
            return result
        cached = self._results.get(model)
        if cached is not None and self._clock() - cached[0] < self.cache_seconds:
            # the inference result may be reused; the breaker state is live and read again
            return {**cached[1], "circuit_state": breaker.state if breaker is not None else CLOSED}
        task = self._inflight.get(model)
        if task is None or task.done():
            task = asyncio.ensure_future(self._run_check(model))
            self._inflight[model] = task
            task.add_done_callback(functools.partial(self._forget, model))
        # shield: a probe that gives up must not cancel the check other probes are waiting for
        return dict(await asyncio.shield(task))

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
            except Exception:  # noqa: BLE001 - a probe must never stop probing
                logger.exception("background health probe failed")
            await asleep(interval)

    async def check_all_models(self) -> dict[str, dict[str, Any]]:
        """Every configured model's health, checked concurrently (wall time is the slowest, not the sum)."""
        results = await asyncio.gather(*(self.check_model(m) for m in self.models))
        return dict(zip(self.models, results, strict=True))

    def _forget(self, model: str, task: asyncio.Task[dict[str, Any]]) -> None:
        if self._inflight.get(model) is task:
            del self._inflight[model]

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
        except TimeoutError:
            reason = "timeout"
        except JSONGuardError:
            reason = "invalid_response"
        except BackendError as exc:
            reason = error_kind(exc)
        except AssertionError:
            raise  # a test double's complaint (respx: unmatched request) must reach the test
        except Exception:  # noqa: BLE001 - any other fault is an unhealthy model, never a 500
            logger.exception("health check of %s failed unexpectedly", model)
            reason = "error"
        elapsed = max(0.0, self._clock() - started)
        breaker = self.circuit_breaker_manager.get_breaker(model)
        result: dict[str, Any] = {"model": model, "status": "healthy" if reason is None else "unhealthy"}
        if reason is not None:
            result["reason"] = reason if reason in REASONS else "error"
        result["latency_ms"] = int(elapsed * 1000)
        result["circuit_state"] = breaker.state if breaker is not None else CLOSED
        self._record(model, result, elapsed)
        if self.cache_seconds > 0:
            self._results[model] = (self._clock(), dict(result))
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
