"""The fake LLM server's control plane: set each model's behaviours over HTTP, read its call log, reset.

A pre-promotion run against a live canary cannot reach into the canary's process; it reaches what the
canary depends on. When the standalone fake LLM server is given a token, it serves, beside the models:

- ``GET /_control/models``: every model and how many calls it received since its script was set;
- ``PUT /_control/models/{model}``: a JSON body in the scenario files' behaviour format (``"timeout"``,
  ``{"http_error": 503, "times": 3}``, a list for a sequence) becomes that model's script;
- ``GET /_control/models/{model}/calls``: its call log (index, behaviour, outcome, status, the request's
  messages and sampling parameters);
- ``POST /_control/reset``: every model back to valid answers, logs cleared.

Every request needs ``Authorization: Bearer <token>`` (compared in constant time; 401 otherwise).
Without a token the routes do not exist.

What this module must not do: accept a request without the token, echo the token, or hold the book's
lock while answering (the book's methods take it for their bookkeeping only).
"""

from __future__ import annotations

import hmac
import json
from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from pytest_guards.faults._behaviours import BehaviourError
from pytest_guards.faults._book import ScriptedModels, call_record
from pytest_guards.faults._format import parse_behaviours

__all__ = ["CONTROL_PREFIX", "CONTROL_TOKEN_ENV", "control_routes"]

CONTROL_PREFIX: Final = "/_control"
#: where the standalone server reads its token when ``--control-token`` is not given
CONTROL_TOKEN_ENV: Final = "FAKE_LLM_CONTROL_TOKEN"
#: the largest behaviour body the control plane reads (a script is a few hundred bytes)
_MAX_BODY: Final = 64 * 1024


def control_routes(models: ScriptedModels, token: str) -> list[BaseRoute]:
    """The control plane's routes for ``models``, each requiring ``token``."""
    if not token or token != token.strip():
        raise ValueError("fake_llm_server: a control token must be non-empty, without surrounding spaces")
    plane = _ControlPlane(models, token)
    return [
        Route(f"{CONTROL_PREFIX}/models", plane.list_models, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/models/{{model}}", plane.set_model, methods=["PUT"]),
        Route(f"{CONTROL_PREFIX}/models/{{model}}/calls", plane.calls, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/reset", plane.reset, methods=["POST"]),
    ]


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class _ControlPlane:
    def __init__(self, models: ScriptedModels, token: str) -> None:
        self._models = models
        self._expected = f"Bearer {token}".encode()

    def _refused(self, request: Request) -> Response | None:
        given = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(given, self._expected):
            return None
        response = _error(401, "unauthorized", "the control plane needs Authorization: Bearer <token>")
        response.headers["WWW-Authenticate"] = 'Bearer realm="fake-llm-control"'
        return response

    def _unknown(self, model: str) -> Response | None:
        if model in self._models.models:
            return None
        return _error(404, "model_not_found", f"no such model; configured: {', '.join(self._models.models)}")

    async def list_models(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        return JSONResponse({"models": {m: {"calls": self._models.call_count(m)} for m in self._models.models}})

    async def set_model(self, request: Request) -> Response:
        refused = self._refused(request) or self._unknown(request.path_params["model"])
        if refused is not None:
            return refused
        model = request.path_params["model"]
        body = await request.body()
        if len(body) > _MAX_BODY:
            return _error(413, "too_large", f"a behaviour body is at most {_MAX_BODY} bytes")
        try:
            spec = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "invalid_json", "the body must be JSON: a behaviour, or a list of them")
        try:
            script = parse_behaviours(spec, where=model)
        except BehaviourError as exc:
            return _error(400, "invalid_behaviour", str(exc))
        self._models.set(model, script)
        return JSONResponse({"model": model, "script": repr(script)})

    async def calls(self, request: Request) -> Response:
        refused = self._refused(request) or self._unknown(request.path_params["model"])
        if refused is not None:
            return refused
        model = request.path_params["model"]
        return JSONResponse({"model": model, "calls": [call_record(c) for c in self._models.calls(model)]})

    async def reset(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        self._models.reset()
        return JSONResponse({"reset": list(self._models.models)})
