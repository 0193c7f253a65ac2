"""Rendering: a behaviour, a call index and a model become an :class:`Outcome` both transports serve alike.

:func:`render` is pure: same arguments, same bytes. The respx router (``_faulty_llm``) and the real
HTTP server (``_fake_server``) both serve its outcome, so a fault looks the same over either.

What this module must not do: I/O, sleeping or reading the clock (an outcome only says how long to
wait), or read wall time (``created`` in a body is fixed so that bodies are reproducible).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from fragrance_ai.llm.vocabulary import FAMILIES, LONGEVITY, NOTES_BY_FAMILY
from pytest_guards.faults._behaviours import Behaviour

__all__ = [
    "CREATED", "INVALID_JSON_TEXT", "MALFORMED_BODY", "SCHEMA_VIOLATION", "Outcome", "OutcomeKind", "render", "valid_brief",
]

OutcomeKind = Literal["response", "timeout", "connection_error"]

#: ``created`` of every fake completion: fixed, so that a body depends only on (behaviour, index, model)
CREATED: Final = 1_700_000_000
INVALID_JSON_TEXT: Final = '{"description": "x", "notes": ['
SCHEMA_VIOLATION: Final = {
    "description": "A brief of the wrong shape",
    "notes": [],
    "families": ["disco"],
    "intensity": "high",
    "longevity": "forever",
}
MALFORMED_BODY: Final = "<html><body><h1>502 Bad Gateway</h1><p>upstream busy</p></body></html>"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a transport does with one call: answer (``response``), never answer (``timeout``), or drop it.

    ``status``/``headers``/``body`` matter for ``response`` only; ``latency`` is seconds to wait first.
    """

    kind: OutcomeKind
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    latency: float = 0.0
    #: the body in the pieces a transport sends one by one (an SSE stream, or a stalled body); () = in one piece
    chunks: tuple[bytes, ...] = ()
    #: seconds of silence between two pieces
    stall: float = 0.0
    #: drop the connection after this many body bytes (None: send it all)
    cut_after: int | None = None

    @property
    def pieces(self) -> tuple[bytes, ...]:
        """What to send, in order (``chunks``, or the body as one piece)."""
        return self.chunks or (self.body,)

    @property
    def body_bytes(self) -> bytes:
        """Alias of ``body``."""
        return self.body


def valid_brief(call_index: int, model: str) -> dict[str, Any]:
    """A schema-valid brief that varies with ``call_index`` and ``model`` and depends on nothing else."""
    seed = zlib.crc32(model.encode("utf-8"))
    i = call_index + seed
    first = FAMILIES[i % len(FAMILIES)]
    second = FAMILIES[(i * 7 + 3) % len(FAMILIES)]
    families = [first] if second == first else [first, second]
    pool = [note for family in families for note in NOTES_BY_FAMILY[family]]
    notes = list(dict.fromkeys(pool[(i + k * 3) % len(pool)] for k in range(3)))
    longevity = LONGEVITY[i % len(LONGEVITY)]
    return {
        "description": f"A {' and '.join(families)} fragrance with {', '.join(notes)} ({model} #{call_index}).",
        "notes": notes,
        "families": families,
        "intensity": (call_index * 37 + seed) % 101,
        "longevity": longevity,
    }


def _brief_text(behaviour: Behaviour, call_index: int, model: str, *, indent: int | None = None) -> str:
    brief = valid_brief(call_index, model)
    if behaviour.brief_json is not None:
        brief.update(json.loads(behaviour.brief_json))
    return json.dumps(brief, ensure_ascii=False, indent=indent)


_JSON: Final = ("content-type", "application/json")
_SSE: Final = ("content-type", "text/event-stream; charset=utf-8")
#: characters of content in one streamed delta
STREAM_PIECE: Final = 16
#: ``max_tokens`` when a request gives none (``finish_length`` cuts there)
DEFAULT_MAX_TOKENS: Final = 512


