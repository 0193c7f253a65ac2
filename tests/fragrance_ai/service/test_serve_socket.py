"""The service on a real socket: uvicorn in a thread on 127.0.0.1 (``LiveService``), the checklist's curl
commands and its pre-promotion step run against it, and the ``fragrance-ai serve`` command line.

These tests use real time on purpose (a server starting and answering over TCP); every wait is bounded
and marked ``# real-time:``.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from service_support import MODELS, Exploding, fragrance_ai, free_port

from fragrance_ai.config_loader import default_config_path, load_config
from fragrance_ai.llm.backends import LLMBackend, SimulatedBackend
from fragrance_ai.service.app import create_app
from fragrance_ai.service.system import GuardSystem
from pytest_guards import LiveService

pytestmark = pytest.mark.network

# real-time: bounds on a server starting, answering and stopping; a healthy run takes well under a second
START_BOUND_S = 10.0
POLL_S = 0.05
CLI_BOUND_S = 30.0

#: the checklist's "Pre-Promotion Check" step, verbatim but for the port (bash: it uses `[ == ]`)
PRE_PROMOTION = """\
# Check ALL models are healthy
HEALTH_CHECK=$(curl -s "http://localhost:{port}/health/llm?model=all")

# Parse status
STATUS=$(echo "$HEALTH_CHECK" | jq -r '.status')

if [ "$STATUS" == "healthy" ]; then
    echo "✓ All LLM models healthy - OK to promote"
else
    echo "✗ LLM models unhealthy - DO NOT PROMOTE"
    echo "$HEALTH_CHECK" | jq .
    exit 1
fi
"""


@contextmanager
def serving(app: FastAPI) -> Iterator[int]:
    """Run ``app`` (lifespan on) on uvicorn in a thread on a pre-bound 127.0.0.1 socket; yields the port."""
    # real-time: LiveService bounds uvicorn starting and stopping
    with LiveService(app=app, start_timeout=START_BOUND_S, stop_timeout=START_BOUND_S) as service:
        assert service.port is not None
        yield service.port


def default_app() -> FastAPI:
    return create_app(load_config(default_config_path()))


def curl_and_jq() -> bool:
    return shutil.which("curl") is not None and shutil.which("jq") is not None and shutil.which("bash") is not None


def pre_promotion(port: int) -> subprocess.CompletedProcess[str]:
    """Run the checklist's pre-promotion step against ``port``: the shell script when curl and jq exist."""
    if curl_and_jq():
        return subprocess.run(
            ["bash", "-c", PRE_PROMOTION.format(port=port)],
            capture_output=True, text=True, timeout=CLI_BOUND_S,  # real-time: curl against a live server
        )
    # no curl/jq on this machine: the same logic in Python (the status field decides)
    body = httpx.get(f"http://localhost:{port}/health/llm?model=all", timeout=CLI_BOUND_S).json()
    if body.get("status") == "healthy":
        return subprocess.CompletedProcess([], 0, "✓ All LLM models healthy - OK to promote\n", "")
    return subprocess.CompletedProcess([], 1, f"✗ LLM models unhealthy - DO NOT PROMOTE\n{body}\n", "")


def test_the_checklists_curl_commands_and_pre_promotion_step_pass() -> None:
    with serving(default_app()) as port:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=START_BOUND_S) as client:
            everything = client.get("/health/llm", params={"model": "all"})
            assert everything.status_code == 200
            body = everything.json()
            assert body["status"] == "healthy"
            assert {m: r["status"] for m, r in body["models"].items()} == dict.fromkeys(MODELS, "healthy")
            for model in MODELS:
                one = client.get("/health/llm", params={"model": model})
                assert one.status_code == 200
                assert (one.json()["model"], one.json()["status"], one.json()["circuit_state"]) == (model, "healthy", "closed")
            brief = client.post("/v1/briefs", json={"prompt": "a fresh summer citrus scent"})
            assert brief.status_code == 200
            assert brief.json()["source"] == "model"
            assert "llm_health_status" in client.get("/metrics").text
        result = pre_promotion(port)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✓ All LLM models healthy - OK to promote" in result.stdout


