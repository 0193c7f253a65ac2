"""Hostile LLM answers within max_input_bytes: each gets its documented reason in bounded time, and none stalls the loop.

The cases are data (``hostile_answers.yaml``, built by ``answers_support``). Times are measured, never
slept: the per-case bound is CPU time of the judging thread (best of 3, so another process on the machine
does not count against us); the loop-lag test measures the longest gap between turns of a probe task
that only yields, while hostile answers are judged concurrently through the async path.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Iterator

import pytest
from answers_support import HostileAnswer, load_corpus

from fragrance_ai.clock import VirtualClock
from fragrance_ai.llm.guards import JSONHardGuard
from fragrance_ai.llm.schema_bounds import oversized, structure_bound
from fragrance_ai.llm.schemas import brief_schema

GUARD = JSONHardGuard()
CORPUS = load_corpus(GUARD.max_input_bytes)
#: the longest an unrelated request may wait for the event loop while hostile answers are judged
MAX_LOOP_LAG_S = 0.1


@pytest.fixture(autouse=True)
def _quiet_guard_logs() -> Iterator[None]:
    """Rejections log a WARNING each; the thousands here are not what these tests look at."""
    logger = logging.getLogger("fragrance_ai.llm.guards")
    logger.disabled = True
    yield
    logger.disabled = False


def test_the_corpus_covers_the_hostile_shapes() -> None:
    assert len(CORPUS) >= 30
    reasons = {case.reason for case in CORPUS}
    assert {"schema_violation", "too_deep", "invalid_json", "no_json_found", "too_large", "duplicate_key"} <= reasons
    big = [c for c in CORPUS if len(c.answer.encode("utf-8")) > 0.9 * GUARD.max_input_bytes]
    assert len(big) >= 20, "most cases must use the room max_input_bytes leaves"


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_hostile_answer_gets_its_reason_within_its_bound(case: HostileAnswer) -> None:
    schema = GUARD.compile(brief_schema())
    best = float("inf")
    for _ in range(3):
        started = time.thread_time()
        result = GUARD.guard(case.answer, schema)
        best = min(best, time.thread_time() - started)
    got = "accepted" if result.source == "model" else result.errors[0].reason
    assert got == case.reason, f"{case.name}: expected {case.reason}, got {got}: {result.errors}"
    assert best * 1000 <= case.within_ms, f"{case.name}: judged in {best * 1000:.1f} ms of CPU, bound {case.within_ms} ms"
    if result.errors:
        assert len(result.errors[0].message) < 1000, "a rejection's message must not carry the answer"


async def test_hostile_answers_never_stall_an_unrelated_request() -> None:
    clock = VirtualClock()

    async def no_wait(seconds: float) -> None:
        clock.advance(seconds)

    guard = JSONHardGuard(max_retries=3, clock=clock, asleep=no_wait, jitter=0.0)
    schema = brief_schema()
    slowest = sorted(CORPUS, key=lambda c: len(c.answer), reverse=True)[:8]
    done = asyncio.Event()
    gaps: list[float] = []

    async def probe() -> None:
        """An unrelated request's view of the loop: how much work the loop's thread does between its turns.

        Measured in the thread's CPU time, not wall time: a busy machine (other test workers) that takes
        the core away for a while is not the guard blocking the loop; parsing on the loop thread is.
        """
        last = time.thread_time()
        while not done.is_set():
            await asyncio.sleep(0)
            now = time.thread_time()
            gaps.append(now - last)
            last = now

    async def hostile(case: HostileAnswer) -> str:
        async def again(feedback: str) -> str:
            return str(case.answer)

        result = await guard.aguard(case.answer, schema, regenerate=again)
        source: str = result.source
        return source

    await hostile(slowest[-1])  # once, unmeasured: one-time set-up (the worker pool, compiled validators) is no stall
    gc.collect()
    gc.disable()  # a collection of this whole test process would be counted against the guard
    watcher = asyncio.create_task(probe())
    try:
        sources = await asyncio.gather(*(hostile(case) for case in slowest))
    finally:
        done.set()
        await watcher
        gc.enable()
    assert len(gaps) > 10, "the probe must have run while the answers were judged"
    assert max(gaps) <= MAX_LOOP_LAG_S, f"the loop's thread worked {max(gaps) * 1000:.0f} ms between turns"
    assert guard.requests_total == len(slowest) + 1  # and the warm-up
    assert sources.count("model") == sum(case.reason == "accepted" for case in slowest)


def test_structure_bound_of_the_brief_counts_its_arrays_and_members() -> None:
    assert structure_bound(brief_schema()) == (3, 6 + 24 + 6)
    assert structure_bound(brief_schema(strict=False)) is None, "unknown keys make the lenient schema unbounded"
    assert structure_bound({"type": "array", "items": {"$ref": "#"}, "maxItems": 2}) is None
    assert structure_bound({"enum": [[1, 2], "x"]}) == (1, 2)


def test_oversized_reports_only_real_violations_and_stops_at_its_limit() -> None:
    schema = brief_schema()
    brief = {"description": "d" * 2001, "notes": ["n" * 81] * 30, "families": ["citrus"], "intensity": 1}
    assert oversized(schema, brief, 10) == [
        "$.description: a string of 2,001 characters, over maxLength=2000",
        "$.notes: 30 items, over maxItems=24",
        *[f"$.notes[{i}]: a string of 81 characters, over maxLength=80" for i in range(8)],
    ]
    assert oversized(schema, {"description": "fine", "notes": ["n"]}, 5) == []
