"""The pytest plugin ``guards``: options, markers, and the fixtures that break LLMs on purpose.

Hooks and fixtures only; the logic lives in the packages beside this one (``scenarios``, ``faults``,
``network``) and in ``harness``, ``clock``, ``metrics`` and ``session``. It is loaded in every pytest
run of every environment that installs the package, so it must not import toxiproxy-python,
``requests`` or a web server at load time (``tests/pytest_guards/test_layout.py`` checks).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import time
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from fragrance_ai.config_loader import Config, ConfigError, find_config_path
from pytest_guards.clock import ClockMisuseError, GuardClock
from pytest_guards.faults import FaultyLLM, UnmatchedRequestError
from pytest_guards.harness import GuardHarness, open_harness
from pytest_guards.metrics import MetricsProbe
from pytest_guards.network import (
    INSTALL_HINT,
    REDIS_INSTALL_HINT,
    RedisServer,
    RedisUnavailable,
    ToxicProxies,
    ToxiproxyServer,
    ToxiproxyUnavailable,
    in_ci,
)
from pytest_guards.report import write_html
from pytest_guards.scenarios import (
    CHECKLIST_DIR,
    CHECKLIST_ITEMS,
    CONTROL_TOKEN_ENV,
    InvalidScenarioItem,
    LiveDependencies,
    Policy,
    PolicyError,
    ScenarioFailure,
    ScenarioFile,
    ScenarioItem,
    ScenarioResult,
    TargetFileError,
    Verdict,
    load_policy,
    load_target_file,
    shipped_policy,
)
from pytest_guards.session import NetworkResources, SessionConfig

if TYPE_CHECKING:
    from pytest_guards.faults import FakeLLMServer

_CONFIG_KEY = pytest.StashKey[SessionConfig]()
_STRICT_KEY = pytest.StashKey[bool]()
_VERDICT_KEY = pytest.StashKey[Verdict]()
_NETWORK_KEY = pytest.StashKey[NetworkResources]()
#: the user property that carries a scenario's result from an xdist worker to its controller
_RESULT_PROPERTY = "guards_scenario_result"
_IDS_KEY = pytest.StashKey[dict[str, Path]]()
_POLICY_KEY = pytest.StashKey[Policy]()
_STARTED_KEY = pytest.StashKey[float]()
_LIVE_KEY = pytest.StashKey[tuple[str | None, LiveDependencies, float]]()
#: a test report's user property marking a scenario this run left out (shown as NOT RUN, not as a skip)
NOT_RUN_PROPERTY = "guards_not_run"
#: a live scenario whose waits add up past this many seconds is left out (NOT RUN) unless --live-max-wait says more
_LIVE_MAX_WAIT = 120.0

_OPTIONS: tuple[tuple[str, str, str, str | None], ...] = (
    # (flag, ini name, help, metavar)
    ("--guards-config", "guards_config", "guards config under test (default: the usual llm_ensemble.yaml search)", "PATH"),
    ("--guards-target", "guards_target", "URL of a running service for live (pre-promotion) checks", "URL"),
    ("--guards-report", "guards_report", "write the checklist verdict and every scenario's result as JSON", "PATH"),
    ("--guards-html", "guards_html", "write the verdict and every scenario's timeline as one self-contained HTML page", "PATH"),
    ("--toxiproxy-url", "toxiproxy_url", "use this running Toxiproxy server instead of starting one", "URL"),
    ("--guards-policy", "guards_policy", "a team policy file whose bounds replace the shipped policy.yaml's, key by key", "PATH"),
    ("--llm-control", "llm_control", "the fake LLM server's control plane behind a live canary (live fault scenarios)", "URL"),
    ("--control-token", "control_token", f"the control plane's token (default: ${CONTROL_TOKEN_ENV})", "TOKEN"),
    ("--proxy-name", "proxy_name", "the canary's Toxiproxy proxy per model: a template with {model}", "TEMPLATE"),
    ("--guards-target-file", "guards_target_file", "a YAML file naming url, llm_control, toxiproxy_url, proxy_name", "PATH"),
    ("--live-max-wait", "live_max_wait", "skip a live scenario whose waits add up past this (default: 120 s)", "SECONDS"),
)

_MARKERS = (
    "guards_config(overrides): deep-merge these overrides onto the config under test for this test",
    "network: talks to a real socket on 127.0.0.1",
    "toxiproxy: needs a Toxiproxy server",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("guards", "production guards (pytest_guards)")
    for flag, ini, help_text, metavar in _OPTIONS:
        group.addoption(flag, dest=ini, default=None, metavar=metavar, help=help_text)
        parser.addini(ini, help_text, default=None)
    group.addoption(
        "--guards-strict",
        dest="guards_strict",
        action="store_true",
        default=None,
        help="count skipped tests as failures (for CI and pre-promotion runs)",
    )
    parser.addini("guards_strict", "count skipped tests as failures", type="bool", default=False)
    group.addoption(
        "--guards-checklist",
        dest="guards_checklist",
        action="store_true",
        default=None,
        help="also collect the checklist scenarios shipped with pytest_guards",
    )
    parser.addini("guards_checklist", "also collect the shipped checklist scenarios", type="bool", default=False)
    group.addoption(
        "--guards-item",
        dest="guards_item",
        action="append",
        default=[],
        choices=CHECKLIST_ITEMS,
        help="run only the scenarios of this checklist item (repeatable)",
    )
    parser.addini(
        "guards_scenario_glob",
        "which files are scenarios: a glob on the path relative to rootdir ('**/' may match nothing)",
        default="*.scenario.yaml",
    )


def option(config: pytest.Config, name: str) -> Any:
    """A guards option: the command line wins over the ini file."""
    value = config.getoption(name, default=None)
    return value if value is not None else config.getini(name)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_STARTED_KEY] = time.monotonic()
    for marker in _MARKERS:
        config.addinivalue_line("markers", marker)
    config.stash[_STRICT_KEY] = bool(option(config, "guards_strict"))
    given = option(config, "guards_config")
    path = find_config_path(given or None)
    if given and not os.path.isabs(given):
        path = Path(config.invocation_params.dir) / given
    session = config.stash[_CONFIG_KEY] = SessionConfig(path, explicit=bool(given))
    if session.explicit:
        try:
            session.get()
        except ConfigError as exc:
            raise pytest.UsageError(session.describe_error(exc)) from None
    target = _live_target(config)
    policy = config.stash[_POLICY_KEY] = _policy(config)
    config.stash[_VERDICT_KEY] = Verdict(
        target=target or "in_process",
        config_source="" if target else str(path),  # a live run judges the service, not a local file
        strict=config.stash[_STRICT_KEY],
        items=tuple(config.getoption("guards_item", default=None) or ()),
        policy=policy,
    )
    config.pluginmanager.register(_WorkerResults(config), "guards-xdist-results")
    if option(config, "guards_checklist") and str(CHECKLIST_DIR) not in config.args:
        config.args.append(str(CHECKLIST_DIR))
    config.stash[_NETWORK_KEY] = NetworkResources(
        option(config, "toxiproxy_url") or os.environ.get("TOXIPROXY_URL") or None,
        list(dict.fromkeys((config.rootpath, Path(config.invocation_params.dir), Path(__file__).resolve().parent.parent))),
        lambda: _config_under_test(config).model_names,
    )


def _live_target(config: pytest.Config) -> str | None:
    """The live target's URL, and what it depends on (stashed), from the options and ``--guards-target-file``."""
    url = option(config, "guards_target") or None
    deps = LiveDependencies(
        option(config, "llm_control") or None,
        option(config, "control_token") or os.environ.get(CONTROL_TOKEN_ENV) or None,
        option(config, "toxiproxy_url") or None,
        option(config, "proxy_name") or "{model}",
    )
    given = option(config, "guards_target_file")
    if given:
        path = Path(given) if os.path.isabs(given) else Path(config.invocation_params.dir) / given
        try:
            file_url, from_file = load_target_file(path)
        except TargetFileError as exc:
            raise pytest.UsageError(str(exc)) from None
        url = url or file_url
        deps = LiveDependencies(
            deps.llm_control or from_file.llm_control,
            deps.control_token or from_file.control_token,
            deps.toxiproxy_url or from_file.toxiproxy_url,
            deps.proxy_name if option(config, "proxy_name") else from_file.proxy_name,
        )
    if "{model}" not in deps.proxy_name:
        raise pytest.UsageError("--proxy-name: the template must contain {model}")
    wait = option(config, "live_max_wait")
    try:
        max_wait = float(wait) if wait else _LIVE_MAX_WAIT
    except ValueError:
        raise pytest.UsageError("--live-max-wait: expected a number of seconds") from None
    config.stash[_LIVE_KEY] = (url, deps, max_wait)
    return url


