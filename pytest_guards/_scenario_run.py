"""Run one scenario against a target: the in-process reference system on virtual time, or a live service.

A failed expectation raises :class:`ScenarioFailure`, whose text reads like a checklist line: the
expectation, expected vs found, the step and the file:line it is written on.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from fragrance_ai.config_loader import Config
from fragrance_ai.yaml_positions import format_path
from pytest_guards._behaviours import Script
from pytest_guards._metrics import MetricNotFoundError, MetricsProbe
from pytest_guards._scenario_model import Scenario, Step
from pytest_guards._system import GuardHarness

__all__ = ["InProcessTarget", "LiveTarget", "ScenarioFailure", "check", "run_scenario"]

_MISSING = object()


class ScenarioFailure(AssertionError):
    """A scenario's expectation did not hold (or a step could not run); the message is the report."""

    def __init__(self, scenario: Scenario, step: Step | None, lines: list[str]) -> None:
        self.scenario = scenario
        self.step = step
        self.lines = lines
        if step is None:
            where = f"{scenario.file}:{scenario.line}"
            head = f"scenario {scenario.id} [{scenario.checklist}] ({where})"
        else:
            where = f"{scenario.file}:{step.line}"
            head = f"scenario {scenario.id} [{scenario.checklist}] at {format_path(step.path)} ({where})"
        super().__init__(head + "\n" + "\n".join(f"  ✗ {line}" for line in lines))


# ----------------------------------------------------------------------------------- comparisons


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value).replace("True", "true").replace("False", "false").replace("None", "null")


def check(spec: Any, actual: Any) -> str | None:
    """``None`` when ``actual`` satisfies ``spec`` (a scalar means ``eq``), else what was expected."""
    try:
        return _check(spec, actual)
    except (OverflowError, TypeError, ValueError) as exc:  # say a 400-digit number: not comparable, not a crash
        return f"{describe(spec)} (cannot compare: {exc})"


def _check(spec: Any, actual: Any) -> str | None:
    if not isinstance(spec, dict):
        return None if _equal(actual, spec) else f"== {_show(spec)}"
    failures = []
    for op, want in spec.items():
        if not _holds(op, want, actual):
            failures.append(_describe(op, want))
    return " and ".join(failures) if failures else None


def describe(spec: Any) -> str:
    """What ``spec`` asks for, in words: ``>= 3``, ``one of [...]``, ``== 'open'``."""
    if not isinstance(spec, dict):
        return f"== {_show(spec)}"
    return " and ".join(_describe(op, want) for op, want in spec.items())


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected or (type(actual) is type(expected) and actual == expected)
    if isinstance(actual, (int, float)) and isinstance(expected, (int, float)):
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9)
    return bool(actual == expected)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _holds(op: str, want: Any, actual: Any) -> bool:
    if op == "eq":
        return _equal(actual, want)
    if op == "ne":
        return not _equal(actual, want)
    if op == "in":
        return any(_equal(actual, w) for w in want)
    if op == "regex":
        return actual is not None and re.search(want, str(actual)) is not None
    number = _number(actual)
    if number is None:
        return False
    if op == "range":
        return float(want[0]) <= number <= float(want[1])
    return bool({"ge": number >= want, "le": number <= want, "gt": number > want, "lt": number < want}[op])


def _describe(op: str, want: Any) -> str:
    symbols = {"eq": "==", "ne": "!=", "ge": ">=", "le": "<=", "gt": ">", "lt": "<"}
    if op in symbols:
        return f"{symbols[op]} {_show(want)}"
    if op == "in":
        return "one of [" + ", ".join(_show(w) for w in want) + "]"
    if op == "range":
        return f"in range [{_show(want[0])}, {_show(want[1])}]"
    return f"matching /{want}/"


def lookup(data: Any, dotted: str) -> Any:
    """``models.qwen.reason`` in nested dicts/lists; ``_MISSING`` when absent."""
    current = data
    for part in dotted.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


# ---------------------------------------------------------------------------------------- targets


@dataclass
class Response:
    code: int
    body: Any


