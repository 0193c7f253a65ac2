"""FakeLLMServer: the scripted LLM behaviours of ``_behaviours`` served over real HTTP on 127.0.0.1.

For tests where the network itself matters (real sockets, real timeouts, connection drops, a service
under test running in its own process). A small Starlette app runs on uvicorn in a background thread
on a free loopback port; the same :class:`~pytest_guards._behaviours.ScriptBook` as ``FaultyLLM``
keeps scripts and logs, so ``set``/``calls``/``check`` read the same.

Transport semantics: ``latency`` is real time; ``timeout`` holds the request unanswered until the
client gives up, the server stops, or ``max_hold`` passes, and then drops the connection;
``connection_error`` aborts the TCP connection before any response byte (httpx reports
``RemoteProtocolError: Server disconnected without sending a response``).

What this module must not do: listen anywhere but 127.0.0.1, reconfigure logging (``log_config=None``),
wait unboundedly on start or stop, or hold its lock while waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any
from urllib.parse import quote

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from pytest_guards._behaviours import CallRecord, Outcome, ScriptBook, UnmatchedRequestError

__all__ = ["FakeLLMServer", "UnmatchedRequestError"]

HOST = "127.0.0.1"
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
#: how long to wait for uvicorn to notice a dropped connection before the handler returns anyway
_DISCONNECT_GRACE = 5.0


class _Uvicorn(uvicorn.Server):
    """uvicorn that signals a threading.Event once listening, and owns the asyncio.Event that releases held requests."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.release: asyncio.Event | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.release = asyncio.Event()
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


class _Drop(Response):
    """Abort the TCP connection without a response byte, then wait until uvicorn has noticed.

    Returning only after uvicorn marks the cycle disconnected keeps it from logging an error or
    answering 500 for a handler that sent nothing. The connection is found through uvicorn's server
    state (ASGI has no handle on it); should a future uvicorn hide it, uvicorn answers 500 instead
    and ``test_fake_server`` fails loudly.
    """

    def __init__(self, server: _Uvicorn) -> None:
        super().__init__(b"")
        self._server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = self._server.transport_of(scope.get("client"))
        if transport is None:  # the client is already gone: nothing to drop
            return
        transport.abort()
        await _until_disconnect(receive, _DISCONNECT_GRACE)


