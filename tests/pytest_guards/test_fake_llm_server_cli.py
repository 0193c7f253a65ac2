"""``python -m pytest_guards.faults.fake_llm_server``: the fake models as a standalone server (docker-compose's fake-llm).

real-time: the command runs as a real process on a real port; the test polls it for at most a few
seconds (0.05 s steps) and stops it with SIGTERM.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator

import httpx
import pytest
from server_process import standalone_server

from pytest_guards.faults.fake_llm_server import main

pytestmark = pytest.mark.network

BODY = {"model": "any", "messages": [{"role": "user", "content": "a summer citrus"}]}


@pytest.fixture
def served() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    with standalone_server("--models", "qwen,mistral", "--set", 'qwen=["connection_error", {"http_error": 503}, "valid"]') as (
        url,
        process,
    ):
        yield url, process


def test_it_serves_the_scripted_models_and_relays_a_dropped_connection(served: tuple[str, subprocess.Popen[str]]) -> None:
    url, _ = served
    assert httpx.get(f"{url}/health", timeout=5).json() == {"status": "ok", "models": ["qwen", "mistral"]}
    with httpx.Client(base_url=url, timeout=5) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/qwen/v1/chat/completions", json=BODY)  # connection_error: dropped, not answered
        assert client.post("/qwen/v1/chat/completions", json=BODY).status_code == 503
        ok = client.post("/qwen/v1/chat/completions", json=BODY)
        assert ok.status_code == 200
        assert ok.json()["choices"][0]["message"]["content"].startswith("{")
        assert client.post("/mistral/v1/chat/completions", json=BODY).status_code == 200
        assert client.post("/gpt/v1/chat/completions", json=BODY).status_code == 404  # model_not_found


def test_sigterm_stops_it_cleanly(served: tuple[str, subprocess.Popen[str]]) -> None:
    _, process = served
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "fake LLM server: qwen, mistral on http://127.0.0.1:" in output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_it_stops_cleanly_while_a_client_holds_a_keep_alive_connection(
    served: tuple[str, subprocess.Popen[str]], sig: signal.Signals
) -> None:
    url, process = served
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as held:
        held.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert held.recv(64).startswith(b"HTTP/1.1 200")  # answered; the connection stays open (keep-alive)
        process.send_signal(sig)
        output, _ = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "Traceback" not in output
    assert "CancelledError" not in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "gpt=valid"], "--set expects MODEL=JSON with MODEL one of qwen, mistral, llama, found 'gpt=valid'"),
        (["--set", 'qwen=[{"bogus": 1}]'], "--set qwen[0]: expected exactly one behaviour key"),
        (["--models", " , "], "--models names no model"),
        (["--max-log", "0"], "--max-log must be >= 1"),
    ],
)
def test_bad_arguments_exit_2_saying_what_is_wrong(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err
