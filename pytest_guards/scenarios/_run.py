"""Run one scenario's steps against a :class:`~pytest_guards.scenarios.Target` and judge its expectations.

A failed expectation raises :class:`ScenarioFailure`, whose text reads like a checklist line: the
expectation, expected vs found, the step and the file:line it is written on. What the targets are is
``_targets``'s job; what a check means is ``_expressions``'s.

What this module must not do: wait for real except in a ``wait`` step (toxiproxy scenarios only), or
reach into a target beyond the :class:`Target` interface.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from fragrance_ai.yaml_positions import format_path
from pytest_guards.metrics import MetricNotFoundError
from pytest_guards.scenarios._expressions import MISSING, Judge, lookup
from pytest_guards.scenarios._model import Scenario, Step
from pytest_guards.scenarios._observations import Observer, expect_requests
from pytest_guards.scenarios._policy import Policy, shipped_policy
from pytest_guards.scenarios._targets import REDIS_PROXY, Response, Target
from pytest_guards.scenarios._timeline import Timeline
from pytest_guards.scenarios._traffic import TrafficTally, run_traffic

__all__ = ["ScenarioFailure", "run_scenario", "unreachable"]


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the other end could not be reached at all (not that it answered badly or slowly)."""
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))


class ScenarioFailure(AssertionError):
    """A scenario's expectation did not hold (or a step could not run); the message is the report.

    ``inconclusive`` marks a run the harness itself could not carry out (the target or a control plane
    could not be reached): it says nothing about the guards, so the verdict is INCONCLUSIVE, not unsafe.
    """

    def __init__(self, scenario: Scenario, step: Step | None, lines: list[str], *, inconclusive: bool = False) -> None:
        self.scenario = scenario
        self.step = step
        self.lines = lines
        self.inconclusive = inconclusive
        if step is None:
            where = f"{scenario.file}:{scenario.line}"
            head = f"scenario {scenario.id} [{scenario.checklist}] ({where})"
        else:
            where = f"{scenario.file}:{step.line}"
            head = f"scenario {scenario.id} [{scenario.checklist}] at {format_path(step.path)} ({where})"
        super().__init__(head + "\n" + "\n".join(f"  ✗ {line}" for line in lines))


@dataclass
class _State:
    #: the replica the steps go to (1-based; ``replica: N`` moves it)
    replica: int = 1
    last_response: Response | None = None
    last_health: Response | None = None
    briefs: int = 0
    log: list[str] = field(default_factory=list)
    #: what the last ``traffic`` step saw (``expect: {rates: ...}`` judges it)
    traffic: TrafficTally | None = None


@dataclass
class _Run:
    """One run of a scenario: what every step needs."""

    scenario: Scenario
    target: Target
    elapsed: Callable[[], float] | None
    policy: Policy
    timeline: Timeline | None = None
    #: what earlier expectations saw (``increases_by``); one per run, shared by parallel copies
    observer: Observer = field(default_factory=Observer)


async def run_scenario(
    scenario: Scenario,
    target: Target,
    *,
    clock_elapsed: Callable[[], float] | None = None,
    policy: Policy | None = None,
    timeline: Timeline | None = None,
) -> None:
    """Run every step; raises :class:`ScenarioFailure` at the first failing step.

    ``policy`` is what ``expect: {policy: ITEM}`` checks the config against (default: the shipped one);
    ``timeline``, when given, gets a point before the first step and after every step that ran.
    """
    state = _State()
    await target.prepare()
    run = _Run(scenario, target, clock_elapsed, policy or shipped_policy(), timeline)
    if timeline is not None:
        await timeline.record(target, None, scenario.line)
    await _run_steps(run, scenario.steps, state)


async def _run_steps(run: _Run, steps: tuple[Step, ...], state: _State) -> None:
    for step in steps:
        if step.kind == "replica":
            state.replica = step.value
        elif step.kind in ("restart", "redis"):
            await _fleet_step(run, step)
        elif step.kind == "repeat":
            for _ in range(step.value["times"]):
                await _run_steps(run, step.steps, state)
        elif step.kind == "parallel":
            await _run_parallel(run, step, state)
        elif step.kind == "expect":
            await _run_expect(run, step, state)
        else:
            await _run_action(run, step, state)


