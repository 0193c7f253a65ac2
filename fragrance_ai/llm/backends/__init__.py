"""The one seam to an LLM: the backend protocol, its request/response types and errors, and its two
implementations (:class:`OpenAICompatibleBackend` over HTTP, :class:`SimulatedBackend` offline).

This package only re-exports and picks a backend from a config entry; each module holds one job.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx

from fragrance_ai.clock import AsyncTimeoutFn
from fragrance_ai.llm.backends.base import (
    DETAIL_LIMIT,
    FEEDBACK_ANSWER_LIMIT,
    ROLES,
    BackendClientError,
    BackendConnectionError,
    BackendError,
    BackendHTTPError,
    BackendInvalidResponse,
    BackendRateLimited,
    BackendServerError,
    BackendTimeout,
    ChatMessage,
    CompletionRequest,
    CompletionResponse,
    LLMBackend,
    error_kind,
    parse_retry_after,
)
from fragrance_ai.llm.backends.openai import OpenAICompatibleBackend, default_ssl_context
from fragrance_ai.llm.backends.simulated import KEYWORD_FAMILIES, SimulatedBackend

if TYPE_CHECKING:
    from fragrance_ai.config_loader import ModelConfig

__all__ = [
    "DETAIL_LIMIT",
    "FEEDBACK_ANSWER_LIMIT",
    "KEYWORD_FAMILIES",
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
    "default_ssl_context",
    "error_kind",
    "parse_retry_after",
]


def build_backend(
    model_config: ModelConfig, *, client: httpx.AsyncClient | None = None, atimeout: AsyncTimeoutFn = asyncio.timeout
) -> LLMBackend:
    """The backend ``model_config.backend`` names: ``simulated`` or ``openai`` (``atimeout`` bounds a stream's chunks)."""
    if model_config.backend == "simulated":
        return SimulatedBackend(model_config.name)
    if model_config.backend == "openai":
        return OpenAICompatibleBackend.from_config(model_config, client=client, atimeout=atimeout)
    raise ValueError(f"model {model_config.name!r}: unknown backend {model_config.backend!r} (expected simulated or openai)")