class Target(Protocol):
    name: str
    metrics: MetricsProbe

    async def prepare(self) -> None: ...
    async def brief(self, prompt: str, mode: str | None, via: str) -> Response: ...
    async def request(self, method: str, path: str, json: Any = None, params: dict[str, str] | None = None) -> Response: ...
    async def breaker_states(self) -> dict[str, str]: ...
    async def mode(self) -> str: ...
    async def cache_stats(self) -> dict[str, Any]: ...
    async def refresh_metrics(self) -> None: ...


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

    system: Any
    llm: Any
    _calls_before_set: dict[str, int]

    @property
    def config(self) -> Config:
        config: Config = self.system.config
        return config

    async def breaker_states(self) -> dict[str, str]:
        states: dict[str, str] = self.system.breakers.states()
        return states

    async def mode(self) -> str:
        return str(self.system.mode_controller.get_current_mode())

    async def cache_stats(self) -> dict[str, Any]:
        cache = self.system.cache
        return {"enabled": False} if cache is None else {"enabled": True, **cache.stats()}

    async def refresh_metrics(self) -> None:
        return None

    def set_llm(self, model: str, script: Script) -> None:
        self._calls_before_set[model] = self.calls(model)
        self.llm.set(model, script)

    def calls(self, model: str) -> int:
        return self._calls_before_set.get(model, 0) + int(self.llm.call_count(model))

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

    async def prepare(self) -> None:
        self.harness.metrics.mark()

    async def brief(self, prompt: str, mode: str | None, via: str) -> Response:
        if via == "ensemble":
            result = await self.harness.brief(prompt, mode)
            return Response(200, result.to_dict())
        return await super().brief(prompt, mode, via)

    def advance(self, seconds: float) -> None:
        self.harness.clock.advance(seconds)


class NetworkTarget(_SystemInThisProcess):
    """The real service on a loopback socket, its models behind Toxiproxy in front of the fake LLM server.

    Real time: ``wait`` sleeps for real. The service's own objects (breakers, cache, metrics) are read
    directly, since it runs in this process.
    """

    name = "network"

    def __init__(self, system: Any, client: httpx.AsyncClient, llm: Any, proxies: dict[str, Any]) -> None:
        self.system = system
        self.client = client
        self.llm = llm
        self.proxies = proxies
        self.metrics = MetricsProbe(system.metrics.registry)
        self._calls_before_set = {}
        self._toxics: dict[str, list[str]] = {}
        self._started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    async def prepare(self) -> None:
        self.metrics.mark()
        self._started = time.monotonic()

    def network(self, model: str, spec: Any) -> None:
        """Apply ``down`` / ``up`` / ``clear`` or add toxics to the model's proxy."""
        proxy = self.proxies[model]
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
    """A running service reached over HTTP (pre-promotion): only what its endpoints show."""

    name = "live"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self._text = ""
        self.metrics = MetricsProbe.from_text(lambda: self._text)

    async def prepare(self) -> None:
        await self.refresh_metrics()
        self.metrics.mark()

    async def breaker_states(self) -> dict[str, str]:
        models = (await self._guards()).get("circuit_breaker", {}).get("models", {})
        return {name: str(info.get("state")) for name, info in models.items()}

    async def mode(self) -> str:
        return str((await self._guards()).get("mode", {}).get("current"))

    async def cache_stats(self) -> dict[str, Any]:
        cache = (await self._guards()).get("cache", {})
        return {"enabled": cache.get("enabled"), **(cache.get("stats") or {}), **{k: v for k, v in cache.items() if k != "stats"}}

    async def refresh_metrics(self) -> None:
        response = await self.client.get("/metrics")
        if response.status_code != 200:
            raise RuntimeError(f"GET /metrics answered HTTP {response.status_code}")
        self._text = response.text


# ----------------------------------------------------------------------------------------- runner


@dataclass
class _State:
    last_response: Response | None = None
    last_health: Response | None = None
    briefs: int = 0
    log: list[str] = field(default_factory=list)


async def run_scenario(scenario: Scenario, target: Any, *, clock_elapsed: Callable[[], float] | None = None) -> None:
    """Run every step; raises :class:`ScenarioFailure` at the first failing step."""
    state = _State()
    await target.prepare()
    await _run_steps(scenario, scenario.steps, target, state, clock_elapsed)


