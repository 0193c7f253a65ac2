"""Every guard metric in one place, registrable on any ``CollectorRegistry``.

The guards keep plain integer counters under the locks they already hold; a custom collector reads
them when Prometheus scrapes, so no ``Counter.inc()`` sits on the per-request hot path. Only the health
checker (a few calls a minute) uses prometheus_client metric objects directly.

Every per-model series exists from start-up (zero-valued), so alerts and dashboards never see gaps.
This module imports no guard: it reads the attributes each guard documents.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from fragrance_ai.constants import BRIEF_SOURCES, JSON_FAILURE_REASONS, MODES

__all__ = ["BRIEF_SOURCES", "CONTENT_TYPE", "HEALTH_BUCKETS", "JSON_FAILURE_REASONS", "STATE_VALUES", "GuardMetrics"]

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE

#: ``circuit_breaker_state`` values, as the checklist defines them
STATE_VALUES = {"closed": 0, "open": 1, "half_open": 2}

# every reason label of ``llm_json_parse_failures_total`` and every source label of ``llm_briefs_total``
# are present from start-up; both lists live in fragrance_ai.constants (re-exported here)

#: health-check latency buckets reach well past any sane probe timeout (the client's default stops at 10 s)
HEALTH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0)


class _Cache(Protocol):
    hits: int
    misses: int
    evictions: int
    expirations: int
    max_size: int

    def __len__(self) -> int: ...


class _Breaker(Protocol):
    model: str
    requests_total: int
    failures_total: int
    rejected_total: int
    opened_total: int

    @property
    def state(self) -> str: ...


class _BreakerManager(Protocol):
    breakers: dict[str, Any]


class _Modes(Protocol):
    downshift_requests_total: int
    downshifts_total: int
    upshifts_total: int

    def get_current_mode(self) -> str: ...


class _Guard(Protocol):
    def snapshot(self) -> Any: ...


class _Ensemble(Protocol):
    def briefs_snapshot(self) -> Mapping[str, int]: ...
    def tokens_snapshot(self) -> Mapping[tuple[str, str], int]: ...
    def model_errors_snapshot(self) -> Mapping[tuple[str, str], int]: ...


class _Budget(Protocol):
    def snapshot(self) -> Any: ...


class _Panic(Protocol):
    def snapshot(self) -> Mapping[tuple[str, str], int]: ...


class _GuardCollector(Collector):
    """Reads the tracked guards' own counters at scrape time."""

    def __init__(self, modes: Sequence[str]) -> None:
        self._lock = threading.Lock()
        self._modes = tuple(modes)
        self.cache: _Cache | None = None
        self.breakers: _BreakerManager | None = None
        self.mode_controller: _Modes | None = None
        self.guard: _Guard | None = None
        self.ensemble: _Ensemble | None = None
        self.retry_budget: _Budget | None = None
        self.panic: _Panic | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # names are fixed; nothing to check against other collectors

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cache, breakers, modes, guard = self.cache, self.breakers, self.mode_controller, self.guard
            ensemble, budget, panic = self.ensemble, self.retry_budget, self.panic
        if cache is not None:
            yield from _cache_metrics(cache)
        if breakers is not None:
            yield from _breaker_metrics(breakers)
        if modes is not None:
            yield from _mode_metrics(modes, self._modes)
        if guard is not None:
            yield from _guard_metrics(guard)
        if ensemble is not None:
            yield _ensemble_metrics(ensemble)
            yield _token_metrics(ensemble)
            yield _model_error_metrics(ensemble)
        if budget is not None:
            yield from _budget_metrics(budget)
        if panic is not None:
            yield _panic_metrics(panic)


def _cache_metrics(cache: _Cache) -> Iterator[Metric]:
    yield CounterMetricFamily("cache_hits", "Cache lookups that found a fresh entry.", value=cache.hits)
    yield CounterMetricFamily("cache_misses", "Cache lookups that found nothing fresh.", value=cache.misses)
    yield CounterMetricFamily("cache_evictions", "Entries evicted as least recently used.", value=cache.evictions)
    yield CounterMetricFamily(
        "cache_ttl_expirations", "Entries dropped because their TTL passed.", value=cache.expirations
    )
    yield GaugeMetricFamily("cache_size", "Entries in the cache.", value=len(cache))
    yield GaugeMetricFamily("cache_max_size", "Capacity of the cache in entries.", value=cache.max_size)


