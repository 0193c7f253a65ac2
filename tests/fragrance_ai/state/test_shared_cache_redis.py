"""The brief cache on a real Redis, shared by two replicas: LRU by access, TTL, and the hit path's two clocks.

A hit is the small ``_HIT`` script; everything else goes to ``_GET``. With an injected clock (tests)
freshness is the entry's deadline compared to that clock; with Redis's clock (production) it is the
entry's Redis TTL, which must never outlive the deadline. Network: a real redis-server on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fragrance_ai.clock import VirtualClock
from fragrance_ai.config_state import StateConfig
from fragrance_ai.state import RedisLink, SharedLRUCache, open_link
from pytest_guards.network import RedisServer

pytestmark = pytest.mark.network


class Replicas:
    """Caches on their own links under one prefix; ``injected`` False means Redis's own clock, as in production."""

    def __init__(self, server: RedisServer, injected: bool) -> None:
        self.settings = StateConfig(backend="redis", url=server.url, key_prefix=server.new_prefix("cache"))
        self.clock = VirtualClock(1000.0)
        self.injected = injected
        self.links: list[RedisLink] = []

    def cache(self, max_size: int = 2, ttl: float = 60.0) -> SharedLRUCache[str, str]:
        shared = self.clock if self.injected else None
        link = open_link(self.settings, clock=self.clock, shared_clock=shared)
        self.links.append(link)
        return SharedLRUCache(
            link, encode=str, decode=str, asleep=self.clock.asleep, max_size=max_size, ttl_seconds=ttl,
            clock=self.clock, start_cleanup=False,
        )


@pytest.fixture(params=[True, False], ids=["injected-clock", "redis-clock"])
def replicas(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[Replicas]:
    r = Replicas(redis_server, request.param)
    yield r
    for link in r.links:
        link.close()


def test_a_hit_on_one_replica_makes_the_entry_most_recently_used_for_the_fleet(replicas: Replicas) -> None:
    one, two = replicas.cache(), replicas.cache()
    one.set("a", "A")
    one.set("b", "B")
    assert two.get("a") == "A"  # the hit touches "a": "b" is now the least recently used
    one.set("c", "C")
    assert (two.get("a"), two.get("b"), two.get("c")) == ("A", None, "C")
    assert (one.evictions, two.hits, two.misses) == (1, 3, 1)


def test_the_defect_without_the_touch_the_hit_entry_is_evicted(replicas: Replicas) -> None:
    """The check above fails on a hit that does not touch the LRU: here a plain read stands in for one."""
    one = replicas.cache()
    one.set("a", "A")
    one.set("b", "B")
    link = replicas.links[0]
    assert link.client.hget("{" + link.key("cache") + "}:v:a", "p") == b"A"  # read, not touched
    one.set("c", "C")
    assert one.get("a") is None, "a read that skips the LRU touch leaves 'a' the least recently used"


def test_the_injected_clock_decides_freshness(redis_server: RedisServer) -> None:
    r = Replicas(redis_server, injected=True)
    try:
        one, two = r.cache(ttl=10), r.cache(ttl=10)
        one.set("a", "A")
        r.clock.advance(9.999)
        assert two.get("a") == "A"
        r.clock.advance(0.001)
        assert two.get("a") is None, "fresh until just before ttl_seconds, expired at exactly ttl_seconds"
        assert (two.hits, two.misses, two.expirations) == (1, 1, 1)
        assert len(two) == 0, "the expired entry was dropped from the fleet's cache"
    finally:
        for link in r.links:
            link.close()


def test_with_redis_time_the_redis_ttl_never_outlives_the_deadline(redis_server: RedisServer) -> None:
    r = Replicas(redis_server, injected=False)
    try:
        cache = r.cache(ttl=5.0009)
        cache.set("a", "A")
        client: Any = r.links[0].client
        key = "{" + r.links[0].key("cache") + "}:v:a"
        pttl, deadline, (seconds, micros) = client.pttl(key), float(client.hget(key, "d")), client.time()
        assert 0 < pttl <= 5000, "the TTL is rounded down to whole milliseconds"
        assert seconds + micros / 1e6 + pttl / 1000 <= deadline + 0.001, "Redis drops it by the deadline"
        assert cache.get("a") == "A"
    finally:
        for link in r.links:
            link.close()
