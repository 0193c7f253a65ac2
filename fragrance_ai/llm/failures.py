"""What a failed model call or health check is called: one mapping from an exception to a fixed reason code.

The ensemble (a model's turn) and the health checker (a model's health) both classify failures here, so
the codes in ``models_tried`` and in ``/health/llm`` cannot drift apart. It must not log or keep any
exception text: callers log the unexpected ones (code ``error``) with their traceback.
"""

from __future__ import annotations

from fragrance_ai.constants import CIRCUIT_OPEN, CLIENT_ERROR, CLIENT_ERROR_STATUSES
from fragrance_ai.llm.backends import BackendHTTPError, error_kind
from fragrance_ai.llm.circuit_breaker import CircuitBreakerOpenError
from fragrance_ai.llm.guard_run import JSONGuardError

__all__ = ["failure_reason"]


def failure_reason(exc: BaseException) -> str:
    """``circuit_open``, ``invalid_response`` for an answer the guard rejected, ``client_error`` for HTTP
    400/401/403/404 (a request no retry fixes), else :func:`error_kind`'s code."""
    if isinstance(exc, CircuitBreakerOpenError):
        return CIRCUIT_OPEN
    if isinstance(exc, BackendHTTPError) and exc.status in CLIENT_ERROR_STATUSES:
        return CLIENT_ERROR
    if isinstance(exc, JSONGuardError):
        return "invalid_response"
    return error_kind(exc)
