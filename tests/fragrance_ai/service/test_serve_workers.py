"""``fragrance-ai serve --workers 2`` for real on 127.0.0.1: both workers serve, a killed one comes back, SIGTERM
stops everything; and the one-process fallback where SO_REUSEPORT is missing.

These tests use real time on purpose (processes starting and answering over TCP); every wait is bounded
and marked ``# real-time:``, every request loop bounded in count.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_support import fragrance_ai, free_port

from fragrance_ai import cli
from fragrance_ai.service import worker as worker_module
from fragrance_ai.service.worker import WORKER_PID_HEADER, reuseport_supported

pytestmark = pytest.mark.network

# real-time: bounds on processes starting, answering and stopping; a healthy run takes a few seconds
START_BOUND_S = 30.0
STOP_BOUND_S = 20.0
POLL_S = 0.05
CONNECTIONS = 12
REQUESTS_PER_CONNECTION = 5
BODY = {"prompt": "a fresh summer citrus scent"}


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended while we looked
            continue
        fields = text[text.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def two_workers(supervisor_pid: int, without: int = 0) -> set[int] | None:
    """The supervisor's two worker pids, once it has exactly two and ``without`` is not one of them."""
    kids = children(supervisor_pid)
    return kids if len(kids) == 2 and without not in kids else None


def wait_until(condition: Any, what: str, bound: float = START_BOUND_S) -> Any:
    """Poll ``condition()`` until it is truthy; its value. Fails naming ``what`` after ``bound`` seconds."""
    waiter = threading.Event()
    for _ in range(int(bound / POLL_S)):
        value = condition()
        if value:
            return value
        waiter.wait(POLL_S)  # real-time: waiting on real processes
    pytest.fail(f"{what} within {bound} s")


def answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/guards", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def served_by(port: int) -> Counter[int]:
    """Send CONNECTIONS x REQUESTS_PER_CONNECTION briefs, each connection its own client; requests per worker pid."""
    pids: Counter[int] = Counter()
    for _ in range(CONNECTIONS):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=START_BOUND_S) as client:
            for _ in range(REQUESTS_PER_CONNECTION):
                response = client.post("/v1/briefs", json=BODY)
                assert response.status_code == 200
                pids[int(response.headers[WORKER_PID_HEADER])] += 1
    return pids


@contextmanager
def supervisor(port: int) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [*fragrance_ai(), "serve", "--workers", "2", "--port", str(port), "--log-level", "info"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=STOP_BOUND_S)  # real-time: reaping a killed process


@pytest.mark.skipif(not reuseport_supported(), reason="SO_REUSEPORT is not available on this platform")
def test_two_workers_share_the_load_a_killed_one_is_restarted_and_sigterm_stops_all() -> None:
    port = free_port()  # a tiny race with other processes, acceptable in a test
    with supervisor(port) as process:
        wait_until(lambda: answers(port) or process.poll() is not None, "the service answered")
        assert process.poll() is None, process.communicate(timeout=STOP_BOUND_S)
        workers = wait_until(lambda: two_workers(process.pid), "two workers ran")

        pids: Counter[int] = Counter()
        for _ in range(3):  # the kernel hashes each connection: all 12 to one worker has odds 1 in 2,048 per round
            pids += served_by(port)
            if len(pids) == 2:
                break
        assert set(pids) == workers, f"requests per worker pid: {dict(pids)}; workers {workers}"  # both served
        assert sum(pids.values()) % (CONNECTIONS * REQUESTS_PER_CONNECTION) == 0

        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        replaced = wait_until(lambda: two_workers(process.pid, without=killed), "the killed worker was replaced")
        wait_until(lambda: len(set(served_by(port)) & (replaced - workers)) == 1, "the new worker served")

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=STOP_BOUND_S)  # real-time: the graceful stop of both workers
        took = time.monotonic() - started
    assert process.returncode == 0, stderr[-2000:]
    assert took < STOP_BOUND_S
    assert children(process.pid) == set()  # every worker is gone, none left behind
    assert f"worker 0 (pid {killed}) exited unexpectedly" in stderr or f"worker 1 (pid {killed}) exited unexpectedly" in stderr
    assert "restarting in 0.5 s" in stderr
    assert "stopped 2 worker(s)" in stderr
    assert "Traceback" not in stderr


