"""FakeLLMServer: the scripted LLM behaviours of ``_behaviours`` served over real HTTP on 127.0.0.1.

For tests where the network itself matters (real sockets, real timeouts, connection drops, a service
under test running in its own process). A small Starlette app runs on uvicorn in a background thread
on a free loopback port (:class:`~pytest_guards.network.UvicornThread`); the same
:class:`~pytest_guards.faults.ScriptedModels` API as ``FaultyLLM`` keeps scripts and logs, so
``set``/``calls``/``check`` read the same.

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
import threading
from collections.abc import Iterable
from types import TracebackType
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from pytest_guards.faults._behaviours import UnmatchedRequestError
from pytest_guards.faults._book import ScriptedModels, json_body
from pytest_guards.faults._control import control_routes
from pytest_guards.faults._render import Outcome
from pytest_guards.network import HOST, LoopbackServer, UvicornThread

__all__ = ["FakeLLMServer", "UnmatchedRequestError"]

_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
#: how long to wait for uvicorn to notice a dropped connection before the handler returns anyway
_DISCONNECT_GRACE = 5.0


class _Drop(Response):
    """Abort the TCP connection without a response byte, then wait until uvicorn has noticed.

    Returning only after uvicorn marks the cycle disconnected keeps it from logging an error or
    answering 500 for a handler that sent nothing. The connection is found through uvicorn's server
    state (ASGI has no handle on it); should a future uvicorn hide it, uvicorn answers 500 instead
    and ``test_fake_server`` fails loudly.
    """

    def __init__(self, server: LoopbackServer) -> None:
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

    def __init__(self, server: LoopbackServer, max_hold: float) -> None:
        super().__init__(b"")
        self._server = server
        self._max_hold = max_hold

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stopping = self._server.stopping
        assert stopping is not None  # set in startup, before any request
        gone = asyncio.ensure_future(_until_disconnect(receive, None))
        released = asyncio.ensure_future(stopping.wait())
        # real-time: fake server latency is real network time (a held request is bounded by max_hold)
        await asyncio.wait({gone, released}, timeout=self._max_hold, return_when=asyncio.FIRST_COMPLETED)
        released.cancel()
        if gone.done():
            return
        gone.cancel()
        await _Drop(self._server)(scope, receive, send)


class _Pieces(Response):
    """Send the body piece by piece (an SSE stream, or a stalled body): ``stall`` real seconds of silence
    between pieces, and the connection aborted after ``cut_after`` bytes. A stopping server drops it."""

    def __init__(self, server: LoopbackServer, outcome: Outcome) -> None:
        super().__init__(b"")
        self._server = server
        self._outcome = outcome

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        outcome = self._outcome
        stopping = self._server.stopping
        assert stopping is not None  # set in startup, before any request
        assert outcome.status is not None  # a response outcome always has a status
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in outcome.headers]
        await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
        left = outcome.cut_after
        for index, piece in enumerate(outcome.pieces):
            if index and outcome.stall and await _released_within(stopping, outcome.stall):
                await _Drop(self._server)(scope, receive, send)
                return
            if left is not None and len(piece) >= left:
                if left:
                    await send({"type": "http.response.body", "body": piece[:left], "more_body": True})
                # give the bytes a moment to leave before the abort discards the write buffer
                await asyncio.sleep(0)
                await _Drop(self._server)(scope, receive, send)
                return
            if left is not None:
                left -= len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_disconnect(receive: Receive, limit: float | None) -> None:
    """Read ASGI messages until ``http.disconnect`` (or ``limit`` seconds pass)."""
    with contextlib.suppress(TimeoutError):
        # real-time: fake server latency is real network time (bounded wait for uvicorn to see a drop)
        async with asyncio.timeout(limit):
            while (await receive())["type"] != "http.disconnect":
                pass


class FakeLLMServer(ScriptedModels):
    """Fake OpenAI-compatible models on a real loopback socket.

    ``start()``, ``set`` scripts, point clients at ``base_url(model)``.

    Routes: ``POST /<model>/v1/chat/completions``; ``POST /v1/chat/completions`` (routed by the body's
    ``model``); ``GET /v1/models`` (also under ``/<model>``); ``GET /health``; with ``control_token``, the
    control plane under ``/_control`` (see ``_control``). A model it does not serve gets OpenAI's 404
    ``model_not_found``; anything else is answered 501. Both are recorded (see :attr:`unmatched`).
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
        control_token: str | None = None,
    ) -> None:
        super().__init__(models, label="fake_llm_server")
        for label, value in (("max_hold", max_hold), ("start_timeout", start_timeout), ("stop_timeout", stop_timeout)):
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"fake_llm_server: {label} must be a positive number of seconds, found {value!r}")
        self.max_hold = float(max_hold)
        self.start_timeout = float(start_timeout)
        self.stop_timeout = float(stop_timeout)
        #: the control plane (``_control``) is served only with a token
        control = control_routes(self, control_token) if control_token is not None else []
        self.app = Starlette(
            routes=[
                Route("/health", self._health, methods=["GET"]),
                *control,
                Route("/v1/models", self._list_models, methods=["GET"]),
                Route("/{model:path}/v1/models", self._list_models, methods=["GET"]),
                Route("/v1/chat/completions", self._by_body, methods=["POST"]),
                Route("/{model:path}/v1/chat/completions", self._by_path, methods=["POST"]),
                # everything else: record, answer 501 (a function endpoint defaults to GET only: list them)
                Route("/{path:path}", self._unmatched, methods=_ALL_METHODS),
            ]
        )
        self._uvicorn = UvicornThread(self.app, label="fake_llm_server", lifespan="off")

    # -- lifecycle

    @property
    def port(self) -> int | None:
        """The loopback port it listens on (None before the first start; after stop, the last one)."""
        return self._uvicorn.port

    @property
    def _thread(self) -> threading.Thread | None:
        """The serving thread while started (tests check that stop ends it)."""
        return self._uvicorn.thread

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
        self._uvicorn.start(self.start_timeout, stop_timeout=self.stop_timeout)
        return self

    def stop(self) -> None:
        """Release held requests, shut the server down and join its thread (bounded; idempotent)."""
        self._uvicorn.stop(self.stop_timeout)

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- scripting and inspection: set/reset/calls/call_count/unmatched/check come from ScriptedModels

    def _where(self) -> str:
        return f"{HOST}:{self.port}" if self._uvicorn.running else "stopped"

    # -- routes

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "models": list(self.models)})

    async def _list_models(self, request: Request) -> Response:
        """``GET /v1/models`` as an OpenAI-compatible server lists them."""
        data = [{"id": model, "object": "model", "created": 0, "owned_by": "fake_llm_server"} for model in self.models]
        return JSONResponse({"object": "list", "data": data})

    async def _by_path(self, request: Request) -> Response:
        model = request.path_params["model"]
        if model not in self.models:
            return self._model_not_found(request)
        return await self._serve(model, json_body(await request.body()))

    async def _by_body(self, request: Request) -> Response:
        body = json_body(await request.body())
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) or model not in self.models:
            return self._model_not_found(request, f" (body model {model!r})")
        return await self._serve(model, body)

    def _model_not_found(self, request: Request, note: str = "") -> Response:
        """As OpenAI answers a model it does not serve: 404 ``model_not_found`` (and, for a test, recorded as unmatched)."""
        self._not_found(request, note)
        error = {
            "message": "The model does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
        return JSONResponse({"error": error}, status_code=404)

    async def _unmatched(self, request: Request) -> Response:
        return self._not_found(request)

    def _not_found(self, request: Request, note: str = "") -> Response:
        target = f"{self.url}{request.url.path}" + (f"?{request.url.query}" if request.url.query else "")
        self._book.record_unmatched(f"{request.method} {target}{note}")
        message = f"fake_llm_server: no configured model answers {request.method} {target}{note}"
        return JSONResponse({"error": {"message": message, "code": 501}}, status_code=501)

    async def _serve(self, model: str, body: object) -> Response:
        _, outcome = self._book.take_call(model, body)
        server = self._uvicorn.server
        if server is None or server.stopping is None:  # stopping between accept and here
            return JSONResponse({"error": {"message": "fake_llm_server: stopping", "code": 503}}, status_code=503)
        if outcome.latency and await _released_within(server.stopping, outcome.latency):
            return _Drop(server)  # stopped during the latency: a stopping server drops the connection
        return self._respond(outcome, server)

    def _respond(self, outcome: Outcome, server: LoopbackServer) -> Response:
        if outcome.kind == "timeout":
            return _Hold(server, self.max_hold)
        if outcome.kind == "connection_error":
            return _Drop(server)
        assert outcome.status is not None  # a response outcome always has a status
        if outcome.chunks or outcome.cut_after is not None:
            return _Pieces(server, outcome)
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