async def _run_expect(run: _Run, step: Step, state: _State) -> None:
    failures = await _expect(_on(run, state), step, state)
    if run.timeline is not None:
        await run.timeline.record(run.target, step, step.line)
    if failures:
        raise ScenarioFailure(run.scenario, step, [*failures, *_where(run, state)])


async def _run_action(run: _Run, step: Step, state: _State) -> None:
    try:
        await _act(step, _on(run, state).target, state)
    except ScenarioFailure:
        raise
    except (httpx.HTTPError, RuntimeError, KeyError, ValueError) as exc:
        problem = f"step {step.kind!r} could not run: {type(exc).__name__}: {exc}"
        raise ScenarioFailure(run.scenario, step, [problem], inconclusive=unreachable(exc)) from None
    if run.timeline is not None:
        await run.timeline.record(run.target, step, step.line, state.last_response)


async def _run_parallel(run: _Run, step: Step, state: _State) -> None:
    """``times`` copies of the steps at once.

    Copies interleave wherever they wait (a request, a virtual latency), as concurrent clients do; each
    has its own last response, and the first failure cancels its siblings.
    """
    spread = step.value.get("across_replicas", False)
    replicas = run.scenario.replicas
    copies = [
        _State(replica=(index % replicas) + 1 if spread else state.replica, briefs=state.briefs)
        for index in range(step.value["times"])
    ]
    try:
        async with asyncio.TaskGroup() as group:
            for index, copy_state in enumerate(copies):
                copy_state.briefs = state.briefs + index * 1000
                group.create_task(_run_steps(run, step.steps, copy_state))
    except BaseExceptionGroup as group_error:
        raise group_error.exceptions[0] from None
    state.briefs += 1000 * len(copies)
    finished = [c for c in copies if c.last_response is not None]
    if finished:
        state.last_response = finished[-1].last_response
    health = [c for c in copies if c.last_health is not None]
    if health:
        state.last_health = health[-1].last_health


def _on(run: _Run, state: _State) -> _Run:
    """The run as the state's replica sees it (the run itself with one replica)."""
    if run.scenario.replicas == 1:
        return run
    at = getattr(run.target, "replica", None)
    if at is None:
        raise RuntimeError(f"target {run.target.name} runs one replica; the scenario declares {run.scenario.replicas}")
    return _Run(run.scenario, at(state.replica), run.elapsed, run.policy, observer=run.observer)


async def _fleet_step(run: _Run, step: Step) -> None:
    """``restart: N`` (a new replica N joins the fleet) or ``redis: down|up`` (the fleet's Redis)."""
    act = getattr(run.target, "restart" if step.kind == "restart" else "redis", None)
    if act is None:
        raise ScenarioFailure(run.scenario, step, [f"target {run.target.name} has no fleet to {step.kind}"])
    await act(step.value)


def _where(run: _Run, state: _State) -> list[str]:
    return [f"(on replica {state.replica} of {run.scenario.replicas})"] if run.scenario.replicas > 1 else []


# -------------------------------------------------------------------------------------------- actions


async def _brief(value: Any, target: Target, state: _State) -> None:
    spec = {"prompt": value} if isinstance(value, str) else value
    state.briefs += 1
    prompt = spec["prompt"] + (f" #{state.briefs}" if spec.get("distinct") else "")
    state.last_response = await target.brief(prompt, spec.get("mode"), spec.get("via", "http"))


async def _health(value: Any, target: Target, state: _State) -> None:
    model = value if isinstance(value, str) else (value or {}).get("model", "all")
    response = await target.request("GET", "/health/llm", params={"model": model or "all"})
    state.last_response = state.last_health = response


async def _request(value: Any, target: Target, state: _State) -> None:
    state.last_response = await target.request(value.get("method", "GET"), value["path"], json=value.get("json"))


async def _advance(value: Any, target: Target, state: _State) -> None:
    target.advance(value)


