"""One replica's connection to the shared Redis: key names, the time scripts run on, and what to do when Redis is gone.

Every shared guard (:mod:`.shared_breaker`, :mod:`.shared_mode`, :mod:`.shared_cache`) talks to Redis
through :meth:`RedisLink.run`, which returns :data:`UNAVAILABLE` instead of raising when Redis does not
answer (``state.on_redis_error: local``): the guard then serves on its own in-process state, and the
link does not try Redis again before ``retry_interval`` has passed, so an outage costs one
``socket_timeout`` per interval, not one per call. With ``on_redis_error: raise`` it raises
:class:`StateUnavailableError` instead.

Time: durations shared by replicas (open-until, quiet periods, leases) are computed inside the Lua
scripts from the ``now`` argument, which is ``""`` in production (the script reads Redis's own clock,
``TIME``, so replicas' wall clocks never disagree) or the injected clock's reading in tests.

What this module must not do: import redis at module level (a memory-backend install never imports
it), hold a lock across a Redis command, or log per call.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fragrance_ai.clock import Clock, monotonic
from fragrance_ai.config_state import StateConfig

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from redis import Redis

__all__ = ["UNAVAILABLE", "LuaScript", "RedisLink", "StateUnavailableError", "connect"]

T = TypeVar("T")
logger = logging.getLogger(__name__)


class _Unavailable:
    """The sentinel :meth:`RedisLink.run` returns when Redis did not answer (``None`` is a legitimate reply)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNAVAILABLE"


UNAVAILABLE: Final = _Unavailable()


class StateUnavailableError(RuntimeError):
    """Redis did not answer and ``state.on_redis_error`` is ``raise``."""


def connect(url: str, *, socket_timeout: float) -> Redis:
    """A redis-py client for ``url`` (imported here, only when a config selects the Redis backend)."""
    import redis  # lazily: the memory backend never needs it
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # one immediate retry (a connection Redis dropped is reopened), never redis-py's backoff sleeps:
    # the link decides when to try a down Redis again
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=0,
        retry=Retry(NoBackoff(), 1),
    )


