"""Two replicas of the whole service on one Redis and one virtual clock: cache, breakers, mode, outage.

Each replica is its own GuardSystem (own metrics, own Redis connection) built by pytest_guards'
``open_harness``; the models behind them are one FaultyLLM, as a fleet shares its models. Network:
a real redis-server on 127.0.0.1 (the outage test stops and restarts it, the only real waits).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from fragrance_ai.clock import VirtualClock
from fragrance_ai.config_loader import Config, default_config_path, load_config
from pytest_guards import FaultyLLM, GuardHarness, open_harness
from pytest_guards.faults import http_error, invalid_json, valid
from pytest_guards.network import RedisServer

pytestmark = pytest.mark.network

MODELS = ("qwen", "mistral", "llama")
Replicas = Callable[..., Any]


def fleet_config(server: RedisServer, prefix: str, **state: Any) -> Config:
    overrides = {
        "state": {"backend": "redis", "url": server.url, "key_prefix": prefix, **state},
        "circuit_breaker": {"window_size": 4, "minimum_calls": 4},
    }
    return load_config(default_config_path()).with_overrides(overrides)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(1000.0)


@pytest.fixture
def faulty(clock: VirtualClock) -> Any:
    with FaultyLLM(MODELS, asleep=clock.asleep, sleep=clock.sleep) as fake:
        yield fake


@pytest.fixture
async def replicas(redis_server: RedisServer, clock: VirtualClock, faulty: FaultyLLM) -> AsyncIterator[list[GuardHarness]]:
    config = fleet_config(redis_server, redis_server.new_prefix("fleet"))
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(open_harness(config, clock=clock, llm=faulty)) for _ in range(2)]


async def test_a_brief_generated_by_one_replica_is_a_hit_on_the_other(replicas: list[GuardHarness], faulty: FaultyLLM) -> None:
    one, two = replicas
    first = await one.post_brief("a rainy walk in the forest")
    second = await two.post_brief("a  rainy walk in the forest ")
    assert (first.json()["source"], second.json()["source"]) == ("model", "cache")
    assert second.json()["brief"] == first.json()["brief"]
    assert faulty.call_count("qwen") == 1


async def test_a_cache_hit_brief_costs_two_round_trips_at_the_initial_mode(replicas: list[GuardHarness]) -> None:
    one, _ = replicas
    assert (await one.post_brief("amber and fig")).json()["source"] == "model"
    link = one.system.state
    assert link is not None
    sent: list[object] = []
    execute: Any = link.client.execute_command

    def counting(*args: Any, **options: Any) -> Any:
        sent.append(args[0])
        return execute(*args, **options)

    link.client.execute_command = counting  # type: ignore[method-assign]
    assert (await one.post_brief("amber and fig")).json()["source"] == "cache"
    assert sent == ["EVALSHA", "EVALSHA"], "the fleet mode, then the cache lookup: no breaker reads at the initial mode"


async def test_concurrent_misses_on_two_replicas_make_one_model_pass(replicas: list[GuardHarness], faulty: FaultyLLM) -> None:
    faulty.set("qwen", valid().after(2.0))
    one, two = replicas
    answers = await asyncio.gather(*(r.post_brief("citrus at dawn") for r in (one, two, one, two)))
    assert [a.status_code for a in answers] == [200] * 4
    assert faulty.call_count("qwen") == 1, "one pass over the models for the whole fleet"
    assert sorted(a.json()["source"] for a in answers) == ["cache", "cache", "cache", "model"]


async def test_a_waiter_on_another_replica_reports_the_models_its_leader_tried(
    replicas: list[GuardHarness], faulty: FaultyLLM
) -> None:
    for model in MODELS:
        faulty.set(model, invalid_json().after(0.5))
    one, two = replicas
    answers = await asyncio.gather(one.post_brief("smoke and snow"), two.post_brief("smoke and snow"))
    bodies = [a.json() for a in answers]
    assert [b["source"] for b in bodies] == ["fallback", "fallback"]
    tried = [[t["model"] for t in b["models_tried"]] for b in bodies]
    assert tried[0] == tried[1] != [], "the waiter got the leader's models_tried through Redis, not an empty list"


async def test_one_replicas_failures_open_qwen_for_the_other_and_downshift_the_fleet(
    replicas: list[GuardHarness], faulty: FaultyLLM
) -> None:
    one, two = replicas
    faulty.set("qwen", http_error(503))
    for i in range(4):
        await one.post_brief(f"prompt {i}")
    assert two.state("qwen") == "open"
    assert two.mode == "balanced"
    calls = faulty.call_count("qwen")
    answer = await two.post_brief("another prompt")
    assert answer.json()["source"] == "model"
    assert faulty.call_count("qwen") == calls, "replica two never calls the open qwen"


async def test_redis_lost_keeps_serving_on_local_state_and_recovers(
    replicas: list[GuardHarness], redis_server: RedisServer, clock: VirtualClock
) -> None:
    one, two = replicas
    redis_server.stop()
    try:
        answer = await one.post_brief("lavender field")
        assert answer.status_code == 200
        assert answer.json()["source"] == "model"
        health = (await one.client.get("/health/guards")).json()["state"]
        assert health["serving_on"] == "local"
        assert one.system.metrics.sample("guard_state_redis_up") == 0
        assert (await two.post_brief("vetiver")).status_code == 200
    finally:
        redis_server.start()
    clock.advance(5)  # the retry interval
    await one.post_brief("sea salt")
    health = (await one.client.get("/health/guards")).json()["state"]
    assert health["serving_on"] == "redis"
    assert health["recoveries_total"] == 1
    assert one.system.metrics.sample("guard_state_redis_up") == 1