def _policy(config: pytest.Config) -> Policy:
    """The shipped policy, with a team's (``--guards-policy``) replacing its bounds; a bad file stops the session."""
    given = option(config, "guards_policy")
    try:
        policy = shipped_policy()
        if given:
            path = Path(given) if os.path.isabs(given) else Path(config.invocation_params.dir) / given
            policy = policy.with_team(load_policy(path))
    except PolicyError as exc:
        raise pytest.UsageError("guards policy is invalid:\n" + "\n".join(f"  {i}" for i in exc.issues)) from None
    return policy


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Live fault scenarios after the others (they change the canary's state); ``--guards-item`` keeps one item's."""
    items.sort(key=lambda i: isinstance(i, ScenarioItem) and i.mode == "live" and i.scenario.injects_live_faults)
    wanted = config.getoption("guards_item", default=None)
    if not wanted:
        return
    keep = [i for i in items if not isinstance(i, ScenarioItem) or i.scenario.checklist in wanted]
    dropped = [i for i in items if i not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def verdict_of(config: pytest.Config) -> Verdict | None:
    """The session's checklist verdict, for tools that run pytest in-process (``fragrance-ai verify``)."""
    return config.stash.get(_VERDICT_KEY, None)


def _config_under_test(config: pytest.Config) -> Config:
    """The session's config; an invalid one stops the session with its errors (file, line, key)."""
    session = config.stash[_CONFIG_KEY]
    try:
        return session.get()
    except ConfigError as exc:
        raise pytest.UsageError(session.describe_error(exc)) from None


def pytest_unconfigure(config: pytest.Config) -> None:
    network = config.stash.get(_NETWORK_KEY, None)
    if network is not None:
        network.close()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ScenarioFile | None:
    pattern = str(parent.config.getini("guards_scenario_glob"))
    try:
        relative = file_path.relative_to(parent.config.rootpath).as_posix()
    except ValueError:
        relative = file_path.as_posix()
    if not (fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(relative, pattern.replace("**/", ""))):
        return None
    node: ScenarioFile = ScenarioFile.from_parent(parent, path=file_path)
    node.base_config = _config_under_test(parent.config)
    node.policy = parent.config.stash[_POLICY_KEY]
    node.target_url, node.live_deps, node.live_max_wait = parent.config.stash[_LIVE_KEY]
    node.network = parent.config.stash[_NETWORK_KEY]
    node.seen_ids = parent.config.stash.setdefault(_IDS_KEY, {})
    node.not_run = parent.config.stash[_VERDICT_KEY].not_run
    return node


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if _left_out(item):
        # not applicable to this run (its wait budget): the verdict lists it, strict does not count it
        report.user_properties.append((NOT_RUN_PROPERTY, True))
        return report
    if report.skipped and item.config.stash.get(_STRICT_KEY, False) and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under --guards-strict, which counts skips as failures: {reason}"
    _record_scenario(item, report, call)
    return report


def _left_out(item: pytest.Item) -> bool:
    verdict = item.config.stash.get(_VERDICT_KEY, None)
    return isinstance(item, ScenarioItem) and verdict is not None and item.scenario.id in verdict.not_run


def _record_scenario(item: pytest.Item, report: pytest.TestReport, call: pytest.CallInfo[None]) -> None:
    """Feed the verdict: a scenario's outcome (``inconclusive``: the harness could not run it), or its setup failure/skip."""
    if not isinstance(item, (ScenarioItem, InvalidScenarioItem)):
        return
    if report.when != "call" and report.passed:
        return
    if report.when == "teardown" and not report.failed:
        return
    verdict = item.config.stash[_VERDICT_KEY]
    if report.skipped and isinstance(report.longrepr, tuple):
        message = report.longrepr[2].removeprefix("Skipped: ")
    else:
        message = "" if report.passed else str(report.longrepr)
    if isinstance(item, InvalidScenarioItem):
        result = ScenarioResult(item.name, "invalid scenario file", None, str(item.path), 1, "-", "failed", message)
    else:
        s = item.scenario
        failure = call.excinfo.value if call.excinfo is not None else None
        outcome = "inconclusive" if isinstance(failure, ScenarioFailure) and failure.inconclusive else report.outcome
        result = ScenarioResult(
            s.id, s.title, s.checklist, str(s.file), s.line, item.mode, outcome, message,
            round(item.wall_seconds, 6), round(item.virtual_seconds, 6),
            item.timeline.to_dict() if item.timeline is not None else None,
        )
    verdict.record(result)
    # under pytest-xdist the controller rebuilds the verdict from the reports workers send it
    report.user_properties.append((_RESULT_PROPERTY, dataclasses.asdict(result)))


class _WorkerResults:
    """On a pytest-xdist controller: record the scenario results its workers send (a serial run records them itself)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if getattr(report, "node", None) is None:
            return  # not a report from an xdist worker
        verdict = self.config.stash.get(_VERDICT_KEY, None)
        for name, value in report.user_properties:
            if name == _RESULT_PROPERTY and isinstance(value, dict) and verdict is not None:
                verdict.record(ScenarioResult(**value))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    verdict = config.stash.get(_VERDICT_KEY, None)
    if verdict is None or not verdict.ran or hasattr(config, "workerinput"):
        return
    terminalreporter.section("production guards checklist")
    for line in verdict.lines():
        terminalreporter.write_line(line, bold=line.startswith(("✓ SAFE", "✗ DO NOT")))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    verdict = session.config.stash.get(_VERDICT_KEY, None)
    if verdict is None or hasattr(session.config, "workerinput"):
        return  # an xdist worker holds part of the verdict: its controller judges the whole
    verdict.seconds = time.monotonic() - session.config.stash[_STARTED_KEY]
    report = option(session.config, "guards_report")
    if report:
        verdict.write(Path(session.config.invocation_params.dir) / report)
    html = option(session.config, "guards_html")
    if html:
        write_html(verdict, Path(session.config.invocation_params.dir) / html)
    if verdict.ran and verdict.strict and not verdict.safe and session.exitstatus == pytest.ExitCode.OK:
        # under --guards-strict an incomplete checklist fails the run; otherwise a partial run (-k, one
        # file) exits on its tests alone, and `fragrance-ai verify` decides on the verdict itself
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def guards_config(request: pytest.FixtureRequest) -> Config:
    """The config under test: ``--guards-config`` (or the default), plus a ``guards_config`` marker's overrides."""
    session = request.config.stash[_CONFIG_KEY]
    try:
        config = session.get()
    except ConfigError as exc:
        pytest.fail(session.describe_error(exc), pytrace=False)
    for marker in reversed(list(request.node.iter_markers("guards_config"))):
        overrides = marker.args[0] if marker.args else marker.kwargs
        if not isinstance(overrides, dict):
            pytest.fail(f"@pytest.mark.guards_config takes a dict of overrides, got {overrides!r}", pytrace=False)
        try:
            config = config.with_overrides(overrides, source=f"{config.source} + @guards_config")
        except ConfigError as exc:
            pytest.fail(f"@pytest.mark.guards_config overrides are invalid:\n{exc}", pytrace=False)
    return config


@pytest.fixture
def guard_clock() -> Iterator[GuardClock]:
    """Virtual time for this test: ``now()``, ``advance(seconds)``; also what time.time/monotonic return."""
    clock = GuardClock().start()
    try:
        yield clock
    finally:
        clock.stop()


@pytest.fixture
def faulty_llm(guards_config: Config, guard_clock: GuardClock) -> Iterator[FaultyLLM]:
    """Scripted faults per configured model at the OpenAI-compatible HTTP boundary (respx)."""
    llm = FaultyLLM(guards_config.model_names, asleep=guard_clock.asleep, sleep=guard_clock.sleep)
    llm.start()
    try:
        yield llm
    finally:
        llm.stop()
    try:
        llm.check()
    except UnmatchedRequestError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def _guards_fake_llm_server(request: pytest.FixtureRequest) -> FakeLLMServer:
    _config_under_test(request.config)  # an invalid config stops here, with its errors
    return request.config.stash[_NETWORK_KEY].fake_server()  # stopped at the end of the session


@pytest.fixture
def fake_llm_server(_guards_fake_llm_server: FakeLLMServer) -> Iterator[FakeLLMServer]:
    """The same behaviours over real HTTP on 127.0.0.1 (one server per session, reset for every test)."""
    server = _guards_fake_llm_server
    server.reset()
    yield server
    try:
        server.check()
    except UnmatchedRequestError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def guard_metrics() -> MetricsProbe:
    """A fresh CollectorRegistry for this test, with ``value(name, **labels)`` and ``delta(...)``."""
    from prometheus_client import CollectorRegistry

    return MetricsProbe(CollectorRegistry())


@pytest_asyncio.fixture
async def guard_system(
    guards_config: Config, guard_clock: GuardClock, faulty_llm: FaultyLLM, guard_metrics: MetricsProbe
) -> AsyncIterator[GuardHarness]:
    """The reference system wired from ``guards_config`` on ``guard_clock``, ``faulty_llm`` and ``guard_metrics``."""
    async with open_harness(guards_config, clock=guard_clock, llm=faulty_llm, metrics=guard_metrics) as harness:
        yield harness


@pytest.fixture(scope="session")
def toxiproxy(request: pytest.FixtureRequest) -> ToxiproxyServer:
    """A real Toxiproxy server: ``--toxiproxy-url``/``$TOXIPROXY_URL``, else ``toxiproxy-server`` started on 127.0.0.1.

    One per session, shared with the toxiproxy scenarios. Unavailable: the tests skip saying how to
    install it; under ``CI=true`` they fail instead.
    """
    try:
        return request.config.stash[_NETWORK_KEY].toxiproxy()
    except ToxiproxyUnavailable as exc:
        if in_ci():
            pytest.fail(f"{exc}\n(CI=true: toxiproxy tests must run, not skip; {INSTALL_HINT})", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture
def toxic_proxy(
    request: pytest.FixtureRequest, toxiproxy: ToxiproxyServer, fake_llm_server: FakeLLMServer
) -> Iterator[ToxicProxies]:
    """Make proxies (``toxic_proxy()`` in front of ``fake_llm_server``, or ``toxic_proxy("host:port")``) with toxics.

    Every proxy the test made is deleted and the server reset afterwards, pass or fail.
    """
    proxies = ToxicProxies(
        toxiproxy, request.node.nodeid, default_upstream=lambda: fake_llm_server, models=fake_llm_server.models
    )
    try:
        yield proxies
    finally:
        proxies.close()


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """The session's real redis-server on a free 127.0.0.1 port (each test takes ``new_prefix()``).

    Not installed: the tests skip saying how to install it; under ``CI=true`` they fail instead. A test
    that stops it must start it again (``redis_server.start()``) before it ends.
    """
    try:
        server = request.config.stash[_NETWORK_KEY].redis()  # shared with the replica scenarios
    except RedisUnavailable as exc:
        if in_ci():
            pytest.fail(f"{exc}\n(CI=true: Redis tests must run, not skip; {REDIS_INSTALL_HINT})", pytrace=False)
        pytest.skip(str(exc))
    yield server
    server.start()  # a test that stopped it and failed before starting it again


__all__ = ["NOT_RUN_PROPERTY", "ClockMisuseError", "option", "verdict_of"]
