"""The service with its Redis state behind Toxiproxy: Redis slow or down -> local state, no 5xx, then recovery.

The harness's system talks to the session's redis-server through a Toxiproxy proxy on 127.0.0.1, so
the network fails the way a real one does (connections refused, answers slower than
``state.socket_timeout``). Time: the guards run on a virtual clock (the retry interval is advanced,
never waited); real-time: a slow Redis costs one real ``socket_timeout`` (0.2 s here) per retry
interval, which is what the slow case measures. The defective variant (``on_redis_error: raise``, a
backend that lets Redis errors through) is run by the same steps and must give 5xx, so each check
here fails on the defect it targets.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from fragrance_ai.clock import VirtualClock
from fragrance_ai.config_loader import default_config_path, load_config
from pytest_guards import FaultyLLM, GuardHarness, open_harness
from pytest_guards.network import RedisServer, ToxicProxies, ToxicProxy, ToxiproxyServer

pytestmark = [pytest.mark.network, pytest.mark.toxiproxy]

MODELS = ("qwen", "mistral", "llama")
SOCKET_TIMEOUT = 0.2
RETRY = 5.0
Service = Callable[..., AbstractAsyncContextManager[GuardHarness]]


@pytest.fixture
def redis_proxy(toxic_proxy: ToxicProxies, redis_server: RedisServer) -> ToxicProxy:
    return toxic_proxy(redis_server.url.removeprefix("redis://").split("/")[0], label="redis")


@pytest.fixture
def service(redis_proxy: ToxicProxy, redis_server: RedisServer, toxiproxy: ToxiproxyServer) -> Service:
    @asynccontextmanager
    async def build(on_redis_error: str = "local") -> AsyncIterator[GuardHarness]:
        state = {
            "backend": "redis", "url": f"redis://{redis_proxy.host}:{redis_proxy.port}/0",
            "key_prefix": redis_server.new_prefix("toxi"), "on_redis_error": on_redis_error,
            "retry_interval": RETRY, "socket_timeout": SOCKET_TIMEOUT,
        }
        config = load_config(default_config_path()).with_overrides({"state": state})
        clock = VirtualClock(1000.0)
        # the Toxiproxy API goes to the real network, past the fake models' HTTP mock
        with FaultyLLM(MODELS, asleep=clock.asleep, sleep=clock.sleep, pass_through=[toxiproxy.url]) as faulty:
            async with open_harness(config, clock=clock, llm=faulty) as harness:
                yield harness

    return build


async def state_of(harness: GuardHarness) -> dict[str, Any]:
    found: dict[str, Any] = (await harness.client.get("/health/guards")).json()["state"]
    return found


async def briefs(harness: GuardHarness, count: int) -> list[int]:
    return [(await harness.post_brief(f"toxic prompt {i}")).status_code for i in range(count)]


async def test_redis_down_through_toxiproxy_serves_local_state_then_recovers(
    service: Service, redis_proxy: ToxicProxy
) -> None:
    async with service() as one:
        assert await briefs(one, 2) == [200, 200]
        assert (await state_of(one))["serving_on"] == "redis"
        with redis_proxy.down():
            assert await briefs(one, 3) == [200, 200, 200], "Redis refused: served on local state, no 5xx"
            state = await state_of(one)
            assert (state["serving_on"], state["redis_up"]) == ("local", False)
            assert one.system.metrics.sample("guard_state_redis_up") == 0
            assert (one.system.metrics.sample("guard_state_local_fallbacks_total") or 0) > 0
        one.clock.advance(RETRY)
        assert await briefs(one, 1) == [200]
        state = await state_of(one)
        assert (state["serving_on"], state["recoveries_total"]) == ("redis", 1)
        assert one.system.metrics.sample("guard_state_redis_up") == 1


async def test_redis_slower_than_socket_timeout_costs_one_timeout_per_retry_interval(
    service: Service, redis_proxy: ToxicProxy
) -> None:
    async with service() as one:
        assert await briefs(one, 1) == [200]
        with redis_proxy.latency(int(SOCKET_TIMEOUT * 1000 * 5)):
            started = time.perf_counter()  # real-time: the toxic delays real TCP
            assert await briefs(one, 4) == [200] * 4, "Redis too slow: served on local state, no 5xx"
            took = time.perf_counter() - started
            assert (await state_of(one))["serving_on"] == "local"
        # the first command waits out socket_timeout (redis-py retries once); then none until the retry interval
        assert took < 4 * SOCKET_TIMEOUT + 1.0, f"{took:.2f}s: a slow Redis was asked again before retry_interval"
        one.clock.advance(RETRY)
        assert await briefs(one, 1) == [200]
        assert (await state_of(one))["serving_on"] == "redis"


async def test_the_defect_a_backend_that_raises_on_redis_errors_gives_5xx(
    service: Service, redis_proxy: ToxicProxy
) -> None:
    async with service(on_redis_error="raise") as one:
        assert await briefs(one, 1) == [200]
        with redis_proxy.down():
            codes = await briefs(one, 2)
        assert all(code >= 500 for code in codes), f"the checks above must catch this defect; got {codes}"
