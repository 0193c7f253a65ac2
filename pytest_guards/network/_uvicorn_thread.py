"""UvicornThread: an ASGI app served by uvicorn from a daemon thread on a pre-bound 127.0.0.1 socket.

The one piece of machinery behind ``FakeLLMServer`` and ``LiveService``: the socket is bound to port 0
before uvicorn starts (no port race), ``start`` returns once uvicorn listens (or raises, saying why),
and ``stop`` sets the server's ``stopping`` event (so handlers that hold a request can let go), shuts
uvicorn down and joins its thread.

What this module must not do: listen anywhere but 127.0.0.1, reconfigure logging (``log_config=None``),
or wait unboundedly on start or stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any, Literal

import uvicorn

from pytest_guards.network._loopback import HOST

__all__ = ["HOST", "LoopbackServer", "UvicornThread"]


class LoopbackServer(uvicorn.Server):
    """uvicorn that sets ``ready`` once startup finished (or failed) and owns ``stopping``, set when stop begins."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping: asyncio.Event | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()

    def transport_of(self, client: Any) -> asyncio.Transport | None:
        """The transport of the open connection whose peer is ``client`` (ASGI ``scope["client"]``), if any.

        ASGI gives an app no handle on its connection; uvicorn's server state lists every open
        connection's protocol with its peer address and transport, which is enough to abort one.
        """
        if not client:
            return None
        peer = tuple(client)
        connection: Any
        for connection in list(self.server_state.connections):
            address = getattr(connection, "client", None)
            if address is not None and tuple(address) == peer:
                transport: asyncio.Transport | None = getattr(connection, "transport", None)
                return transport
        return None


class UvicornThread:
    """``app`` served on a free 127.0.0.1 port from a daemon thread; ``label`` starts every error message.

    Reusable: each ``start`` binds a new port and builds a new :class:`LoopbackServer`; after ``stop``,
    ``port`` still names the last one (so a test can check that it is closed).
    """

    def __init__(self, app: Any, *, label: str, lifespan: Literal["on", "off"]) -> None:
        self.app = app
        self.label = label
        self.lifespan: Literal["on", "off"] = lifespan
        self.port: int | None = None
        self.server: LoopbackServer | None = None
        self.thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def running(self) -> bool:
        """True from ``start`` until ``stop``."""
        return self.thread is not None

    def start(self, timeout: float, *, stop_timeout: float | None = None) -> None:
        """Bind a free 127.0.0.1 port and serve from a thread; return once it accepts connections (within ``timeout`` s).

        A server that does not start is stopped again, waiting as :meth:`stop` does (``stop_timeout``, default ``timeout``).
        """
        if self.thread is not None:
            raise RuntimeError(f"{self.label}: already started; stop() it first")
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections of a socket that says it is TCP;
        # without it Nagle holds each response body until the client's delayed ACK, 40-44 ms per request
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.bind((HOST, 0))
        except OSError:
            sock.close()
            raise
        port: int = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            host=HOST,
            port=port,
            http="h11",
            loop="asyncio",
            lifespan=self.lifespan,
            log_config=None,  # never reconfigure the test process's logging
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = LoopbackServer(config)
        self._error = None
        thread = threading.Thread(target=self._run, args=(server, sock), name=f"{self.label}:{port}", daemon=True)
        self.server, self.thread, self.port = server, thread, port
        thread.start()
        if not server.ready.wait(timeout) or not server.started:
            error = self._error
            self.stop(timeout if stop_timeout is None else stop_timeout)
            sock.close()
            raise RuntimeError(
                f"{self.label}: did not start listening on {HOST}:{port} within {timeout:g}s"
                + (f": {error!r}" if error is not None else "")
            )

    def _run(self, server: LoopbackServer, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # noqa: BLE001 - reported by start(); a thread must not die silently
            self._error = exc
        finally:
            server.ready.set()
            sock.close()

    def stop(self, timeout: float) -> None:
        """Set ``stopping``, shut uvicorn down (lifespan shutdown included) and join its thread; bounded, idempotent.

        Waits ``timeout`` seconds for a graceful exit, then as long again after forcing it.
        """
        server, thread = self.server, self.thread
        self.server = self.thread = None
        if server is None or thread is None:
            return
        server.should_exit = True
        loop, stopping = server.loop, server.stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: nothing is waiting on it
                loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"{self.label}: the server thread did not exit within {2 * timeout:g}s")
