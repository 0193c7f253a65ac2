"""What one pytest session shares: the config under test and the network resources (Toxiproxy, fake LLM server, Redis).

The config under test is loaded once, when first needed.

An explicitly chosen config (``--guards-config`` or the ini setting) is loaded at start-up, so a bad
one stops the session with its errors. Otherwise it is found the usual way (``$FRAGRANCE_AI_CONFIG``,
``./configs/llm_ensemble.yaml``, the packaged default) only when a guards fixture or a scenario needs
it: the plugin is installed for every pytest run in the environment, and an unrelated project's
``configs/llm_ensemble.yaml`` must not break that project's tests. For the same reason nothing here
starts a server or imports toxiproxy-python until a test asks for one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fragrance_ai.config_loader import Config, ConfigError, load_config
from pytest_guards.network import RedisServer, RedisUnavailable, ToxiproxyServer, ToxiproxyUnavailable, open_server

if TYPE_CHECKING:
    from pytest_guards.faults import FakeLLMServer

__all__ = ["NetworkResources", "SessionConfig"]


class SessionConfig:
    """``get()`` the validated config (``ConfigError`` if it is invalid; the same one every time)."""

    def __init__(self, path: Path, explicit: bool) -> None:
        self.path = path
        self.explicit = explicit
        self._config: Config | None = None
        self._error: ConfigError | None = None

    def get(self) -> Config:
        if self._config is None:
            if self._error is None:
                try:
                    self._config = load_config(self.path)
                except ConfigError as exc:
                    self._error = exc
            if self._error is not None:
                raise self._error
        assert self._config is not None
        return self._config

    def describe_error(self, exc: ConfigError) -> str:
        lines = "\n".join(f"  {issue}" for issue in exc.issues)
        return f"guards config {self.path} is invalid ({len(exc.issues)} error(s)):\n{lines}"


class NetworkResources:
    """The session's one Toxiproxy server and one fake LLM server, each started on first use.

    Shared by the ``toxiproxy`` / ``fake_llm_server`` fixtures and the toxiproxy scenarios, so a session
    never runs two Toxiproxy servers behind toxiproxy-python's process-wide client.
    """

    def __init__(self, url: str | None, roots: list[Path], models: Callable[[], tuple[str, ...]]) -> None:
        self.url = url
        self.roots = roots
        self.models = models
        self.server: ToxiproxyServer | None = None
        self.fake: FakeLLMServer | None = None
        self.redis_server: RedisServer | None = None
        self._unavailable: str | None = None
        self._redis_unavailable: str | None = None

    def toxiproxy(self) -> ToxiproxyServer:
        """The Toxiproxy server (raises ToxiproxyUnavailable, every time, when there is none)."""
        if self._unavailable is not None:
            raise ToxiproxyUnavailable(self._unavailable)
        if self.server is None:
            try:
                server = open_server(self.url, dict.fromkeys(self.roots))
            except ToxiproxyUnavailable as exc:
                self._unavailable = str(exc)
                raise
            server.bind_client()
            self.server = server
        return self.server

    def fake_server(self) -> FakeLLMServer:
        if self.fake is None:
            from pytest_guards.faults import FakeLLMServer  # a web server: imported when first started

            self.fake = FakeLLMServer(self.models()).start()
        return self.fake

    def redis(self) -> RedisServer:
        """The session's redis-server, started on first use (raises RedisUnavailable, every time, when there is none)."""
        if self._redis_unavailable is not None:
            raise RedisUnavailable(self._redis_unavailable)
        if self.redis_server is None:
            try:
                self.redis_server = RedisServer(roots=tuple(self.roots)).start()
            except RedisUnavailable as exc:
                self._redis_unavailable = str(exc)
                raise
        return self.redis_server

    def get(self) -> tuple[ToxiproxyServer, FakeLLMServer]:
        return self.toxiproxy(), self.fake_server()

    def close(self) -> None:
        if self.fake is not None:
            self.fake.stop()
        if self.server is not None:
            self.server.close()
        if self.redis_server is not None:
            self.redis_server.stop()
        self.server = self.fake = self.redis_server = None
