"""The standalone fake LLM server as a real process on a free loopback port, for the tests that need one.

real-time: a real process listening on a real port; start-up is polled every 0.05 s for at most 10 s,
and the process is killed (bounded wait) on the way out.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def standalone_server(*args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``python -m pytest_guards.faults.fake_llm_server --port P *args``: its URL and process, once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_guards.faults.fake_llm_server", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the fake LLM server did not come up: {process.communicate(timeout=5)[0]}")
            time.sleep(0.05)  # real-time: waiting for a real process to listen
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
