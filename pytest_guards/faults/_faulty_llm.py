"""FaultyLLM: scripted LLM faults injected at the HTTP boundary with respx, for any httpx client.

Each configured model gets its own loopback base URL; a POST to ``{base_url}/chat/completions`` gets
the next behaviour of that model's script (see ``_behaviours``). Every other request is recorded and
answered 501, never raised inside the client (a guard's broad ``except`` could swallow an assertion);
:meth:`FaultyLLM.check` raises afterwards naming each one.

What this module must not do: open a socket (respx intercepts before any connection; port 9 is the
discard port, so even a leak goes nowhere), sleep for real unless the caller left ``asleep``/``sleep``
at their defaults, or hold its lock while waiting.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from urllib.parse import quote

import httpx
import respx

from fragrance_ai.clock import AsyncSleepFn, SleepFn
from pytest_guards.faults._behaviours import UnmatchedRequestError
from pytest_guards.faults._book import ScriptedModels, json_body
from pytest_guards.faults._render import Outcome

__all__ = ["FaultyLLM", "UnmatchedRequestError", "default_base_url"]

_Key = tuple[str, str, int, str]

#: True while respx resolves a request for an async client: then a wait may be awaited
_ASYNC_CLIENT: contextvars.ContextVar[bool] = contextvars.ContextVar("faulty_llm_async_client", default=False)


class _Router(respx.MockRouter):
    """A respx router that tells its side effect whether the client is async (respx itself does not)."""

    async def async_handler(self, request: httpx.Request) -> httpx.Response:
        token = _ASYNC_CLIENT.set(True)
        try:
            return await super().async_handler(request)
        finally:
            _ASYNC_CLIENT.reset(token)


def default_base_url(model: str) -> str:
    """``http://127.0.0.1:9/<model>/v1``: loopback, discard port, one path per model."""
    return f"http://127.0.0.1:9/{quote(model, safe='')}/v1"


def _endpoint_key(url: httpx.URL) -> _Key:
    """What identifies an endpoint: scheme, host, effective port and path (the query is ignored)."""
    port = url.port if url.port is not None else (443 if url.scheme == "https" else 80)
    return (url.scheme, url.host, port, url.path.rstrip("/"))


class FaultyLLM(ScriptedModels):
    """Fake OpenAI-compatible models behind respx: ``set`` a script per model, point clients at ``base_url(model)``.

    Latency and timeouts wait through ``asleep`` (async clients; default ``asyncio.sleep``) or
    ``sleep`` (sync clients; default ``time.sleep``):
    pass a ``VirtualClock``'s ``asleep``/``sleep`` so that no test waits for real. A ``timeout``
    behaviour waits its ``latency`` if it has one, else the request's own read timeout, then raises
    ``httpx.ReadTimeout``. ``pass_through`` URL prefixes go to the real network untouched.
    """

    def __init__(
        self,
        models: Iterable[str],
        *,
        asleep: AsyncSleepFn | None = None,
        sleep: SleepFn | None = None,
        base_url_for: Callable[[str], str] | None = None,
        pass_through: Iterable[str] = (),
    ) -> None:
        super().__init__(models, label="faulty_llm")
        self._asleep: AsyncSleepFn = asyncio.sleep if asleep is None else asleep
        self._sleep: SleepFn = time.sleep if sleep is None else sleep
        url_of = default_base_url if base_url_for is None else base_url_for
        self._base_urls: dict[str, str] = {}
        self._routes: dict[_Key, str] = {}
        for model in self.models:
            base = url_of(model).rstrip("/")
            url = httpx.URL(base)
            if url.scheme not in ("http", "https") or not url.host:
                raise ValueError(f"faulty_llm: base URL of {model!r} must be an http(s) URL, found {base!r}")
            key = _endpoint_key(httpx.URL(f"{base}/chat/completions"))
            if key in self._routes:
                raise ValueError(f"faulty_llm: models {self._routes[key]!r} and {model!r} share the base URL {base!r}")
            self._routes[key] = model
            self._base_urls[model] = base
        self._pass_through = tuple(pass_through)
        self._router: _Router | None = None

    # -- lifecycle

    def start(self) -> FaultyLLM:
        """Start intercepting httpx requests (every client using httpx's default transport)."""
        if self._router is not None:
            raise RuntimeError("faulty_llm: already started; stop() it first")
        router = _Router(assert_all_called=False, assert_all_mocked=False)
        # one catch-all route dispatching on our own table: one match per request, and nothing unrouted
        router.route().mock(side_effect=self._handle)
        router.start()
        self._router = router
        return self

    def stop(self) -> None:
        """Stop intercepting (idempotent). Call logs and unmatched requests stay readable."""
        router, self._router = self._router, None
        if router is not None:
            router.stop(quiet=True)

    def __enter__(self) -> FaultyLLM:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- scripting and inspection: set/reset/calls/call_count/unmatched/check come from ScriptedModels

    def base_url(self, model: str) -> str:
        """The API root to configure for ``model`` (``.../v1``; requests go to ``{base_url}/chat/completions``)."""
        self._book.script(model)  # unknown model: ValueError naming the configured ones
        return self._base_urls[model]

    def _where(self) -> str:
        return "started" if self._router is not None else "stopped"

    # -- the respx side effect

    def _handle(self, request: httpx.Request) -> httpx.Request | httpx.Response | Awaitable[httpx.Response]:
        url = str(request.url)
        if any(url.startswith(prefix) for prefix in self._pass_through):
            return request  # respx: a request returned by a side effect passes through
        model = self._routes.get(_endpoint_key(request.url)) if request.method == "POST" else None
        if model is None:
            self._book.record_unmatched(f"{request.method} {url}")
            body = {"error": {"message": f"faulty_llm: no configured model answers {request.method} {url}", "code": 501}}
            return httpx.Response(501, json=body, request=request)
        _, outcome = self._book.take_call(model, json_body(request.content))
        wait = outcome.latency
        if outcome.kind == "timeout" and not wait:
            wait = _read_timeout(request)
        if not wait:
            return self._respond(outcome, request)
        if _ASYNC_CLIENT.get():
            return self._arespond(outcome, request, wait)
        self._sleep(wait)  # a sync client: wait with the sync twin
        return self._respond(outcome, request)

    async def _arespond(self, outcome: Outcome, request: httpx.Request, wait: float) -> httpx.Response:
        await self._asleep(wait)
        return self._respond(outcome, request)

    def _respond(self, outcome: Outcome, request: httpx.Request) -> httpx.Response:
        if outcome.kind == "response" and (outcome.chunks or outcome.cut_after is not None):
            assert outcome.status is not None  # a response outcome always has a status
            stream = _Pieces(outcome, request, self._sleep, self._asleep)
            return httpx.Response(outcome.status, headers=list(outcome.headers), stream=stream, request=request)
        return _respond(outcome, request)


