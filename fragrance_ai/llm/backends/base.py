"""The one seam to an LLM: request/response types, the backend protocol, the errors and their codes.

Everything above the backends (JSON guard, circuit breakers, ensemble, health check) talks to a model
only through :class:`LLMBackend` (``await backend.complete(request) -> CompletionResponse``). Every
failure is raised as a :class:`BackendError` subclass whose ``kind`` says what went wrong, so breakers
and metrics classify failures without knowing about HTTP.

What this module must not do: make a network call, retry or back off (those are the guards' jobs), or
put an API key, a header or a response body in an exception message.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final, Protocol, runtime_checkable

import httpx

__all__ = [
    "DETAIL_LIMIT",
    "FEEDBACK_ANSWER_LIMIT",
    "ROLES",
    "BackendClientError",
    "BackendConnectionError",
    "BackendError",
    "BackendHTTPError",
    "BackendInvalidResponse",
    "BackendRateLimited",
    "BackendServerError",
    "BackendTimeout",
    "ChatMessage",
    "CompletionRequest",
    "CompletionResponse",
    "LLMBackend",
    "error_kind",
    "parse_retry_after",
    "status_text",
]

ROLES: Final = frozenset({"system", "user", "assistant"})

#: how much of a rejected answer a re-ask sends back to the model (characters)
FEEDBACK_ANSWER_LIMIT: Final = 4000
#: how much of an unexpected response body an exception keeps in ``.detail`` (characters)
DETAIL_LIMIT: Final = 200


# ------------------------------------------------------------------------------- requests, responses


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One chat turn: ``role`` is ``system``, ``user`` or ``assistant``."""

    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"a chat message role must be one of system, user, assistant; found {self.role!r}")
        if not isinstance(self.content, str):
            raise TypeError(f"a chat message's content must be a str, found {type(self.content).__name__}")


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """What to ask a model: the conversation and the sampling parameters (one mode's settings)."""

    messages: tuple[ChatMessage, ...]
    temperature: float = 0.7
    top_p: float = 0.9
    max_tokens: int = 512
    #: ask the server for a JSON object (OpenAI ``response_format: {"type": "json_object"}``)
    response_format_json: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.messages, tuple):
            # accept any iterable of messages, but store the immutable form the dataclass promises
            object.__setattr__(self, "messages", tuple(self.messages))
        if not self.messages:
            raise ValueError("a completion request needs at least one message, found none")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be an integer >= 1, found {self.max_tokens!r}")

    @classmethod
    def from_prompt(
        cls,
        prompt: str,
        *,
        system: str | None = None,
        temperature: float = 0.7,
        top_p: float = 0.9,
        max_tokens: int = 512,
        response_format_json: bool = True,
    ) -> CompletionRequest:
        """A one-question request: an optional system message, then ``prompt`` as the user's turn."""
        user = ChatMessage("user", prompt)
        messages = (ChatMessage("system", system), user) if system is not None else (user,)
        return cls(messages, temperature, top_p, max_tokens, response_format_json)

    @property
    def prompt(self) -> str:
        """The first user message: the question this conversation is about (empty if there is none)."""
        for message in self.messages:
            if message.role == "user":
                return message.content
        return ""

    def with_feedback(self, previous_answer: str, feedback: str) -> CompletionRequest:
        """The same request plus the model's rejected answer and a user turn saying what to fix (a re-ask)."""
        if len(previous_answer) > FEEDBACK_ANSWER_LIMIT:
            # the model only needs enough of its answer to see the mistake; a runaway answer must not
            # grow every later re-ask past the context window
            previous_answer = previous_answer[:FEEDBACK_ANSWER_LIMIT] + "\n[... truncated]"
        # an answer cut mid-emoji holds a lone surrogate, which no JSON request body can carry
        previous_answer = previous_answer.encode("utf-8", "replace").decode("utf-8")
        return CompletionRequest(
            (*self.messages, ChatMessage("assistant", previous_answer), ChatMessage("user", feedback)),
            self.temperature,
            self.top_p,
            self.max_tokens,
            self.response_format_json,
        )


@dataclass(frozen=True, slots=True)
class CompletionResponse:
    """A model's answer: the text, the configured model name that produced it, and usage if reported."""

    text: str
    model: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@runtime_checkable
class LLMBackend(Protocol):
    """Anything that can answer a :class:`CompletionRequest`; raises :class:`BackendError` on failure."""

    name: str

    async def complete(self, request: CompletionRequest) -> CompletionResponse: ...

    async def aclose(self) -> None: ...


