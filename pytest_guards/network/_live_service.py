"""LiveService: the real fragrance_ai service on a real loopback socket, for tests where the network matters.

``with LiveService(config) as service:`` builds the app with ``create_app(config)``, serves it with
uvicorn from a background thread on a socket bound to 127.0.0.1 port 0 before uvicorn starts (no
port race; :class:`~pytest_guards.network.UvicornThread`), and returns once it accepts connections;
``service.url`` is where to send requests and
``service.system`` the wired guards. On exit it shuts uvicorn down, which runs the app's lifespan
shutdown (the system's HTTP clients are closed).

What this module must not do: listen anywhere but 127.0.0.1, reconfigure logging, or wait
unboundedly on start or stop.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from fragrance_ai.config_loader import Config
from fragrance_ai.service.system import GuardSystem
from pytest_guards.network._uvicorn_thread import HOST, UvicornThread

__all__ = ["LiveService"]


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
        self._uvicorn: UvicornThread | None = None

    @property
    def port(self) -> int | None:
        """The loopback port it listens on (None before the first start; after stop, the last one)."""
        return None if self._uvicorn is None else self._uvicorn.port

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
        if self.app is None:
            from fragrance_ai.service.app import create_app  # the service sits above this harness module

            self.app = create_app(self.config)
        if self._uvicorn is None:
            # lifespan on: the app's lifespan shutdown closes the system's HTTP clients
            self._uvicorn = UvicornThread(self.app, label="LiveService", lifespan="on")
        # a second start() without stop() is refused here
        self._uvicorn.start(self.start_timeout, stop_timeout=self.stop_timeout)
        return self

    def stop(self) -> None:
        """Shut uvicorn down (lifespan shutdown included) and join its thread; bounded and idempotent."""
        if self._uvicorn is not None:
            self._uvicorn.stop(self.stop_timeout)

    def __enter__(self) -> LiveService:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{HOST}:{self.port}" if self._uvicorn is not None and self._uvicorn.running else "stopped"
        return f"LiveService({where})"
