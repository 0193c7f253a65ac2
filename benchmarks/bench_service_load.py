"""Benchmark: the service per core on a real socket, driven by hey (compiled, so the client is not the bottleneck).

Each row starts uvicorn servers in subprocesses (``bench_apps`` factories), waits until they answer, runs
``hey`` against them for a bounded number of requests and a bounded time, and stops them. Rows:
  * full brief path, cache off, simulated models: ours vs a bare FastAPI endpoint doing the same backend call
    (ratio = throughput ours / anchor, goal >= 0.6);
  * cache-hit path vs the same anchor (goal >= 0.85);
  * ``fragrance-ai serve --workers 2`` vs ``fragrance-ai serve`` (one process), full path, both started through
    the command (goal >= 1.7 on two cores); on a 2-core machine hey takes a share of the same cores, so the
    same row also reports what does not depend on free cores: requests served per CPU-second of the
    server's processes (supervisor and workers, from /proc), 2 workers / 1 (goal >= 0.85, i.e. 1.7 / 2: a
    second worker costs no more CPU per request than the first). Both servers run side by side and the hey
    runs alternate between them (best of WORKER_ROUNDS each), so both see the same background load; ``#``
    lines show the paired ratios per round and how each server takes one more run: CPU seconds per
    process, connections per worker, hey's own CPU, the rest of the machine's;
  * p99 latency of the full path at a fixed offered load (ratio = p99 / 100 ms budget, informative).
Skipped, saying why, when hey is not installed (``scripts/install_hey.sh``, which ``make bench`` runs).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HEY = ROOT / ".tools" / "bin" / "hey"
#: ``fragrance-ai serve``'s config for the full path: the reference with the cache off
FULL_PATH_CONFIG = "cache:\n  enabled: false\n"
SAMPLE_S = 0.25
#: alternating hey runs per server in the --workers rows
WORKER_ROUNDS = 5
BODY = json.dumps({"prompt": "a fresh summer citrus scent for the office"})
QUICK_NUMBER = 300
CONCURRENCY = 32
START_TIMEOUT_S = 30.0
HEY_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _proc_stats() -> dict[int, tuple[int, float]]:
    """Every process's (parent pid, user + system CPU seconds so far) (Linux /proc; empty elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = entry.read_text()
        except OSError:  # the process ended while we looked
            continue
        fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid ... utime(12) stime(13)
        stats[int(entry.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return stats


def _tree(root: int, stats: dict[int, tuple[int, float]]) -> list[int]:
    """``root`` and its descendants in ``stats``."""
    found, todo = [], [root]
    while todo:  # bounded: each pid is visited once (ppid links form a tree)
        pid = todo.pop()
        found.append(pid)
        todo.extend(child for child, (ppid, _) in stats.items() if ppid == pid)
    return found


def _tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds used so far by ``root`` and its descendants (Linux /proc; 0.0 elsewhere)."""
    stats = _proc_stats()
    return sum(stats.get(pid, (0, 0.0))[1] for pid in _tree(root, stats))


def _machine_cpu() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of the whole machine so far, all cores (Linux /proc/stat; zeros elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _switches(pids: Sequence[int]) -> tuple[int, int]:
    """(voluntary, involuntary) context switches so far of ``pids`` and all their threads (Linux /proc)."""
    voluntary = involuntary = 0
    for pid in pids:
        for status in Path(f"/proc/{pid}/task").glob("*/status"):
            try:
                text = status.read_text()
            except OSError:  # ended while we looked
                continue
            for line in text.splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    involuntary += int(line.split()[1])
    return voluntary, involuntary


def _connections(port: int, pids: Sequence[int]) -> dict[int, int]:
    """Established TCP connections on local ``port`` held by each of ``pids`` (Linux /proc)."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:  # ended, or not ours to read
            continue
    counts = dict.fromkeys(pids, 0)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()  # sl local rem st ... uid timeout inode
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01" and fields[9] in inodes:
                counts[inodes[fields[9]]] += 1
    return counts


def _uvicorn(factory: str, port: int, workers: int) -> list[str]:
    """uvicorn serving ``bench_apps:factory`` (its own ``--workers``: one shared socket)."""
    return [sys.executable, "-m", "uvicorn", f"bench_apps:{factory}", "--factory", "--port", str(port),
            "--workers", str(workers), "--log-level", "warning", "--no-access-log", "--app-dir", str(HERE)]


def _fragrance_serve(config: Path, port: int, workers: int) -> list[str]:
    """``fragrance-ai serve`` as users run it, with ``config`` (``--workers`` > 1: a socket per worker)."""
    return [sys.executable, "-m", "fragrance_ai.cli", "serve", "--config", str(config), "--port", str(port),
            "--workers", str(workers), "--log-level", "warning"]


@contextmanager
def _full_path_config() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as folder:
        path = Path(folder) / "full_path.yaml"
        path.write_text(FULL_PATH_CONFIG, encoding="utf-8")
        yield path


@contextmanager
def _server(factory: str, workers: int = 1, pids: list[int] | None = None, *, config: Path | None = None) -> Iterator[str]:
    """A server on a free loopback port, stopped on exit: ``bench_apps:factory`` on uvicorn, or with ``config``
    ``fragrance-ai serve --config config`` (``factory`` then only names it in errors)."""
    port = _free_port()
    cmd = _uvicorn(factory, port, workers) if config is None else _fragrance_serve(config, port, workers)
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
        if workers > 1:  # every worker up, not only the first to answer
            while len(_tree(proc.pid, _proc_stats())) < workers + 1 and time.monotonic() < deadline:
                time.sleep(0.1)  # real time: waiting for the other workers to start
            time.sleep(1.0)  # real time: the last worker's import and bind
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _hey_command(url: str, number: int, rate: int = 0) -> list[str]:
    cmd = [str(HEY), "-n", str(number), "-c", str(CONCURRENCY), "-m", "POST", "-T", "application/json", "-d", BODY,
           "-t", "20"]
    return [*cmd, "-q", str(rate), url] if rate else [*cmd, url]


def _hey_report(out: str) -> dict[str, float]:
    """Requests per second and p99 (seconds) from hey's report. Fails on any non-200."""
    codes = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", out))
    if set(codes) != {"200"}:
        raise AssertionError(f"non-200 responses under load: {codes}\n{out[-800:]}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"\s99% in ([\d.]+) secs", out)
    if rps is None:
        raise AssertionError(f"cannot read hey's report:\n{out[-1500:]}")
    # hey prints no 99% line for a short run (a warm-up): nan, never read for one
    return {"rps": float(rps.group(1)), "p99": float(p99.group(1)) if p99 else float("nan")}


def _hey(url: str, number: int, *, rate: int = 0) -> dict[str, float]:
    """Run hey once; requests per second and latency percentiles (seconds). Fails on any non-200."""
    out = subprocess.run(_hey_command(url, number, rate), capture_output=True, text=True, timeout=HEY_TIMEOUT_S,
                         check=True).stdout
    return _hey_report(out)


def _rps(factory: str, number: int, workers: int = 1) -> float:
    with _server(factory, workers) as url:
        _hey(url, max(number // 10, 2 * CONCURRENCY))  # warm-up
        return max(_hey(url, number)["rps"] for _ in range(3))


def split(url: str, root: int, number: int, workers: int) -> str:
    """How the server at ``url`` (process tree ``root``) takes one hey run: CPU seconds per process, connections
    per worker, hey's own CPU, the rest of the machine's and the host's steal."""
    port = int(url.split(":")[2].split("/")[0])
    stats = _proc_stats()
    tree = _tree(root, stats)
    before = {pid: stats.get(pid, (0, 0.0))[1] for pid in tree}
    hey_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    machine_before = _machine_cpu()
    switches_before = _switches(tree)
    started = time.monotonic()
    hey = subprocess.Popen(_hey_command(url, number), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    connections: dict[int, int] = {}
    while hey.poll() is None and time.monotonic() - started < HEY_TIMEOUT_S:  # bounded by HEY_TIMEOUT_S
        sample = _connections(port, tree)
        if sum(sample.values()) > sum(connections.values()):
            connections = sample
        time.sleep(SAMPLE_S)  # real time: sampling a real run
    out, _ = hey.communicate(timeout=HEY_TIMEOUT_S)
    wall = time.monotonic() - started
    machine_after = _machine_cpu()
    switches = [after - before for after, before in zip(_switches(tree), switches_before, strict=True)]
    hey_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stats = _proc_stats()
    rps = _hey_report(out)["rps"]
    cpu = {pid: stats.get(pid, (0, 0.0))[1] - before[pid] for pid in tree}
    hey_cpu = (hey_after.ru_utime + hey_after.ru_stime) - (hey_before.ru_utime + hey_before.ru_stime)
    parts = [f"{'supervisor' if pid == root and workers > 1 else 'worker'} {pid}: {cpu[pid]:.2f} s CPU, "
             f"{connections.get(pid, 0)} conn" for pid in tree]
    server = sum(cpu.values())
    busy, stolen = (after - before for after, before in zip(machine_after, machine_before, strict=True))
    others = busy - server - hey_cpu
    return (f"# serve --workers {workers}: {number} requests in {wall:.2f} s ({rps:.0f} req/s); "
            f"{'; '.join(parts)}; server {server:.2f} s = {server / wall:.2f} cores, hey {hey_cpu:.2f} s = "
            f"{hey_cpu / wall:.2f} cores, everything else {others / wall:.2f} cores, stolen by the host "
            f"{stolen / wall:.2f} cores; {server / number * 1e3:.2f} ms server CPU per request; context switches "
            f"per request {switches[0] / number:.2f} voluntary, {switches[1] / number:.2f} involuntary; "
            f"load average {os.getloadavg()[0]:.2f}")


def _measured(url: str, root: int, number: int) -> tuple[float, float]:
    """One hey run: (requests per second, requests per CPU-second of the server's process tree)."""
    before = _tree_cpu_seconds(root)
    rps = _hey(url, number)["rps"]
    used = _tree_cpu_seconds(root) - before
    return rps, number / used if used > 0 else 0.0


def workers_rows(n: int, rounds: int = WORKER_ROUNDS) -> list[dict[str, Any]]:
    """``fragrance-ai serve --workers 2`` vs ``fragrance-ai serve``, full path: throughput and per CPU-second.

    Both servers run side by side (an idle one costs nothing) and the hey runs alternate between them,
    so both see the same background load; best of ``rounds`` each, the paired ratios printed too.
    """
    with _full_path_config() as config, ExitStack() as stack:  # both through `fragrance-ai serve`: the same server
        roots: dict[int, list[int]] = {1: [], 2: []}
        urls = {count: stack.enter_context(_server("serve", count, roots[count], config=config)) for count in (1, 2)}
        for url in urls.values():
            _hey(url, max(n // 10, 2 * CONCURRENCY))  # warm-up
        runs: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
        for _ in range(rounds):
            for count in (1, 2):
                runs[count].append(_measured(urls[count], roots[count][0], n))
        for count in (1, 2):
            print(split(urls[count], roots[count][0], n, count), flush=True)
    paired = [f"{two[0] / one[0]:.2f}/{two[1] / one[1]:.2f}" for one, two in zip(runs[1], runs[2], strict=True)]
    print(f"# serve --workers 2 / 1 per round (throughput/per CPU-s): {', '.join(paired)}", flush=True)
    best = {count: (max(r[0] for r in runs[count]), max(r[1] for r in runs[count])) for count in (1, 2)}
    return [
        _row("serve --workers 2 vs 1, full path", best[2][0], best[1][0], ">= 1.7 (throughput 2 workers / 1)"),
        _row("serve --workers 2 vs 1, req per server CPU-s", best[2][1], best[1][1],
             ">= 0.85 (per-core efficiency; 1.7 / 2)"),
    ]


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
    workers = workers_rows(n)
    with _server("ours_full") as url:
        offered = max(int(full * 0.5) // CONCURRENCY, 1)  # half of one worker's capacity
        _hey(url, max(n // 10, 2 * CONCURRENCY))
        p99 = _hey(url, n, rate=offered)["p99"]
    return [
        _row("service full path, cache off (req/s)", full, anchor, ">= 0.6 (throughput vs bare FastAPI + same backend)"),
        _row("service cache hit (req/s)", cached, anchor, ">= 0.85 (throughput vs bare FastAPI + same backend)"),
        *workers,
        {"name": f"service p99 at {offered * CONCURRENCY} req/s offered", "ours_ns": p99 * 1e9, "anchor_ns": 0.1e9,
         "ratio": p99 / 0.1, "goal": "informative (p99 / 100 ms)"},
    ]


if __name__ == "__main__":  # `python benchmarks/bench_service_load.py [--workers-only] [N]`
    only_workers = "--workers-only" in sys.argv
    given = [int(arg) for arg in sys.argv[1:] if arg.isdigit()]
    for row in (workers_rows(given[0] if given else 3000) if only_workers else run(given[0] if given else None)):
        print(row)