def test_the_pre_promotion_step_refuses_a_degraded_instance() -> None:
    backends: dict[str, LLMBackend] = {
        "qwen": SimulatedBackend("qwen"), "mistral": SimulatedBackend("mistral"), "llama": Exploding("llama"),
    }
    system = GuardSystem.build(load_config(default_config_path()), backends=backends, start_cleanup=False)
    with serving(create_app(system=system)) as port:
        result = pre_promotion(port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=START_BOUND_S) as client:
            llama = client.get("/health/llm", params={"model": "llama"})
    assert result.returncode == 1
    assert "✗ LLM models unhealthy - DO NOT PROMOTE" in result.stdout
    assert '"degraded"' in result.stdout or "'degraded'" in result.stdout
    assert "SECRET-TRACE-123" not in result.stdout
    assert (llama.status_code, llama.json()["reason"]) == (503, "error")


# -------------------------------------------------------------------------------------- the command


def cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*fragrance_ai(), *args], capture_output=True, text=True, timeout=CLI_BOUND_S, **kwargs)


def test_serve_help() -> None:
    result = cli("serve", "--help")
    assert result.returncode == 0
    for option in ("--host", "--port", "--config", "--log-level"):
        assert option in result.stdout
    assert "/health/llm" in result.stdout


def test_serve_with_a_bad_config_exits_2_with_the_errors_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cache:\n  max_size: -1\n  colour: blue\nhealth_check:\n  timeout: soon\n", encoding="utf-8")
    result = cli("serve", "--config", str(bad), "--port", "0")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "cannot start: 3 config error(s)" in result.stderr
    assert f"{bad}:2: cache.max_size" in result.stderr
    assert f"{bad}:3: cache.colour: unknown key" in result.stderr
    assert f"{bad}:5: health_check.timeout" in result.stderr
    assert result.stdout == ""


def test_serve_with_a_missing_config_exits_2(tmp_path: Path) -> None:
    result = cli("serve", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_a_setting_a_backend_refuses_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "ftp.yaml"
    bad.write_text("llm:\n  models:\n    qwen:\n      backend: openai\n      base_url: ftp://models.local/v1\n", encoding="utf-8")
    result = cli("serve", "--config", str(bad), "--port", "0")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "llm.models.qwen.base_url: must be an http:// or https:// URL" in result.stderr  # caught by the loader


@pytest.mark.parametrize(("args", "message"), [
    (("--port", "99999"), "expected a port number 0-65535, found 99999"),
    (("--port", "http"), "expected a port number 0-65535, found 'http'"),
    (("--log-level", "loud"), "invalid choice: 'loud'"),
])
def test_serve_refuses_bad_flags_without_a_traceback(args: tuple[str, ...], message: str) -> None:
    result = cli("serve", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_fragrance_ai_serve_answers_the_health_check() -> None:
    port = free_port()  # a tiny race with other processes, acceptable in a test
    process = subprocess.Popen(
        [*fragrance_ai(), "serve", "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    waiter = threading.Event()
    try:
        body: dict[str, Any] | None = None
        for _ in range(int(CLI_BOUND_S / POLL_S)):
            if process.poll() is not None:
                break
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/health/llm?model=all", timeout=START_BOUND_S).json()
                break
            except httpx.TransportError:
                waiter.wait(POLL_S)  # real-time: waiting for the subprocess to start listening
        assert body is not None, f"fragrance-ai serve did not answer: {process.poll()=}"
        assert body["status"] == "healthy"
        assert list(body["models"]) == list(MODELS)
    finally:
        process.terminate()
        try:
            _, stderr = process.communicate(timeout=START_BOUND_S)  # real-time: graceful shutdown
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate(timeout=START_BOUND_S)
    assert "Traceback" not in stderr


def test_the_service_probes_health_in_the_background_when_configured() -> None:
    config = load_config(default_config_path()).with_overrides({"health_check": {"probe_interval": 0.05, "cache_seconds": 0}})
    with LiveService(config) as service:
        checker = service.system.health_checker
        deadline = time.monotonic() + 5
        while checker.inferences_total < 2 * len(config.model_names):
            assert time.monotonic() < deadline, "the background probe did not run twice within 5 s"
            time.sleep(0.02)  # real-time: the probe runs on the server's own loop, in real time
        assert service.system.metrics.sample("llm_health_status", {"model": "llama"}) == 1
    # shutdown cancelled the probe cleanly: no round runs after the service stopped
    settled = checker.inferences_total
    time.sleep(0.1)  # real-time: long enough for two more rounds, had the probe survived shutdown
    assert checker.inferences_total == settled
