"""The harness's command line: ``verify``, ``gate``, ``scenarios list``, ``install-tools`` (``python -m pytest_guards``).

``fragrance-ai verify|scenarios|install-tools`` forwards here. ``verify`` runs the shipped checklist
scenarios (plus a team's folders) through pytest in this process, prints each scenario as it
finishes and the verdict at the end, and exits 0 only when it is SAFE TO PROMOTE: the exit code, the
terminal and ``--report`` all read the one :class:`~pytest_guards.scenarios.Verdict`.

What this module must not do: print a traceback for a user's mistake (a missing folder, a bad config
or policy, an unreachable target each end in one line and exit 1 or 2), or read the user's own pytest
configuration (their ``addopts`` and plugins are not part of a verdict).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import httpx
import pytest

from fragrance_ai import __version__
from fragrance_ai.config_loader import ConfigError, find_config_path, load_config
from pytest_guards.gate import GateServer, run_verify
from pytest_guards.network import in_ci
from pytest_guards.plugin import NOT_RUN_PROPERTY, verdict_of
from pytest_guards.scenarios import (
    CHECKLIST_DIR,
    CHECKLIST_ITEMS,
    CONTROL_TOKEN_ENV,
    INCONCLUSIVE,
    UNSAFE,
    ScenarioFileError,
    TargetFileError,
    Verdict,
    load_scenario,
    load_target_file,
)
from pytest_guards.tools import TOOLS, install_tools, user_tools_dir

__all__ = ["build_parser", "main"]

_PROG = "fragrance-ai"
_PROBE_TIMEOUT_S = 5.0
_EXIT_USAGE = 2
#: the harness could not judge (target or control plane unreachable): neither safe nor unsafe
_EXIT_INCONCLUSIVE = 2


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run one command; the exit code (0 safe / done, 1 not safe / failed, 2 a usage mistake)."""
    stream = out or sys.stdout
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "gate":
        args.verify_args = extra  # every option the gate does not know is verify's (checked when it starts)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    result: int = args.func(args, stream)
    return result


# ------------------------------------------------------------------------------------------ verify


def _scenario_roots(args: argparse.Namespace, out: TextIO) -> list[Path] | None:
    """The folders to run: the shipped checklist (unless --only-scenarios) and each --scenarios DIR."""
    extra = [Path(d) for d in args.scenarios]
    missing = [d for d in extra if not d.is_dir()]
    if missing:
        print(f"{_PROG}: no such scenario folder: {', '.join(map(str, missing))}", file=out)
        return None
    if args.only_scenarios and not extra:
        print(f"{_PROG}: --only-scenarios needs at least one --scenarios DIR", file=out)
        return None
    return ([] if args.only_scenarios else [CHECKLIST_DIR]) + [d.resolve() for d in extra]


def _unsafe(out: TextIO, why: str) -> int:
    print("=" * 38, file=out)
    print(f"✗ {UNSAFE} ({why})", file=out)
    return 1


def _inconclusive(out: TextIO, why: str) -> int:
    print("=" * 38, file=out)
    print(f"? {INCONCLUSIVE} ({why})", file=out)
    return _EXIT_INCONCLUSIVE


