"""The ``fragrance-ai`` command: check a config, serve the API, verify guards before promotion.

Bad input (a broken config, a bad flag) ends in a clear message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import yaml

from fragrance_ai.config_loader import ConfigError, find_config_path, load_config

__all__ = ["main"]


def _check_config(args: argparse.Namespace) -> int:
    path = find_config_path(args.path)
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"{len(exc.issues)} error(s) in {path}:", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return 2
    print(f"# effective settings of {path}")
    print(yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True), end="")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from fragrance_ai.service.app import create_app

    try:
        config = load_config(find_config_path(args.config))
    except ConfigError as exc:
        print(f"cannot start: {len(exc.issues)} config error(s):", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return 2
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fragrance-ai", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check-config", help="validate a config file and print its effective settings")
    check.add_argument("path", nargs="?", help="config file (default: the usual search order)")
    check.set_defaults(func=_check_config)

    serve = sub.add_parser("serve", help="run the FastAPI service on uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--config", help="config file (default: the usual search order)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=_serve)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