def _breaker_metrics(manager: _BreakerManager) -> Iterator[Metric]:
    state = GaugeMetricFamily(
        "circuit_breaker_state", "Circuit breaker state (0=closed, 1=open, 2=half_open).", labels=["model"]
    )
    requests = CounterMetricFamily("llm_requests", "Calls to a model admitted by its breaker.", labels=["model"])
    failures = CounterMetricFamily("llm_request_failures", "Calls to a model that failed.", labels=["model"])
    rejected = CounterMetricFamily(
        "circuit_breaker_rejected", "Calls rejected without reaching the model.", labels=["model"]
    )
    opened = CounterMetricFamily("circuit_breaker_opened", "Transitions of a breaker to open.", labels=["model"])
    for model, breaker in list(manager.breakers.items()):
        state.add_metric([model], STATE_VALUES.get(breaker.state, -1))
        requests.add_metric([model], breaker.requests_total)
        failures.add_metric([model], breaker.failures_total)
        rejected.add_metric([model], breaker.rejected_total)
        opened.add_metric([model], breaker.opened_total)
    yield from (state, requests, failures, rejected, opened)


def _mode_metrics(controller: _Modes, modes: Sequence[str]) -> Iterator[Metric]:
    yield CounterMetricFamily(
        "llm_mode_downshift", "Automatic downshifts of the service mode.", value=controller.downshifts_total
    )
    yield CounterMetricFamily(
        "llm_mode_downshift_requests",
        "Breaker openings that asked for a downshift, also those that could not move the mode (already fast).",
        value=controller.downshift_requests_total,
    )
    yield CounterMetricFamily(
        "llm_mode_upshift", "Upshifts of the service mode after a quiet period.", value=controller.upshifts_total
    )
    current = controller.get_current_mode()
    gauge = GaugeMetricFamily("llm_mode_current", "1 for the service's current mode.", labels=["mode"])
    for mode in modes:
        gauge.add_metric([mode], 1.0 if mode == current else 0.0)
    yield gauge


def _guard_metrics(guard: _Guard) -> Iterator[Metric]:
    snap = guard.snapshot()
    failures = CounterMetricFamily(
        "llm_json_parse_failures", "LLM answers rejected by the JSON guard.", labels=["reason"]
    )
    by_reason = dict(snap.parse_failures)
    for reason in JSON_FAILURE_REASONS:
        failures.add_metric([reason], by_reason.pop(reason, 0))
    for reason, count in sorted(by_reason.items()):
        failures.add_metric([reason], count)
    yield failures
    yield CounterMetricFamily(
        "llm_json_fallback_used", "Guarded calls answered with the fallback.", value=snap.fallbacks_total
    )
    yield CounterMetricFamily(
        "llm_json_guard_requests", "Calls through the JSON guard.", value=snap.requests_total
    )
    histogram: list[int] = list(snap.retry_histogram)
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for retries, count in enumerate(histogram):
        cumulative += count
        buckets.append((str(float(retries)), cumulative))
    buckets.append(("+Inf", cumulative))
    yield HistogramMetricFamily(
        "llm_json_retry_count",
        "Re-asks needed per guarded call.",
        buckets=buckets,
        sum_value=snap.retries_total,
    )


def _ensemble_metrics(ensemble: _Ensemble) -> Metric:
    briefs = CounterMetricFamily(
        "llm_briefs", "Briefs served, by source (cache, model or fallback); a 503 is not a brief.", labels=["source"]
    )
    by_source = dict(ensemble.briefs_snapshot())
    for source in BRIEF_SOURCES:
        briefs.add_metric([source], by_source.pop(source, 0))
    for other, count in sorted(by_source.items()):
        briefs.add_metric([other], count)
    return briefs


