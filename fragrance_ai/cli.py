"""The ``fragrance-ai`` command: check a config, serve the API, verify guards before promotion.

Bad input (a broken config, a bad flag) ends in a clear message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import yaml

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
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
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


def _default_scenarios() -> Path:
    local = Path("scenarios")
    if local.is_dir():
        return local
    return Path(__file__).resolve().parent.parent / "scenarios"


def _verify(args: argparse.Namespace) -> int:
    """Run the checklist scenarios (in-process, or live against --target) and exit 0 only when safe."""
    config_path = find_config_path(args.config)
    if _load_or_report(config_path, "{count} error(s) in {path}:", sys.stdout) is None:
        print("=" * 38)
        print("✗ DO NOT PROMOTE (the config under test is invalid)")
        return 1
    scenarios = Path(args.scenarios) if args.scenarios else _default_scenarios()
    if not scenarios.exists():
        print(f"no scenarios at {scenarios}; pass --scenarios DIR")
        print("✗ DO NOT PROMOTE (nothing was verified)")
        return 1
    with tempfile.TemporaryDirectory(prefix="guards-verify-") as tmp:
        report = Path(tmp) / "report.json"
        command = [
            sys.executable, "-m", "pytest", str(scenarios), "-p", "no:cacheprovider", "-q",
            "--guards-config", str(config_path.resolve()), "--guards-report", str(report),
        ]
        if args.target:
            command += ["--guards-target", args.target]
        command += list(args.pytest_args)
        print(f"$ fragrance-ai verify: {' '.join(command[1:])}", flush=True)
        completed = subprocess.run(command, check=False)
        if not report.exists():
            print(f"✗ DO NOT PROMOTE (the scenario run ended with exit code {completed.returncode} and no verdict)")
            return 1
        verdict = json.loads(report.read_text(encoding="utf-8"))
    return 0 if verdict.get("safe") and completed.returncode == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fragrance-ai", description=__doc__.splitlines()[0] if __doc__ else None)
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

    verify = sub.add_parser(
        "verify", help="run the checklist scenarios and print the verdict (exit 0: safe to promote, 1: not)"
    )
    verify.add_argument("--config", help="config under test (default: the usual search order)")
    verify.add_argument("--target", help="URL of a running service: run the live scenarios against it")
    verify.add_argument("--scenarios", help="scenario directory (default: ./scenarios, else the project's)")
    verify.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    verify.set_defaults(func=_verify)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
