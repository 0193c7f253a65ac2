"""The one seam to an LLM: request/response types, the backend protocol, and its two implementations.

Everything above this module (JSON guard, circuit breakers, ensemble, health check) talks to a model
only through :class:`LLMBackend` (``await backend.complete(request) -> CompletionResponse``).
:class:`OpenAICompatibleBackend` speaks the OpenAI chat-completions protocol that vLLM, Ollama,
the llama.cpp server and LiteLLM all serve; :class:`SimulatedBackend` answers deterministic,
schema-valid fragrance briefs without a network. Every failure is raised as a :class:`BackendError`
subclass whose ``kind`` says what went wrong, so breakers and metrics classify failures without
knowing about HTTP.

What this module must not do: retry, back off, open breakers or parse the brief (those are the
guards' jobs); put an API key, a header or a response body in an exception message or a log line;
read an API key before a call needs it; swallow ``AssertionError`` (a test's unmatched mock) or
cancellation; sleep for real in the simulator (it awaits the injected ``asleep``).
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import hashlib
import json
import logging
import math
import os
import random
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, runtime_checkable

import httpx

from fragrance_ai.clock import AsyncSleepFn
from fragrance_ai.llm.vocabulary import FAMILIES, LONGEVITY, NOTES_BY_FAMILY

if TYPE_CHECKING:
    from fragrance_ai.config_loader import ModelConfig

__all__ = [
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
    "OpenAICompatibleBackend",
    "SimulatedBackend",
    "build_backend",
    "error_kind",
    "parse_retry_after",
]

logger = logging.getLogger(__name__)

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
        super().__init__(model, message or _status_text(status), detail=detail)


class BackendRateLimited(BackendHTTPError):
    """HTTP 429; ``retry_after`` is the server's Retry-After in seconds (None when absent or unreadable)."""

    kind = "rate_limited"

    def __init__(self, model: str, retry_after: float | None = None, *, status: int = 429, detail: str = "") -> None:
        self.retry_after = retry_after
        message = _status_text(status)
        if retry_after is not None:
            message += f", retry after {retry_after:g}s"
        super().__init__(model, status, message, detail=detail)


class BackendServerError(BackendHTTPError):
    """HTTP 5xx: the server or the model behind it failed."""

    kind = "server_error"


class BackendClientError(BackendHTTPError):
    """HTTP 4xx other than 429: the request was refused (bad model id, bad key, bad parameters)."""

    kind = "client_error"


def _status_text(status: int) -> str:
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
    reference = _http_date(date) if date else None
    if reference is not None:
        now = reference
    else:
        # the only wall-time read in the package: an HTTP-date is absolute, so a monotonic clock cannot serve
        now = wallclock() if wallclock is not None else time.time()
    return max(0.0, target - now)


def _http_date(value: str) -> float | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # RFC 9110 dates are GMT; an obsolete form may parse as naive
        return parsed.replace(tzinfo=datetime.timezone.utc).timestamp()
    return parsed.timestamp()


# ------------------------------------------------------------------------------ the OpenAI backend


