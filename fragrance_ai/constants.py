"""The fixed vocabulary of the package, defined once: modes, failure reason codes, brief sources, the loopback host.

Every other module (config, metrics, guards, ensemble, health checker, service, CLI) derives its codes
from here, so a metric label, a config choice and a JSON field can never drift apart. This module sits
at the very bottom: it must not import anything from the package, and holds no logic.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = [
    "BACKEND_FAILURES",
    "BRIEF_SOURCES",
    "CIRCUIT_BREAKER_OPEN",
    "CIRCUIT_OPEN",
    "CLIENT_ERROR",
    "CLIENT_ERROR_STATUSES",
    "DEFAULT_MODE",
    "HEALTH_REASONS",
    "JSON_FAILURE_REASONS",
    "LOOPBACK_HOST",
    "MODEL_ERROR_REASONS",
    "MODES",
    "SKIPPED_OPEN",
    "TOKEN_PURPOSES",
    "BackendFailure",
    "Mode",
    "Reason",
    "Source",
]

#: the service modes from most capable (and most fragile) to most stable; a downshift moves one step right
Mode = Literal["creative", "balanced", "fast"]
MODES: Final[tuple[Mode, ...]] = get_args(Mode)
#: the mode a service starts in unless its config says otherwise
DEFAULT_MODE: Final[Mode] = MODES[0]

#: why the JSON guard rejected one answer (the ``reason`` label of ``llm_json_parse_failures_total``)
Reason = Literal[
    "invalid_json",
    "duplicate_key",
    "too_large",
    "too_deep",
    "no_json_found",
    "schema_violation",
    "regenerate_error",
]
JSON_FAILURE_REASONS: Final[tuple[Reason, ...]] = get_args(Reason)

#: the coarse code of a failed model call (``error_kind``); ``error`` is anything unexpected
BackendFailure = Literal["timeout", "connection_error", "http_error", "invalid_response", "error"]
BACKEND_FAILURES: Final[tuple[BackendFailure, ...]] = get_args(BackendFailure)

#: a failed model call or health check: the model's API refused the request itself (HTTP 400/401/403/404: a bad
#: model id, key or parameter), which no retry fixes; reported apart from flakiness, and alerted on
CLIENT_ERROR: Final = "client_error"
#: the HTTP statuses reported as :data:`CLIENT_ERROR` (429 is rate limiting, other 4xx stay ``http_error``)
CLIENT_ERROR_STATUSES: Final = frozenset({400, 401, 403, 404})
#: the ``reason`` label of ``llm_model_errors_total``: every code a failed (admitted) model call gets
MODEL_ERROR_REASONS: Final[tuple[str, ...]] = (*BACKEND_FAILURES, CLIENT_ERROR)

#: a model's turn in the ensemble: the breaker refused the call it was about to make
CIRCUIT_OPEN: Final = "circuit_open"
#: a model's turn in the ensemble: skipped before any call because its breaker was open
SKIPPED_OPEN: Final = "skipped_open"
#: a health result: the breaker is open, so no inference was spent
CIRCUIT_BREAKER_OPEN: Final = "circuit_breaker_open"
#: every reason an unhealthy health-check result can carry
HEALTH_REASONS: Final[tuple[str, ...]] = (
    CIRCUIT_BREAKER_OPEN,
    "timeout",
    "invalid_response",
    "connection_error",
    "http_error",
    CLIENT_ERROR,
    "error",
)

#: where a served brief came from (the ``source`` label of ``llm_briefs_total``)
Source = Literal["cache", "model", "fallback"]
BRIEF_SOURCES: Final[tuple[Source, ...]] = get_args(Source)

#: what a model call was for (the ``purpose`` label of ``llm_tokens_total``): a brief's first answer, a re-ask, a health probe
Purpose = Literal["brief", "reask", "health"]
TOKEN_PURPOSES: Final[tuple[Purpose, ...]] = get_args(Purpose)

#: the interface the service binds and local test servers listen on unless told otherwise
LOOPBACK_HOST: Final = "127.0.0.1"