def _token_metrics(ensemble: _Ensemble) -> Metric:
    tokens = CounterMetricFamily(
        "llm_tokens",
        "Tokens (prompt + completion) models reported in usage, by model and purpose (brief, reask, health).",
        labels=["model", "purpose"],
    )
    for (model, purpose), count in sorted(ensemble.tokens_snapshot().items()):
        tokens.add_metric([model, purpose], count)
    return tokens


def _budget_metrics(budget: _Budget) -> Iterator[Metric]:
    snap = budget.snapshot()
    yield CounterMetricFamily(
        "json_guard_retry_budget_denied",
        "Re-asks the retry budget denied (the rejected answer went to the next model or the fallback).",
        value=snap.denied,
    )
    yield CounterMetricFamily(
        "json_guard_retry_budget_reasks", "Re-asks the retry budget admitted.", value=snap.reasks
    )


def _panic_metrics(panic: _Panic) -> Metric:
    trials = CounterMetricFamily(
        "circuit_breaker_panic",
        "Trial calls the panic rule let past open breakers (every model of the mode open), by model and outcome.",
        labels=["model", "outcome"],
    )
    for (model, outcome), count in sorted(panic.snapshot().items()):
        trials.add_metric([model, outcome], count)
    return trials


def _model_error_metrics(ensemble: _Ensemble) -> Metric:
    errors = CounterMetricFamily(
        "llm_model_errors",
        "Failed model calls by model and reason (timeout, connection_error, http_error, client_error, ...).",
        labels=["model", "reason"],
    )
    for (model, reason), count in sorted(ensemble.model_errors_snapshot().items()):
        errors.add_metric([model, reason], count)
    return errors


class GuardMetrics:
    """The guard metrics of one service, on one registry (a fresh one unless given)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        models: Sequence[str] = (),
        modes: Sequence[str] = MODES,
        health_buckets: Sequence[float] = HEALTH_BUCKETS,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._collector = _GuardCollector(modes)
        self.registry.register(self._collector)
        self.health_status = Gauge(
            "llm_health_status", "LLM model health (1=healthy, 0=unhealthy).", ["model"], registry=self.registry
        )
        self.health_check_duration = Histogram(
            "llm_health_check_duration_seconds",
            "Duration of a model's health-check inference.",
            ["model"],
            buckets=tuple(health_buckets),
            registry=self.registry,
        )
        self.health_check_failures = Counter(
            "llm_health_check_failures_total", "Failed model health checks.", ["model"], registry=self.registry
        )
        self.admin_actions = Counter(
            "circuit_breaker_admin_actions_total",
            "Breakers forced open, forced closed or released by an operator (by the token's name).",
            ["model", "action", "operator"],
            registry=self.registry,
        )
        for model in models:
            self.add_model(model)

    def add_model(self, model: str) -> None:
        """Create the model's health series now, so they exist before the first probe."""
        self.health_status.labels(model=model).set(0)
        self.health_check_duration.labels(model=model)
        self.health_check_failures.labels(model=model)

    def track_cache(self, cache: _Cache) -> None:
        with self._collector._lock:
            self._collector.cache = cache

    def track_breakers(self, manager: _BreakerManager) -> None:
        with self._collector._lock:
            self._collector.breakers = manager

    def track_modes(self, controller: _Modes) -> None:
        with self._collector._lock:
            self._collector.mode_controller = controller

    def track_guard(self, guard: _Guard) -> None:
        with self._collector._lock:
            self._collector.guard = guard

    def track_ensemble(self, ensemble: _Ensemble) -> None:
        with self._collector._lock:
            self._collector.ensemble = ensemble

    def track_retry_budget(self, budget: _Budget) -> None:
        with self._collector._lock:
            self._collector.retry_budget = budget

    def track_panic(self, panic: _Panic) -> None:
        with self._collector._lock:
            self._collector.panic = panic

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """Current value of one sample (``None`` when absent); for tests and the /health/guards view."""
        return self.registry.get_sample_value(name, labels or {})
