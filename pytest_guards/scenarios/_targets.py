"""The targets a scenario runs against: the in-process reference system, the real service on a socket behind
Toxiproxy, or a live service reached over HTTP. Each implements :class:`Target`, the one interface the
runner uses.

What this module must not do: judge anything (the runner does), or let a live target touch what only an
in-process one can (the loader refuses such scenarios; these targets refuse again, saying why).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import httpx

from fragrance_ai.config_loader import Config
from pytest_guards.faults import Script, ScriptedModels, call_record
from pytest_guards.harness import GuardHarness
from pytest_guards.metrics import MetricsProbe

if TYPE_CHECKING:
    from fragrance_ai.service.system import GuardSystem
    from pytest_guards.network import RedisServer, ToxicProxy
    from pytest_guards.scenarios._live_faults import LiveFaults

__all__ = ["REDIS_PROXY", "FleetTarget", "InProcessTarget", "LiveTarget", "NetworkTarget", "Response", "Target"]

#: the name a network scenario gives the proxy between the service and its Redis (``network: {redis: down}``)
REDIS_PROXY = "redis"


@dataclass
class Response:
    code: int
    body: Any


class Target(Protocol):
    """What the runner needs of a target. The second group is in-process only: a live target refuses it."""

    name: str
    metrics: MetricsProbe

    async def prepare(self) -> None: ...
    async def brief(self, prompt: str, mode: str | None, via: str) -> Response: ...
    async def request(self, method: str, path: str, json: Any = None, params: dict[str, str] | None = None) -> Response: ...
    async def breaker_states(self) -> dict[str, str]: ...
    async def mode(self) -> str: ...
    async def cache_stats(self) -> dict[str, Any]: ...
    async def refresh_metrics(self) -> None: ...
    async def settings(self) -> dict[str, Any]: ...
    async def snapshot(self) -> dict[str, Any]: ...

    async def model_names(self) -> tuple[str, ...]: ...
    async def call_log(self, model: str) -> list[dict[str, Any]]: ...
    async def set_llm(self, model: str, script: Script, spec: Any) -> None: ...
    async def network(self, model: str, spec: Any) -> None: ...

    @property
    def config(self) -> Config: ...
    def calls(self, model: str) -> int: ...
    def cache_op(self, op: str) -> None: ...
    def advance(self, seconds: float) -> None: ...


def _decode(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


class _HTTPMixin:
    client: httpx.AsyncClient

    async def request(self, method: str, path: str, json: Any = None, params: dict[str, str] | None = None) -> Response:
        response = await self.client.request(method, path, json=json, params=params)
        return Response(response.status_code, _decode(response))

    async def brief(self, prompt: str, mode: str | None, via: str) -> Response:
        """``POST /v1/briefs`` (``via`` is only for targets that can also call the ensemble directly)."""
        body: dict[str, Any] = {"prompt": prompt}
        if mode is not None:
            body["mode"] = mode
        return await self.request("POST", "/v1/briefs", json=body)

    async def settings(self) -> dict[str, Any]:
        """The effective settings as the service reports them (``/health/guards`` ``settings``)."""
        settings = (await self._guards()).get("settings")
        if not isinstance(settings, dict):
            raise RuntimeError("GET /health/guards has no `settings` object to check the policy against")
        return settings

    async def _guards(self) -> dict[str, Any]:
        response = await self.client.get("/health/guards")
        if response.status_code != 200:
            raise RuntimeError(f"GET /health/guards answered HTTP {response.status_code}")
        body: dict[str, Any] = response.json()
        return body


class _SystemInThisProcess(_HTTPMixin):
    """A target whose guards run in this process, read directly, with models scripted here through ``llm``.

    ``calls`` counts across re-scripting: a fake's call log restarts whenever its script is set.
    """

    name: str
    metrics: MetricsProbe
    system: GuardSystem
    llm: ScriptedModels
    _calls_before_set: dict[str, int]
    _requests_kept: dict[str, list[Any]]

    async def prepare(self) -> None:
        raise NotImplementedError

    @property
    def config(self) -> Config:
        return self.system.config

    async def breaker_states(self) -> dict[str, str]:
        return self.system.breakers.states()

    async def mode(self) -> str:
        return str(self.system.mode_controller.get_current_mode())

    async def cache_stats(self) -> dict[str, Any]:
        cache = self.system.cache
        return {"enabled": False} if cache is None else {"enabled": True, **cache.stats()}

    async def refresh_metrics(self) -> None:
        return None

    async def snapshot(self) -> dict[str, Any]:
        """What a timeline point holds: breakers, calls per model, mode, cache size and hit rate."""
        cache = self.system.cache
        stats = cache.stats() if cache is not None else None
        return {
            "breakers": self.system.breakers.states(),
            "calls": {model: self.calls(model) for model in self.system.config.model_names},
            "mode": str(self.system.mode_controller.get_current_mode()),
            "cache": None if stats is None else {"size": stats["size"], "hit_rate": round(stats["hit_rate"], 4)},
        }

    async def set_llm(self, model: str, script: Script, spec: Any) -> None:
        self._calls_before_set[model] = self.calls(model)
        self._requests_kept[model] = self.requests_seen(model)
        self.llm.set(model, script)

    async def model_names(self) -> tuple[str, ...]:
        return tuple(self.system.config.model_names)

    async def call_log(self, model: str) -> list[dict[str, Any]]:
        return [call_record(c) for c in self.llm.calls(model)]
    def requests_seen(self, model: str) -> list[Any]:
        """The bodies of every request ``model`` received in this run, in order (across re-scripting)."""
        earlier = self._requests_kept.get(model, [])
        return [*earlier, *(record.request for record in self.llm.calls(model))]

    def calls(self, model: str) -> int:
        return self._calls_before_set.get(model, 0) + self.llm.call_count(model)

    def cache_op(self, op: str) -> None:
        cache = self.system.cache
        if cache is None:
            raise RuntimeError("the cache is disabled in this config")
        if op == "cleanup":
            cache.cleanup_expired()
        else:
            cache.clear()


class InProcessTarget(_SystemInThisProcess):
    """The reference system of this repository, wired on virtual time with scripted LLMs."""

    name = "in_process"

    def __init__(self, harness: GuardHarness) -> None:
        self.harness = harness
        self.system = harness.system
        self.client = harness.client
        self.llm = harness.llm
        self.metrics = harness.metrics
        self._calls_before_set = {}
        self._requests_kept = {}

    async def prepare(self) -> None:
        self.harness.metrics.mark()

    async def brief(self, prompt: str, mode: str | None, via: str) -> Response:
        if via == "ensemble":
            result = await self.harness.brief(prompt, mode)
            return Response(200, result.to_dict())
        return await super().brief(prompt, mode, via)

    def advance(self, seconds: float) -> None:
        self.harness.clock.advance(seconds)

    async def network(self, model: str, spec: Any) -> None:
        raise RuntimeError("network faults need `requires: [toxiproxy]`")


class FleetTarget(InProcessTarget):
    """Several in-process replicas on one clock and one Redis: replica 1 by default, ``replica(n)`` for the others."""

    name = "fleet"

    def __init__(self, replicas: list[InProcessTarget], redis: RedisServer) -> None:
        super().__init__(replicas[0].harness)
        self.replicas = replicas
        self.redis_server = redis
        self._calls_before_set = replicas[0]._calls_before_set  # the models are shared: one call count
        self._requests_kept = replicas[0]._requests_kept
        self._started: list[GuardHarness] = []  # replicas started by restart(), closed by aclose()

    async def restart(self, n: int) -> None:
        """Stop replica ``n`` and start a new one on the same config, clock and models."""
        old = self.replicas[n - 1].harness
        new = GuardHarness.build(old.config, old.clock, old.llm)
        self._started.append(new)
        await old.aclose()
        self.replicas[n - 1] = InProcessTarget(new)
        if n == 1:
            self.harness, self.system, self.client, self.metrics = new, new.system, new.client, new.metrics

    async def redis(self, op: str) -> None:
        """Stop the fleet's redis-server (``down``) or start it again on its port (``up``)."""
        if op == "down":
            self.redis_server.stop()
        else:
            self.redis_server.start()

    async def aclose(self) -> None:
        self.redis_server.start()  # a scenario that failed while Redis was down leaves it up for the next
        for harness in self._started:
            await harness.aclose()

    def replica(self, n: int) -> InProcessTarget:
        """Replica ``n`` (1-based), counting LLM calls with every other replica (they share the models)."""
        target = self.replicas[n - 1]
        target._calls_before_set = self._calls_before_set
        target._requests_kept = self._requests_kept
        return target

    async def prepare(self) -> None:
        for target in self.replicas:
            await target.prepare()


