"""Reading an OpenAI-compatible chat-completions stream (server-sent events) into one answer.

:func:`read_stream` takes the raw body chunks of a ``stream: true`` response and gives back the text,
``finish_reason`` and ``usage`` the chunks carried, applying the limits a stream needs: no more than
``chunk_timeout`` seconds between chunks, ``max_bytes`` in all. The overall time limit is the caller's
(one ``atimeout`` around the whole call). A stream that ends early (the connection closed, no
``data: [DONE]``) gives what arrived as a cut answer (``complete`` False) when any text did, for the
JSON guard to judge and re-ask; with no text it is a connection error.

What this module must not do: sleep, read a clock (``atimeout`` is injected), retry, or put a body
excerpt anywhere but an exception's ``detail``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from fragrance_ai.clock import AsyncTimeoutFn
from fragrance_ai.llm.backends.base import (
    DETAIL_LIMIT,
    BackendConnectionError,
    BackendInvalidResponse,
    BackendTimeout,
)

__all__ = ["DONE", "StreamAnswer", "read_stream"]

#: the event that ends an OpenAI stream
DONE: Final = "[DONE]"


@dataclass(slots=True)
class StreamAnswer:
    """What a stream said: the text so far, the finish reason, usage, and whether it ended properly."""

    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    #: ``data: [DONE]`` arrived
    complete: bool = False

    @property
    def text(self) -> str:
        return "".join(self.parts)


async def read_stream(
    chunks: AsyncIterator[bytes],
    *,
    model: str,
    chunk_timeout: float,
    max_bytes: int,
    atimeout: AsyncTimeoutFn,
) -> StreamAnswer:
    """Read SSE ``chunks`` into a :class:`StreamAnswer`; raise a ``BackendError`` when no answer can be had."""
    answer = StreamAnswer()
    buffer = b""
    size = 0
    while not answer.complete:
        try:
            async with atimeout(chunk_timeout):
                chunk = await anext(chunks, None)
        except TimeoutError as exc:
            raise BackendTimeout(model, f"no stream chunk within {chunk_timeout:g}s") from exc
        except httpx.TimeoutException as exc:  # the socket's own read timeout (chunk_timeout too)
            raise BackendTimeout(model, f"no stream chunk within {chunk_timeout:g}s") from exc
        except httpx.TransportError as exc:
            if answer.text:
                return answer  # cut mid-answer: what arrived, for the guard to judge
            raise BackendConnectionError(model, f"the stream broke before any text ({type(exc).__name__})") from exc
        if chunk is None:
            break  # closed without [DONE]: a cut answer (or nothing, below)
        size += len(chunk)
        if size > max_bytes:
            raise BackendInvalidResponse(model, f"the stream is over max_response_bytes={max_bytes:,}")
        buffer += chunk
        *events, buffer = buffer.replace(b"\r\n", b"\n").split(b"\n\n")
        for event in events:
            _take(event, answer, model)
            if answer.complete:
                break
    if not answer.complete and not answer.text:
        raise BackendConnectionError(model, "the stream ended before any text")
    return answer


def _take(event: bytes, answer: StreamAnswer, model: str) -> None:
    """Fold one SSE event into ``answer`` (comments and non-data fields are ignored, as SSE says)."""
    lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return
    data = b"\n".join(lines)
    if data.strip() == DONE.encode():
        answer.complete = True
        return
    try:
        parsed: Any = json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        excerpt = data[:DETAIL_LIMIT].decode("utf-8", "replace")
        raise BackendInvalidResponse(model, "a stream event is not JSON", detail=excerpt) from exc
    if not isinstance(parsed, dict):
        raise BackendInvalidResponse(model, f"a stream event is {type(parsed).__name__}, expected an object")
    if isinstance(parsed.get("error"), dict):  # an error reported mid-stream (vLLM, LiteLLM do this)
        raise BackendInvalidResponse(model, "the stream reported an error", detail=json.dumps(parsed)[:DETAIL_LIMIT])
    usage = parsed.get("usage")
    if isinstance(usage, dict):
        answer.prompt_tokens = _count(usage.get("prompt_tokens"))
        answer.completion_tokens = _count(usage.get("completion_tokens"))
    choices = parsed.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return  # the usage chunk has choices: []
    choice = choices[0]
    delta = choice.get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    if isinstance(content, str):
        answer.parts.append(content)
    finish = choice.get("finish_reason")
    if isinstance(finish, str):
        answer.finish_reason = finish


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
