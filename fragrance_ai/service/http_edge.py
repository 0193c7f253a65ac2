"""The HTTP edge of the service: what a request may be before a route sees it, and how a bad one is answered.

:class:`BodyLimit` (ASGI middleware) refuses a body over ``service.max_body_bytes`` with 413 before it
is read whole (a ``Content-Length`` over the cap is refused unread; a chunked body is counted as it
arrives) and a body that stalls with 408. :func:`invalid_request` is the one 422 shape of the service:
at most :data:`MAX_REPORTED_ERRORS` errors, each naming a field by the schema's own names (an unknown
key is reported as ``body``, never by the client's key) with a message that never quotes the input.

What this module must not do: echo anything the client sent, read a body without a bound in size and
time, or know about the guards.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Collection, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "BODY_READ_TIMEOUT",
    "MAX_REPORTED_ERRORS",
    "BodyLimit",
    "clean_errors",
    "invalid_request",
]

#: the most validation errors one 422 lists (a body with 100,000 unknown keys gets one error, not 100,000)
MAX_REPORTED_ERRORS: Final = 10
#: seconds a client may take to send its whole body (a stalled upload is answered 408 and dropped)
BODY_READ_TIMEOUT: Final = 10.0
#: a message is cut to this many characters (they come from the schema, never from the input)
_MAX_MESSAGE: Final = 200
#: error types whose pydantic message may be passed on (fixed text, or text from the schema)
_MESSAGES: Final = {
    "extra_forbidden": "unknown field (allowed: {allowed})",
    "json_invalid": "the body is not valid JSON",
    "json_encoding": "the body could not be read as UTF-8 JSON",
    "content_type": "expected Content-Type: application/json",
}


def clean_errors(errors: Iterable[Mapping[str, Any]], fields: Mapping[str, Collection[str]]) -> list[dict[str, str]]:
    """pydantic/FastAPI errors as ``{field, message, type}``, at most :data:`MAX_REPORTED_ERRORS`, echoing nothing.

    ``fields`` maps each part of a request (``body``, ``query``) to the names the schema defines there;
    any other part of an error's location (an unknown key, a JSON position) is left out, so the field
    reads ``body``, ``body.prompt`` or ``query.model``.
    """
    out: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        where = loc[0] if loc and loc[0] in fields else "request"
        known = fields.get(where, ())
        field = ".".join([where, *(part for part in loc[1:2] if part in known)])
        kind = str(err.get("type", "invalid"))[:64]
        template = _MESSAGES.get(kind)
        message = template.format(allowed=", ".join(known)) if template else str(err.get("msg", "invalid"))
        if (field, kind) in seen:
            continue  # 100,000 unknown keys are one error
        seen.add((field, kind))
        out.append({"field": field, "message": message[:_MAX_MESSAGE], "type": kind})
        if len(out) == MAX_REPORTED_ERRORS:
            break
    return out


def invalid_request(details: list[dict[str, str]]) -> JSONResponse:
    """The service's one 422: ``{"error": "invalid_request", "detail": [{"field", "message", "type"}]}``."""
    return JSONResponse(status_code=422, content={"error": "invalid_request", "detail": details})


def _refusal(status: int, error: str, **extra: Any) -> list[Message]:
    body = json.dumps({"error": error, **extra}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    ]


class BodyLimit:
    """ASGI middleware: read each request body up to ``max_body_bytes`` within ``read_timeout`` seconds, then replay it.

    Over the cap: 413 ``body_too_large`` (at once when ``Content-Length`` says so, else as soon as the
    count passes it); a body not complete within ``read_timeout``: 408 ``request_timeout``. Either way
    the connection is closed and the rest of the body never read. ``atimeout`` is ``asyncio.timeout``'s
    shape (tests pass a virtual one).
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        *,
        read_timeout: float = BODY_READ_TIMEOUT,
        atimeout: Callable[[float], AbstractAsyncContextManager[Any]] = asyncio.timeout,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.read_timeout = read_timeout
        self._atimeout = atimeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._refuse(send, 413, "body_too_large")
            return
        chunks: list[bytes] = []
        size = 0
        try:
            async with self._atimeout(self.read_timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client went away before its body was whole: nobody to answer
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        await self._refuse(send, 413, "body_too_large")
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await self._refuse(send, 408, "request_timeout")
            return
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse(self, send: Send, status: int, error: str) -> None:
        extra = {"max_body_bytes": self.max_body_bytes} if status == 413 else {}
        for message in _refusal(status, error, **extra):
            await send(message)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # uvicorn refuses such a request before it gets here
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the buffered body once, then whatever the server sends (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
