"""``make load``'s bounded load benchmark: briefs through ``fragrance-ai serve`` while every model fails at random.

Starts the fake LLM server (every model failing ``--fault-rate`` of its calls at random with HTTP 503,
seeded) and ``fragrance-ai serve`` with a config whose models are OpenAI-compatible backends on that
server, both on free 127.0.0.1 ports; sends ``--briefs`` distinct briefs (distinct so the cache cannot
hide the models) with ``--concurrency`` clients, ``--rounds`` times; prints per round the fallback rate,
p50/p99 latency, 5xx and other non-200 counts, and the service's RSS before the first round and after
each. Stops by itself: every request has a 30 s timeout and the whole run ``--budget`` seconds; both
processes are stopped at the end. Exit 1 when a goal is missed (fallback rate >= 2%, any 5xx).

The client is this bounded Python one, not ``hey``: every brief needs its own prompt (hey sends one
body, which after the first answer is a cache hit) and the answer's ``source`` must be read to count
fallbacks (hey reads only status codes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

MODELS = ("qwen", "mistral", "llama")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_up(url: str, process: subprocess.Popen[bytes], what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # real-time: waiting for a real process to listen
    raise SystemExit(f"{what} did not answer within {limit:.0f} s")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _config(fake_port: int) -> str:
    models = {
        m: {"backend": "openai", "model_id": m, "base_url": f"http://127.0.0.1:{fake_port}/{m}/v1", "timeout": 10}
        for m in MODELS
    }
    return json.dumps({"llm": {"models": models}})  # JSON is YAML


def _chain(exc: BaseException) -> str:
    """``ReadError <- BrokenResourceError <- ConnectionResetError: [Errno 104] ...``: the exception and its causes."""
    names: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(names) < 6:
        names.append(type(seen).__name__ + (f": {seen}" if str(seen) else ""))
        seen = seen.__cause__ or seen.__context__
    return " <- ".join(names)


async def _round(url: str, round_no: int, briefs: int, concurrency: int) -> dict[str, object]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    sources: Counter[str] = Counter()
    failures: Counter[str] = Counter()  # requests with no answer, by the client's exception (and its cause)
    unanswered_at: list[float] = []  # when, in seconds from the round's start
    round_started = time.perf_counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(briefs):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0)

    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                body = {"prompt": f"round {round_no} brief {i}: a citrus scent with vetiver"}
                started = time.perf_counter()
                try:
                    response = await client.post("/v1/briefs", json=body)
                except httpx.HTTPError as exc:
                    statuses[0] += 1  # no answer at all
                    failures[_chain(exc)] += 1
                    unanswered_at.append(round(time.perf_counter() - round_started, 1))
                    continue
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    sources[str(response.json().get("source"))] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {
        "briefs": briefs,
        "seconds": round(elapsed, 1),
        "per_second": round(briefs / elapsed, 1),
        "fallback_rate": sources["fallback"] / briefs,
        "sources": dict(sources),
        "p50_ms": round(pct(0.50), 1),
        "p99_ms": round(pct(0.99), 1),
        "status_5xx": sum(n for s, n in statuses.items() if s >= 500),
        "no_answer": statuses[0],
        "no_answer_kinds": dict(failures),
        "no_answer_at_s": unanswered_at,
        "other_non_200": sum(n for s, n in statuses.items() if s not in (0, 200) and s < 500),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--briefs", type=int, default=10_000, choices=range(1, 100_001), metavar="1-100000")
    parser.add_argument("--concurrency", type=int, default=50, choices=range(1, 501), metavar="1-500")
    parser.add_argument("--fault-rate", type=float, default=0.2, help="share of each model's calls failing (503)")
    parser.add_argument("--rounds", type=int, default=2, choices=range(1, 6), metavar="1-5")
    parser.add_argument("--budget", type=float, default=900.0, help="seconds for the whole run (default: %(default)s)")
    parser.add_argument("--config-extra", default="", help="a YAML file merged under the load config (e.g. today's breaker)")
    args = parser.parse_args()
    if not 0 <= args.fault_rate <= 1:
        parser.error("--fault-rate must be from 0 to 1")
    bin_dir = Path(sys.executable).parent
    fake_port, port = _free_port(), _free_port()
    fake_cmd = [sys.executable, "-m", "pytest_guards.faults.fake_llm_server", "--port", str(fake_port), "--max-hold", "5"]
    for seed, model in enumerate(MODELS, start=1):
        behaviour = {"flaky": {"http_error": 503}, "probability": args.fault_rate, "seed": seed}
        fake_cmd += ["--set", f"{model}={json.dumps(behaviour)}"]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "load.yaml"
        text = _config(fake_port)
        if args.config_extra:
            import yaml  # a dependency of the service

            merged = json.loads(text) | yaml.safe_load(Path(args.config_extra).read_text(encoding="utf-8"))
            text = json.dumps(merged)
        config.write_text(text, encoding="utf-8")
        serve_cmd = [str(bin_dir / "fragrance-ai"), "serve", "--port", str(port), "--log-level", "error", "--config", str(config)]
        fake = subprocess.Popen(fake_cmd, stdout=subprocess.DEVNULL)
        serve = subprocess.Popen(serve_cmd)
        code = 1
        try:
            _wait_until_up(f"http://127.0.0.1:{fake_port}/health", fake, "the fake LLM server")
            url = f"http://127.0.0.1:{port}"
            _wait_until_up(f"{url}/health/guards", serve, "fragrance-ai serve")
            code = asyncio.run(_run(url, serve.pid, args))
        except TimeoutError:
            print(f"the run took longer than --budget {args.budget:.0f} s", file=sys.stderr)
        finally:
            for process in (serve, fake):
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
    return code


async def _run(url: str, pid: int, args: argparse.Namespace) -> int:
    print(f"load: {args.briefs} briefs x {args.rounds} rounds, concurrency {args.concurrency}, "
          f"{args.fault_rate:.0%} random 503s per model; service RSS before: {_rss_mib(pid):.1f} MiB", flush=True)
    missed = 0
    async with asyncio.timeout(args.budget):
        for round_no in range(1, args.rounds + 1):
            result = await _round(url, round_no, args.briefs, args.concurrency)
            result["rss_after_mib"] = round(_rss_mib(pid), 1)
            print(f"round {round_no}: {json.dumps(result)}", flush=True)
            missed += result["fallback_rate"] >= 0.02 or result["status_5xx"] > 0  # type: ignore[operator]
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        states = (await client.get("/health/guards")).json()
    print(f"after: breakers {states.get('breakers', states.get('circuit_breaker', '?'))}")
    print("goals (fallback < 2%, no 5xx):", "met" if not missed else f"missed in {missed} round(s)")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
