"""The brief cache in Redis, shared by every replica: TTL, a size bound (LRU by access) and single flight.

:class:`SharedLRUCache` is an :class:`~fragrance_ai.cache.lru_cache.LRUCacheWithTTL` whose entries live
in Redis under one hash tag (``{prefix:cache}``):

* ``…:v:<key>`` a hash (``p`` the encoded value, ``d`` its deadline on the shared clock) with a Redis
  TTL of ``ttl_seconds``, so Redis reclaims it on its own; a read also checks ``d`` so that the
  injected clock (tests) and Redis's ``TIME`` (production) decide freshness the same way, and a hit
  never extends the TTL;
* ``…:lru`` a sorted set of keys by last access; a set beyond ``max_size`` drops the least recently
  used (an entry Redis already expired counts as an expiration, not an eviction);
* ``…:lease:<key>`` the single-flight lease: the replica whose miss takes it runs the loader; the
  others poll (``poll_interval``, on the injected ``asleep``) until the value lands or the lease is
  gone. A crashed leader's lease lapses after ``lease_seconds``.

Values cross replicas as text: the cache takes ``encode``/``decode``. While Redis does not answer, the
inherited in-process cache serves (and single-flights) on its own. What this module must not do: hold
a lock across a Redis command or a loader, block the event loop on a wait, or read wall time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Final, TypeVar

from fragrance_ai.cache.lru_cache import Fetched, Loaded, LRUCacheWithTTL
from fragrance_ai.clock import AsyncSleepFn
from fragrance_ai.state.link import UNAVAILABLE, RedisLink

__all__ = ["SharedLRUCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")

_PRELUDE: Final = """
local function now_s(a)
  if a ~= '' then return tonumber(a) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local now = now_s(ARGV[1])
"""

#: KEYS: value, lru, lru sequence; ARGV: key, now -> the payload of a fresh entry (marked most recently used),
#: else nil (then ``_GET`` decides: expired, lead, wait). The common case, a hit, in three commands: with
#: Redis's clock (now ``""``) freshness is the entry's Redis TTL, which ``_SET`` makes end no later than
#: its deadline ``d``; with an injected clock ``d`` is compared to it (Redis's TTL runs on real time).
_HIT: Final = """
local p
if ARGV[2] == '' then p = redis.call('HGET', KEYS[1], 'p') else
  local v = redis.call('HMGET', KEYS[1], 'p', 'd')
  if v[1] and tonumber(v[2]) > tonumber(ARGV[2]) then p = v[1] end
end
if not p then return false end
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[1])
return p
"""

#: KEYS: value, lru, lease, landed; ARGV: now, key, holder, lease seconds, lead (1: take the lease on a miss),
#: the leader this caller waited for ('' if none)
#: -> payload (a hit: one bulk string, the cheapest reply) | {'landed', payload}
#:    | {'expired' or 'miss', 'lead' | 'wait' | 'free', leader}
_GET: Final = _PRELUDE + """
local v = redis.call('HMGET', KEYS[1], 'p', 'd')
local how = 'miss'
if v[1] then
  if tonumber(v[2]) > now then
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[2] .. ':seq'), ARGV[2])
    return v[1]
  end
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
  how = 'expired'
end
if ARGV[6] ~= '' then
  local f = redis.call('HMGET', KEYS[4], 'h', 'p')
  if f[1] == ARGV[6] then return {'landed', f[2]} end
end
local l = redis.call('HMGET', KEYS[3], 'h', 'd')
if l[1] and l[1] ~= ARGV[3] and tonumber(l[2]) > now then return {how, 'wait', l[1]} end
if ARGV[5] ~= '1' then return {how, 'free', ''} end
redis.call('HSET', KEYS[3], 'h', ARGV[3], 'd', tostring(now + tonumber(ARGV[4])))
redis.call('PEXPIRE', KEYS[3], math.ceil(tonumber(ARGV[4]) * 1000) + 1000)
return {how, 'lead', ARGV[3]}
"""

#: KEYS: value, lru, lease, value prefix, landed; ARGV: now, key, holder, payload (or '' to only release), ttl,
#: max_size, store (1: cache it; 0: only hand it to this leader's waiters, for a lease's length) -> {evictions, expirations}
_SET: Final = _PRELUDE + """
local l = redis.call('HGET', KEYS[3], 'h')
if (not l) or l == ARGV[3] then redis.call('DEL', KEYS[3]) end
if ARGV[4] == '' then return {0, 0} end
if ARGV[7] ~= '1' then
  redis.call('HSET', KEYS[5], 'h', ARGV[3], 'p', ARGV[4])
  redis.call('PEXPIRE', KEYS[5], 60000)
  return {0, 0}
