from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from fragrance_ai.cache.lru_cache import LRUCacheWithTTL
from fragrance_ai.clock import VirtualClock
from fragrance_ai.config_loader import default_config_path, get_config, load_config
from fragrance_ai.constants import MODEL_ERROR_REASONS, TOKEN_PURPOSES
from fragrance_ai.llm import ensemble
from fragrance_ai.llm.circuit_breaker import LLMCircuitBreakerManager
from fragrance_ai.llm.guards import JSONHardGuard
from fragrance_ai.llm.mode_controller import ModeController
from fragrance_ai.metrics import BRIEF_SOURCES, JSON_FAILURE_REASONS, GuardMetrics
from fragrance_ai.service.system import GuardSystem

SCHEMA = {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}
MODELS = ("qwen", "mistral", "llama")


@pytest.fixture
def wired() -> tuple[GuardMetrics, VirtualClock, LLMCircuitBreakerManager, LRUCacheWithTTL[str, int], JSONHardGuard]:
    clock = VirtualClock()
    metrics = GuardMetrics(CollectorRegistry(), models=MODELS)
    controller = ModeController(clock=clock)
    manager = LLMCircuitBreakerManager(get_config(), controller, clock=clock)
    cache: LRUCacheWithTTL[str, int] = LRUCacheWithTTL(10, 5, clock=clock, start_cleanup=False)
    guard = JSONHardGuard(sleep=clock.sleep, clock=clock, jitter=0)
    metrics.track_breakers(manager)
    metrics.track_modes(controller)
    metrics.track_cache(cache)
    metrics.track_guard(guard)
    return metrics, clock, manager, cache, guard


def test_every_series_exists_from_start_up(wired: tuple) -> None:  # type: ignore[type-arg]
    metrics = wired[0]
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}
    for name in (
        "llm_json_parse_failures", "llm_json_retry_count", "llm_json_fallback_used", "llm_json_guard_requests",
        "circuit_breaker_state", "llm_requests", "llm_request_failures", "circuit_breaker_rejected",
        "llm_mode_downshift", "llm_mode_downshift_requests", "llm_mode_upshift", "llm_mode_current",
        "cache_hits", "cache_misses", "cache_size", "cache_evictions", "cache_ttl_expirations",
        "llm_health_status", "llm_health_check_duration_seconds", "llm_health_check_failures",
    ):
        assert name in families, name
    for model in MODELS:
        for sample in ("circuit_breaker_state", "llm_requests_total", "llm_request_failures_total",
                       "llm_health_status", "llm_health_check_failures_total"):
            assert metrics.sample(sample, {"model": model}) == 0, (sample, model)
    for reason in JSON_FAILURE_REASONS:
        assert metrics.sample("llm_json_parse_failures_total", {"reason": reason}) == 0
    assert metrics.sample("llm_mode_current", {"mode": "creative"}) == 1
    # health latency buckets reach past any probe timeout (the client's default stops at 10 s)
    assert metrics.sample("llm_health_check_duration_seconds_bucket", {"model": "qwen", "le": "60.0"}) == 0


def test_counters_are_read_from_the_guards_at_scrape_time(wired: tuple) -> None:  # type: ignore[type-arg]
    metrics, clock, manager, cache, guard = wired
    cache.set("k", 1)
    cache.get("k")
    cache.get("nope")
    clock.advance(5)
    cache.get("k")  # expired
    assert metrics.sample("cache_hits_total") == 1
    assert metrics.sample("cache_misses_total") == 2
    assert metrics.sample("cache_ttl_expirations_total") == 1
    assert metrics.sample("cache_size") == 0

    guard.parse_with_retry('{"a": "x"}', SCHEMA, {"a": 0}, regenerate=lambda feedback: '{"a": 1}')
    guard.parse_with_retry("not json", SCHEMA, {"a": 0})
    assert metrics.sample("llm_json_parse_failures_total", {"reason": "schema_violation"}) == 1
    assert metrics.sample("llm_json_parse_failures_total", {"reason": "no_json_found"}) == 1
    assert metrics.sample("llm_json_fallback_used_total") == 1
    assert metrics.sample("llm_json_retry_count_bucket", {"le": "0.0"}) == 1
    assert metrics.sample("llm_json_retry_count_bucket", {"le": "1.0"}) == 2
    assert metrics.sample("llm_json_retry_count_count") == 2
    assert metrics.sample("llm_json_retry_count_sum") == 1

    qwen = manager.breakers["qwen"]

    def boom() -> None:
        raise RuntimeError("down")

    for _ in range(10):
        with pytest.raises(RuntimeError):
            qwen.call(boom)
    assert metrics.sample("circuit_breaker_state", {"model": "qwen"}) == 1
    assert metrics.sample("llm_request_failures_total", {"model": "qwen"}) == 10
    assert metrics.sample("llm_mode_downshift_total") == 1
    assert metrics.sample("llm_mode_downshift_requests_total") == 1
    assert metrics.sample("llm_mode_current", {"mode": "balanced"}) == 1
    clock.advance(60)
    assert metrics.sample("circuit_breaker_state", {"model": "qwen"}) == 2  # half_open, read live