class NetworkTarget(_SystemInThisProcess):
    """The real service on a loopback socket, its models behind Toxiproxy in front of the fake LLM server.

    Real time: ``wait`` sleeps for real. The service's own objects (breakers, cache, metrics) are read
    directly, since it runs in this process.
    """

    name = "network"

    def __init__(
        self, system: GuardSystem, client: httpx.AsyncClient, llm: ScriptedModels, proxies: dict[str, ToxicProxy]
    ) -> None:
        self.system = system
        self.client = client
        self.llm = llm
        self.proxies = proxies
        self.metrics = MetricsProbe(system.metrics.registry)
        self._calls_before_set = {}
        self._requests_kept = {}
        self._toxics: dict[str, list[str]] = {}
        self._started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def advance(self, seconds: float) -> None:
        raise RuntimeError("a toxiproxy scenario runs in real time: use `wait: seconds`, not `advance`")

    async def prepare(self) -> None:
        self.metrics.mark()
        self._started = time.monotonic()

    async def network(self, model: str, spec: Any) -> None:
        """Apply ``down`` / ``up`` / ``clear`` or add toxics to the model's proxy (or Redis's: ``redis``)."""
        proxy = self.proxies.get(model)
        if proxy is None:
            known = ", ".join(sorted(self.proxies))
            raise KeyError(f"no proxy {model!r} in this run (it has: {known}; redis needs state.backend: redis)")
        if spec == "down":
            proxy.disable()
            return
        if spec in ("up", "clear"):
            proxy.enable()
            if spec == "clear":
                for name in self._toxics.pop(model, []):
                    proxy.remove(name)
            return
        for toxic in spec if isinstance(spec, list) else [spec]:
            options = {k: toxic[k] for k in ("direction", "toxicity") if k in toxic}
            (kind, attributes), = ((k, v) for k, v in toxic.items() if k not in ("direction", "toxicity"))
            name = proxy.add(kind, **options, **(attributes or {}))
            self._toxics.setdefault(model, []).append(name)


