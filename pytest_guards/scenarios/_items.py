"""pytest collection nodes for scenario files: one item per scenario, one failing item per bad file.

Each in-process scenario runs in its own event loop on its own virtual clock, scripted LLMs and
metrics registry; a live scenario runs over HTTP against ``--guards-target``. Failures are reported
as checklist lines (``repr_failure``), never as pytest tracebacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from fragrance_ai.config_loader import Config, ConfigError
from pytest_guards.clock import GuardClock
from pytest_guards.faults import FaultyLLM, UnmatchedRequestError
from pytest_guards.harness import open_harness
from pytest_guards.network import (
    INSTALL_HINT,
    REDIS_INSTALL_HINT,
    RedisUnavailable,
    ToxicProxies,
    ToxiproxyServer,
    ToxiproxyUnavailable,
    in_ci,
)
from pytest_guards.scenarios._live_faults import LiveDependencies, LiveFaults
from pytest_guards.scenarios._model import Problem, Scenario, ScenarioFileError, Step, load_scenario, resolve_scenario
from pytest_guards.scenarios._policy import Policy
from pytest_guards.scenarios._run import ScenarioFailure, run_scenario, unreachable
from pytest_guards.scenarios._targets import REDIS_PROXY, FleetTarget, InProcessTarget, LiveTarget, NetworkTarget
from pytest_guards.scenarios._timeline import Timeline
from pytest_guards.session import NetworkResources

if TYPE_CHECKING:
    from pytest_guards.faults import FakeLLMServer

__all__ = ["InvalidScenarioItem", "ScenarioFile", "ScenarioItem"]


def _memory_only(overrides: dict[str, Any]) -> bool:
    """Whether scenario ``config:`` overrides set a memory-only setting (a growing open period, slow calls,
    Retry-After), or turn on the panic rule, whose release of a recovered breaker is memory-only (on Redis a
    trial serves its brief and the shared breaker keeps its timeout, so the panic scenarios' figures are the
    memory backend's)."""
    cb = overrides.get("circuit_breaker")
    if not isinstance(cb, dict):
        return False
    if cb.get("panic_enabled") is True:
        return True
    models = cb.get("models")
    if not isinstance(models, dict):
        models = {}
    return any(
        isinstance(s, dict) and (
            s.get("timeout_multiplier", 1) != 1 or bool(s.get("slow_call_duration")) or bool(s.get("max_retry_after"))
        )
        for s in (cb, *models.values())
    )


class ScenarioFile(pytest.File):
    """A ``*.scenario.yaml`` file."""

    base_config: Config
    policy: Policy | None = None
    target_url: str | None = None
    network: NetworkResources
    #: what a live canary depends on (fake LLM control plane, Toxiproxy) for live fault scenarios
    live_deps: LiveDependencies = LiveDependencies()
    #: a live scenario whose waits add up past this many seconds is left out, named in the verdict (the run's real-time budget)
    live_max_wait: float = 120.0

    #: scenario id -> the file that claimed it first (shared by every file of the session)
    seen_ids: dict[str, Path]
    #: live fault scenarios not collected, id -> why (the run lacks what they need: shown in the verdict)
    not_run: dict[str, tuple[str, str]]

    def collect(self) -> Any:
        path = Path(self.path)
        try:
            scenario = load_scenario(path)
        except ScenarioFileError as exc:
            yield InvalidScenarioItem.from_parent(self, name=self.path.name, error=exc)
            return
        except Exception as exc:  # noqa: BLE001 - one unreadable file must not stop the whole run
            problem = Problem(str(path), None, None, "", f"cannot be read: {type(exc).__name__}: {exc}")
            yield InvalidScenarioItem.from_parent(self, name=self.path.name, error=ScenarioFileError(str(path), [problem]))
            return
        first = self.seen_ids.setdefault(scenario.id, path)
        if first != path:
            problem = Problem(str(path), scenario.line, 1, "id", f"id {scenario.id!r} is already used by {first}")
            yield InvalidScenarioItem.from_parent(self, name=self.path.name, error=ScenarioFileError(str(path), [problem]))
            return
        if not self._fits_the_state_backend(scenario):
            return
        if self.target_url:
            if not scenario.live_capable:
                return  # an in-process scenario has nothing to say about a running service
            missing = self.live_deps.missing(scenario.requires) if scenario.injects_live_faults else None
            if missing is not None:
                # not applicable to this run, not a skip (which strict counts): the verdict lists it
                self.not_run[scenario.id] = (scenario.checklist, missing)
                return
            mode = "live"
        else:
            if scenario.target == "live":
                return
            mode = "in_process"
        item = ScenarioItem.from_parent(self, name=scenario.id, scenario=scenario, mode=mode)
        for marker in scenario.markers:
            item.add_marker(marker)
        if scenario.needs_toxiproxy:
            item.add_marker("toxiproxy")
            item.add_marker("network")
        yield item


    def _fits_the_state_backend(self, scenario: Scenario) -> bool:
        """Whether the scenario has something to say about the config's state backend (memory or Redis)."""
        on_redis = self.base_config.state.backend == "redis"
        if (scenario.replicas > 1 or REDIS_PROXY in scenario.network_names) and not on_redis:
            return False  # it checks shared state, or cuts the service off its Redis: nothing to say on memory
        # a memory-only breaker setting, which a Redis config refuses
        return not (on_redis and _memory_only(scenario.config))


class InvalidScenarioItem(pytest.Item):
    """Stands for a scenario file that could not be read: it fails with every mistake listed."""

    def __init__(self, *, error: ScenarioFileError, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error

    def runtest(self) -> None:
        raise self.error

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        problems = self.error.problems
        return f"invalid scenario file ({len(problems)} problem(s)):\n" + "\n".join(f"  {p}" for p in problems)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        first = self.error.problems[0].line if self.error.problems else None
        where = f"{self.path.name}:{first}" if first is not None else self.path.name
        return Path(self.path), (first or 1) - 1, f"invalid scenario file {where}"


class ScenarioItem(pytest.Item):
    """One scenario, run against the in-process reference system or a live target."""

    def __init__(self, *, scenario: Scenario, mode: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.mode = mode
        self.virtual_seconds = 0.0
        self.wall_seconds = 0.0
        #: what the target showed after each step (None until the scenario runs)
        self.timeline: Timeline | None = None

    def runtest(self) -> None:
        parent = self.parent
        assert isinstance(parent, ScenarioFile)
        started = time.perf_counter()
        try:
            if self.mode == "live":
                assert parent.target_url is not None
                asyncio.run(self._run_live(parent.target_url))
            elif self.scenario.needs_toxiproxy:
                try:
                    server, fake = parent.network.get()
                except ToxiproxyUnavailable as exc:
                    if in_ci():
                        pytest.fail(f"{exc}\n(CI=true: toxiproxy scenarios must run, not skip; {INSTALL_HINT})", pytrace=False)
                    pytest.skip(str(exc))
                asyncio.run(self._run_network(parent.base_config, server, fake))
            else:
                asyncio.run(self._run_in_process(parent.base_config))
        except (ScenarioFailure, pytest.fail.Exception, pytest.skip.Exception, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise ScenarioFailure(
                self.scenario, None, [f"the scenario could not run: {type(exc).__name__}: {exc}"]
            ) from exc
        finally:
            self.wall_seconds = time.perf_counter() - started

    async def _run_in_process(self, base: Config) -> None:
        config = self._config(base)
        scenario = self._resolved(config)
        unknown = [m for m in scenario.given_llm if m not in config.model_names]
        if unknown:
            raise ScenarioFailure(
                scenario,
                None,
                [f"given.llm.{m} (line {scenario.line_of(('given', 'llm', m))}): no model {m!r} is configured "
                 f"(configured: {', '.join(config.model_names)})" for m in unknown],
            )
        config = self._on_session_redis(config, scenario)
        clock = GuardClock().start()
        llm = FaultyLLM(config.model_names, asleep=clock.asleep, sleep=clock.sleep)
        llm.start()
        try:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    harnesses = [
                        await stack.enter_async_context(open_harness(config, clock=clock, llm=llm))
                        for _ in range(scenario.replicas)
                    ]
                except (ValueError, MemoryError) as exc:  # a setting the loader accepts but a guard refuses
                    raise ScenarioFailure(scenario, None, [f"the system cannot be built from this config: {exc}"]) from None
                if scenario.given_mode:
                    harnesses[0].mode_controller.set_mode(scenario.given_mode)
                for model, script in scenario.given_llm.items():
                    llm.set(model, script)
                targets = [InProcessTarget(h) for h in harnesses]
                target: InProcessTarget = targets[0]
                if len(targets) > 1:
                    assert isinstance(self.parent, ScenarioFile)
                    target = fleet = FleetTarget(targets, self.parent.network.redis())
                    stack.push_async_callback(fleet.aclose)
                self.timeline = Timeline(lambda: clock.elapsed, kind="virtual", file=str(scenario.file))
                await run_scenario(
                    scenario, target, clock_elapsed=lambda: clock.elapsed, policy=self._policy, timeline=self.timeline
                )
        finally:
            self.virtual_seconds = clock.elapsed
            llm.stop()
            clock.stop()
        try:
            llm.check()
        except UnmatchedRequestError as exc:
            raise ScenarioFailure(scenario, None, [str(exc)]) from None

    def _on_session_redis(self, config: Config, scenario: Scenario) -> Config:
        """With several replicas or a Redis backend: the config on the session's redis-server, under a fresh prefix.

        The config's own ``state.url`` names the service's Redis, not one a test may write to.
        """
        if scenario.replicas == 1 and config.state.backend != "redis":
            return config
        parent = self.parent
        assert isinstance(parent, ScenarioFile)
        try:
            server = parent.network.redis()
        except RedisUnavailable as exc:
            if in_ci():
                pytest.fail(f"{exc}\n(CI=true: Redis scenarios must run, not skip; {REDIS_INSTALL_HINT})", pytrace=False)
            pytest.skip(str(exc))
        state = {"backend": "redis", "url": server.url, "url_env": None, "key_prefix": server.new_prefix(scenario.id)}
        return config.with_overrides({"state": state}, source=config.source)

    @property
    def _policy(self) -> Policy | None:
        parent = self.parent
        return parent.policy if isinstance(parent, ScenarioFile) else None

    def _resolved(self, config: Config) -> Scenario:
        """The scenario with its ``${config:...}`` numbers taken from ``config``."""
        scenario, problems = resolve_scenario(self.scenario, config.to_dict())
        if problems:
            raise ScenarioFailure(self.scenario, None, [f"with the config under test, {p}" for p in problems])
        return scenario

    def _config(self, base: Config) -> Config:
        scenario = self.scenario
        if not scenario.config:
            return base
        try:
            return base.with_overrides(scenario.config, source=f"{base.source} + {scenario.file.name}")
        except ConfigError as exc:
            lines = [f"config override {issue.key}: {issue.message}" for issue in exc.issues]
            raise ScenarioFailure(scenario, None, lines) from None

    async def _run_network(self, base: Config, server: ToxiproxyServer, fake: FakeLLMServer) -> None:
        """The real service on a socket, each model behind its own Toxiproxy proxy in front of the fake LLM server."""
        config = self._config(base)
        scenario = self._resolved(config)
        config = self._on_session_redis(config, scenario)  # never the Redis named in the config under test
        fake.reset()
        proxies = ToxicProxies(server, self.nodeid, default_upstream=lambda: fake, models=config.model_names)
        started = time.monotonic()
        try:
            per_model = proxies.per_model(config.model_names)
            config = config.with_overrides(ToxicProxies.backend_overrides(per_model), source=config.source)
            if config.state.backend == "redis":  # its shared state behind a proxy too: `network: {redis: down}`
                redis = proxies(config.state.url.removeprefix("redis://").split("/")[0], label="redis")
                url = f"redis://{redis.host}:{redis.port}/0"
                config = config.with_overrides({"state": {"url": url}}, source=config.source)
                per_model = {REDIS_PROXY: redis, **per_model}  # a model named redis keeps its name
            for model, script in scenario.given_llm.items():
                fake.set(model, script)
            from pytest_guards.network import LiveService  # uvicorn: imported when a network scenario runs

            with LiveService(config) as service:
                if scenario.given_mode:
                    service.system.mode_controller.set_mode(scenario.given_mode)
                async with httpx.AsyncClient(base_url=service.url, timeout=httpx.Timeout(30.0, connect=5.0)) as client:
                    target = NetworkTarget(service.system, client, fake, per_model)
                    for model, spec in scenario.given_network.items():
                        await target.network(model, spec)
                    self.timeline = Timeline(target.elapsed, kind="real", file=str(scenario.file))
                    await run_scenario(
                        scenario, target, clock_elapsed=target.elapsed, policy=self._policy, timeline=self.timeline
                    )
        finally:
            self.virtual_seconds = time.monotonic() - started  # real seconds here: nothing is simulated
            proxies.close()
        try:
            fake.check()
        except UnmatchedRequestError as exc:
            raise ScenarioFailure(scenario, None, [str(exc)]) from None

    async def _run_live(self, url: str) -> None:
        parent = self.parent
        assert isinstance(parent, ScenarioFile)
        deps = parent.live_deps  # complete for what this scenario needs: collection left out those it lacks
        scenario = self.scenario
        timeout = httpx.Timeout(30.0, connect=5.0)
        async with (
            httpx.AsyncClient(base_url=url, timeout=timeout) as client,
            LiveFaults(deps, scenario.id) as faults,  # on exit: every fault undone, pass or fail
        ):
            target = LiveTarget(client, faults if scenario.injects_live_faults else None)
            self.timeline = Timeline(target.elapsed, kind="real", file=str(scenario.file))
            try:
                await self._live_steps(scenario, target, faults, url)
            except ScenarioFailure as failure:
                left = await faults.cleanup()  # before the message is final: it says what is still on
                if not left:
                    raise
                lines = [*failure.lines, f"and could not undo its faults: {'; '.join(left)}"]
                raise ScenarioFailure(failure.scenario, failure.step, lines, inconclusive=failure.inconclusive) from None
            finally:
                self.virtual_seconds = target.elapsed()  # real seconds here: nothing is simulated
            left = await faults.cleanup()  # (again on exit, where it is a no-op)
            if left:
                # the scenario held, but a fault it set is still on: the next ones would judge a broken canary
                raise ScenarioFailure(self.scenario, None, [f"could not undo its faults: {'; '.join(left)}"], inconclusive=True)

    async def _live_steps(self, scenario: Scenario, target: LiveTarget, faults: LiveFaults, url: str) -> None:
        parent = self.parent
        assert isinstance(parent, ScenarioFile)
        try:
            if scenario.expressions:  # ${config:...} from what the service reports it runs with
                scenario, problems = resolve_scenario(scenario, await target.settings())
                if problems:
                    raise ScenarioFailure(scenario, None, [f"with the service's settings, {p}" for p in problems])
            waits = _total_wait(scenario.steps)
            if waits > parent.live_max_wait:
                # the run's real-time budget leaves it out, as --guards-item would: shown, not counted as a skip
                why = (
                    f"its waits add up to {waits:.0f} s with the service's settings, over the live wait budget "
                    f"of {parent.live_max_wait:.0f} s (--live-max-wait)"
                )
                parent.not_run[scenario.id] = (scenario.checklist, why)
                pytest.skip(why)
            if scenario.injects_live_faults:
                await self._live_given(scenario, faults)
            await run_scenario(scenario, target, clock_elapsed=target.elapsed, policy=self._policy, timeline=self.timeline)
        except (httpx.HTTPError, RuntimeError) as exc:
            raise ScenarioFailure(
                self.scenario, None, [f"cannot read {url}: {type(exc).__name__}: {exc}"], inconclusive=unreachable(exc)
            ) from None

    async def _live_given(self, scenario: Scenario, faults: LiveFaults) -> None:
        """Reach the control plane / Toxiproxy (unreachable or refusing: INCONCLUSIVE), then apply ``given``."""
        try:
            await faults.check()
        except (httpx.HTTPError, RuntimeError) as exc:
            raise ScenarioFailure(
                scenario, None, [f"cannot use the canary's fault controls: {type(exc).__name__}: {exc}"], inconclusive=True
            ) from None
        for model, spec in scenario.given_llm_spec.items():
            await faults.set_llm(model, spec)
        for model, spec in scenario.given_network.items():
            await faults.network(model, spec)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, ScenarioFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return Path(self.path), self.scenario.line - 1, f"scenario {self.scenario.id}: {self.scenario.title}"


def _total_wait(steps: tuple[Step, ...]) -> float:
    """The real seconds a scenario's ``wait`` steps add up to (a repeat's body counted ``times`` times)."""
    total = 0.0
    for step in steps:
        if step.kind == "wait":
            total += float(step.value)
        elif step.kind == "repeat":
            total += step.value["times"] * _total_wait(step.steps)
        elif step.kind == "parallel":
            total += _total_wait(step.steps)
    return total
