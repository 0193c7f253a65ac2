"""The ``fragrance-ai`` command: check a config, serve the API, verify guards before promotion.

Bad input (a broken config, a bad flag) ends in a clear message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
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
#: a setting; an idle keep-alive connection closed after 5 s; at most 16 KiB of request line and headers
#: (a longer head is refused with 400); at most 512 connections and requests at once (then 503); 10 s to
#: finish requests on shutdown. A body that stalls is the app's BodyLimit's (408 after 10 s).
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
    import uvicorn

    from fragrance_ai.service.app import create_app

    path = find_config_path(args.config)
    config = _load_or_report(path, "cannot start: {count} config error(s) in {path}:", sys.stderr)
    if config is None:
        return 2
    try:
        app = create_app(config)
    except ValueError as exc:  # a setting the loader accepts but a backend refuses (say, an ftp:// base_url)
        print(f"cannot start with {path}: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, **SERVER_LIMITS)
    return 0


def _port(text: str) -> int:
    """An argparse type: a TCP port number 0-65535 (0 lets the OS pick one)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, found {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, found {port}")
    return port


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
