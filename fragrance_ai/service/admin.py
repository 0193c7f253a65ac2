"""The operator's hand: force a model's breaker open or closed, or release it, behind bearer tokens.

Tokens come from the environment, one per operator: ``FRAGRANCE_ADMIN_TOKENS=name:token,name2:token2``
(names as model names are written, tokens at least :data:`MIN_TOKEN_CHARS` characters). Without it the
admin routes are not mounted at all (404), and they are never in the OpenAPI document: they are not part
of the public contract the schemathesis tests check. A request carries ``Authorization: Bearer TOKEN``;
the token is compared with every configured one in constant time (``hmac.compare_digest``, no early
exit), and the NAME of the token that matched is who acted: one audit log line (logger
``fragrance_ai.audit``) and ``circuit_breaker_admin_actions_total{model, action, operator}`` say so.

Routes (``POST``): ``/admin/breakers/{model}/force-open`` (open until released: no half-open trials),
``/force-closed`` (closed and never opened by failures until released), ``/release`` (closed, empty
window, the breaker's own rules again). Answers: 200 with the breaker's state, 401 without a valid
token, 404 for a model not configured, 409 with ``state.backend: redis`` (a forced state is this
replica's only, so it is refused rather than half-applied to a fleet).

What this module must not do: log, echo or keep a token anywhere but in :class:`AdminTokens`, or mount
a route when no token is configured.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fragrance_ai.service.system import GuardSystem

__all__ = ["ADMIN_TOKENS_ENV", "MIN_TOKEN_CHARS", "AdminTokenError", "AdminTokens", "install_admin"]

ADMIN_TOKENS_ENV: Final = "FRAGRANCE_ADMIN_TOKENS"
MIN_TOKEN_CHARS: Final = 16
_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}\Z")
#: route action -> what the breaker is forced to (None: released)
_ACTIONS: Final[dict[str, str | None]] = {"force-open": "open", "force-closed": "closed", "release": None}

audit = logging.getLogger("fragrance_ai.audit")


class AdminTokenError(ValueError):
    """``FRAGRANCE_ADMIN_TOKENS`` is malformed; the message names the entry, never its token."""


@dataclass(frozen=True, slots=True)
class AdminTokens:
    """The operators' names and their tokens (bytes, for the constant-time compare)."""

    tokens: tuple[tuple[str, bytes], ...] = field(repr=False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.tokens)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AdminTokens | None:
        """The tokens in ``FRAGRANCE_ADMIN_TOKENS`` (None when unset or blank); raises AdminTokenError."""
        raw = (os.environ if environ is None else environ).get(ADMIN_TOKENS_ENV, "")
        if not raw.strip():
            return None
        tokens: list[tuple[str, bytes]] = []
        for index, entry in enumerate(raw.split(","), start=1):
            name, sep, token = entry.strip().partition(":")
            where = f"{ADMIN_TOKENS_ENV}: entry {index}"
            if not sep:
                raise AdminTokenError(f"{where}: expected name:token")
            if not _NAME.match(name):
                raise AdminTokenError(f"{where}: the name must be lower-case letters, digits, '_', '.', '-' (at most 63)")
            if len(token) < MIN_TOKEN_CHARS or not token.isprintable() or " " in token:
                why = f"the token must be at least {MIN_TOKEN_CHARS} printable characters, no spaces"
                raise AdminTokenError(f"{where} ({name}): {why}")
            if name in (n for n, _ in tokens):
                raise AdminTokenError(f"{where}: the name {name!r} is given twice")
            if any(hmac.compare_digest(token.encode(), t) for _, t in tokens):
                raise AdminTokenError(f"{where} ({name}): the same token as another operator's")
            tokens.append((name, token.encode()))
        return cls(tuple(tokens))

    def who(self, authorization: str | None) -> str | None:
        """The name whose token a ``Bearer`` header carries, else None (every token compared, in constant time)."""
        if not authorization:
            return None
        scheme, _, given = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return None
        offered = given.strip().encode("utf-8", "replace")
        found: str | None = None
        for name, token in self.tokens:
            if hmac.compare_digest(offered, token) and found is None:
                found = name
        return found


def install_admin(app: FastAPI, system: GuardSystem, tokens: AdminTokens | None) -> None:
    """Mount the admin routes on ``app`` when ``tokens`` is not None (see the module docstring)."""
    if tokens is None:
        return

    async def breaker_action(model: str, action: str, request: Request) -> Any:
        operator = tokens.who(request.headers.get("authorization"))
        if operator is None:
            return JSONResponse({"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        breaker = system.breakers.get_breaker(model)
        if breaker is None or action not in _ACTIONS:
            return JSONResponse({"error": "not_found"}, status_code=404)
        if system.state is not None:
            return JSONResponse(
                {"error": "memory_only", "detail": "forcing a breaker is per replica: not offered with state.backend: redis"},
                status_code=409,
            )
        breaker.force(_ACTIONS[action])
        system.metrics.admin_actions.labels(model=model, action=action, operator=operator).inc()
        audit.warning("admin action: operator=%s action=%s model=%s state=%s", operator, action, model, breaker.state)
        return {"model": model, "action": action, "operator": operator, "state": breaker.state, "forced": breaker.forced}

    app.post("/admin/breakers/{model}/{action}", include_in_schema=False)(breaker_action)
