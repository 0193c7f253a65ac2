"""Guard state shared by the replicas of one service through Redis (``state.backend: redis``).

:func:`open_link` connects one replica; :class:`SharedCircuitBreaker`, :class:`SharedModeController`
and :class:`SharedLRUCache` are the breaker, the mode and the brief cache on the fleet's state.
Nothing here imports redis until a link is opened.
"""

from __future__ import annotations

import os

from fragrance_ai.clock import Clock
from fragrance_ai.config_state import StateConfig
from fragrance_ai.state.link import UNAVAILABLE, RedisLink, StateUnavailableError, connect
from fragrance_ai.state.shared_breaker import SharedCircuitBreaker
from fragrance_ai.state.shared_cache import SharedLRUCache
from fragrance_ai.state.shared_mode import SharedModeController

__all__ = [
    "UNAVAILABLE",
    "RedisLink",
    "SharedCircuitBreaker",
    "SharedLRUCache",
    "SharedModeController",
    "StateUnavailableError",
    "open_link",
    "redis_url",
]


def redis_url(settings: StateConfig) -> str:
    """The URL to use: ``$<url_env>`` when the config names a variable that is set, else ``url``."""
    if settings.url_env and os.environ.get(settings.url_env):
        return os.environ[settings.url_env]
    return settings.url


def open_link(settings: StateConfig, *, clock: Clock | None = None, shared_clock: Clock | None = None) -> RedisLink:
    """Connect one replica (lazily: the first command opens the socket, so a down Redis is not fatal here)."""
    client = connect(redis_url(settings), socket_timeout=settings.socket_timeout)
    return RedisLink(settings, client, clock=clock, shared_clock=shared_clock)
