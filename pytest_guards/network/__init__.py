"""Real sockets for chaos tests: Toxiproxy (server, proxies, toxics), the uvicorn thread, and LiveService.

Everything here listens on 127.0.0.1 only. toxiproxy-python and ``requests`` are imported inside the
functions that use them, and uvicorn (``UvicornThread``, ``LoopbackServer``, ``LiveService``) on first
use of those names: the plugin loads this package in every pytest run of every environment that
installs it. This package never imports ``pytest_guards.scenarios`` or ``pytest_guards.faults``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_guards.network._loopback import HOST
from pytest_guards.network._redis_server import REDIS_INSTALL_HINT, RedisServer, RedisUnavailable
from pytest_guards.network._toxic_proxies import Direction, ToxicProxies, ToxicProxy
from pytest_guards.network._toxiproxy_server import (
    BINARY_NAME,
    INSTALL_HINT,
    ToxiproxyError,
    ToxiproxyServer,
    ToxiproxyUnavailable,
    find_server_binary,
    in_ci,
    open_server,
)

if TYPE_CHECKING:
    from pytest_guards.network._live_service import LiveService
    from pytest_guards.network._uvicorn_thread import LoopbackServer, UvicornThread

__all__ = [
    "BINARY_NAME",
    "HOST",
    "INSTALL_HINT",
    "REDIS_INSTALL_HINT",
    "Direction",
    "LiveService",
    "LoopbackServer",
    "RedisServer",
    "RedisUnavailable",
    "ToxicProxies",
    "ToxicProxy",
    "ToxiproxyError",
    "ToxiproxyServer",
    "ToxiproxyUnavailable",
    "UvicornThread",
    "find_server_binary",
    "in_ci",
    "open_server",
]

_LAZY = {
    "LiveService": "pytest_guards.network._live_service",
    "LoopbackServer": "pytest_guards.network._uvicorn_thread",
    "UvicornThread": "pytest_guards.network._uvicorn_thread",
}


def __getattr__(name: str) -> Any:
    """The uvicorn-backed names on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