class _Pieces(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body sent piece by piece: silent ``stall`` seconds between pieces (through the injected sleeps),
    and cut after ``cut_after`` bytes with the error httpx raises when a peer closes mid-body."""

    def __init__(self, outcome: Outcome, request: httpx.Request, sleep: SleepFn, asleep: AsyncSleepFn) -> None:
        self._outcome = outcome
        self._request = request
        self._sleep = sleep
        self._asleep = asleep

    def _plan(self) -> Iterator[tuple[bool, bytes | None]]:
        """(wait first?, piece) in order; a final ``None`` piece means the connection drops here."""
        left = self._outcome.cut_after
        for index, piece in enumerate(self._outcome.pieces):
            wait = index > 0 and self._outcome.stall > 0
            if left is not None and len(piece) >= left:
                if left:
                    yield wait, piece[:left]
                yield False, None
                return
            if left is not None:
                left -= len(piece)
            yield wait, piece

    def _dropped(self) -> httpx.RemoteProtocolError:
        return httpx.RemoteProtocolError(
            "faulty_llm: peer closed connection without sending complete message body (scripted cut)", request=self._request
        )

    def __iter__(self) -> Iterator[bytes]:
        for wait, piece in self._plan():
            if wait:
                self._sleep(self._outcome.stall)
            if piece is None:
                raise self._dropped()
            yield piece

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for wait, piece in self._plan():
            if wait:
                await self._asleep(self._outcome.stall)
            if piece is None:
                raise self._dropped()
            yield piece


def _read_timeout(request: httpx.Request) -> float:
    """The read timeout the client set for this request (0 when it set none)."""
    timeouts = request.extensions.get("timeout")
    read = timeouts.get("read") if isinstance(timeouts, dict) else None
    return float(read) if isinstance(read, (int, float)) and read > 0 else 0.0


def _respond(outcome: Outcome, request: httpx.Request) -> httpx.Response:
    if outcome.kind == "timeout":
        raise httpx.ReadTimeout("faulty_llm: scripted timeout (no answer)", request=request)
    if outcome.kind == "connection_error":
        raise httpx.ConnectError("faulty_llm: scripted connection error (connection refused)", request=request)
    assert outcome.status is not None  # a response outcome always has a status
    return httpx.Response(outcome.status, headers=list(outcome.headers), content=outcome.body, request=request)