def _content(behaviour: Behaviour, call_index: int, model: str) -> str:
    kind = behaviour.kind
    if kind in ("valid", "cut_stream", "stall", "finish_length"):
        return _brief_text(behaviour, call_index, model)
    if kind == "fenced":
        return f"Here is the brief you asked for:\n```json\n{_brief_text(behaviour, call_index, model, indent=2)}\n```"
    if kind == "prose":
        return f"Sure! Here is your brief: {_brief_text(behaviour, call_index, model)} Enjoy."
    if kind == "truncated":
        text = _brief_text(behaviour, call_index, model)
        return text[: len(text) // 2]
    if kind == "invalid_json":
        return INVALID_JSON_TEXT
    if kind == "schema_violation":
        return json.dumps(SCHEMA_VIOLATION)
    return ""  # empty


def _prompt_tokens(request: object) -> int:
    """A rough token count of the request's messages (4 characters a token), for a plausible ``usage``."""
    if not isinstance(request, Mapping) or not isinstance(request.get("messages"), list):
        return 0
    chars = sum(len(m["content"]) for m in request["messages"] if isinstance(m, Mapping) and isinstance(m.get("content"), str))
    return (chars + 3) // 4


def render(behaviour: Behaviour, call_index: int, model: str, *, request: object = None) -> Outcome:
    """The transport-neutral outcome of ``behaviour`` on call ``call_index`` to ``model``.

    ``request`` (the parsed request body, optional) only flavours the body: its ``model`` is echoed
    and its messages give ``usage.prompt_tokens``. Same arguments, same bytes.
    """
    kind = behaviour.kind
    latency = behaviour.latency
    if kind == "timeout":
        return Outcome("timeout", latency=latency)
    if kind == "connection_error":
        return Outcome("connection_error", latency=latency)
    if kind == "http_error":
        status = behaviour.status or 500
        headers: list[tuple[str, str]] = []
        if behaviour.body is None:
            error_type = "server_error" if status >= 500 else "invalid_request_error"
            error = {"message": f"fake {model}: HTTP {status}", "type": error_type, "code": status}
            body = json.dumps({"error": error}).encode()
            headers.append(_JSON)
        else:
            body = behaviour.body.encode()
            headers.append(_JSON if _is_json(behaviour.body) else ("content-type", "text/plain; charset=utf-8"))
        if behaviour.retry_after is not None:
            headers.append(("retry-after", f"{behaviour.retry_after:g}"))
        return Outcome("response", status, tuple(headers), body, latency)
    if kind == "malformed_body":
        text = MALFORMED_BODY if behaviour.body is None else behaviour.body
        content_type = "application/json" if _is_json(text) else "text/html; charset=utf-8"
        return Outcome("response", 200, (("content-type", content_type),), text.encode(), latency)
    content = _content(behaviour, call_index, model)
    echoed = request.get("model") if isinstance(request, Mapping) else None
    prompt_tokens = _prompt_tokens(request)
    completion_tokens = (len(content) + 3) // 4
    if kind == "finish_length":
        content, completion_tokens = _cut_at_limit(content, request)
    finish = "length" if kind in ("truncated", "finish_length") else "stop"
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    model_name = echoed if isinstance(echoed, str) else model
    if isinstance(request, Mapping) and request.get("stream") is True:
        return _stream_outcome(behaviour, content, finish, usage, model_name, f"chatcmpl-fake-{model}-{call_index}", request)
    completion = {
        "id": f"chatcmpl-fake-{model}-{call_index}",
        "object": "chat.completion",
        "created": CREATED,
        "model": model_name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish,
            }
        ],
        "usage": usage,
    }
    try:
        body = json.dumps(completion, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate (an answer cut mid-emoji): servers send it as a \u escape
        body = json.dumps(completion).encode()
    if kind == "stall":
        half = len(body) // 2
        return Outcome("response", 200, (_JSON,), body, latency, chunks=(body[:half], body[half:]), stall=behaviour.stall or 0.0)
    if kind == "cut_stream":
        return Outcome("response", 200, (_JSON,), body, latency, cut_after=behaviour.after_bytes or 0)
    return Outcome("response", 200, (_JSON,), body, latency)


def _cut_at_limit(content: str, request: object) -> tuple[str, int]:
    """``content`` cut at the request's ``max_tokens`` (4 characters a token), always short of the whole."""
    limit = request.get("max_tokens") if isinstance(request, Mapping) else None
    tokens = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else DEFAULT_MAX_TOKENS
    chars = min(tokens * 4, max(1, len(content) - 4))
    return content[:chars], tokens


def _sse(data: Mapping[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


def _stream_outcome(
    behaviour: Behaviour,
    content: str,
    finish: str,
    usage: Mapping[str, int],
    model: str,
    completion_id: str,
    request: Mapping[str, Any],
) -> Outcome:
    """The answer as OpenAI streams it: SSE ``chat.completion.chunk`` events, then ``data: [DONE]``.

    A role chunk, the content in :data:`STREAM_PIECE`-character deltas, a chunk with ``finish_reason``,
    and, when ``stream_options.include_usage`` is true, a last chunk with ``choices: []`` and ``usage``.
    """

    def chunk(delta: Mapping[str, str], finish_reason: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        event = {"id": completion_id, "object": "chat.completion.chunk", "created": CREATED, "model": model, "choices": [choice]}
        try:
            return _sse(event)
        except UnicodeEncodeError:  # a lone surrogate: sent as a \u escape, as servers do
            return f"data: {json.dumps(event)}\n\n".encode()

    pieces = [chunk({"role": "assistant", "content": ""}, None)]
    pieces += [chunk({"content": content[i : i + STREAM_PIECE]}, None) for i in range(0, len(content), STREAM_PIECE)]
    pieces.append(chunk({}, finish))
    options = request.get("stream_options")
    if isinstance(options, Mapping) and options.get("include_usage") is True:
        event = {
            "id": completion_id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "choices": [], "usage": dict(usage),
        }
        pieces.append(_sse(event))
    pieces.append(_sse("[DONE]"))
    body = b"".join(pieces)
    stall = (behaviour.stall or 0.0) if behaviour.kind == "stall" else 0.0
    cut = (behaviour.after_bytes or 0) if behaviour.kind == "cut_stream" else None
    return Outcome("response", 200, (_SSE,), body, behaviour.latency, chunks=tuple(pieces), stall=stall, cut_after=cut)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