def _redacted(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


class OpenAICompatibleBackend:
    """A model served over the OpenAI chat-completions API (vLLM, Ollama, llama.cpp server, LiteLLM).

    ``base_url`` is the API root (``http://127.0.0.1:8000/v1``); requests go to ``{base_url}/chat/completions``.
    The API key is read from the environment variable ``api_key_env`` at call time, so a rotated key
    is picked up without a restart. A ``client`` passed in is shared and never closed here; without
    one the backend makes its own on first use and closes it in :meth:`aclose`.

    Counters (plain ints, updated on the event loop; the metrics collector reads them):
    ``calls`` (requests attempted), ``failures`` (by fine ``kind``), ``prompt_tokens`` and
    ``completion_tokens`` (totals as reported by the server).
    """

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        model_id: str,
        api_key_env: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        client: httpx.AsyncClient | None = None,
        environ: Mapping[str, str] | None = None,
        wallclock: Callable[[], float] | None = None,
        max_response_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        url = httpx.URL(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"model {name!r}: base_url must be an http(s) URL like http://127.0.0.1:8000/v1, found {base_url!r}")
        if not model_id:
            raise ValueError(f"model {name!r}: model_id must name the model the server serves, found {model_id!r}")
        for label, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"model {name!r}: {label} must be a positive number of seconds, found {value!r}")
        self.name = name
        self.model_id = model_id
        self.api_key_env = api_key_env or None
        self.base_url = str(url)
        self.url = f"{self.base_url}/chat/completions"
        # for repr and logs: the URL without any user:password@ it may carry
        self._safe_url = str(url.copy_with(username=None, password=None))
        self.timeout = httpx.Timeout(float(timeout), connect=float(connect_timeout))
        if isinstance(max_response_bytes, bool) or not isinstance(max_response_bytes, int) or max_response_bytes < 1:
            raise ValueError(f"model {name!r}: max_response_bytes must be a positive int, found {max_response_bytes!r}")
        #: a body larger than this is refused while it streams in (an answer is judged only after it is read)
        self.max_response_bytes = max_response_bytes
        self._client = client
        self._owns_client = client is None
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        # Retry-After may be an HTTP-date; only then is wall time needed, looked up at call time
        self._wallclock = wallclock
        self._warned_missing_key = False
        self.calls = 0
        self.failures: dict[str, int] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0

    @classmethod
    def from_config(cls, model_config: ModelConfig, *, client: httpx.AsyncClient | None = None) -> OpenAICompatibleBackend:
        """The backend one ``llm.models.<name>`` entry of the config describes."""
        if not model_config.base_url:
            raise ValueError(
                f"model {model_config.name!r}: backend openai needs base_url (e.g. http://127.0.0.1:8000/v1), found none"
            )
        return cls(
            model_config.name,
            base_url=model_config.base_url,
            model_id=model_config.model_id or model_config.name,
            api_key_env=model_config.api_key_env,
            timeout=model_config.timeout,
            connect_timeout=model_config.connect_timeout,
            client=client,
        )

    def __repr__(self) -> str:
        return f"OpenAICompatibleBackend(name={self.name!r}, model_id={self.model_id!r}, base_url={self._safe_url!r})"

    # -- the call

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        """Ask the server once (no retries); raise a :class:`BackendError` subclass on any failure."""
        self.calls += 1
        try:
            return await self._complete(request)
        except BackendError as exc:
            self.failures[exc.kind] = self.failures.get(exc.kind, 0) + 1
            raise

    async def _complete(self, request: CompletionRequest) -> CompletionResponse:
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_tokens,
        }
        if request.response_format_json:
            body["response_format"] = {"type": "json_object"}
        key = self._api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else None
        client = self._get_client()
        try:
            response = await self._post(client, body, headers)
        # timeouts are transport errors too: they must be classified first
        except httpx.TimeoutException as exc:
            raise BackendTimeout(self.name, _timeout_message(exc, self.timeout)) from exc
        except httpx.TransportError as exc:
            raise BackendConnectionError(self.name, type(exc).__name__) from exc
        except httpx.DecodingError as exc:
            raise BackendInvalidResponse(self.name, "the response body could not be decoded") from exc
        return self._read(response, key)

    async def _post(self, client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str] | None) -> httpx.Response:
        """POST and read the body, refusing one over ``max_response_bytes`` before it is all in memory."""
        request = client.build_request("POST", self.url, json=body, headers=headers, timeout=self.timeout)
        response = await client.send(request, stream=True)
        try:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise BackendInvalidResponse(
                        self.name, f"the response body is over max_response_bytes={self.max_response_bytes:,}"
                    )
                chunks.append(chunk)
        finally:
            await response.aclose()
        # the raw (still encoded) bytes, with the headers that say how to decode them
        return httpx.Response(response.status_code, headers=response.headers, content=b"".join(chunks), request=request)

    def _read(self, response: httpx.Response, key: str | None) -> CompletionResponse:
        status = response.status_code
        if not 200 <= status < 300:
            detail = self._detail(response, key)
            if status == 429:
                retry_after = parse_retry_after(
                    response.headers.get("retry-after"),
                    date=response.headers.get("date"),
                    wallclock=self._wallclock,
                )
                raise BackendRateLimited(self.name, retry_after, detail=detail)
            if status >= 500:
                raise BackendServerError(self.name, status, detail=detail)
            if status >= 400:
                raise BackendClientError(self.name, status, detail=detail)
            # a 1xx/3xx here means base_url points somewhere that is not the API (e.g. a redirect to https)
            raise BackendInvalidResponse(self.name, f"unexpected {_status_text(status)}", detail=detail)
        try:
            data = response.json()
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
            raise BackendInvalidResponse(self.name, "the body is not JSON", detail=self._detail(response, key)) from exc
        try:
            choice = data["choices"][0]
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendInvalidResponse(
                self.name, "no choices[0].message.content in the body", detail=self._detail(response, key)
            ) from exc
        if not isinstance(content, str):
            raise BackendInvalidResponse(
                self.name,
                f"choices[0].message.content is {type(content).__name__}, expected a string",
                detail=self._detail(response, key),
            )
        finish = choice.get("finish_reason") if isinstance(choice, dict) else None
        usage = data.get("usage")
        prompt_tokens = completion_tokens = None
        if isinstance(usage, dict):
            prompt_tokens = _count(usage.get("prompt_tokens"))
            completion_tokens = _count(usage.get("completion_tokens"))
            self.prompt_tokens += prompt_tokens or 0
            self.completion_tokens += completion_tokens or 0
        return CompletionResponse(
            text=content,
            model=self.name,
            finish_reason=finish if isinstance(finish, str) else None,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    @staticmethod
    def _detail(response: httpx.Response, key: str | None) -> str:
        try:
            text = response.text
        except (ValueError, LookupError):  # an undecodable or unknown charset: no excerpt
            return ""
        return _redacted(text[: DETAIL_LIMIT + 1], key)[:DETAIL_LIMIT]

    # -- key and client

    def _api_key(self) -> str | None:
        if self.api_key_env is None:
            return None
        key = self._environ.get(self.api_key_env)
        if key:
            return key
        if not self._warned_missing_key:
            self._warned_missing_key = True
            logger.warning(
                "model %r: environment variable %s is not set; calling the server without an API key",
                self.name,
                self.api_key_env,
            )
        return None

    def _get_client(self) -> httpx.AsyncClient:
        client = self._client
        if client is None:
            # no await between the check and the assignment, so concurrent first calls share one client
            client = self._client = httpx.AsyncClient(timeout=self.timeout)
        return client

    async def aclose(self) -> None:
        """Close the client this backend made (a passed-in client belongs to the caller and stays open)."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def _timeout_message(exc: httpx.TimeoutException, timeout: httpx.Timeout) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return f"no connection within {timeout.connect:g}s"
    if isinstance(exc, httpx.ReadTimeout):
        return f"no answer within {timeout.read:g}s"
    if isinstance(exc, httpx.WriteTimeout):
        return f"request not sent within {timeout.write:g}s"
    if isinstance(exc, httpx.PoolTimeout):
        return f"no free connection within {timeout.pool:g}s"
    return type(exc).__name__


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


# --------------------------------------------------------------------------------- the simulator

#: occasion and mood words -> the families they suggest (order is irrelevant: the simulator shuffles)
KEYWORD_FAMILIES: Final[Mapping[str, tuple[str, ...]]] = {
    "summer": ("citrus", "fresh", "aquatic"),
    "spring": ("floral", "green", "fruity"),
    "autumn": ("woody", "spicy", "amber"),
    "fall": ("woody", "spicy", "amber"),
    "winter": ("amber", "spicy", "woody"),
    "evening": ("amber", "leather"),
    "night": ("amber", "leather"),
    "office": ("fresh", "musky"),
    "work": ("fresh", "musky"),
    "romantic": ("floral",),
    "date": ("floral", "amber"),
    "sweet": ("gourmand",),
    "dessert": ("gourmand",),
    "sea": ("aquatic",),
    "ocean": ("aquatic",),
    "beach": ("aquatic", "citrus"),
    "marine": ("aquatic",),
    "forest": ("woody", "green"),
    "garden": ("floral", "green"),
    "fruit": ("fruity",),
    "spice": ("spicy",),
    "clean": ("fresh", "musky"),
    "warm": ("amber", "woody"),
    "cozy": ("amber", "gourmand"),
    "herbal": ("aromatic",),
    "powder": ("powdery",),
    "musk": ("musky",),
    "wood": ("woody",),
    "flower": ("floral",),
    "flowers": ("floral",),
}
_OCCASIONS: Final[Mapping[str, str]] = {
    "summer": "for hot summer days",
    "spring": "for spring mornings",
    "autumn": "for autumn walks",
    "fall": "for autumn walks",
    "winter": "for cold winter nights",
    "evening": "for the evening",
    "night": "for the night",
    "office": "for the office",
    "work": "for the working day",
    "romantic": "for a romantic evening",
    "date": "for a date",
    "beach": "for a day at the beach",
}
_LIGHT_WORDS: Final = frozenset({"light", "subtle", "soft", "sheer", "delicate", "airy", "office", "clean"})
_BOLD_WORDS: Final = frozenset({"intense", "bold", "strong", "powerful", "rich", "heavy", "dramatic", "night"})
_HEAVY_FAMILIES: Final = frozenset({"amber", "woody", "leather", "gourmand", "chypre", "musky", "spicy"})
_ADJECTIVES: Final = ("luminous", "elegant", "radiant", "quiet", "vivid", "velvety", "crisp", "sensual", "playful", "refined")
_FORMS: Final = ("fragrance", "scent", "composition", "perfume")


def _build_term_index() -> tuple[re.Pattern[str], dict[str, tuple[str, bool, tuple[str, ...]]]]:
    """One regex over every term the simulator reacts to, and what each term means.

    Each term maps to ``(kind, explicit, families)``: family names are explicit picks, keywords and
    note names only suggest families.
    """
    terms: dict[str, tuple[str, bool, tuple[str, ...]]] = {}
    for note in sorted({n for notes in NOTES_BY_FAMILY.values() for n in notes}):
        owners = tuple(f for f, notes in NOTES_BY_FAMILY.items() if note in notes)
        terms[note] = ("note", False, owners)
    for word, families in KEYWORD_FAMILIES.items():
        terms.setdefault(word, ("keyword", False, families))
    for family in FAMILIES:
        terms[family] = ("family", True, (family,))  # a family name wins over a same-named note ("amber", "leather")
    terms["fougère"] = terms["fougere"]
    # longest first so that "green tea" matches before "green"
    alternation = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alternation})(?![\w-])"), terms


_TERMS_RE, _TERMS = _build_term_index()
_WORD_RE: Final = re.compile(r"[a-z]+")


def _normalise(prompt: str) -> str:
    text = prompt.casefold()
    if text.isascii():
        return text
    # a decomposed "fougère" (e + combining grave) must match the precomposed form the index holds
    return unicodedata.normalize("NFC", text)


class SimulatedBackend:
    """A deterministic, offline stand-in for a model: answers a valid fragrance brief as JSON text.

    The same (model name, prompt, ``seed_salt``) always gives the same brief; another model name gives
    another brief. Families follow the prompt (family names, notes and words like "summer" or
    "evening"), then a stable hash. ``latency`` seconds are awaited with the injected ``asleep``
    before answering. The prompt is the first user message, so a re-ask answers the same question.

    Counters: ``calls`` (requests answered).
    """

    def __init__(
        self,
        name: str,
        *,
        seed_salt: str | None = None,
        latency: float = 0.0,
        asleep: AsyncSleepFn | None = None,
    ) -> None:
        if not (isinstance(latency, (int, float)) and latency >= 0 and math.isfinite(latency)):
            raise ValueError(f"latency must be a non-negative number of seconds, found {latency!r}")
        self.name = name
        self.seed_salt = seed_salt
        self.latency = float(latency)
        self._asleep: AsyncSleepFn = asyncio.sleep if asleep is None else asleep
        self.calls = 0

    def __repr__(self) -> str:
        return f"SimulatedBackend(name={self.name!r}, latency={self.latency!r})"

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        """Answer ``request`` with a schema-valid brief after ``latency`` (virtual) seconds."""
        if self.latency:
            await self._asleep(self.latency)
        self.calls += 1
        prompt = request.prompt
        text = json.dumps(self.brief(prompt), ensure_ascii=False)
        return CompletionResponse(
            text=text,
            model=self.name,
            finish_reason="stop",
            prompt_tokens=sum(len(m.content.split()) for m in request.messages),
            completion_tokens=len(text.split()),
        )

    async def aclose(self) -> None:
        """Nothing to release; present so the simulator is a full :class:`LLMBackend`."""

    def brief(self, prompt: str) -> dict[str, Any]:
        """The brief this model answers to ``prompt`` (pure: no latency, no counters)."""
        digest = hashlib.sha256(f"{self.seed_salt or ''}\x00{self.name}\x00{prompt}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:16], "big"))
        text = _normalise(prompt)
        matches = [m.group(0) for m in _TERMS_RE.finditer(text)]
        word_list = _WORD_RE.findall(text)
        words = set(word_list)

        # what the prompt names outright comes first, then the families of the notes it names, then
        # the families its mood words suggest; the rng orders ties so that each model reads it differently
        explicit: list[str] = []
        from_notes: list[str] = []
        from_keywords: list[str] = []
        mentioned_notes: list[str] = []
        for term in matches:
            kind, is_explicit, owners = _TERMS[term]
            if is_explicit:
                explicit.append(owners[0])
                continue
            shuffled = list(owners)
            rng.shuffle(shuffled)
            if kind == "note":
                mentioned_notes.append(term)
                from_notes.extend(shuffled)
            else:
                from_keywords.extend(shuffled)
        candidates = _unique(explicit + from_notes + from_keywords)
        count = max(rng.randint(1, 3), min(len(_unique(explicit)), 3))
        families = candidates[:count]
        if len(families) < count:
            rest = [f for f in FAMILIES if f not in families]
            families += rng.sample(rest, count - len(families))

        pool = _unique(n for f in families for n in NOTES_BY_FAMILY[f])
        wanted = min(rng.randint(3, 7), len(pool))
        notes = [n for n in _unique(mentioned_notes) if n in pool][:wanted]
        notes += rng.sample([n for n in pool if n not in notes], wanted - len(notes))

        intensity = rng.randint(25, 85)
        intensity += 15 * (len(words & _BOLD_WORDS) - len(words & _LIGHT_WORDS))
        intensity = min(100, max(0, intensity))
        heavy = sum(f in _HEAVY_FAMILIES for f in families) / len(families)
        score = intensity / 100 + heavy / 2 + rng.uniform(-0.15, 0.15)
        longevity = LONGEVITY[0] if score < 0.5 else LONGEVITY[1] if score < 0.9 else LONGEVITY[2]
        if "long" in words and "lasting" in words:
            longevity = LONGEVITY[2]

        occasion = next((_OCCASIONS[w] for w in word_list if w in _OCCASIONS), None)
        return {
            "description": _describe(rng, families, notes, longevity, occasion),
            "notes": notes,
            "families": families,
            "intensity": intensity,
            "longevity": longevity,
        }


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _describe(rng: random.Random, families: list[str], notes: list[str], longevity: str, occasion: str | None) -> str:
    adjective = rng.choice(_ADJECTIVES)
    article = "An" if adjective[0] in "aeiou" else "A"
    form = rng.choice(_FORMS)
    family_text = _join([f.replace("fougere", "fougère") for f in families])
    # top notes open, the rest form heart and base: every note is named once
    split = max(1, len(notes) // 3)
    top, rest = notes[:split], notes[split:]
    first = f"{article} {adjective} {family_text} {form}{' ' + occasion if occasion else ''} that opens with {_join(top)}"
    if not rest:
        return first + "."
    wear = {"short": "a fleeting", "medium": "a steady", "long": "a lasting"}[longevity]
    return f"{first}. Its heart of {_join(rest)} settles into {wear} trail."


# ------------------------------------------------------------------------------------- the factory


def build_backend(model_config: ModelConfig, *, client: httpx.AsyncClient | None = None) -> LLMBackend:
    """The backend ``model_config.backend`` names: ``simulated`` or ``openai``."""
    if model_config.backend == "simulated":
        return SimulatedBackend(model_config.name)
    if model_config.backend == "openai":
        return OpenAICompatibleBackend.from_config(model_config, client=client)
    raise ValueError(f"model {model_config.name!r}: unknown backend {model_config.backend!r} (expected simulated or openai)")
