"""``make load``: the hostile HTTP corpus against ``fragrance-ai serve`` on a free 127.0.0.1 port, one line per case.

Starts the real command (with its uvicorn limits), runs every case of
``tests/fragrance_ai/service/http_corpus.json`` ``--rounds`` times (bounded: at most 10 rounds, and
``--budget`` seconds in all), prints each result and exits 1 if any case got the wrong status, took
longer than its bound or echoed its input; then stops the server.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fragrance_ai" / "service"))
from http_corpus import load_corpus, run_case


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_up(url: str, process: subprocess.Popen[bytes], limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"fragrance-ai serve exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health/guards", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # real-time: waiting for a real process to listen
    raise SystemExit(f"fragrance-ai serve did not answer within {limit:.0f} s")


async def _run(url: str, rounds: int, budget: float) -> int:
    cases = load_corpus()
    failures = 0
    async with httpx.AsyncClient(base_url=url, timeout=10) as client, asyncio.timeout(budget):
        for round_ in range(1, rounds + 1):
            for case in cases:
                result = await run_case(client, case)
                failures += not result.ok
                print(f"[{round_}] {result.line()}", flush=True)
    print(f"{rounds * len(cases)} requests, {len(cases)} cases, {failures} failure(s)")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, choices=range(1, 11), metavar="1-10")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds for the whole run (default: %(default)s)")
    args = parser.parse_args()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    serve = [str(Path(sys.executable).with_name("fragrance-ai")), "serve", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(serve)
    try:
        _wait_until_up(url, process)
        return asyncio.run(_run(url, args.rounds, args.budget))
    except TimeoutError:
        print(f"the run took longer than --budget {args.budget:.0f} s", file=sys.stderr)
        return 1
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


if __name__ == "__main__":
    sys.exit(main())