@pytest.mark.skipif(not reuseport_supported(), reason="SO_REUSEPORT is not available on this platform")
def test_workers_that_cannot_start_stop_the_supervisor_with_exit_2() -> None:
    # the supervisor reads only the config; the admin tokens are read where the app is built: in each worker
    env = {**os.environ, "FRAGRANCE_ADMIN_TOKENS": "not-a-name-token-pair"}
    result = subprocess.run(
        [*fragrance_ai(), "serve", "--workers", "2", "--port", str(free_port())],
        capture_output=True, text=True, timeout=START_BOUND_S, env=env,  # real-time: two workers fail to start
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cannot start with" in result.stderr
    assert "cannot start (exit 2); stopping" in result.stderr
    assert "not-a-name-token-pair" not in result.stderr
    assert "Traceback" not in result.stderr


def test_without_so_reuseport_serve_falls_back_to_one_process_saying_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    runs: list[dict[str, Any]] = []
    monkeypatch.setattr(worker_module, "reuseport_supported", lambda: False)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: runs.append(kwargs))
    assert cli.main(["serve", "--workers", "2", "--port", "0"]) == 0
    assert len(runs) == 1
    assert runs[0]["port"] == 0
    err = capsys.readouterr().err
    assert "--workers 2 needs SO_REUSEPORT, which this platform does not offer; serving with one process" in err


@pytest.mark.parametrize(("value", "message"), [
    ("0", "expected a number of workers 1-64, found 0"), ("two", "expected a number of workers 1-64, found 'two'"),
])
def test_a_bad_workers_flag_exits_2_without_a_traceback(value: str, message: str) -> None:
    result = subprocess.run([*fragrance_ai(), "serve", "--workers", value], capture_output=True, text=True, timeout=START_BOUND_S)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not reuseport_supported(), reason="SO_REUSEPORT is not available on this platform")
def test_a_workers_connections_get_tcp_nodelay() -> None:
    """asyncio sets TCP_NODELAY on accepted connections only when the listening socket's proto is TCP; a
    socket made with proto 0 (as uvicorn's ``--workers`` makes it) leaves Nagle on, and a response written
    as head + body then waits for the client's delayed ACK: a 40 ms floor under every request."""
    import asyncio

    async def accepted_nodelay() -> int:
        listener = worker_module.bind_reuseport("127.0.0.1", 0, listen=True)
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connect, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            value = await asyncio.wait_for(seen, START_BOUND_S)  # real-time: one loopback connect
            writer.close()
        return value

    assert asyncio.run(accepted_nodelay()) != 0


@pytest.mark.parametrize(("argv", "expected"), [([], 5), (["--timeout-keep-alive", "75"], 75)])
def test_the_keep_alive_timeout_reaches_uvicorn(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: int
) -> None:
    """A proxy that keeps idle upstream connections longer than the service (an AWS ALB: 60 s) loses the
    requests it sends on a connection the service is closing; ``--timeout-keep-alive`` lets a team go above it."""
    import uvicorn

    runs: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: runs.append(kwargs))
    assert cli.main(["serve", "--port", "0", *argv]) == 0
    assert runs[0]["timeout_keep_alive"] == expected
    assert runs[0]["limit_concurrency"] == 512, "the other edge limits stay"


@pytest.mark.parametrize("value", ["0", "3601", "5s"])
def test_a_bad_keep_alive_flag_exits_2_without_a_traceback(value: str) -> None:
    result = subprocess.run(
        [*fragrance_ai(), "serve", "--timeout-keep-alive", value], capture_output=True, text=True, timeout=START_BOUND_S
    )
    assert result.returncode == 2
    assert "expected a number of seconds 1-3600" in result.stderr
    assert "Traceback" not in result.stderr