class LuaScript:
    """A Lua script sent as ``EVALSHA`` (its SHA1 computed once); loaded again when Redis answers NOSCRIPT.

    redis-py's ``Script`` does the same but imports and type-checks on every call; this one is one
    ``execute_command``. A Redis that restarted or ran ``SCRIPT FLUSH`` answers NOSCRIPT once: the
    script is loaded (``SCRIPT LOAD``) and the call sent again.
    """

    __slots__ = ("_noscript", "sha", "text")

    def __init__(self, text: str) -> None:
        import redis.exceptions

        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()
        self._noscript = redis.exceptions.NoScriptError

    def __call__(self, *, keys: list[str], args: list[str | float], client: Redis) -> Any:
        """The script's reply for ``keys`` and ``args``, run on ``client``."""
        try:
            return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
        except self._noscript:
            client.script_load(self.text)
            return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    import redis.exceptions

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class RedisLink:
    """One replica's view of the shared Redis: a client, a key prefix, a time source and an up/down state.

    ``clock`` times the local retry interval; ``shared_clock`` is what the Lua scripts use as "now"
    (``None``: Redis's ``TIME``). Counters (plain ints): ``errors_total`` commands Redis did not answer,
    ``fallbacks_total`` calls served on local state because Redis was down, ``recoveries_total`` times
    Redis answered again after being down.
    """

    def __init__(
        self,
        settings: StateConfig,
        client: Redis,
        *,
        clock: Clock | None = None,
        shared_clock: Clock | None = None,
        replica: str | None = None,
    ) -> None:
        self.settings = settings
        self.prefix = settings.key_prefix
        self.client = client
        #: names this replica in call ids (half-open permits, cache leases)
        self.replica = replica or uuid.uuid4().hex[:12]
        self._clock: Clock = clock if clock is not None else monotonic
        self._shared_clock = shared_clock
        self._raise = settings.on_redis_error == "raise"
        self._errors = _unavailable_errors()
        self._lock = threading.Lock()
        self._up = True
        self._retry_at = 0.0
        self._last_error = ""
        self._down_since: float | None = None
        self._ids = 0
        self.errors_total = 0
        self.fallbacks_total = 0
        self.recoveries_total = 0

    # ------------------------------------------------------------------------------------ naming

    def key(self, *parts: str) -> str:
        """``{prefix}:part:part``; a guard puts its related keys under one ``{hash tag}`` itself."""
        return ":".join((self.prefix, *parts))

    def now_arg(self) -> str:
        """The ``now`` argument of every script: ``""`` (use Redis ``TIME``) or the injected shared clock."""
        return "" if self._shared_clock is None else repr(self._shared_clock())

    def call_id(self) -> str:
        """A fleet-unique id for one call (a permit or a lease names its holder)."""
        with self._lock:
            self._ids += 1
            return f"{self.replica}:{self._ids}"

    def script(self, text: str) -> LuaScript:
        """A Lua script for :meth:`eval` (sent by SHA; loaded on first use and after a NOSCRIPT)."""
        return LuaScript(text)

    # ------------------------------------------------------------------------------------ calling

    @property
    def up(self) -> bool:
        """Whether the last command reached Redis."""
        return self._up

    def usable(self) -> bool:
        """Whether to try Redis now: it is up, or it is down and the retry interval has passed."""
        return self._up or self._clock() >= self._retry_at

    def run(self, command: Callable[[Redis], T]) -> T | _Unavailable:
        """``command(client)``'s reply, or :data:`UNAVAILABLE` when Redis does not answer (or is still resting)."""
        if not self._up and self._clock() < self._retry_at:
            return self._fallback("Redis is down (waiting for the retry interval)")
        try:
            reply = command(self.client)
        except self._errors as exc:
            return self._failed(exc)
        if not self._up:
            self._recovered()
        return reply

    def eval(self, script: LuaScript, keys: list[str], args: list[str | float]) -> Any:
        """``script``'s reply, or :data:`UNAVAILABLE` as :meth:`run` (its fast path: no closure per call)."""
        if not self._up and self._clock() < self._retry_at:
            return self._fallback("Redis is down (waiting for the retry interval)")
        try:
            reply = script(keys=keys, args=args, client=self.client)
        except self._errors as exc:
            return self._failed(exc)
        if not self._up:
            self._recovered()
        return reply

    def command(self, *args: str | float) -> Any:
        """One plain command's reply (``execute_command(*args)``), or :data:`UNAVAILABLE` as :meth:`run`."""
        if not self._up and self._clock() < self._retry_at:
            return self._fallback("Redis is down (waiting for the retry interval)")
        try:
            reply = self.client.execute_command(*args)  # type: ignore[no-untyped-call]
        except self._errors as exc:
            return self._failed(exc)
        if not self._up:
            self._recovered()
        return reply

    def _failed(self, exc: BaseException) -> _Unavailable:
        with self._lock:
            self.errors_total += 1
            was_up, self._up = self._up, False
            self._retry_at = self._clock() + self.settings.retry_interval
            self._last_error = f"{type(exc).__name__}: {exc}"
            if was_up:
                self._down_since = self._clock()
        if was_up:
            logger.warning("Redis state backend unavailable (%s); serving on local state", self._last_error)
        return self._fallback(self._last_error)

    def _fallback(self, reason: str) -> _Unavailable:
        if self._raise:
            raise StateUnavailableError(f"Redis state backend unavailable: {reason}")
        with self._lock:
            self.fallbacks_total += 1
        return UNAVAILABLE

    def _recovered(self) -> None:
        with self._lock:
            if self._up:
                return
            self._up = True
            self._down_since = None
            self.recoveries_total += 1
        logger.warning("Redis state backend answers again; the fleet's shared state is used")

    # ------------------------------------------------------------------------------------ reporting

    def status(self) -> dict[str, Any]:
        """What ``/health/guards`` shows under ``state``: backend, whether Redis is used now, and why not."""
        with self._lock:
            return {
                "backend": "redis",
                "key_prefix": self.prefix,
                "redis_up": self._up,
                "serving_on": "redis" if self._up else "local",
                "on_redis_error": self.settings.on_redis_error,
                "last_error": None if self._up else self._last_error,
                "errors_total": self.errors_total,
                "fallbacks_total": self.fallbacks_total,
                "recoveries_total": self.recoveries_total,
            }

    def track(self, registry: CollectorRegistry) -> None:
        """Register ``guard_state_redis_up`` and the error/fallback counters on ``registry``."""
        registry.register(_LinkCollector(self))

    def close(self) -> None:
        """Close the client's connections (idempotent)."""
        self.client.close()

    def __repr__(self) -> str:
        return f"RedisLink(prefix={self.prefix!r}, replica={self.replica!r}, up={self._up})"


class _LinkCollector(Collector):
    """Reads the link's plain counters at scrape time."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link

    def describe(self) -> Iterable[Metric]:
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        link = self._link
        up = GaugeMetricFamily("guard_state_redis_up", "1 while the shared Redis state answers, 0 while serving on local state.")
        up.add_metric([], 1.0 if link.up else 0.0)
        yield up
        yield CounterMetricFamily(
            "guard_state_redis_errors", "Redis state commands that got no answer.", value=link.errors_total
        )
        yield CounterMetricFamily(
            "guard_state_local_fallbacks", "Guard decisions made on local state because Redis was unavailable.",
            value=link.fallbacks_total,
        )