class _Hold(Response):
    """Never answer: wait until the client disconnects, the server stops, or ``max_hold`` passes; then drop."""

    def __init__(self, server: _Uvicorn, max_hold: float) -> None:
        super().__init__(b"")
        self._server = server
        self._max_hold = max_hold

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        release = self._server.release
        assert release is not None  # set in startup, before any request
        gone = asyncio.ensure_future(_until_disconnect(receive, None))
        stopping = asyncio.ensure_future(release.wait())
        # real-time: fake server latency is real network time (a held request is bounded by max_hold)
        await asyncio.wait({gone, stopping}, timeout=self._max_hold, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if gone.done():
            return
        gone.cancel()
        await _Drop(self._server)(scope, receive, send)


async def _until_disconnect(receive: Receive, limit: float | None) -> None:
    """Read ASGI messages until ``http.disconnect`` (or ``limit`` seconds pass)."""
    with contextlib.suppress(TimeoutError):
        # real-time: fake server latency is real network time (bounded wait for uvicorn to see a drop)
        async with asyncio.timeout(limit):
            while (await receive())["type"] != "http.disconnect":
                pass


def _parse_body(content: bytes) -> object:
    try:
        return json.loads(content)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError: not a JSON body
        return None


class FakeLLMServer:
    """Fake OpenAI-compatible models on a real loopback socket: ``start()``, ``set`` scripts, point clients at ``base_url(model)``.

    Routes: ``POST /<model>/v1/chat/completions``; ``POST /v1/chat/completions`` (routed by the body's
    ``model``); ``GET /health``. Anything else is recorded (see :attr:`unmatched`) and answered 501.
    ``max_hold`` bounds how long a ``timeout`` behaviour holds a request; start and stop wait at most
    ``start_timeout`` / ``stop_timeout`` seconds.
    """

    def __init__(
        self,
        models: Iterable[str],
        *,
        max_hold: float = 30.0,
        start_timeout: float = 10.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self._book = ScriptBook(models, label="fake_llm_server")
        self.models = self._book.models
        for label, value in (("max_hold", max_hold), ("start_timeout", start_timeout), ("stop_timeout", stop_timeout)):
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"fake_llm_server: {label} must be a positive number of seconds, found {value!r}")
        self.max_hold = float(max_hold)
        self.start_timeout = float(start_timeout)
        self.stop_timeout = float(stop_timeout)
        self.port: int | None = None
        self._server: _Uvicorn | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.app = Starlette(
            routes=[
                Route("/health", self._health, methods=["GET"]),
                Route("/v1/chat/completions", self._by_body, methods=["POST"]),
                Route("/{model:path}/v1/chat/completions", self._by_path, methods=["POST"]),
                # everything else: record, answer 501 (a function endpoint defaults to GET only: list them)
                Route("/{path:path}", self._unmatched, methods=_ALL_METHODS),
            ]
        )

    # -- lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (the server must be started)."""
        if self.port is None:
            raise RuntimeError("fake_llm_server: not started; call start() first")
        return f"http://{HOST}:{self.port}"

    def base_url(self, model: str) -> str:
        """The API root to configure for ``model``: ``http://127.0.0.1:<port>/<model>/v1``."""
        self._book.script(model)  # unknown model: ValueError naming the configured ones
        return f"{self.url}/{quote(model, safe='')}/v1"

    def start(self) -> FakeLLMServer:
        """Listen on a free 127.0.0.1 port and serve from a background thread; return once it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("fake_llm_server: already started; stop() it first")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((HOST, 0))
        except OSError:
            sock.close()
            raise
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            host=HOST,
            port=port,
            http="h11",
            loop="asyncio",
            lifespan="off",
            log_config=None,  # never reconfigure the test process's logging
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = _Uvicorn(config)
        self._error = None
        thread = threading.Thread(target=self._run, args=(server, sock), name=f"fake-llm-server:{port}", daemon=True)
        self._server, self._thread, self.port = server, thread, port
        thread.start()
        if not server.ready.wait(self.start_timeout) or not server.started:
            self.stop()
            sock.close()
            raise RuntimeError(
                f"fake_llm_server: did not start listening on {HOST}:{port} within {self.start_timeout:g}s"
                + (f": {self._error!r}" if self._error is not None else "")
            )
        return self

    def _run(self, server: _Uvicorn, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # noqa: BLE001 - reported by start(); a thread must not die silently
            self._error = exc
        finally:
            server.ready.set()
            sock.close()

    def stop(self) -> None:
        """Release held requests, shut the server down and join its thread (bounded; idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.should_exit = True
        loop, release = server.loop, server.release
        if loop is not None and release is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: nothing is held
                loop.call_soon_threadsafe(release.set)
        thread.join(self.stop_timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(self.stop_timeout)
            if thread.is_alive():
                raise RuntimeError(f"fake_llm_server: the server thread did not exit within {2 * self.stop_timeout:g}s")

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- scripting and inspection (shared with FaultyLLM through ScriptBook)

    def set(self, model: str, *steps: object) -> None:
        """Replace ``model``'s script (behaviours, ``flaky`` steps, a ``Script`` or plain data) and restart its call index."""
        self._book.set(model, *steps)

    def reset(self) -> None:
        """Every model back to ``valid()`` forever; call logs and unmatched requests cleared."""
        self._book.reset()

    def calls(self, model: str) -> list[CallRecord]:
        """The calls ``model`` received since its script was last set."""
        return self._book.calls(model)

    def call_count(self, model: str) -> int:
        """How many calls ``model`` received since its script was last set."""
        return self._book.call_count(model)

    @property
    def unmatched(self) -> list[str]:
        """Requests that matched no configured model, as ``"METHOD URL"``."""
        return self._book.unmatched

    def check(self) -> None:
        """Raise :class:`UnmatchedRequestError` naming every request that matched no configured model."""
        self._book.check()

    def __repr__(self) -> str:
        where = f"{HOST}:{self.port}" if self._thread is not None else "stopped"
        return f"FakeLLMServer(models={list(self.models)!r}, {where})"

    # -- routes

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "models": list(self.models)})

    async def _by_path(self, request: Request) -> Response:
        model = request.path_params["model"]
        if model not in self.models:
            return self._not_found(request)
        return await self._serve(model, _parse_body(await request.body()))

    async def _by_body(self, request: Request) -> Response:
        body = _parse_body(await request.body())
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) or model not in self.models:
            return self._not_found(request, f" (body model {model!r})")
        return await self._serve(model, body)

    async def _unmatched(self, request: Request) -> Response:
        return self._not_found(request)

    def _not_found(self, request: Request, note: str = "") -> Response:
        target = f"{self.url}{request.url.path}" + (f"?{request.url.query}" if request.url.query else "")
        self._book.record_unmatched(f"{request.method} {target}{note}")
        message = f"fake_llm_server: no configured model answers {request.method} {target}{note}"
        return JSONResponse({"error": {"message": message, "code": 501}}, status_code=501)

    async def _serve(self, model: str, body: object) -> Response:
        _, outcome = self._book.take_call(model, body)
        server = self._server
        if server is None or server.release is None:  # stopping between accept and here
            return JSONResponse({"error": {"message": "fake_llm_server: stopping", "code": 503}}, status_code=503)
        if outcome.latency and await _released_within(server.release, outcome.latency):
            return _Drop(server)  # stopped during the latency: a stopping server drops the connection
        return self._respond(outcome, server)

    def _respond(self, outcome: Outcome, server: _Uvicorn) -> Response:
        if outcome.kind == "timeout":
            return _Hold(server, self.max_hold)
        if outcome.kind == "connection_error":
            return _Drop(server)
        assert outcome.status is not None  # a response outcome always has a status
        return Response(outcome.body, status_code=outcome.status, headers=dict(outcome.headers))


async def _released_within(release: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``; True if ``release`` was set first (the server is stopping)."""
    try:
        # real-time: fake server latency is real network time
        async with asyncio.timeout(seconds):
            await release.wait()
    except TimeoutError:
        return False
    return True
