"""Benchmark: the Redis state backend against a bare redis-py GET round trip on the same connection.

A real redis-server on 127.0.0.1 (started here, stopped after; ``fragrance-ai install-tools redis-server``
installs it). Cases:
  * "redis breaker call (closed)": ``SharedCircuitBreaker.call`` of a no-op on a closed breaker, i.e.
    the per-call bookkeeping (one EVALSHA) vs ``GET`` (goal <= 1.5 x);
  * "redis cache get hit": ``SharedLRUCache.get`` of a fresh key (one EVALSHA, LRU touch) vs ``GET``
    (goal <= 1.3 x);
  * "brief cache hit, redis vs memory": ``generate_brief`` served from the cache by a whole service
    with the Redis backend vs the memory backend (reported; no goal).
"""

from __future__ import annotations

import asyncio
import time
import timeit
from typing import Any

from fragrance_ai.clock import VirtualClock
from fragrance_ai.config_loader import default_config_path, load_config
from fragrance_ai.config_state import StateConfig
from fragrance_ai.service.system import GuardSystem
from fragrance_ai.state import SharedCircuitBreaker, SharedLRUCache, open_link
from pytest_guards.network import RedisServer, RedisUnavailable

REPEAT = 5
QUICK_NUMBER = 200


def _best_ns(stmt: str, names: dict[str, Any], number: int) -> float:
    return min(timeit.repeat(stmt, globals=names, number=number, repeat=REPEAT)) / number * 1e9


def _ok() -> None:
    return None


def _row(name: str, ours: float, anchor: float, goal: str) -> dict[str, object]:
    return {"name": name, "ours_ns": ours, "anchor_ns": anchor, "ratio": ours / anchor, "goal": goal}


def _primitives(server: RedisServer, number: int) -> list[dict[str, object]]:
    settings = StateConfig(backend="redis", url=server.url, key_prefix=server.new_prefix("bench"))
    link = open_link(settings)  # Redis TIME, as in production
    try:
        breaker = SharedCircuitBreaker(model="qwen", link=link)
        cache: SharedLRUCache[str, str] = SharedLRUCache(
            link, encode=str, decode=str, asleep=asyncio.sleep, start_cleanup=False
        )
        cache.set("brief", "x" * 600)
        link.client.set("plain", "x" * 600)
        breaker.call(_ok)
        assert cache.get("brief") is not None
        names = {"call": breaker.call, "ok": _ok, "cget": cache.get, "get": link.client.get}
        bare = _best_ns("get('plain')", names, number)
        rows = [_row("redis breaker call (closed)", _best_ns("call(ok)", names, number), bare, "<= 1.5")]
        bare = _best_ns("get('plain')", names, number)
        rows.append(_row("redis cache get hit", _best_ns("cget('brief')", names, number), bare, "<= 1.3"))
        return rows
    finally:
        link.close()


def _brief_hits(server: RedisServer, number: int) -> dict[str, object]:
    base = load_config(default_config_path())
    times = {}
    for backend in ("memory", "redis"):
        config = base.with_overrides(
            {"state": {"backend": backend, "url": server.url, "key_prefix": server.new_prefix("bench")}}
        )
        clock = VirtualClock()
        system = GuardSystem.build(config, clock=clock, asleep=clock.asleep, atimeout=clock.timeout, start_cleanup=False)

        async def hits(system: GuardSystem = system) -> float:
            await system.ensemble.generate_brief("a cedar and smoke accord")
            best = float("inf")
            for _ in range(REPEAT):
                started = time.perf_counter_ns()
                for _ in range(number):
                    await system.ensemble.generate_brief("a cedar and smoke accord")
                best = min(best, (time.perf_counter_ns() - started) / number)
            await system.aclose()
            return best

        times[backend] = asyncio.run(hits())
    return _row("brief cache hit, redis vs memory", times["redis"], times["memory"], "report")


def run(number: int | None = None) -> list[dict[str, object]]:
    try:
        server = RedisServer().start()
    except RedisUnavailable as exc:
        print(f"# redis benchmarks skipped: {exc}")
        return []
    try:
        return [*_primitives(server, number or 5000), _brief_hits(server, max(200, (number or 5000) // 5))]
    finally:
        server.stop()
