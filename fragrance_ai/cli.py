"""The ``fragrance-ai`` command: check a config, serve the API, verify guards before promotion.

Bad input (a broken config, a bad flag) ends in a clear message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TextIO

import yaml

from fragrance_ai import __version__
from fragrance_ai.config_loader import (
    Config,
    ConfigError,
    ValueSource,
    config_warnings,
    default_config_path,
    find_config_path,
    load_config,
    load_config_with_sources,
)
from fragrance_ai.constants import LOOPBACK_HOST

__all__ = ["main"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
#: uvicorn's settings at the HTTP edge of ``serve`` (README, "The service"): h11, whose header limit is
#: a setting; an idle keep-alive connection closed after 5 s (``serve --timeout-keep-alive``); at most
#: 16 KiB of request line and headers (a longer head is refused with 400); at most 512 connections and
#: requests at once (then 503); 10 s to finish requests on shutdown. A body that stalls is the app's
#: BodyLimit's (408 after 10 s).
SERVER_LIMITS: Final[dict[str, Any]] = {
    "http": "h11",
    "timeout_keep_alive": 5,
    "h11_max_incomplete_event_size": 16 * 1024,
    "limit_concurrency": 512,
    "timeout_graceful_shutdown": 10,
}


def _load_or_report(path: Path, heading: str, out: TextIO) -> Config | None:
    """The config at ``path``, or None once its errors are printed to ``out`` under ``heading`` (``{count}``, ``{path}``)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        print(heading.format(count=len(exc.issues), path=path), file=out)
        for issue in exc.issues:
            print(f"  {issue}", file=out)
        return None


def _check_config(args: argparse.Namespace) -> int:
    """Print the effective settings, each with where it came from; warnings to stderr (exit 1 on them with --strict)."""
    path = find_config_path(args.path)
    try:
        config, sources = load_config_with_sources(path)
    except ConfigError as exc:
        print(f"{len(exc.issues)} error(s) in {path}:", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return 2
    print(f"# effective settings of {path}; a key it leaves out takes the reference ({default_config_path()})")
    print("\n".join(_annotated_yaml(config.to_dict(), sources)))
    warnings = config_warnings(config)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 1 if warnings and args.strict else 0


def _annotated_yaml(
    data: dict[str, object], sources: dict[str, ValueSource], prefix: str = "", depth: int = 0
) -> list[str]:
    """``data`` as block YAML, every leaf followed by ``# <its source>`` (still valid YAML)."""
    lines: list[str] = []
    indent = "  " * depth
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            lines.append(f"{indent}{key}:")
            lines.extend(_annotated_yaml(value, sources, path, depth + 1))
            continue
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True)
        text = text.removesuffix("\n").removesuffix("\n...").strip()
        source = sources.get(path)
        lines.append(f"{indent}{key}: {text}" + (f"  # {source}" if source is not None else ""))
    return lines


def _serve(args: argparse.Namespace) -> int:
    path = find_config_path(args.config)
    config = _load_or_report(path, "cannot start: {count} config error(s) in {path}:", sys.stderr)
    if config is None:
        return 2
    if args.workers > 1 and args.worker_of is None:
        from fragrance_ai.service.worker import reuseport_supported

        if reuseport_supported():
            return _supervise(args, path)
        print(
            f"fragrance-ai serve: --workers {args.workers} needs SO_REUSEPORT, which this platform does not offer; "
            "serving with one process",
            file=sys.stderr,
        )
    from fragrance_ai.service.app import create_app

    try:
        app = create_app(config)
    except ValueError as exc:  # a setting the loader accepts but a backend refuses (say, an ftp:// base_url)
        print(f"cannot start with {path}: {exc}", file=sys.stderr)
        return 2
    limits = {**SERVER_LIMITS, "timeout_keep_alive": args.timeout_keep_alive}
    if args.worker_of is not None:
        from fragrance_ai.service.worker import run_worker

        return run_worker(app, args.host, args.port, parent_pid=args.worker_of, log_level=args.log_level, limits=limits)
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, **limits)
    return 0