end
local ttl = tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'p', ARGV[4], 'd', tostring(now + ttl))
redis.call('PEXPIRE', KEYS[1], math.max(1, math.floor(ttl * 1000)))
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[2] .. ':seq'), ARGV[2])
local evicted, expired = 0, 0
while redis.call('ZCARD', KEYS[2]) > tonumber(ARGV[6]) do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  redis.call('ZREM', KEYS[2], oldest)
  local d = redis.call('HGET', KEYS[4] .. oldest, 'd')
  redis.call('DEL', KEYS[4] .. oldest)
  if d and tonumber(d) > now then evicted = evicted + 1 else expired = expired + 1 end
end
return {evicted, expired}
"""

#: KEYS: lru, value prefix; ARGV: now -> how many expired entries were dropped
_CLEANUP: Final = _PRELUDE + """
local dropped = 0
for _, key in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local d = redis.call('HGET', KEYS[2] .. key, 'd')
  if (not d) or tonumber(d) <= now then
    redis.call('ZREM', KEYS[1], key)
    redis.call('DEL', KEYS[2] .. key)
    dropped = dropped + 1
  end
end
return dropped
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SharedLRUCache(LRUCacheWithTTL[K, V]):
    """An LRU/TTL cache with single flight across replicas, in Redis (see the module docstring).

    Counters are this replica's: ``hits``/``misses`` of its lookups, ``evictions``/``expirations`` its
    sets caused, ``coalesced`` lookups that waited for another caller's (any replica's) load.
    """

    __slots__ = (
        "_asleep", "_cleanup", "_decode", "_encode", "_get", "_hit", "_lease_seconds", "_link", "_poll", "_set", "_tag"
    )

    def __init__(
        self,
        link: RedisLink,
        *,
        encode: Callable[[V], str],
        decode: Callable[[str], V],
        asleep: AsyncSleepFn,
        lease_seconds: float = 60.0,
        poll_interval: float = 0.05,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._link = link
        self._encode = encode
        self._decode = decode
        self._asleep = asleep
        self._lease_seconds = lease_seconds
        self._poll = poll_interval
        self._tag = "{" + link.key("cache") + "}"
        self._hit = link.script(_HIT)
        self._get = link.script(_GET)
        self._set = link.script(_SET)
        self._cleanup = link.script(_CLEANUP)

    def _keys(self, key: str) -> list[str]:
        tag = self._tag
        return [f"{tag}:v:{key}", f"{tag}:lru", f"{tag}:lease:{key}", f"{tag}:v:", f"{tag}:f:{key}"]

    def _lookup(self, key: str, holder: str, lead: bool, leader: str = "") -> bytes | list[Any] | None:
        """The payload on a hit (bytes), else the script's list (see ``_GET``); None when Redis does not answer."""
        link = self._link
        if not leader:  # a hit first, in the cheap script; a waiter's poll needs _GET's answer
            tag = self._tag
            hit = link.eval(self._hit, [f"{tag}:v:{key}", f"{tag}:lru", f"{tag}:lru:seq"], [key, link.now_arg()])
            if hit is UNAVAILABLE:
                return None
            if hit is not None:
                return hit  # type: ignore[no-any-return]
        tag = self._tag
        keys = [f"{tag}:v:{key}", f"{tag}:lru", f"{tag}:lease:{key}", f"{tag}:f:{key}"]
        args: list[str | float] = [link.now_arg(), key, holder, self._lease_seconds, "1" if lead else "0", leader]
        reply = link.eval(self._get, keys, args)
        return None if reply is UNAVAILABLE else reply

    def _store(self, key: str, holder: str, payload: str, store: bool = True) -> None:
        link = self._link
        keys = self._keys(key)
        args: list[str | float] = [
            link.now_arg(), key, holder, payload, self.ttl_seconds, self.max_size, "1" if store else "0"
        ]
        reply = link.eval(self._set, keys, args)
        if reply is not UNAVAILABLE:
            evicted, expired = reply
            with self._lock:
                self.evictions += int(evicted)
                self.expirations += int(expired)

    async def aget_or_load(
        self, key: K, aloader: Callable[[], Awaitable[Loaded[T]]], *, detach: bool = False
    ) -> Fetched[V | T]:
        """The fleet's fresh value (``hit``), else one load across every replica (``loaded``/``joined``)."""
        skey = str(key)
        holder = self._link.call_id()
        waited = False
        leader = ""
        while True:
            reply = self._lookup(skey, holder, lead=True, leader=leader)
            if reply is None:
                return await super().aget_or_load(key, aloader, detach=detach)
            if isinstance(reply, bytes):
                # a waiter counts when the flight lands, as the in-process cache does: a hit when it was stored
                with self._lock:
                    self.hits += 1
                return Fetched(self._decode(reply.decode()), "joined" if waited else "hit")
            how, what = _text(reply[0]), _text(reply[1])
            if how == "landed":  # the leader we waited for loaded a value it may not cache (a fallback)
                with self._lock:
                    self.misses += 1
                return Fetched(self._decode(what), "joined")
            leader = _text(reply[2])
            with self._lock:
                # a leader is a miss (a waiter whose leader's lease lapsed becomes one); a waiter counts on landing
                self.misses += int(what == "lead")
                if how == "expired" and not waited:
                    self.expirations += 1
            if what == "lead":
                try:
                    loaded = await aloader()
                except BaseException:
                    self._store(skey, holder, "")  # release the lease: a waiter loads instead
                    raise
                self._store(skey, holder, self._encode(loaded.value), loaded.store)  # type: ignore[arg-type]
                return Fetched(loaded.value, "loaded")
            if not waited:
                waited = True
                with self._lock:
                    self.coalesced += 1
            await self._asleep(self._poll)

    def get(self, key: K, default: Any = None) -> Any:
        """The fleet's fresh value for ``key`` (marked most recently used), else ``default``."""
        reply = self._lookup(str(key), "", lead=False)  # no lease is taken: no holder needed
        if reply is None:
            return super().get(key, default)
        if isinstance(reply, bytes):
            with self._lock:
                self.hits += 1
            return self._decode(reply.decode())
        with self._lock:
            self.misses += 1
            self.expirations += int(_text(reply[0]) == "expired")  # as the in-process cache counts it
        return default

    def set(self, key: K, value: V) -> None:
        """Store ``value`` for the fleet with a fresh TTL (the in-process cache while Redis is away)."""
        if not self._link.usable():
            super().set(key, value)
            return
        self._store(str(key), self._link.call_id(), self._encode(value))

    def cleanup_expired(self) -> int:
        """Drop every expired entry of the fleet's cache now (O(size) in Redis); how many."""
        tag = self._tag
        keys = [f"{tag}:lru", f"{tag}:v:"]
        args: list[str | float] = [self._link.now_arg()]
        reply = self._link.eval(self._cleanup, keys, args)
        if isinstance(reply, int):
            with self._lock:
                self.expirations += reply
            return reply
        return super().cleanup_expired()

    def maybe_cleanup(self) -> int:
        """``cleanup_expired()`` once ``cleanup_interval`` has passed on this replica's clock."""
        with self._lock:
            now = self._clock()
            if now < self._next_cleanup:
                return 0
            self._next_cleanup = now + self.cleanup_interval
        return self.cleanup_expired()

    def clear(self) -> None:
        """Drop every entry of the fleet's cache (and this replica's own)."""
        super().clear()
        tag = self._tag
        self._link.run(lambda client: [client.delete(k) for k in client.scan_iter(match=f"{tag}:*", count=1000)])

    def __len__(self) -> int:
        reply = self._link.run(lambda client: client.zcard(f"{self._tag}:lru"))
        return super().__len__() if reply is UNAVAILABLE else int(reply)  # type: ignore[arg-type]

    def stats(self) -> dict[str, Any]:
        """Like the in-process cache's stats; ``size`` is the fleet's, the counters this replica's."""
        stats = super().stats()
        size = len(self)
        stats.update(size=size, utilization=size / self.max_size, shared=True)
        return stats

    def __repr__(self) -> str:
        return f"SharedLRUCache(max_size={self.max_size}, ttl_seconds={self.ttl_seconds}, link={self._link!r})"


