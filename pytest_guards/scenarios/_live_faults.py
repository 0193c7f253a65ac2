"""What a live run controls besides the canary: the fake LLM server's control plane and Toxiproxy, over HTTP.

A pre-promotion run cannot reach into the canary's process; it reaches what the canary depends on.
:class:`LiveDependencies` names them (``--llm-control URL`` + token, ``--toxiproxy-url URL`` +
``--proxy-name '{model}'``, or one small target file); :class:`LiveFaults` applies a scenario's
``given.llm`` / ``llm`` / ``network`` steps through them and reads the models' call logs.

Both are reached with httpx and a timeout on every request (toxiproxy-python keeps its host in class
attributes and has no timeouts). :meth:`LiveFaults.cleanup` undoes every fault a scenario set, pass or
fail: the control plane is reset (valid answers, logs cleared), every toxic this run added is removed
and every proxy it disabled is enabled again.

What this module must not do: echo the control token, or leave a fault behind (cleanup runs even when
a step failed, and tries every undo even when one fails).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import httpx
import yaml

__all__ = ["CONTROL_TOKEN_ENV", "LiveDependencies", "LiveFaults", "TargetFileError", "load_target_file"]

#: where the control token is read when neither ``--control-token`` nor the target file gives it
CONTROL_TOKEN_ENV: Final = "FAKE_LLM_CONTROL_TOKEN"
#: seconds any one request to the control plane or Toxiproxy may take
_TIMEOUT: Final = httpx.Timeout(10.0, connect=3.0)
_TARGET_KEYS: Final = ("url", "llm_control", "control_token_env", "toxiproxy_url", "proxy_name")


class TargetFileError(ValueError):
    """A target file is unreadable or wrong; the message names the file and the key, never a value."""


@dataclass(frozen=True)
class LiveDependencies:
    """What a live canary depends on, as a fault-injecting run reaches it."""

    llm_control: str | None = None
    control_token: str | None = field(default=None, repr=False)
    toxiproxy_url: str | None = None
    #: the Toxiproxy proxy in front of each model: a template with ``{model}``
    proxy_name: str = "{model}"

    def proxy_for(self, model: str) -> str:
        return self.proxy_name.replace("{model}", model)

    def missing(self, needs: tuple[str, ...]) -> str | None:
        """Why a scenario needing ``needs`` cannot run with these dependencies (None when it can)."""
        if "llm_control" in needs and not self.llm_control:
            return "needs the fake LLM's control plane: --llm-control URL (and its token)"
        if "llm_control" in needs and not self.control_token:
            return f"needs the control plane's token: --control-token or ${CONTROL_TOKEN_ENV}"
        if "toxiproxy" in needs and not self.toxiproxy_url:
            return "needs Toxiproxy in front of the canary's models: --toxiproxy-url URL (and --proxy-name)"
        return None


def load_target_file(path: Path) -> tuple[str | None, LiveDependencies]:
    """``url``, ``llm_control``, ``control_token_env``, ``toxiproxy_url``, ``proxy_name`` from a small YAML file.

    The token itself is never written in the file: ``control_token_env`` names the variable holding it
    (default ``FAKE_LLM_CONTROL_TOKEN``).
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise TargetFileError(f"{path}: cannot be read as YAML ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise TargetFileError(f"{path}: expected a mapping of {', '.join(_TARGET_KEYS)}")
    for key, value in data.items():
        if key not in _TARGET_KEYS:
            raise TargetFileError(f"{path}: {key}: unknown key (expected one of {', '.join(_TARGET_KEYS)})")
        if value is not None and not isinstance(value, str):
            raise TargetFileError(f"{path}: {key}: expected a string")
    template = data.get("proxy_name") or "{model}"
    if "{model}" not in template:
        raise TargetFileError(f"{path}: proxy_name: the template must contain {{model}}")
    token = os.environ.get(data.get("control_token_env") or CONTROL_TOKEN_ENV) or None
    deps = LiveDependencies(data.get("llm_control"), token, data.get("toxiproxy_url"), template)
    return data.get("url"), deps


def _toxic_body(name: str, toxic: dict[str, Any]) -> dict[str, Any]:
    """A scenario toxic (``{latency: {latency: 3000}, direction: upstream}``) as Toxiproxy's API wants it."""
    (kind, attributes), = ((k, v) for k, v in toxic.items() if k not in ("direction", "toxicity"))
    return {
        "name": name,
        "type": kind,
        "stream": toxic.get("direction", "downstream"),
        "toxicity": float(toxic.get("toxicity", 1.0)),
        "attributes": dict(attributes or {}),
    }


class LiveFaults:
    """One scenario's faults on a live canary's dependencies; ``async with`` cleans them up on exit."""

    def __init__(self, deps: LiveDependencies, scenario_id: str) -> None:
        self.deps = deps
        self._prefix = f"guards_{scenario_id}"[:60]
        self._control: httpx.AsyncClient | None = None
        self._toxiproxy: httpx.AsyncClient | None = None
        if deps.llm_control and deps.control_token:
            headers = {"Authorization": f"Bearer {deps.control_token}"}
            self._control = httpx.AsyncClient(base_url=deps.llm_control, headers=headers, timeout=_TIMEOUT)
        if deps.toxiproxy_url:
            self._toxiproxy = httpx.AsyncClient(base_url=deps.toxiproxy_url, timeout=_TIMEOUT)
        self._toxics: list[tuple[str, str]] = []  # (proxy, toxic) this run added
        self._disabled: set[str] = set()
        self._count = 0
        self.touched_llm = False

    async def __aenter__(self) -> LiveFaults:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.cleanup()
        finally:
            for client in (self._control, self._toxiproxy):
                if client is not None:
                    await client.aclose()

    # -- the control plane

    def _plane(self) -> httpx.AsyncClient:
        if self._control is None:
            raise RuntimeError("this step needs the fake LLM's control plane (--llm-control URL and its token)")
        return self._control

    @staticmethod
    def _checked(response: httpx.Response, what: str) -> httpx.Response:
        if response.status_code == 401:
            raise RuntimeError(f"{what}: the control plane refused the token (HTTP 401)")
        if response.status_code >= 400:
            code = response.json().get("error", {}).get("code") if "json" in response.headers.get("content-type", "") else ""
            raise RuntimeError(f"{what}: HTTP {response.status_code} {code or ''}".rstrip())
        return response

    async def check(self) -> None:
        """Reach every dependency once (a missing control plane makes the run INCONCLUSIVE, not unsafe)."""
        if self._control is not None:
            self._checked(await self._control.get("/_control/models"), "GET /_control/models")
        if self._toxiproxy is not None:
            response = await self._toxiproxy.get("/version")
            if response.status_code != 200:
                raise RuntimeError(f"Toxiproxy GET /version answered HTTP {response.status_code}")

    async def models(self) -> tuple[str, ...]:
        body = self._checked(await self._plane().get("/_control/models"), "GET /_control/models").json()
        return tuple(body.get("models", {}))

    async def set_llm(self, model: str, spec: Any) -> None:
        """``PUT /_control/models/{model}``: the behaviours (the scenario's own syntax) become its script."""
        self.touched_llm = True
        path = f"/_control/models/{quote(model, safe='')}"
        self._checked(await self._plane().put(path, json=spec), f"setting {model}'s behaviours")

    async def calls(self, model: str) -> list[dict[str, Any]]:
        """The model's call log since its script was last set (index, behaviour, outcome, request)."""
        path = f"/_control/models/{quote(model, safe='')}/calls"
        body = self._checked(await self._plane().get(path), f"reading {model}'s call log").json()
        calls: list[dict[str, Any]] = body.get("calls", [])
        return calls

    # -- Toxiproxy

    def _proxies(self) -> httpx.AsyncClient:
        if self._toxiproxy is None:
            raise RuntimeError("network steps need Toxiproxy (--toxiproxy-url URL and --proxy-name)")
        return self._toxiproxy

    async def _proxy_api(self, method: str, path: str, json: Any = None, ok: tuple[int, ...] = (200, 204)) -> None:
        response = await self._proxies().request(method, path, json=json)
        if response.status_code not in ok:
            raise RuntimeError(f"Toxiproxy {method} {path} answered HTTP {response.status_code}")

    async def network(self, model: str, spec: Any) -> None:
        """``down`` / ``up`` / ``clear`` or toxics on the model's proxy."""
        proxy = self.deps.proxy_for(model)
        base = f"/proxies/{quote(proxy, safe='')}"
        if spec in ("down", "up", "clear"):
            await self._proxy_api("POST", base, json={"enabled": spec != "down"})
            (self._disabled.add if spec == "down" else self._disabled.discard)(proxy)
            if spec == "clear":
                for name in [t for p, t in self._toxics if p == proxy]:
                    await self._proxy_api("DELETE", f"{base}/toxics/{quote(name, safe='')}", ok=(200, 204, 404))
                self._toxics = [(p, t) for p, t in self._toxics if p != proxy]
            return
        for toxic in spec if isinstance(spec, list) else [spec]:
            self._count += 1
            name = f"{self._prefix}_{self._count}"
            await self._proxy_api("POST", f"{base}/toxics", json=_toxic_body(name, toxic))
            self._toxics.append((proxy, name))

    # -- cleanup

    async def cleanup(self) -> list[str]:
        """Undo every fault; returns what could not be undone (each undo is tried)."""
        problems: list[str] = []
        for proxy, name in self._toxics:
            path = f"/proxies/{quote(proxy, safe='')}/toxics/{quote(name, safe='')}"
            problems += await self._try(self._proxy_api("DELETE", path, ok=(200, 204, 404)), f"removing toxic {name}")
        self._toxics = []
        for proxy in sorted(self._disabled):
            enable = self._proxy_api("POST", f"/proxies/{quote(proxy, safe='')}", json={"enabled": True})
            problems += await self._try(enable, f"enabling {proxy}")
        self._disabled = set()
        if self.touched_llm and self._control is not None:
            problems += await self._try(self._reset(), "resetting the control plane")
            self.touched_llm = False
        return problems

    async def _reset(self) -> None:
        self._checked(await self._plane().post("/_control/reset"), "POST /_control/reset")

    @staticmethod
    async def _try(undo: Any, what: str) -> list[str]:
        try:
            await undo
        except (httpx.HTTPError, RuntimeError) as exc:
            return [f"{what}: {type(exc).__name__}"]
        return []