def _supervise(args: argparse.Namespace, path: Path) -> int:
    """``serve --workers N``: N worker processes of this command, each on its own SO_REUSEPORT socket."""
    from fragrance_ai.service.supervisor import Supervisor, popen_spawner
    from fragrance_ai.service.worker import bind_reuseport

    try:  # held, never listening, for the supervisor's life: learns port 0's pick and keeps the port for restarts
        reserved = bind_reuseport(args.host, args.port, listen=False)
    except OSError as exc:
        print(f"cannot start: cannot bind {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    port = reserved.getsockname()[1]
    level = logging.DEBUG if args.log_level == "trace" else getattr(logging, args.log_level.upper())
    logging.basicConfig(format="fragrance-ai serve: %(message)s", level=level)
    command = [sys.executable, "-m", "fragrance_ai.cli", "serve", "--host", args.host, "--port", str(port),
               "--config", str(path), "--log-level", args.log_level, "--timeout-keep-alive", str(args.timeout_keep_alive),
               "--worker-of", str(os.getpid())]
    supervisor = Supervisor(args.workers, popen_spawner(lambda index: command), clock=time.monotonic, sleep=time.sleep,
                            stop_timeout=SERVER_LIMITS["timeout_graceful_shutdown"] + 5)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, frame: supervisor.request_stop(received))
    logging.getLogger(__name__).warning(
        "serving http://%s:%d with %d workers, each on its own SO_REUSEPORT socket", args.host, port, args.workers
    )
    try:
        return supervisor.run()
    finally:
        reserved.close()


def _int_in(what: str, low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``, refused as ``expected WHAT LOW-HIGH, found ...``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} {low}-{high}, found {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what} {low}-{high}, found {value}")
        return value

    return parse


#: a TCP port (0 lets the OS pick one)
_port = _int_in("a port number", 0, 65535)
#: ``serve --workers``: worker processes
_workers = _int_in("a number of workers", 1, 64)
#: ``serve --timeout-keep-alive``: seconds an idle keep-alive connection is kept
_keep_alive = _int_in("a number of seconds", 1, 3600)


#: commands of the verification harness (pytest_guards), run as ``python -m pytest_guards ...``: this
#: package never imports the harness, which is built on it
HARNESS_COMMANDS: Final = {
    "verify": "run the checklist scenarios and print the verdict (exit 0: safe to promote, 1: not, 2: inconclusive/usage)",
    "gate": "serve the verdict over HTTP for Argo Rollouts / Flagger (gate --port P --target URL ...)",
    "scenarios": "list the scenarios verify would run (scenarios list [--item ITEM] [--scenarios DIR])",
    "install-tools": "install toxiproxy-server and promtool where the harness finds them",
}


def _harness(argv: list[str]) -> int:
    """Hand a harness command to ``python -m pytest_guards`` with the same arguments and exit code."""
    return subprocess.run([sys.executable, "-m", "pytest_guards", *argv], check=False).returncode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fragrance-ai", description="Check a config, serve the guarded API, verify the guards before promotion."
    )
    parser.add_argument("--version", action="version", version=f"fragrance-ai {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser(
        "check-config",
        help="validate a config file and print its effective settings, each with its source",
        description="Validate a config file merged onto the reference, print every effective setting with where it "
        "came from (# from FILE:LINE, # reference, # default), and warn on settings that make a guard ineffective. "
        "Exit 0: valid; 1: warnings under --strict; 2: errors.",
    )
    check.add_argument("path", nargs="?", help="config file (default: the usual search order)")
    check.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    check.set_defaults(func=_check_config)

    serve = sub.add_parser(
        "serve",
        help="run the FastAPI service on uvicorn",
        description="Serve POST /v1/briefs, GET /health/llm, GET /health/guards and GET /metrics on uvicorn.",
    )
    serve.add_argument("--host", default=LOOPBACK_HOST, help="interface to bind (default: %(default)s)")
    serve.add_argument("--port", type=_port, default=8000, help="TCP port (default: %(default)s)")
    serve.add_argument("--config", help="config file (default: the usual search order)")
    serve.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="uvicorn log level (default: %(default)s)")
    serve.add_argument(
        "--workers", type=_workers, default=1,
        help="worker processes, each with its own SO_REUSEPORT socket on the port, under a supervisor that restarts "
        "a worker that dies (default: %(default)s)",
    )
    serve.add_argument(
        "--timeout-keep-alive", type=_keep_alive, default=SERVER_LIMITS["timeout_keep_alive"], metavar="SECONDS",
        help="close a keep-alive connection idle this long; keep it above the idle timeout of any proxy or client "
        "pool in front (an AWS ALB: 60), or requests sent as it closes are lost (default: %(default)s)",
    )
    serve.add_argument("--worker-of", type=int, help=argparse.SUPPRESS)  # internal: run as a worker of this supervisor pid
    serve.set_defaults(func=_serve)

    for name, help_text in HARNESS_COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)  # parsed by pytest_guards: `fragrance-ai NAME --help`

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given and given[0] in HARNESS_COMMANDS:
        return _harness(given)
    args = build_parser().parse_args(given)
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