def _check_local_config(args: argparse.Namespace, out: TextIO) -> Path | None:
    path = find_config_path(args.config)
    try:
        load_config(path)
    except ConfigError as exc:
        print(f"{len(exc.issues)} error(s) in {path}:", file=out)
        for issue in exc.issues:
            print(f"  {issue}", file=out)
        return None
    return path


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` for the block, then as it was."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _reachable(url: str, path: str, what: str, headers: dict[str, str] | None = None) -> str | None:
    """None when ``url`` answers ``GET path`` (not 401), else why not (one line, no traceback)."""
    try:
        with httpx.Client(base_url=url, timeout=_PROBE_TIMEOUT_S, headers=headers) as client:
            response = client.get(path)
    except (httpx.HTTPError, ValueError) as exc:
        return f"cannot reach {what} {url}: {type(exc).__name__}"
    if response.status_code == 401:
        return f"{what} {url} refused the token (HTTP 401)"
    return None


def _live_options(args: argparse.Namespace, out: TextIO) -> argparse.Namespace | None:
    """Fill ``args.target`` and the dependencies from ``--target-file``; None (usage error printed) when it is bad."""
    args.control_token = args.control_token or os.environ.get(CONTROL_TOKEN_ENV)
    if args.target_file:
        try:
            url, deps = load_target_file(Path(args.target_file))
        except TargetFileError as exc:
            print(f"{_PROG}: {exc}", file=out)
            return None
        args.target = args.target or url
        args.llm_control = args.llm_control or deps.llm_control
        args.control_token = args.control_token or deps.control_token
        args.toxiproxy_url = args.toxiproxy_url or deps.toxiproxy_url
    if (args.llm_control or args.toxiproxy_url) and not args.target:
        print(f"{_PROG}: --llm-control and --toxiproxy-url name what a live canary depends on: give --target URL", file=out)
        return None
    return args


def _control_reachable(args: argparse.Namespace) -> str | None:
    """Why the canary's fault controls cannot be used (None when they can, or none were given)."""
    if args.llm_control:
        if not args.control_token:
            return f"no token for the control plane {args.llm_control} (--control-token or ${CONTROL_TOKEN_ENV})"
        headers = {"Authorization": f"Bearer {args.control_token}"}
        problem = _reachable(args.llm_control, "/_control/models", "the fake LLM's control plane", headers)
        if problem is not None:
            return problem
    if args.toxiproxy_url:
        return _reachable(args.toxiproxy_url, "/version", "Toxiproxy")
    return None


class _Progress:
    """A pytest plugin: one line per scenario as it finishes (id, item, outcome, seconds), failures underneath."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.items: dict[str, tuple[str, str]] = {}
        self.counts = {"passed": 0, "failed": 0, "skipped": 0, "not run": 0}
        self.verdict: Verdict | None = None

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            scenario = getattr(item, "scenario", None)
            if scenario is not None:
                self.items[item.nodeid] = (scenario.id, scenario.checklist)
            else:
                self.items[item.nodeid] = (item.name, "-")
        print(f"running {len(session.items)} scenario(s)", file=self.out, flush=True)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" and not (report.failed or report.skipped):
            return
        if report.when == "teardown" and not report.failed:
            return
        sid, item = self.items.get(report.nodeid, (report.nodeid, "-"))
        left_out = dict(report.user_properties).get(NOT_RUN_PROPERTY, False)
        outcome = "NOT RUN" if left_out else {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[report.outcome]
        self.counts["not run" if left_out else report.outcome] += 1
        line = f"  {outcome}  {sid:<58} {item:<16} {report.duration:7.2f}s"
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            line += f"  ({reason.removeprefix('Skipped: ')})"
        print(line, file=self.out, flush=True)
        if report.failed:
            for text in report.longreprtext.splitlines():
                print(f"        {text}", file=self.out)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.verdict = verdict_of(session.config)


def _pytest_args(args: argparse.Namespace, roots: list[Path], config_path: Path | None, ini: Path) -> list[str]:
    command = [*map(str, roots), "-c", str(ini), "--rootdir", os.getcwd(), "-p", "no:cacheprovider", "-p", "no:terminal"]
    # plugin autoload is off for this run (see _verify): only the guards plugin judges
    command += ["-p", "pytest_guards.plugin"]
    if config_path is not None:
        command += ["--guards-config", str(config_path.resolve())]
    if args.target:
        command += ["--guards-target", args.target]
    for flag, value in (
        ("--llm-control", args.llm_control),
        ("--proxy-name", args.proxy_name),
        ("--toxiproxy-url", args.toxiproxy_url),
        ("--live-max-wait", args.live_max_wait),
        ("--control-token", args.control_token),  # in this process only: never on a command line
    ):
        if value is not None:
            command += [flag, str(value)]
    if args.policy:
        command += ["--guards-policy", str(Path(args.policy).resolve())]
    if args.report:
        command += ["--guards-report", str(Path(args.report).resolve())]
    if args.html:
        command += ["--guards-html", str(Path(args.html).resolve())]
    if args.junitxml:
        command += ["--junitxml", str(Path(args.junitxml).resolve())]
    if args.strict or in_ci():
        command.append("--guards-strict")
    for item in args.item:
        command += ["--guards-item", item]
    return command + list(args.pytest_args)


def _verify(args: argparse.Namespace, out: TextIO) -> int:
    """Run the scenarios and print the verdict; 0 only when safe to promote."""
    roots = _scenario_roots(args, out)
    if roots is None:
        return _EXIT_USAGE
    config_path = None
    live = _live_options(args, out)
    if live is None:
        return _EXIT_USAGE
    if args.target:
        problem = _reachable(args.target, "/health/guards", "the target") or _control_reachable(args)
        if problem is not None:
            return _inconclusive(out, problem)
        print(f"verifying the live service at {args.target}", file=out)
    else:
        config_path = _check_local_config(args, out)
        if config_path is None:
            return _unsafe(out, "the config under test is invalid")
        print(f"verifying {config_path} on the embedded service", file=out)
    progress = _Progress(out)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="guards-verify-") as tmp:
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n", encoding="utf-8")
        # the environment's other pytest plugins (say hypothesis or a team's own) take no part in a
        # verdict, and importing them costs seconds: only the guards plugin is loaded
        with _env("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1"):
            code = pytest.main(_pytest_args(args, roots, config_path, ini), plugins=[progress])
    if code == pytest.ExitCode.USAGE_ERROR:
        return _EXIT_USAGE  # pytest printed what was wrong (a bad policy file, a bad option)
    verdict = progress.verdict
    if verdict is None or not verdict.ran:
        return _unsafe(out, "no scenario ran")
    counts = progress.counts
    not_run = f", {counts['not run']} not run" if counts["not run"] else ""
    print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped{not_run} "
          f"in {time.monotonic() - started:.1f} s", file=out)
    for line in verdict.lines():
        print(line, file=out)
    if args.report:
        print(f"report: {args.report}", file=out)
    if args.html:
        print(f"html report: {args.html}", file=out)
    if verdict.inconclusive:
        return _EXIT_INCONCLUSIVE
    return 0 if verdict.safe and code == pytest.ExitCode.OK else 1


# -------------------------------------------------------------------------------------------- gate


def _gate(args: argparse.Namespace, out: TextIO) -> int:
    """Serve the verdict over HTTP: one verify run (in a child process) per request; see :mod:`pytest_guards.gate`."""
    verify_args = list(args.verify_args)
    if verify_args[:1] == ["--"]:
        verify_args = verify_args[1:]
    try:
        given = build_parser().parse_args(["verify", *verify_args])
    except SystemExit:
        return _EXIT_USAGE  # argparse said what was wrong
    env = dict(os.environ)
    if given.control_token:  # to the child through its environment, never on a command line
        env[CONTROL_TOKEN_ENV] = given.control_token
        index = verify_args.index("--control-token") if "--control-token" in verify_args else -1
        verify_args = [a for a in verify_args if not a.startswith("--control-token=")]
        if index >= 0:
            del verify_args[index : index + 2]
    try:
        server = GateServer(lambda: run_verify(verify_args, args.run_timeout, env), args.host, args.port)
    except OSError as exc:
        print(f"{_PROG} gate: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=out)
        return 1
    print(f"{_PROG} gate: GET http://{args.host}:{server.port}/ runs verify {' '.join(verify_args)}", file=out, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


# ------------------------------------------------------------------------------- scenarios, tools


def _scenarios(args: argparse.Namespace, out: TextIO) -> int:
    """List what ``verify`` would run, with each scenario's item, target and file:line."""
    roots = _scenario_roots(args, out)
    if roots is None:
        return _EXIT_USAGE
    invalid = 0
    shown = 0
    for root in roots:
        for path in sorted(root.rglob("*.scenario.yaml")):
            try:
                scenario = load_scenario(path)
            except ScenarioFileError as exc:
                invalid += 1
                print(f"INVALID {path}", file=out)
                for problem in exc.problems:
                    print(f"    {problem}", file=out)
                continue
            if args.item and scenario.checklist not in args.item:
                continue
            shown += 1
            where = f"{path}:{scenario.line}"
            print(f"{scenario.id:<58} {scenario.checklist:<16} {scenario.target:<11} {where}  {scenario.title}", file=out)
    print(f"{shown} scenario(s)" + (f", {invalid} invalid file(s)" if invalid else ""), file=out)
    return _EXIT_USAGE if invalid else 0  # an invalid file is bad input, as for check-config


def _install(args: argparse.Namespace, out: TextIO) -> int:
    dest = Path(args.dir) if args.dir else user_tools_dir()
    return install_tools(args.tools, dest, out, sys.stderr)


def _add_scenario_folders(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenarios", action="append", default=[], metavar="DIR",
        help="a folder of your own *.scenario.yaml files, run with the shipped checklist (repeatable)",
    )
    parser.add_argument(
        "--only-scenarios", action="store_true", help="run only the --scenarios folders, not the shipped checklist"
    )
    parser.add_argument(
        "--item", action="append", default=[], choices=CHECKLIST_ITEMS, help="only this checklist item (repeatable)"
    )


def _add_live_dependencies(parser: argparse.ArgumentParser) -> None:
    """What a live canary depends on: the live fault scenarios inject their faults there."""
    parser.add_argument(
        "--llm-control", metavar="URL", help="the fake LLM server's control plane behind the canary (live fault scenarios)"
    )
    parser.add_argument(
        "--control-token", metavar="TOKEN", help=f"the control plane's token (default: ${CONTROL_TOKEN_ENV}; never printed)"
    )
    parser.add_argument("--toxiproxy-url", metavar="URL", help="the Toxiproxy API in front of the canary's models")
    parser.add_argument(
        "--proxy-name", metavar="TEMPLATE", help="the canary's proxy per model, with {model} (default: {model})"
    )
    parser.add_argument(
        "--target-file", metavar="FILE",
        help="YAML naming url, llm_control, control_token_env, toxiproxy_url, proxy_name (options given win)",
    )
    parser.add_argument(
        "--live-max-wait", type=float, metavar="SECONDS",
        help="skip a live scenario whose real waits add up past this (default: 120)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=_PROG, description="Verify LLM guards before promotion.")
    parser.add_argument("--version", action="version", version=f"{_PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    verify = sub.add_parser(
        "verify",
        help="run the checklist scenarios and print the verdict (exit 0: safe to promote, 1: not, 2: inconclusive or usage)",
        description="Run the shipped checklist scenarios (and your own) against the embedded service built from "
        "your config, or against a live service (--target), and print SAFE TO PROMOTE or DO NOT PROMOTE.",
    )
    verify.add_argument("--version", action="version", version=f"{_PROG} {__version__}")
    verify.add_argument(
        "--config", help="config under test (default: $FRAGRANCE_AI_CONFIG, ./configs/llm_ensemble.yaml, the reference)"
    )
    verify.add_argument("--target", metavar="URL", help="a running service: run the live scenarios against it")
    _add_live_dependencies(verify)
    verify.add_argument(
        "--policy", metavar="FILE", help="your policy file: its bounds replace the shipped policy.yaml's, key by key"
    )
    _add_scenario_folders(verify)
    verify.add_argument("--report", metavar="FILE", help="write the verdict and every scenario's result as JSON")
    verify.add_argument(
        "--html", metavar="FILE",
        help="write one self-contained HTML page: the verdict, every scenario and its timeline chart",
    )
    verify.add_argument("--junitxml", metavar="FILE", help="write a JUnit XML report (one test case per scenario)")
    verify.add_argument(
        "--strict",
        action="store_true",
        help="skipped scenarios and a loosened policy block the verdict (always on when CI=true)",
    )
    verify.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after --")
    verify.set_defaults(func=_verify)

    gate = sub.add_parser(
        "gate",
        help="serve the verdict over HTTP: a verify run per request, 200 safe / 412 not safe / 503 inconclusive",
        description="Answer GET / (or POST /) with one verify run's JSON report: 200 SAFE TO PROMOTE, 412 DO NOT "
        "PROMOTE, 503 INCONCLUSIVE; 429 while a run is in progress (runs are serialized). For an Argo Rollouts web "
        "metric or a Flagger webhook. The arguments after the gate's own are verify's (--target URL ...).",
    )
    gate.add_argument("--port", type=int, required=True, help="TCP port (0: any free one, printed)")
    gate.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s, loopback only)")
    gate.add_argument(
        "--run-timeout", type=float, default=900.0, metavar="SECONDS",
        help="a run taking longer answers 503 (default: %(default)s)",
    )
    gate.set_defaults(func=_gate)

    scenarios = sub.add_parser("scenarios", help="list the scenarios verify would run")
    scenarios_sub = scenarios.add_subparsers(dest="action", required=True)
    listing = scenarios_sub.add_parser("list", help="one line per scenario: id, item, target, file:line, title")
    _add_scenario_folders(listing)
    listing.set_defaults(func=_scenarios)

    tools = sub.add_parser(
        "install-tools",
        help="install the programs some scenarios and tests need (toxiproxy-server needs Go; promtool needs apt-get)",
    )
    tools.add_argument("tools", nargs="*", metavar="TOOL", help=f"which ({', '.join(TOOLS)}; default: all)")
    tools.add_argument("--dir", help=f"where to install (default: {user_tools_dir()}, where the harness looks)")
    tools.set_defaults(func=_install)
    return parser