class LiveTarget(_HTTPMixin):
    """A running service reached over HTTP (pre-promotion): only what its endpoints show.

    With ``faults`` (the fake LLM's control plane and Toxiproxy in front of the canary's models) it
    also scripts the models, injects network faults and reads the models' call logs; ``calls`` there
    count since the scenario's last ``llm`` step for that model (the control plane restarts a log
    when a script is set). ``elapsed`` is real seconds since the scenario started.
    """

    name = "live"

    def __init__(self, client: httpx.AsyncClient, faults: LiveFaults | None = None) -> None:
        self.client = client
        self.faults = faults
        self._text = ""
        self.metrics = MetricsProbe.from_text(lambda: self._text)
        self._started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    async def prepare(self) -> None:
        await self.refresh_metrics()
        self.metrics.mark()
        self._started = time.monotonic()

    async def breaker_states(self) -> dict[str, str]:
        models = (await self._guards()).get("circuit_breaker", {}).get("models", {})
        return {name: str(info.get("state")) for name, info in models.items()}

    async def mode(self) -> str:
        return str((await self._guards()).get("mode", {}).get("current"))

    async def cache_stats(self) -> dict[str, Any]:
        cache = (await self._guards()).get("cache", {})
        return {"enabled": cache.get("enabled"), **(cache.get("stats") or {}), **{k: v for k, v in cache.items() if k != "stats"}}

    async def snapshot(self) -> dict[str, Any]:
        """A timeline point from one ``GET /health/guards``: breakers, mode, cache (a service shows no call counts)."""
        guards = await self._guards()
        models = guards.get("circuit_breaker", {}).get("models", {})
        stats = (guards.get("cache") or {}).get("stats")
        return {
            "breakers": {name: str(info.get("state")) for name, info in models.items()},
            "mode": str(guards.get("mode", {}).get("current")),
            "cache": None if not isinstance(stats, dict) else {
                "size": stats.get("size"), "hit_rate": round(float(stats.get("hit_rate") or 0.0), 4)
            },
        }

    async def refresh_metrics(self) -> None:
        response = await self.client.get("/metrics")
        if response.status_code != 200:
            raise RuntimeError(f"GET /metrics answered HTTP {response.status_code}")
        self._text = response.text

    async def model_names(self) -> tuple[str, ...]:
        """The canary's models, as ``/health/guards`` names them."""
        models = (await self.settings()).get("llm", {}).get("models", {})
        return tuple(models)

    def _faults(self, what: str) -> LiveFaults:
        if self.faults is None:
            self._cannot(what)
        return self.faults

    async def set_llm(self, model: str, script: Script, spec: Any) -> None:
        await self._faults("script LLM faults without the fake LLM's control plane").set_llm(model, spec)

    async def network(self, model: str, spec: Any) -> None:
        await self._faults("inject network faults without Toxiproxy").network(model, spec)

    async def call_log(self, model: str) -> list[dict[str, Any]]:
        return await self._faults("read LLM call logs without the fake LLM's control plane").calls(model)

    # what only an in-process target can do (the loader refuses such scenarios for a live target)

    def _cannot(self, what: str) -> NoReturn:
        raise RuntimeError(f"a live target cannot {what} (use target: in_process)")

    @property
    def config(self) -> Config:
        self._cannot("read the local config")

    def calls(self, model: str) -> int:
        self._cannot("count LLM calls synchronously (use the call log)")

    def cache_op(self, op: str) -> None:
        self._cannot("reach the cache")

    def advance(self, seconds: float) -> None:
        self._cannot("move virtual time")