async def _wait(value: Any, target: Target, state: _State) -> None:
    await asyncio.sleep(value)  # real-time: a toxiproxy scenario's breaker timeouts pass for real


async def _llm(value: Any, target: Target, state: _State, spec: Any = None) -> None:
    for model, script in value.items():
        await _known(target, model)
        await target.set_llm(model, script, (spec or {}).get(model))


async def _network(value: Any, target: Target, state: _State) -> None:
    for model, spec in value.items():
        if model != REDIS_PROXY:  # the service's Redis (shared state), when it has one: the target knows
            await _known(target, model)
        await target.network(model, spec)


async def _cache(value: Any, target: Target, state: _State) -> None:
    target.cache_op(value)


async def _traffic(value: Any, target: Target, state: _State) -> None:
    state.traffic = await run_traffic(value, target, state.briefs + 1)
    state.briefs += value["briefs"]


_ACTIONS: Final[Mapping[str, Callable[[Any, Target, _State], Awaitable[None]]]] = {
    "brief": _brief,
    "health": _health,
    "request": _request,
    "advance": _advance,
    "wait": _wait,
    "llm": _llm,
    "network": _network,
    "cache": _cache,
    "traffic": _traffic,
}


async def _act(step: Step, target: Target, state: _State) -> None:
    if step.kind == "llm":
        await _llm(step.value, target, state, step.spec)
        return
    action = _ACTIONS.get(step.kind)
    if action is not None:
        await action(step.value, target, state)


async def _known(target: Target, model: str) -> None:
    names = await target.model_names()
    if model not in names:
        raise KeyError(f"no model {model!r} is configured (configured: {', '.join(names)})")


# ------------------------------------------------------------------------------------------ expectations


async def _expect_breaker(want: Any, run: _Run, state: _State, judge: Judge) -> None:
    states = await run.target.breaker_states()
    for model, spec in want.items():
        judge(f"breaker {model}", spec, states.get(model, MISSING))


async def _expect_mode(want: Any, run: _Run, state: _State, judge: Judge) -> None:
    judge("mode", want, await run.target.mode())


async def _expect_cache(want: Any, run: _Run, state: _State, judge: Judge) -> None:
    stats = await run.target.cache_stats()
    for key, spec in want.items():
        judge(f"cache {key}", spec, stats.get(key, MISSING))


def _expect_response_block(block: str) -> Callable[[Any, _Run, _State, Judge], Awaitable[None]]:
    """``health`` (the last health check) or ``response`` (the last request of any kind)."""

    async def expect(want: Any, run: _Run, state: _State, judge: Judge) -> None:
        response = state.last_health if block == "health" else state.last_response
        if response is None:
            judge.fail(f"{block}: no {'health check' if block == 'health' else 'request'} ran before this expectation")
            return
        before = len(judge.failures)
        for key, spec in want.items():
            actual = response.code if key == "code" else lookup(response.body, key)
            judge(f"{block} {key}", spec, actual)
        reasons = _health_reasons(response.body) if block == "health" else ""
        if reasons and len(judge.failures) > before:
            judge.failures[before:] = [f"{line} (the service says: {reasons})" for line in judge.failures[before:]]

    return expect


def _health_reasons(body: Any) -> str:
    """The reason codes a health answer gives (``reason`` of one model, or each unhealthy model's)."""
    if not isinstance(body, dict):
        return ""
    if isinstance(body.get("reason"), str):
        return f"reason={body['reason']}"
    models = body.get("models")
    if not isinstance(models, dict):
        return ""
    found = [
        f"{name}: reason={m['reason']}" for name, m in models.items() if isinstance(m, dict) and isinstance(m.get("reason"), str)
    ]
    return ", ".join(found)


