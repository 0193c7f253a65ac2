"""``python -m pytest_guards.faults.fake_llm_server``: the fake OpenAI-compatible models as a standalone server.

For docker-compose and manual chaos runs: the same :class:`~pytest_guards.faults.FakeLLMServer`
the ``fake_llm_server`` fixture uses (routes ``POST /<model>/v1/chat/completions``,
``POST /v1/chat/completions``, ``GET /health``), scripted per model with ``--set MODEL=JSON`` in
the scenario files' behaviour syntax (default: valid briefs forever)::

    python -m pytest_guards.faults.fake_llm_server --host 0.0.0.0 --port 9000 --models qwen,mistral,llama
    python -m pytest_guards.faults.fake_llm_server --set 'qwen=[{"http_error": 503, "times": 3}, "valid"]'
    FAKE_LLM_CONTROL_TOKEN=s3cret python -m pytest_guards.faults.fake_llm_server   # + the control plane

FakeLLMServer itself only ever listens on 127.0.0.1 (a test double must not be reachable from the
network by accident), so this command runs it there and relays ``--host:--port`` to it byte for
byte; a dropped connection is passed on as a reset. Every call is logged in memory like in a test:
a model's log (and its script) starts over after ``--max-log`` calls, so a long run stays small.

What this module must not do: run anything at import (only :func:`main` starts servers), or block
shutdown (SIGINT and SIGTERM stop it within a few seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence

from pytest_guards.faults._behaviours import BehaviourError
from pytest_guards.faults._control import CONTROL_TOKEN_ENV
from pytest_guards.faults._fake_server import FakeLLMServer
from pytest_guards.faults._format import parse_behaviours

__all__ = ["main", "relay"]

DEFAULT_MODELS = ("qwen", "mistral", "llama")
_CHUNK = 65536
#: how often the call logs are checked against --max-log (seconds)
_TRIM_EVERY = 10.0
#: how long stopping waits for the relays of aborted connections to end (seconds)
_STOP_GRACE = 5.0


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, other: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until EOF (then half-close), or reset ``other`` too when the connection breaks."""
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        # a reset on one side is a reset on the other: the client must see the drop, not a clean close
        writer.transport.abort()
        other.transport.abort()


async def relay(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    port: int,
    open_writers: set[asyncio.StreamWriter] | None = None,
) -> None:
    """Relay one client connection to 127.0.0.1:``port`` both ways until both sides are done.

    ``open_writers`` holds both ends while the relay runs, so that a stopping server can abort them
    (a keep-alive client would otherwise hold the relay open until it is cancelled mid-read).
    """
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        client_writer.transport.abort()
        return
    ends = {client_writer, upstream_writer}
    if open_writers is not None:
        open_writers |= ends
    try:
        await asyncio.gather(
            _pipe(client_reader, upstream_writer, client_writer),
            _pipe(upstream_reader, client_writer, upstream_writer),
        )
    finally:
        for writer in (client_writer, upstream_writer):
            writer.close()
        if open_writers is not None:
            open_writers -= ends


def _scripts(pairs: Sequence[str], models: Sequence[str]) -> dict[str, object]:
    scripts: dict[str, object] = {}
    for pair in pairs:
        model, sep, text = pair.partition("=")
        if not sep or model not in models:
            raise ValueError(f"--set expects MODEL=JSON with MODEL one of {', '.join(models)}, found {pair!r}")
        try:
            data = json.loads(text)
        except ValueError:
            data = text  # a bare behaviour name: --set qwen=timeout
        parse_behaviours(data, f"--set {model}")  # every problem now, with where it is
        scripts[model] = data
    return scripts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_guards.faults.fake_llm_server",
        description="Fake OpenAI-compatible LLMs (scripted behaviours) on a real socket.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=9000, help="TCP port (default: %(default)s)")
    parser.add_argument(
        "--models", default=",".join(DEFAULT_MODELS), help="comma-separated model names (default: %(default)s)"
    )
    parser.add_argument(
        "--set", dest="scripts", action="append", default=[], metavar="MODEL=JSON",
        help='a model\'s script, e.g. qwen=\'[{"http_error": 503, "times": 2}, "valid"]\' (repeatable)',
    )
    parser.add_argument("--max-hold", type=float, default=30.0, help="longest a `timeout` behaviour holds a request (s)")
    parser.add_argument("--max-log", type=int, default=10000, help="calls logged per model before its log starts over")
    parser.add_argument(
        "--control-token",
        default=os.environ.get(CONTROL_TOKEN_ENV) or None,
        help=f"serve the control plane under /_control, requiring this bearer token (default: ${CONTROL_TOKEN_ENV}; "
        "without one there is no control plane)",
    )
    return parser


async def _serve(args: argparse.Namespace, server: FakeLLMServer, scripts: dict[str, object]) -> None:
    assert server.port is not None
    upstream = server.port
    open_writers: set[asyncio.StreamWriter] = set()
    relays: set[asyncio.Task[None]] = set()

    async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        relays.add(task)
        try:
            await relay(reader, writer, upstream, open_writers)
        finally:
            relays.discard(task)

    listener = await asyncio.start_server(serve_one, args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    control = "; control plane: /_control (bearer token)" if args.control_token else ""
    print(
        f"fake LLM server: {', '.join(server.models)} on http://{args.host}:{args.port}/<model>/v1 "
        f"(health: /health{control}); Ctrl-C stops",
        flush=True,
    )
    async with listener:
        while not stop.is_set():
            # real-time: a long-running server checks its call logs now and then
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _TRIM_EVERY)
            for model in server.models:
                if server.call_count(model) > args.max_log:
                    server.set(model, scripts.get(model, "valid"))
        # stop accepting, drop every open connection (keep-alive clients too) and let each relay end on its
        # own: a relay cancelled by asyncio.run's cleanup would print a CancelledError traceback
        listener.close()
        for writer in list(open_writers):
            writer.transport.abort()
        if relays:
            await asyncio.wait(set(relays), timeout=_STOP_GRACE)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        if not models:
            raise ValueError("--models names no model")
        if args.max_log < 1:
            raise ValueError(f"--max-log must be >= 1, found {args.max_log}")
        scripts = _scripts(args.scripts, models)
        server = FakeLLMServer(models, max_hold=args.max_hold, control_token=args.control_token)
    except (ValueError, BehaviourError) as exc:
        print(f"fake_llm_server: {exc}", file=sys.stderr)
        return 2
    for model, data in scripts.items():
        server.set(model, data)
    server.start()
    try:
        asyncio.run(_serve(args, server, scripts))
    except OSError as exc:
        print(f"fake_llm_server: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
