"""A real redis-server for the shared-state tests and replica scenarios: started on a free loopback port.

:class:`RedisServer` runs ``redis-server`` (found like every other tool: ``.tools/bin``, the user tools
dir, ``PATH``; ``fragrance-ai install-tools redis-server`` installs it) with no persistence, on
127.0.0.1 only, and can be stopped and started again on the same port to test what the guards do while
Redis is lost. Each test takes its own key prefix (:meth:`RedisServer.new_prefix`), so one server
serves a whole session.

What this module must not do: listen anywhere but 127.0.0.1, persist anything to disk, wait unboundedly
(start and stop are bounded; the waits are real time, as a real process needs), or leave a process behind.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Final

from pytest_guards.network._loopback import HOST
from pytest_guards.tools import find_tool, install_command

__all__ = ["REDIS_INSTALL_HINT", "RedisServer", "RedisUnavailable"]

REDIS_INSTALL_HINT: Final = f"run `{install_command('redis-server')}` or `make tools`, or put redis-server on PATH"
_START_TIMEOUT_S: Final = 10.0
_prefixes = itertools.count(1)


class RedisUnavailable(RuntimeError):
    """redis-server cannot be found or does not start; the message says how to install it."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process on ``127.0.0.1:<port>``; ``stop()`` and ``start()`` again keep the port."""

    def __init__(self, binary: Path | None = None, *, roots: tuple[Path, ...] = (Path.cwd(),)) -> None:
        found = binary if binary is not None else find_tool("redis-server", roots)
        if found is None:
            raise RedisUnavailable(f"redis-server not found; {REDIS_INSTALL_HINT}")
        self.binary = found
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def new_prefix(self, name: str = "t") -> str:
        """A key prefix no other test of this session uses (pid too: xdist workers share nothing else)."""
        return f"{name}-{os.getpid()}-{next(_prefixes)}"

    def start(self) -> RedisServer:
        """Start (or restart) the server on its port and wait until it answers PING (real time, bounded)."""
        if self.running:
            return self
        args = [
            str(self.binary), "--bind", HOST, "--port", str(self.port), "--save", "", "--appendonly", "no",
            "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning",
        ]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise RedisUnavailable(f"redis-server exited with {self._process.returncode}: {err.strip()[-500:]}")
            if self._answers():
                return self
            time.sleep(0.02)  # real-time: a real redis-server process is starting (bounded poll)
        self.stop()
        raise RedisUnavailable(f"redis-server did not answer on {self.url} within {_START_TIMEOUT_S:.0f} s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (its data is gone: nothing is persisted); idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stderr is not None:
            process.stderr.close()

    def __repr__(self) -> str:
        return f"RedisServer(url={self.url!r}, running={self.running})"
