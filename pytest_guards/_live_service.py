"""LiveService: the real fragrance_ai service on a real loopback socket, for tests where the network matters.

``with LiveService(config) as service:`` builds the app with ``create_app(config)``, serves it with
uvicorn from a background thread on a socket bound to 127.0.0.1 port 0 before uvicorn starts (no
port race), and returns once it accepts connections; ``service.url`` is where to send requests and
``service.system`` the wired guards. On exit it shuts uvicorn down, which runs the app's lifespan
shutdown (the system's HTTP clients are closed).

What this module must not do: listen anywhere but 127.0.0.1, reconfigure logging, or wait
unboundedly on start or stop.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Any

import uvicorn

from fragrance_ai.config_loader import Config
from fragrance_ai.service.system import GuardSystem

__all__ = ["LiveService"]

HOST = "127.0.0.1"


class _Server(uvicorn.Server):
    """uvicorn that sets a threading.Event once startup finished (or failed), so the caller's wait is bounded."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()


class LiveService:
    """The service for ``config`` (or a ready ``app``) served on 127.0.0.1 from a thread; a context manager.

    ``start_timeout`` / ``stop_timeout`` bound startup and shutdown (seconds).
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        app: Any = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 10.0,
    ) -> None:
        if (config is None) == (app is None):
            raise ValueError("LiveService: pass exactly one of config= or app=")
        for label, value in (("start_timeout", start_timeout), ("stop_timeout", stop_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"LiveService: {label} must be a positive number of seconds, found {value!r}")
        self.config = config
        self.app = app
        self.start_timeout = float(start_timeout)
        self.stop_timeout = float(stop_timeout)
        self.port: int | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (once started)."""
        if self.port is None:
            raise RuntimeError("LiveService: not started; use `with LiveService(config) as service:` or start()")
        return f"http://{HOST}:{self.port}"

    @property
    def system(self) -> GuardSystem:
        """The guards the running app serves from (its breakers, mode controller, metrics, ...)."""
        if self.app is None:
            raise RuntimeError("LiveService: not started")
        system: GuardSystem = self.app.state.system
        return system

    def start(self) -> LiveService:
        """Build the app (from ``config``), serve it on a free 127.0.0.1 port, return once it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("LiveService: already started; stop() it first")
        if self.app is None:
            from fragrance_ai.service.app import create_app  # the service sits above this harness module

            self.app = create_app(self.config)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((HOST, 0))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            http="h11",
            loop="asyncio",
            lifespan="on",  # the app's lifespan shutdown closes the system's HTTP clients
            log_config=None,  # never reconfigure the test process's logging
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = _Server(config)
        self._error = None
        thread = threading.Thread(target=self._run, args=(server, sock), name=f"live-service:{self.port}", daemon=True)
        self._server, self._thread = server, thread
        thread.start()
        if not server.ready.wait(self.start_timeout) or not server.started:
            error = self._error
            self.stop()
            raise RuntimeError(
                f"LiveService: the service did not start on {HOST}:{self.port} within {self.start_timeout:g}s"
                + (f": {error!r}" if error is not None else "")
            )
        return self

    def _run(self, server: _Server, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # noqa: BLE001 - reported by start(); a thread must not die silently
            self._error = exc
        finally:
            server.ready.set()
            sock.close()

    def stop(self) -> None:
        """Shut uvicorn down (lifespan shutdown included) and join its thread; bounded and idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(self.stop_timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(self.stop_timeout)
            if thread.is_alive():
                raise RuntimeError(f"LiveService: the server thread did not exit within {2 * self.stop_timeout:g}s")

    def __enter__(self) -> LiveService:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{HOST}:{self.port}" if self._thread is not None else "stopped"
        return f"LiveService({where})"