# ---------------------------------------------------------------------------------------------- errors


class BackendError(Exception):
    """A model call failed; ``kind`` is a fixed code for metrics, ``model`` the configured model name.

    ``str()`` holds only the model name, the kind and a short safe message; ``detail`` may hold an
    excerpt (at most ~200 characters) of an unexpected response body, for logs at debug level.
    """

    #: the fine-grained, fixed failure code
    kind: ClassVar[str] = "error"
    #: the coarse code :func:`error_kind` reports (``http_error`` for every HTTP status failure)
    coarse_kind: ClassVar[str] = "error"

    def __init__(self, model: str, message: str = "", *, detail: str = "") -> None:
        self.model = model
        self.message = message
        self.detail = detail
        super().__init__(model, message)

    def __str__(self) -> str:
        head = f"model {self.model!r}: {self.kind}"
        return f"{head}: {self.message}" if self.message else head


class BackendTimeout(BackendError):
    """The server did not connect, answer or accept the request in time."""

    kind = "timeout"
    coarse_kind = "timeout"


class BackendConnectionError(BackendError):
    """The connection failed: refused, reset, closed mid-answer, or the protocol broke."""

    kind = "connection_error"
    coarse_kind = "connection_error"


class BackendInvalidResponse(BackendError):
    """The server answered, but not with a chat completion this module can read."""

    kind = "invalid_response"
    coarse_kind = "invalid_response"


class BackendHTTPError(BackendError):
    """The server answered with an error status; ``status`` is the HTTP status code."""

    kind = "http_error"
    coarse_kind = "http_error"

    def __init__(self, model: str, status: int, message: str = "", *, detail: str = "") -> None:
        self.status = status
        super().__init__(model, message or status_text(status), detail=detail)


class BackendRateLimited(BackendHTTPError):
    """HTTP 429; ``retry_after`` is the server's Retry-After in seconds (None when absent or unreadable)."""

    kind = "rate_limited"

    def __init__(self, model: str, retry_after: float | None = None, *, status: int = 429, detail: str = "") -> None:
        self.retry_after = retry_after
        message = status_text(status)
        if retry_after is not None:
            message += f", retry after {retry_after:g}s"
        super().__init__(model, status, message, detail=detail)


class BackendServerError(BackendHTTPError):
    """HTTP 5xx: the server or the model behind it failed."""

    kind = "server_error"


class BackendClientError(BackendHTTPError):
    """HTTP 4xx other than 429: the request was refused (bad model id, bad key, bad parameters)."""

    kind = "client_error"


def status_text(status: int) -> str:
    try:
        phrase = httpx.codes.get_reason_phrase(status)
    except (TypeError, ValueError):
        phrase = ""
    return f"HTTP {status} {phrase}" if phrase else f"HTTP {status}"


def error_kind(exc: BaseException) -> str:
    """The coarse failure code of any exception: timeout, connection_error, http_error, invalid_response or error."""
    if isinstance(exc, BackendError):
        return exc.coarse_kind
    # asyncio.TimeoutError is TimeoutError since 3.11
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return "timeout"
    if isinstance(exc, (httpx.TransportError, ConnectionError)):
        return "connection_error"
    if isinstance(exc, httpx.HTTPStatusError):
        return "http_error"
    return "error"


def parse_retry_after(
    value: str | None,
    *,
    date: str | None = None,
    wallclock: Callable[[], float] | None = None,
) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date); None when absent or unreadable.

    An HTTP-date is measured from the response's ``Date`` header when there is one, so a skewed local
    clock does not matter; otherwise from ``wallclock()`` (Unix seconds, default ``time.time`` looked up
    at call time). A date in the past gives 0.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value[0].isdigit():
        try:
            seconds = float(value)
        except ValueError:
            return None
        return seconds if math.isfinite(seconds) else None
    target = _http_date(value)
    if target is None:
        return None
    now = _http_date(date) if date else None
    if now is None:
        # the only wall-time read in the package: an HTTP-date is absolute, so a monotonic clock cannot serve
        now = wallclock() if wallclock is not None else time.time()
    return max(0.0, target - now)


def _http_date(value: str) -> float | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # RFC 9110 dates are GMT; an obsolete form may parse as naive
        return parsed.replace(tzinfo=datetime.UTC).timestamp()
    return parsed.timestamp()
