"""Breakers and the mode on a real Redis shared by several replicas, on one virtual clock.

Each "replica" is its own link (own connection) to the session's redis-server under one key prefix,
as separate processes would be. Network: these tests talk to a real redis-server on 127.0.0.1; the
only real waits are in the outage test, which stops and restarts that server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from fragrance_ai.clock import VirtualClock
from fragrance_ai.config_loader import load_config_text
from fragrance_ai.config_state import StateConfig
from fragrance_ai.llm.breaker_policy import CLOSED, HALF_OPEN, OPEN, CircuitBreakerOpenError
from fragrance_ai.llm.circuit_breaker import LLMCircuitBreakerManager
from fragrance_ai.state import RedisLink, SharedCircuitBreaker, SharedModeController, open_link
from pytest_guards.network import RedisServer

pytestmark = pytest.mark.network


class Fleet:
    """Replicas sharing one Redis prefix and one virtual clock."""

    def __init__(self, server: RedisServer, clock: VirtualClock) -> None:
        self.settings = StateConfig(backend="redis", url=server.url, key_prefix=server.new_prefix(), retry_interval=5)
        self.clock = clock
        self.links: list[RedisLink] = []

    def link(self) -> RedisLink:
        link = open_link(self.settings, clock=self.clock, shared_clock=self.clock)
        self.links.append(link)
        return link

    def breaker(self, half_open: int = 2) -> SharedCircuitBreaker:
        return SharedCircuitBreaker(
            0.5, 2, 60, half_open, window_size=4, minimum_calls=4, model="qwen", clock=self.clock, link=self.link()
        )

    def manager(self) -> LLMCircuitBreakerManager:
        config = load_config_text("circuit_breaker: {window_size: 4, minimum_calls: 4}\n")
        link = self.link()
        mc = config.mode_controller
        modes = SharedModeController(link, mc.initial_mode, upshift_quiet_period=mc.upshift_quiet_period, clock=self.clock)
        return LLMCircuitBreakerManager(
            config, modes, clock=self.clock, breaker_factory=lambda *a, **k: SharedCircuitBreaker(*a, link=link, **k)
        )

    def close(self) -> None:
        for link in self.links:
            link.close()


@pytest.fixture
def fleet(redis_server: RedisServer) -> Iterator[Fleet]:
    f = Fleet(redis_server, VirtualClock(1000.0))
    yield f
    f.close()


def fail() -> None:
    raise ConnectionError("model down")


def ok() -> str:
    return "ok"


def open_it(breaker: SharedCircuitBreaker, failures: int = 4) -> None:
    for _ in range(failures):
        with pytest.raises(ConnectionError):
            breaker.call(fail)


def test_one_replicas_failures_open_the_breaker_for_another(fleet: Fleet) -> None:
    one, two = fleet.breaker(), fleet.breaker()
    open_it(one)
    assert one.state == OPEN
    assert two.state == OPEN, "replica two must see the fleet's open breaker without a call of its own"
    with pytest.raises(CircuitBreakerOpenError) as info:
        two.call(ok)
    assert info.value.retry_after == pytest.approx(60)
    assert two.rejected_total == 1


def test_the_failure_window_is_the_fleets(fleet: Fleet) -> None:
    one, two = fleet.breaker(), fleet.breaker()
    one.call(ok)
    with pytest.raises(ConnectionError):
        two.call(fail)
    with pytest.raises(ConnectionError):
        one.call(fail)
    assert one.window_calls == 3
    assert two.failure_rate == pytest.approx(2 / 3)
    with pytest.raises(ConnectionError):
        two.call(fail)  # 3 failures of 4 calls across two replicas: above 50%
    assert one.state == OPEN


def test_a_starting_replica_joins_the_open_breaker_and_never_resets_it(fleet: Fleet) -> None:
    open_it(fleet.breaker())
    late = fleet.breaker()
    assert late.state == OPEN
    fleet.clock.advance(59)
    assert fleet.breaker().state == OPEN
    fleet.clock.advance(1)
    assert late.state == HALF_OPEN


async def test_the_fleet_admits_at_most_half_open_requests_trial_calls(fleet: Fleet) -> None:
    replicas = [fleet.breaker() for _ in range(3)]
    open_it(replicas[0])
    fleet.clock.advance(60)
    release = asyncio.Event()
    entered = 0

    async def trial() -> str:
        nonlocal entered
        entered += 1
        await release.wait()
        return "ok"

    async def attempt(b: SharedCircuitBreaker) -> str:
        try:
            return await b.acall(trial)
        except CircuitBreakerOpenError:
            return "rejected"

    tasks = [asyncio.create_task(attempt(b)) for b in replicas for _ in range(3)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert entered == 2, "half_open_requests=2 is a fleet-wide limit"
    release.set()
    results = await asyncio.gather(*tasks)
    assert results.count("ok") == 2
    assert results.count("rejected") == 7
    assert replicas[2].state == CLOSED, "two successful trials (success_threshold=2) close it for every replica"


def test_a_crashed_replicas_trial_permit_lapses(fleet: Fleet) -> None:
    crashed, other = fleet.breaker(half_open=1), fleet.breaker(half_open=1)
    open_it(crashed)
    fleet.clock.advance(60)
    crashed._admit_call()  # a replica takes the only permit and dies before reporting
    with pytest.raises(CircuitBreakerOpenError):
        other.call(ok)
    fleet.clock.advance(60)  # the permit's lease is the breaker's timeout
    assert other.call(ok) == "ok"


def test_an_opening_downshifts_the_fleet_mode_once(fleet: Fleet) -> None:
    one, two = fleet.manager(), fleet.manager()
    qwen = one.get_breaker("qwen")
    assert qwen is not None
    for _ in range(4):
        with pytest.raises(ConnectionError):
            qwen.call(fail)
    assert two.mode_controller.mode == "balanced"
    assert one.mode_controller.downshifts_total + two.mode_controller.downshifts_total == 1
    assert not two.is_available("qwen")
    fleet.clock.advance(299)
    assert two.evaluate_upshift() is None, "the quiet period (300 s) restarted at the fleet's downshift"
    fleet.clock.advance(1)
    assert two.evaluate_upshift() == "creative", "half-open counts as quiet, as on one replica"
    assert one.mode_controller.mode == "creative"


def test_a_closed_call_costs_one_round_trip(fleet: Fleet, redis_server: RedisServer) -> None:
    breaker = fleet.breaker()
    breaker.call(ok)  # loads the script
    client = fleet.links[0].client
    sent: list[object] = []
    execute: Any = client.execute_command

    def counting(*args: Any, **options: Any) -> Any:
        sent.append(args[0])
        return execute(*args, **options)

    client.execute_command = counting  # type: ignore[method-assign]
    for _ in range(10):
        breaker.call(ok)
    assert sent == ["INCR"] * 10, "one plain INCR per successful call, nothing before it"


def test_a_flushed_script_cache_is_reloaded_and_the_call_still_counts(fleet: Fleet) -> None:
    one, two = fleet.breaker(), fleet.breaker()
    one.call(ok)
    sent: list[object] = []
    client = fleet.links[0].client
    execute: Any = client.execute_command

    def counting(*args: Any, **options: Any) -> Any:
        sent.append(args[0])
        return execute(*args, **options)

    client.execute_command = counting  # type: ignore[method-assign]
    client.script_flush()  # what a restarted Redis looks like: no scripts, the data kept
    for _ in range(3):  # with the success above: 3 failures of 4 calls open it
        with pytest.raises(ConnectionError):
            one.call(fail)
    assert sent[:4] == ["SCRIPT FLUSH", "EVALSHA", "SCRIPT LOAD", "EVALSHA"], "NOSCRIPT: loaded once, sent again"
    assert sent[4:] == ["EVALSHA"] * 2
    assert two.state == OPEN, "the outcomes sent after the flush reached the fleet's window"


def test_redis_lost_serves_on_local_state_and_recovers(fleet: Fleet, redis_server: RedisServer) -> None:
    one, two = fleet.breaker(), fleet.breaker()
    open_it(one)
    redis_server.stop()
    try:
        assert two.call(ok) == "ok", "Redis down: replica two serves on its own (closed) breaker, no error"
        link = fleet.links[1]
        assert not link.up
        assert link.status()["serving_on"] == "local"
        errors = link.errors_total
        assert two.call(ok) == "ok"
        assert link.errors_total == errors, "within retry_interval the link does not try Redis again"
    finally:
        redis_server.start()
    fleet.clock.advance(5)
    assert two.state == CLOSED, "a restarted Redis that persists nothing starts with every breaker closed"
    assert fleet.links[1].up
    assert fleet.links[1].recoveries_total == 1
    open_it(one)
    assert two.state == OPEN, "after recovery the replicas share state again"


# ------------------------------------------------------------------------------ the state counter (INCR successes)


def test_a_success_is_one_incr_whose_reply_tells_the_replica_the_fleet_opened(fleet: Fleet) -> None:
    one, two = fleet.breaker(), fleet.breaker()
    assert two.call(ok) == "ok"  # two now sees the fleet closed: its next call asks nothing first
    open_it(one, 3)  # with the success before: 3 failures of 4 calls
    assert two.call(ok) == "ok", "admitted on two's closed view, as before: no round trip before a closed call"
    assert two._seen == OPEN, "the INCR's reply carried the fleet's open state"
    with pytest.raises(CircuitBreakerOpenError):
        two.call(ok)
    assert (two.window_calls, two.failure_rate) == (4, 0.75), "the window that opened it, not the late success"


def test_successes_slide_failures_out_of_the_fleets_window(fleet: Fleet) -> None:
    one, two = fleet.breaker(), fleet.breaker()
    for replica in (one, two):
        with pytest.raises(ConnectionError):
            replica.call(fail)
    for _ in range(4):
        one.call(ok)  # window_size 4: both failures have slid out
    assert (two.window_calls, two.failure_rate) == (4, 0.0)
    for replica in (one, two):
        with pytest.raises(ConnectionError):
            replica.call(fail)
    assert two.state == CLOSED, "2 failures of the last 4 calls: 50% is not above the 50% threshold"
    with pytest.raises(ConnectionError):
        one.call(fail)
    assert two.state == OPEN


def test_a_success_landing_on_an_open_breaker_does_not_count_after_it_closes(fleet: Fleet) -> None:
    one, late = fleet.breaker(), fleet.breaker()
    late.call(ok)
    open_it(one, 3)  # with the success before: 3 failures of 4 calls
    late.call(ok)  # admitted on a stale closed view: its INCR lands on the open breaker
    fleet.clock.advance(60)
    one.call(ok)
    one.call(ok)  # two successful trials close it
    assert one.state == CLOSED
    assert (late.window_calls, late.failure_rate) == (0, 0.0), "a closed breaker starts with an empty window"
    assert late.call(ok) == "ok"
    assert one.window_calls == 1


def test_closing_rewrites_the_state_counter_so_a_stale_success_is_gone(fleet: Fleet) -> None:
    """The counter's state part is what keeps a stale INCR out of the next window (see breaker_scripts)."""
    one, late = fleet.breaker(), fleet.breaker()
    late.call(ok)
    open_it(one, 3)  # with the success before: 3 failures of 4 calls
    counter = late._counter
    before = int(fleet.links[1].client.get(counter) or 0)
    late.call(ok)
    after = int(fleet.links[1].client.get(counter) or 0)
    assert after == before + 1, "the INCR landed"
    assert after // (1 << 40) == 1, "above the open state's unit: the counter still reads open"
    fleet.clock.advance(60)
    one.call(ok)
    one.call(ok)
    assert int(fleet.links[1].client.get(counter) or 0) == 0, "closing rewrote the counter: the stale success is gone"
