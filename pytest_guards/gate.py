"""``fragrance-ai gate --port P ...``: the verdict as an HTTP endpoint, for Argo Rollouts and Flagger.

Every ``GET /`` (or ``POST /``, as a Flagger webhook sends) runs one ``verify`` with the options the gate
was started with, in a child process (a run shares nothing with the last one), and answers with the
JSON report as the body:

- 200 SAFE TO PROMOTE;
- 412 DO NOT PROMOTE (a precondition of promotion failed);
- 503 INCONCLUSIVE (the harness could not judge: target or control plane unreachable), or the run
  could not finish within ``--run-timeout``;
- 429 with ``Retry-After`` while another run is in progress: runs are never concurrent (a second fault
  suite against the same canary would break the first one's expectations), so a caller retries.

``GET /healthz`` answers 200 without running anything. The gate listens on 127.0.0.1 unless
``--host`` says otherwise.

What this module must not do: run two verifies at once, block a request beyond the run timeout, or put
the control token in a report body (the child gets it through its environment).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

__all__ = ["GATE_STATUS", "GateServer", "Outcome", "run_verify"]

#: HTTP status per ``verify`` exit code: 0 safe, 1 not safe, 2 inconclusive (or a usage mistake)
GATE_STATUS: Final = {0: 200, 1: 412, 2: 503}
#: seconds a caller is told to wait when a run is already in progress
_RETRY_AFTER: Final = 30
#: the most of a run's output a body carries when it wrote no report (its last lines)
_TAIL_LINES: Final = 5

#: (exit code, JSON report) of one run
Outcome = tuple[int, dict[str, Any]]


def run_verify(verify_args: Sequence[str], timeout: float, env: dict[str, str] | None = None) -> Outcome:
    """``python -m pytest_guards verify ARGS --report FILE`` in a child process; its exit code and report."""
    with tempfile.TemporaryDirectory(prefix="guards-gate-") as tmp:
        report = Path(tmp) / "report.json"
        # --report first: anything after a "--" in verify_args is pytest's
        command = [sys.executable, "-m", "pytest_guards", "verify", "--report", str(report), *verify_args]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        except subprocess.TimeoutExpired:
            return 2, {"verdict": "INCONCLUSIVE", "reasons": [f"the verify run did not finish within {timeout:.0f} s"]}
        if report.is_file():
            body: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
            return done.returncode, body
        # no report: the run stopped before any scenario (an unreachable target, a usage mistake)
        lines = (done.stdout + "\n" + done.stderr).splitlines()
        tail = [line for line in lines if line.strip("= ") and not line.startswith("usage:")][-_TAIL_LINES:]
        word = "INCONCLUSIVE" if done.returncode == 2 and any("INCONCLUSIVE" in line for line in tail) else "ERROR"
        return done.returncode, {"verdict": word, "reasons": tail}


class _Handler(BaseHTTPRequestHandler):
    server: GateServer

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/healthz":
            self._answer(200, {"status": "ok"})
        elif self.path.split("?")[0] == "/":
            self._run()
        else:
            self._answer(404, {"error": "not_found", "message": "GET / runs the verdict; GET /healthz is liveness"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= 65536:
            self.rfile.read(length)  # a Flagger webhook's payload: not needed, read so the connection stays sane
        if self.path.split("?")[0] == "/":
            self._run()
        else:
            self._answer(404, {"error": "not_found", "message": "POST / runs the verdict"})

    def _run(self) -> None:
        gate = self.server
        if not gate.busy.acquire(blocking=False):
            self._answer(429, {"error": "busy", "message": "a verify run is in progress; retry later"},
                         {"Retry-After": str(_RETRY_AFTER)})
            return
        try:
            code, body = gate.runner()
        finally:
            gate.busy.release()
        body = {**body, "exit_code": code}
        self._answer(GATE_STATUS.get(code, 503), body)

    def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"gate: {self.address_string()} {format % args}\n")


class GateServer(ThreadingHTTPServer):
    """The gate on ``host:port`` (port 0: any free one, see :attr:`port`); ``runner`` gives one run's outcome."""

    daemon_threads = True

    def __init__(self, runner: Callable[[], Outcome], host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.runner = runner
        self.busy = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])
