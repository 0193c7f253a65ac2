"""Benchmark: the service per core on a real socket, driven by hey (compiled, so the client is not the bottleneck).

Each row starts uvicorn servers in subprocesses (``bench_apps`` factories), waits until they answer, runs
``hey`` against them for a bounded number of requests and a bounded time, and stops them. Rows:
  * full brief path, cache off, simulated models: ours vs a bare FastAPI endpoint doing the same backend call
    (ratio = throughput ours / anchor, goal >= 0.6);
  * cache-hit path vs the same anchor (goal >= 0.85);
  * ``--workers 2`` vs one worker, full path (goal >= 1.7 on two cores); on a 2-core machine hey takes a
    share of the same cores, so the same row also reports what does not depend on free cores: requests
    served per CPU-second of the server's processes (master and workers, from /proc), 2 workers / 1
    (goal >= 0.85, i.e. 1.7 / 2: a second worker costs no more CPU per request than the first);
  * p99 latency of the full path at a fixed offered load (ratio = p99 / 100 ms budget, informative).
Skipped, saying why, when hey is not installed (``scripts/install_hey.sh``, which ``make bench`` runs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HEY = ROOT / ".tools" / "bin" / "hey"
BODY = json.dumps({"prompt": "a fresh summer citrus scent for the office"})
QUICK_NUMBER = 300
CONCURRENCY = 32
START_TIMEOUT_S = 30.0
HEY_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds used so far by ``root`` and its descendants (Linux /proc; 0.0 elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = entry.read_text()
        except OSError:  # the process ended while we looked
            continue
        fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid ... utime(12) stime(13)
        stats[int(entry.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, todo = 0.0, [root]
    while todo:  # bounded: each pid is visited once (ppid links form a tree)
        pid = todo.pop()
        total += stats.get(pid, (0, 0.0))[1]
        todo.extend(child for child, (ppid, _) in stats.items() if ppid == pid)
    return total


@contextmanager
def _server(factory: str, workers: int = 1, pids: list[int] | None = None) -> Iterator[str]:
    """A uvicorn server for ``bench_apps:factory`` on a free loopback port, stopped on exit."""
    port = _free_port()
    cmd = [sys.executable, "-m", "uvicorn", f"bench_apps:{factory}", "--factory", "--port", str(port),
           "--workers", str(workers), "--log-level", "warning", "--no-access-log", "--app-dir", str(HERE)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if pids is not None:
        pids.append(proc.pid)
    url = f"http://127.0.0.1:{port}/v1/briefs"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # bounded by START_TIMEOUT_S
            try:
                request = urllib.request.Request(url, data=BODY.encode(), headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode()[-500:] if proc.stderr else ""
                    raise RuntimeError(f"{factory} did not start: {err}") from exc
                time.sleep(0.1)  # real time: waiting for a real server to bind
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _hey(url: str, number: int, *, rate: int = 0) -> dict[str, float]:
    """Run hey once; requests per second and latency percentiles (seconds). Fails on any non-200."""
    cmd = [str(HEY), "-n", str(number), "-c", str(CONCURRENCY), "-m", "POST", "-T", "application/json", "-d", BODY,
           "-t", "20"]
    if rate:
        cmd += ["-q", str(rate)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=HEY_TIMEOUT_S, check=True).stdout
    codes = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", out))
    if set(codes) != {"200"}:
        raise AssertionError(f"non-200 responses under load: {codes}\n{out[-800:]}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"\s99% in ([\d.]+) secs", out)
    if rps is None:
        raise AssertionError(f"cannot read hey's report:\n{out[-1500:]}")
    # hey prints no 99% line for a short run (a warm-up): nan, never read for one
    return {"rps": float(rps.group(1)), "p99": float(p99.group(1)) if p99 else float("nan")}


def _rps(factory: str, number: int, workers: int = 1) -> float:
    with _server(factory, workers) as url:
        _hey(url, max(number // 10, 2 * CONCURRENCY))  # warm-up
        return max(_hey(url, number)["rps"] for _ in range(3))


def _per_cpu(factory: str, number: int, workers: int) -> float:
    """Requests served per CPU-second of the server's process tree (best of 3 hey runs): throughput per core."""
    pids: list[int] = []
    best = 0.0
    with _server(factory, workers, pids) as url:
        _hey(url, max(number // 10, 2 * CONCURRENCY))  # warm-up
        for _ in range(3):
            before = _tree_cpu_seconds(pids[0])
            _hey(url, number)
            used = _tree_cpu_seconds(pids[0]) - before
            if used > 0:
                best = max(best, number / used)
    return best


def _row(name: str, ours: float, anchor: float, goal: str) -> dict[str, Any]:
    """Rows carry ns per request (1e9 / rps); ratio is throughput ours / anchor."""
    return {"name": name, "ours_ns": 1e9 / ours, "anchor_ns": 1e9 / anchor, "ratio": ours / anchor, "goal": goal}


def run(number: int | None = None) -> list[dict[str, Any]]:
    n = number or 3000
    if not HEY.exists() or shutil.which(str(HEY)) is None:
        print(f"# service load rows skipped: {HEY} missing (bash scripts/install_hey.sh)", flush=True)
        return []
    anchor = _rps("anchor", n)
    full = _rps("ours_full", n)
    cached = _rps("ours_cached", n)
    full_two = _rps("ours_full", n, workers=2)
    per_cpu_one = _per_cpu("ours_full", n, 1)
    per_cpu_two = _per_cpu("ours_full", n, 2)
    with _server("ours_full") as url:
        offered = max(int(full * 0.5) // CONCURRENCY, 1)  # half of one worker's capacity
        _hey(url, max(n // 10, 2 * CONCURRENCY))
        p99 = _hey(url, n, rate=offered)["p99"]
    return [
        _row("service full path, cache off (req/s)", full, anchor, ">= 0.6 (throughput vs bare FastAPI + same backend)"),
        _row("service cache hit (req/s)", cached, anchor, ">= 0.85 (throughput vs bare FastAPI + same backend)"),
        _row("service --workers 2 vs 1, full path", full_two, full, ">= 1.7 (throughput 2 workers / 1)"),
        _row("service --workers 2 vs 1, req per server CPU-s", per_cpu_two, per_cpu_one,
             ">= 0.85 (per-core efficiency; 1.7 / 2)"),
        {"name": f"service p99 at {offered * CONCURRENCY} req/s offered", "ours_ns": p99 * 1e9, "anchor_ns": 0.1e9,
         "ratio": p99 / 0.1, "goal": "informative (p99 / 100 ms)"},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
