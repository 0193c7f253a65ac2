"""The OpenAI-compatible HTTP backend: vLLM, Ollama, the llama.cpp server and LiteLLM behind one client.

What this module must not do: retry, back off, open breakers or parse the brief (those are the
guards' jobs); put an API key, a header or a response body in an exception message or a log line;
read an API key before a call needs it; swallow ``AssertionError`` (a test's unmatched mock) or
cancellation.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx

from fragrance_ai.clock import AsyncTimeoutFn
from fragrance_ai.config_schema import ModelConfig
from fragrance_ai.llm.backends.base import (
    DETAIL_LIMIT,
    BackendClientError,
    BackendConnectionError,
    BackendError,
    BackendInvalidResponse,
    BackendRateLimited,
    BackendServerError,
    BackendTimeout,
    CompletionRequest,
    CompletionResponse,
    parse_retry_after,
    status_text,
)
from fragrance_ai.llm.backends.sse import read_stream

__all__ = ["OpenAICompatibleBackend", "default_ssl_context"]

logger = logging.getLogger(__name__)

#: the constructor's defaults are the config's defaults: one place
_DEFAULTS: Final = ModelConfig("default")


def _redacted(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text



@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """The certificate-verifying TLS context every HTTP client of this process shares.

    Loading the CA bundle costs tens of milliseconds per client; a context is safe to share between
    clients and threads. It is built on first use, so ``SSL_CERT_FILE`` set later is not seen.
    """
    return httpx.create_ssl_context()

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
        timeout: float = _DEFAULTS.timeout,
        connect_timeout: float = _DEFAULTS.connect_timeout,
        client: httpx.AsyncClient | None = None,
        environ: Mapping[str, str] | None = None,
        wallclock: Callable[[], float] | None = None,
        max_response_bytes: int = 4 * 1024 * 1024,
        stream: bool = _DEFAULTS.stream,
        chunk_timeout: float = _DEFAULTS.chunk_timeout,
        atimeout: AsyncTimeoutFn = asyncio.timeout,
    ) -> None:
        url = httpx.URL(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"model {name!r}: base_url must be an http(s) URL like http://127.0.0.1:8000/v1, found {base_url!r}")
        if not model_id:
            raise ValueError(f"model {name!r}: model_id must name the model the server serves, found {model_id!r}")
        for label, value in (("timeout", timeout), ("connect_timeout", connect_timeout), ("chunk_timeout", chunk_timeout)):
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
        #: ask for an SSE stream (``stream: true``): ``chunk_timeout`` between chunks, ``timeout`` for the whole answer
        self.stream = bool(stream)
        self.chunk_timeout = float(chunk_timeout)
        self.total_timeout = float(timeout)
        self._atimeout = atimeout
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
    def from_config(
        cls,
        model_config: ModelConfig,
        *,
        client: httpx.AsyncClient | None = None,
        atimeout: AsyncTimeoutFn = asyncio.timeout,
    ) -> OpenAICompatibleBackend:
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
            stream=model_config.stream,
            chunk_timeout=model_config.chunk_timeout,
            atimeout=atimeout,
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
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        key = self._api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else None
        client = self._get_client()
        try:
            if self.stream:
                streamed = await self._post_streaming(client, body, headers)
                if isinstance(streamed, CompletionResponse):
                    return streamed
                response = streamed
            else:
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
            return await self._read_body(response, request)
        finally:
            await response.aclose()

    async def _read_body(self, response: httpx.Response, request: httpx.Request) -> httpx.Response:
        """The whole body of a streamed ``response`` (refused once over ``max_response_bytes``), as a read response."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > self.max_response_bytes:
                raise BackendInvalidResponse(
                    self.name, f"the response body is over max_response_bytes={self.max_response_bytes:,}"
                )
            chunks.append(chunk)
        # the raw (still encoded) bytes, with the headers that say how to decode them
        return httpx.Response(response.status_code, headers=response.headers, content=b"".join(chunks), request=request)

    async def _post_streaming(
        self, client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str] | None
    ) -> CompletionResponse | httpx.Response:
        """POST asking for a stream and read it within ``chunk_timeout`` per chunk and ``timeout`` in all.

        An error status, or a server that answered with plain JSON after all, comes back as a read
        response for :meth:`_read`; a stream comes back as its answer.
        """
        timeout = httpx.Timeout(self.timeout.connect, read=self.chunk_timeout, write=self.chunk_timeout, pool=self.timeout.pool)
        request = client.build_request("POST", self.url, json=body, headers=headers, timeout=timeout)
        try:
            async with self._atimeout(self.total_timeout):
                response = await client.send(request, stream=True)
                try:
                    if not (200 <= response.status_code < 300 and _is_event_stream(response)):
                        return await self._read_body(response, request)
                    answer = await read_stream(
                        response.aiter_bytes(),
                        model=self.name,
                        chunk_timeout=self.chunk_timeout,
                        max_bytes=self.max_response_bytes,
                        atimeout=self._atimeout,
                    )
                finally:
                    await response.aclose()
        except TimeoutError as exc:
            raise BackendTimeout(self.name, f"the stream did not finish within {self.total_timeout:g}s") from exc
        if not answer.complete:
            logger.info("model %r: the stream was cut after %d characters; passing on what arrived", self.name, len(answer.text))
        self.prompt_tokens += answer.prompt_tokens or 0
        self.completion_tokens += answer.completion_tokens or 0
        return CompletionResponse(
            text=answer.text,
            model=self.name,
            finish_reason=answer.finish_reason if answer.complete else None,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
        )

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
            raise BackendInvalidResponse(self.name, f"unexpected {status_text(status)}", detail=detail)
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
            client = self._client = httpx.AsyncClient(timeout=self.timeout, verify=default_ssl_context())
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


def _is_event_stream(response: httpx.Response) -> bool:
    content_type = str(response.headers.get("content-type", ""))
    return content_type.split(";")[0].strip().lower() == "text/event-stream"


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
