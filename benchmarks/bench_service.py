"""Benchmark: the service's request path and its health gate, each against what it must not be slower than.

Cases:
  * "POST /v1/briefs cache hit throughput": requests per second through ``httpx.AsyncClient(ASGITransport(app))``
    with the brief already cached, against a bare FastAPI app whose one POST endpoint reads the JSON body
    and returns the same JSON, through the same kind of client. ``ours_ns``/``anchor_ns`` are nanoseconds
    per request; ``ratio`` is the THROUGHPUT ratio ours/anchor (= anchor_ns / ours_ns), goal >= 0.8.
  * "check_all_models wall time": three simulated models with REAL latencies of 50, 100 and 200 ms,
    ``check_all_models`` against checking the 200 ms model alone (``cache_seconds=0``, so every run
    really checks); ratio = wall(all) / wall(slowest alone), goal <= 1.2 (sequential checks would be 1.75).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
from fastapi import FastAPI

from fragrance_ai.config_loader import get_config
from fragrance_ai.llm.backends import LLMBackend, SimulatedBackend
from fragrance_ai.service.app import create_app
from fragrance_ai.service.system import GuardSystem

#: requests per repeat in ``--quick`` mode (a smoke test; its numbers are noisy)
QUICK_NUMBER = 50
REPEAT = 7
PROMPT = "a fresh summer citrus scent for the office"
LATENCIES = {"qwen": 0.05, "mistral": 0.1, "llama": 0.2}


async def _per_request_ns(client: httpx.AsyncClient, body: dict[str, Any], number: int) -> float:
    """Nanoseconds per request over ``number`` sequential POSTs (each checked: a failure must not look fast)."""
    start = time.perf_counter_ns()
    for _ in range(number):
        response = await client.post("/v1/briefs", json=body)
        if response.status_code != 200:
            raise AssertionError(f"benchmark request failed: {response.status_code} {response.text[:200]}")
    return (time.perf_counter_ns() - start) / number


def _anchor_app(payload: dict[str, Any]) -> FastAPI:
    """The bare endpoint: parse the JSON body, return the same JSON our cache hit returns."""
    app = FastAPI()

    @app.post("/v1/briefs")
    async def create_brief(body: dict[str, Any]) -> dict[str, Any]:
        return payload

    return app


async def _cache_hit(number: int) -> dict[str, Any]:
    system = GuardSystem.build(get_config(), start_cleanup=False)
    body = {"prompt": PROMPT}
    transport = httpx.ASGITransport(app=create_app(system=system))
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as ours:
        warm = await ours.post("/v1/briefs", json=body)
        assert warm.json()["source"] == "model", warm.text
        hit = await ours.post("/v1/briefs", json=body)
        payload = hit.json()
        assert payload["source"] == "cache", hit.text
        anchor_transport = httpx.ASGITransport(app=_anchor_app(payload))
        async with httpx.AsyncClient(transport=anchor_transport, base_url="http://bench") as anchor:
            assert (await anchor.post("/v1/briefs", json=body)).json() == payload
            ours_runs, anchor_runs = [], []
            for _ in range(REPEAT):  # interleaved, so drift (thermal, GC) hits both sides alike
                ours_runs.append(await _per_request_ns(ours, body, number))
                anchor_runs.append(await _per_request_ns(anchor, body, number))
    misses = system.cache.misses if system.cache is not None else -1
    await system.aclose()
    assert misses == 1, f"only the warm-up may miss the cache; misses={misses}"
    ours_ns, anchor_ns = min(ours_runs), min(anchor_runs)
    return {
        "name": "POST /v1/briefs cache hit (req/s)",
        "ours_ns": ours_ns,
        "anchor_ns": anchor_ns,
        "ratio": anchor_ns / ours_ns,
        "goal": ">= 0.8 (throughput ours/anchor)",
    }


async def _health_wall(repeat: int) -> dict[str, Any]:
    config = get_config().with_overrides({"health_check": {"cache_seconds": 0}})
    # real-time: the backends really sleep (asyncio.sleep), because concurrency is what is measured
    backends: dict[str, LLMBackend] = {m: SimulatedBackend(m, latency=s) for m, s in LATENCIES.items()}
    system = GuardSystem.build(config, backends=backends, start_cleanup=False)
    checker = system.health_checker
    slowest = max(LATENCIES, key=LATENCIES.__getitem__)
    all_runs, alone_runs = [], []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        results = await checker.check_all_models()
        all_runs.append(time.perf_counter_ns() - start)
        assert all(r["status"] == "healthy" for r in results.values()), results
        start = time.perf_counter_ns()
        result = await checker.check_model(slowest)
        alone_runs.append(time.perf_counter_ns() - start)
        assert result["status"] == "healthy", result
    assert checker.inferences_total == 4 * repeat, "cache_seconds=0: every run must really check"
    await system.aclose()
    ours_ns, anchor_ns = min(all_runs), min(alone_runs)
    return {
        "name": "check_all_models 50/100/200 ms",
        "ours_ns": ours_ns,
        "anchor_ns": anchor_ns,
        "ratio": ours_ns / anchor_ns,
        "goal": "<= 1.2 (wall vs slowest alone)",
    }


async def _run(number: int) -> list[dict[str, Any]]:
    return [await _cache_hit(number), await _health_wall(5 if number >= 200 else 2)]


def run(number: int | None = None) -> list[dict[str, Any]]:
    """Measure both cases; ``number`` requests per repeat for the throughput case (default 1000)."""
    return asyncio.run(_run(number or 1000))


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)
    for row in run():
        print(f"{row['name']:<36} ours {row['ours_ns'] / 1e3:10.1f} us  anchor {row['anchor_ns'] / 1e3:10.1f} us  "
              f"ratio {row['ratio']:.3f}  (goal {row['goal']})")