async def _run_steps(
    scenario: Scenario, steps: tuple[Step, ...], target: Any, state: _State, elapsed: Callable[[], float] | None
) -> None:
    for step in steps:
        if step.kind == "repeat":
            for _ in range(step.value["times"]):
                await _run_steps(scenario, step.steps, target, state, elapsed)
            continue
        if step.kind == "parallel":
            # copies interleave wherever they wait (a request, a virtual latency), as concurrent clients
            # do; each has its own last response, and the first failure cancels its siblings
            copies = [_State(briefs=state.briefs) for _ in range(step.value["times"])]
            try:
                async with asyncio.TaskGroup() as group:
                    for index, copy_state in enumerate(copies):
                        copy_state.briefs = state.briefs + index * 1000
                        group.create_task(_run_steps(scenario, step.steps, target, copy_state, elapsed))
            except BaseExceptionGroup as group_error:
                raise group_error.exceptions[0] from None
            state.briefs += 1000 * len(copies)
            finished = [c for c in copies if c.last_response is not None]
            if finished:
                state.last_response = finished[-1].last_response
            health = [c for c in copies if c.last_health is not None]
            if health:
                state.last_health = health[-1].last_health
            continue
        if step.kind == "expect":
            failures = await _expect(scenario, step, target, state, elapsed)
            if failures:
                raise ScenarioFailure(scenario, step, failures)
            continue
        try:
            await _act(step, target, state)
        except ScenarioFailure:
            raise
        except (httpx.HTTPError, RuntimeError, KeyError, ValueError) as exc:
            raise ScenarioFailure(scenario, step, [f"step {step.kind!r} could not run: {type(exc).__name__}: {exc}"]) from None


async def _act(step: Step, target: Any, state: _State) -> None:
    value = step.value
    if step.kind == "brief":
        spec = {"prompt": value} if isinstance(value, str) else value
        state.briefs += 1
        prompt = spec["prompt"] + (f" #{state.briefs}" if spec.get("distinct") else "")
        state.last_response = await target.brief(prompt, spec.get("mode"), spec.get("via", "http"))
    elif step.kind == "health":
        model = value if isinstance(value, str) else (value or {}).get("model", "all")
        response = await target.request("GET", "/health/llm", params={"model": model or "all"})
        state.last_response = state.last_health = response
    elif step.kind == "request":
        state.last_response = await target.request(value.get("method", "GET"), value["path"], json=value.get("json"))
    elif step.kind == "advance":
        target.advance(value)
    elif step.kind == "wait":
        await asyncio.sleep(value)  # real-time: a toxiproxy scenario's breaker timeouts pass for real
    elif step.kind == "llm":
        for model, script in value.items():
            _known(target, model)
            target.set_llm(model, script)
    elif step.kind == "network":
        for model, spec in value.items():
            _known(target, model)
            target.network(model, spec)
    elif step.kind == "cache":
        target.cache_op(value)


def _known(target: Any, model: str) -> None:
    if model not in target.config.model_names:
        raise KeyError(f"no model {model!r} is configured (configured: {', '.join(target.config.model_names)})")


async def _expect(
    scenario: Scenario, step: Step, target: Any, state: _State, elapsed: Callable[[], float] | None
) -> list[str]:
    failures: list[str] = []

    def judge(label: str, spec: Any, actual: Any) -> None:
        if actual is _MISSING:
            failures.append(f"{label}: expected {describe(spec)}, but it is absent")
            return
        problem = check(spec, actual)
        if problem is not None:
            failures.append(f"{label}: expected {problem}, found {_show(actual)}")

    spec = step.value
    if "breaker" in spec:
        states = await target.breaker_states()
        for model, want in spec["breaker"].items():
            judge(f"breaker {model}", want, states.get(model, _MISSING))
    if "mode" in spec:
        judge("mode", spec["mode"], await target.mode())
    if "cache" in spec:
        stats = await target.cache_stats()
        for key, want in spec["cache"].items():
            judge(f"cache {key}", want, stats.get(key, _MISSING))
    for block, response in (("health", state.last_health), ("response", state.last_response)):
        if block not in spec:
            continue
        if response is None:
            failures.append(f"{block}: no {'health check' if block == 'health' else 'request'} ran before this expectation")
            continue
        for key, want in spec[block].items():
            actual = response.code if key == "code" else lookup(response.body, key)
            judge(f"{block} {key}", want, actual)
    if "metric" in spec:
        await target.refresh_metrics()
        for item in spec["metric"]:
            labels = item.get("labels", {})
            shown = item["name"] + ("{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
            for how in ("value", "delta"):
                if how not in item:
                    continue
                try:
                    actual = getattr(target.metrics, how)(item["name"], **labels)
                except MetricNotFoundError as exc:
                    failures.append(f"metric {shown}: {exc}")
                    continue
                judge(f"metric {shown} {how}" if how == "delta" else f"metric {shown}", item[how], actual)
    if "config" in spec:
        effective = target.config.to_dict()
        for key, want in spec["config"].items():
            judge(f"config {key}", want, lookup(effective, key))
    if "calls" in spec:
        for model, want in spec["calls"].items():
            judge(f"calls to {model}", want, target.calls(model))
    if "elapsed" in spec and elapsed is not None:
        judge("virtual seconds elapsed", spec["elapsed"], elapsed())
    return failures
