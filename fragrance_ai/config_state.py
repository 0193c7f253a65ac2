"""The ``state:`` section of the config: where the breakers, the mode and the cache keep their state.

``memory`` (the default) keeps it in this process; ``redis`` keeps it in one Redis shared by every
replica of the service (:mod:`fragrance_ai.state`). This module only defines the settings; it sits at
the bottom of the package with the rest of the config and must not import anything of ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["ON_REDIS_ERROR", "STATE_BACKENDS", "StateConfig"]

STATE_BACKENDS: Final = ("memory", "redis")
#: what a replica does when Redis does not answer: serve on its own state, or fail the call
ON_REDIS_ERROR: Final = ("local", "raise")


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Where guard state lives: in this process (``memory``) or in Redis, shared by every replica."""

    backend: str = "memory"
    url: str = "redis://127.0.0.1:6379/0"
    #: name of an environment variable whose value, when set, replaces ``url`` (no secrets in the file)
    url_env: str | None = None
    key_prefix: str = "fragrance_ai"
    #: ``local``: keep serving on this replica's own state until Redis answers again; ``raise``: fail the call
    on_redis_error: str = "local"
    #: seconds between attempts to reach Redis again after it failed
    retry_interval: float = 5.0
    #: seconds a Redis command may take before it counts as Redis being unavailable
    socket_timeout: float = 0.5