async def _expect_metric(want: Any, run: _Run, state: _State, judge: Judge) -> None:
    await run.target.refresh_metrics()
    for item in want:
        labels = item.get("labels", {})
        shown = item["name"] + ("{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
        try:
            value = run.target.metrics.value(item["name"], **labels)
            delta = run.target.metrics.delta(item["name"], **labels)
        except MetricNotFoundError as exc:
            judge.fail(f"metric {shown}: {exc}")
            continue
        if "value" in item:
            judge(f"metric {shown}", item["value"], value)
        if "delta" in item:
            judge(f"metric {shown} delta", item["delta"], delta)
        increase = run.observer.metric_increase(item["name"], labels, value, baseline=value - delta)
        if "increases_by" in item:
            judge(f"metric {shown} increase since its previous check", item["increases_by"], increase)


async def _expect_config(want: Any, run: _Run, state: _State, judge: Judge) -> None:
    effective = run.target.config.to_dict()
    for key, spec in want.items():
        judge(f"config {key}", spec, lookup(effective, key))


async def _expect_policy(want: Any, run: _Run, state: _State, judge: Judge) -> None:
    effective = await run.target.settings()
    bounds = run.policy.for_item(want)
    if not bounds:
        judge.fail(f"policy {want}: the policy ({', '.join(run.policy.sources)}) has no bound for this item")
    for bound in bounds:
        line = bound.judge(effective)
        if line is not None:
            judge.fail(line)


async def _expect_calls(want: Any, run: _Run, state: _State, judge: Judge) -> None:
    live = run.target.name == "live"
    for model, spec in want.items():
        count = len(await run.target.call_log(model)) if live else run.target.calls(model)
        judge(f"calls to {model}", spec, count)


async def _expect_call_log(want: Any, run: _Run, state: _State, judge: Judge) -> None:
    """Checks on a model's call log: keys looked up in ``{count, first, last, last_message, calls}``."""
    for model, checks in want.items():
        log = await run.target.call_log(model)
        view = {
            "count": len(log),
            "first": log[0] if log else MISSING,
            "last": log[-1] if log else MISSING,
            # the last message of the last call: on a re-ask, what the service told the model to fix
            "last_message": lookup(log[-1], "request.messages")[-1] if log and lookup(log[-1], "request.messages") else MISSING,
            "calls": log,
        }
        for key, spec in checks.items():
            judge(f"call_log {model} {key}", spec, lookup(view, key))


async def _expect_requests(want: Any, run: _Run, state: _State, judge: Judge) -> None:
    expect_requests(want, run.target, run.observer, judge)


async def _expect_elapsed(want: Any, run: _Run, state: _State, judge: Judge) -> None:
    if run.elapsed is not None:
        judge("real seconds elapsed" if run.target.name == "live" else "virtual seconds elapsed", want, run.elapsed())


async def _expect_rates(want: Any, run: _Run, state: _State, judge: Judge) -> None:
    if state.traffic is None:
        judge.fail("rates: no traffic step ran before this expectation")
        return
    rates = state.traffic.rates()
    before = len(judge.failures)
    for key, spec in want.items():
        if isinstance(rates[key], dict):
            for name, check in spec.items():
                judge(f"rates {key} {name}", check, rates[key].get(name, 0.0))
        else:
            judge(f"rates {key}", spec, rates[key])
    if len(judge.failures) > before:
        judge.failures.append(state.traffic.summary())


#: every ``expect`` key, in the order a report lists its failures
_EXPECTATIONS: Final[Mapping[str, Callable[[Any, _Run, _State, Judge], Awaitable[None]]]] = {
    "breaker": _expect_breaker,
    "mode": _expect_mode,
    "cache": _expect_cache,
    "health": _expect_response_block("health"),
    "response": _expect_response_block("response"),
    "metric": _expect_metric,
    "config": _expect_config,
    "policy": _expect_policy,
    "calls": _expect_calls,
    "call_log": _expect_call_log,
    "requests": _expect_requests,
    "elapsed": _expect_elapsed,
    "rates": _expect_rates,
}


async def _expect(run: _Run, step: Step, state: _State) -> list[str]:
    """The failed checks of one ``expect`` step (empty when all hold)."""
    judge = Judge()
    for key, expect in _EXPECTATIONS.items():
        if key in step.value:
            await expect(step.value[key], run, state, judge)
    return judge.failures