def test_two_services_in_one_process_do_not_collide() -> None:
    first = GuardMetrics(models=MODELS)
    second = GuardMetrics(models=MODELS)
    assert first.registry is not second.registry
    first.health_status.labels(model="qwen").set(1)
    assert second.sample("llm_health_status", {"model": "qwen"}) == 0


class _Briefs:
    """The attribute and method of LLMEnsemble the collector reads."""

    def __init__(self) -> None:
        self.briefs_total: dict[str, int] = dict.fromkeys(BRIEF_SOURCES, 0)
        self.tokens_total: dict[tuple[str, str], int] = {("qwen", p): 0 for p in TOKEN_PURPOSES}
        self.model_errors_total: dict[tuple[str, str], int] = {("qwen", r): 0 for r in MODEL_ERROR_REASONS}

    def briefs_snapshot(self) -> dict[str, int]:
        return dict(self.briefs_total)

    def tokens_snapshot(self) -> dict[tuple[str, str], int]:
        return dict(self.tokens_total)

    def model_errors_snapshot(self) -> dict[tuple[str, str], int]:
        return dict(self.model_errors_total)


def test_model_errors_by_model_and_reason_are_read_from_the_ensemble_at_scrape_time() -> None:
    metrics = GuardMetrics(CollectorRegistry())
    briefs = _Briefs()
    metrics.track_ensemble(briefs)
    for reason in MODEL_ERROR_REASONS:
        assert metrics.sample("llm_model_errors_total", {"model": "qwen", "reason": reason}) == 0, reason
    briefs.model_errors_total["qwen", "client_error"] += 2
    assert metrics.sample("llm_model_errors_total", {"model": "qwen", "reason": "client_error"}) == 2


def test_tokens_by_model_and_purpose_are_read_from_the_ensemble_at_scrape_time() -> None:
    metrics = GuardMetrics(CollectorRegistry())
    briefs = _Briefs()
    assert metrics.sample("llm_tokens_total", {"model": "qwen", "purpose": "brief"}) is None
    metrics.track_ensemble(briefs)
    for purpose in ("brief", "reask", "health"):
        assert metrics.sample("llm_tokens_total", {"model": "qwen", "purpose": purpose}) == 0, purpose
    briefs.tokens_total["qwen", "reask"] += 120
    assert metrics.sample("llm_tokens_total", {"model": "qwen", "purpose": "reask"}) == 120
    assert metrics.sample("llm_tokens_total", {"model": "qwen", "purpose": "brief"}) == 0


def test_brief_sources_are_the_ensembles() -> None:
    assert BRIEF_SOURCES == ensemble.BRIEF_SOURCES  # metrics imports no guard, so the two lists are checked here


def test_briefs_by_source_are_read_from_the_ensemble_at_scrape_time() -> None:
    metrics = GuardMetrics(CollectorRegistry())
    briefs = _Briefs()
    assert metrics.sample("llm_briefs_total", {"source": "model"}) is None  # nothing tracked, nothing exported
    metrics.track_ensemble(briefs)
    for source in BRIEF_SOURCES:
        assert metrics.sample("llm_briefs_total", {"source": source}) == 0, source
    briefs.briefs_total["model"] += 3
    briefs.briefs_total["fallback"] += 1
    briefs.briefs_total["stale"] = 2  # a source this module does not know is still exported
    assert metrics.sample("llm_briefs_total", {"source": "model"}) == 3
    assert metrics.sample("llm_briefs_total", {"source": "fallback"}) == 1
    assert metrics.sample("llm_briefs_total", {"source": "cache"}) == 0
    assert metrics.sample("llm_briefs_total", {"source": "stale"}) == 2
    (family,) = (f for f in text_string_to_metric_families(metrics.exposition().decode()) if f.name == "llm_briefs")
    assert family.type == "counter"
    assert [s.labels["source"] for s in family.samples if s.name == "llm_briefs_total"] == [*BRIEF_SOURCES, "stale"]


async def test_the_service_exports_the_briefs_its_ensemble_served() -> None:
    clock = VirtualClock()
    system = GuardSystem.build(
        load_config(default_config_path()), clock=clock, asleep=clock.asleep, atimeout=clock.timeout, start_cleanup=False
    )
    try:
        assert [system.metrics.sample("llm_briefs_total", {"source": s}) for s in BRIEF_SOURCES] == [0, 0, 0]
        await system.ensemble.generate_brief("citrus")
        await system.ensemble.generate_brief("citrus")
        assert system.metrics.sample("llm_briefs_total", {"source": "model"}) == 1
        assert system.metrics.sample("llm_briefs_total", {"source": "cache"}) == 1
        assert system.metrics.sample("llm_briefs_total", {"source": "fallback"}) == 0
    finally:
        await system.aclose()
