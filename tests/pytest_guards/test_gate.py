"""``gate``: the verdict over HTTP (200 safe, 412 not safe, 503 inconclusive, 429 while busy), with httpx on 127.0.0.1."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from live_canary import TOKEN, canary

from pytest_guards.cli import main as harness_main
from pytest_guards.gate import GateServer, Outcome, run_verify

pytestmark = [pytest.mark.network, pytest.mark.timeout(300)]


@contextmanager
def serving(runner: Callable[[], Outcome]) -> Iterator[httpx.Client]:
    server = GateServer(runner)
    thread = threading.Thread(target=server.serve_forever, name="gate", daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
            yield client
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize(("code", "status"), [(0, 200), (1, 412), (2, 503)])
def test_the_status_follows_the_verdict_and_the_body_is_the_report(code: int, status: int) -> None:
    report = {"verdict": "whatever verify said", "items": {}}
    with serving(lambda: (code, report)) as client:
        for response in (client.get("/"), client.post("/", json={"name": "rollout", "phase": "Progressing"})):
            assert response.status_code == status
            assert response.json() == {**report, "exit_code": code}


def test_a_second_request_during_a_run_is_429_with_retry_after() -> None:
    started, release = threading.Event(), threading.Event()

    def slow() -> Outcome:
        started.set()
        release.wait(10)
        return 0, {"verdict": "SAFE TO PROMOTE TO PRODUCTION"}

    with serving(slow) as client:
        first: list[httpx.Response] = []
        thread = threading.Thread(target=lambda: first.append(client.get("/")))
        thread.start()
        assert started.wait(10)
        busy = client.get("/")
        release.set()
        thread.join(10)
        assert busy.status_code == 429
        assert busy.headers["Retry-After"] == "30"
        assert first[0].status_code == 200
        assert client.get("/").status_code == 200  # free again once the run ended


def test_liveness_and_unknown_paths_run_nothing() -> None:
    runs: list[int] = []

    def runner() -> Outcome:
        runs.append(1)
        return 0, {}

    with serving(runner) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/nope").status_code == 404
    assert runs == []


def test_a_real_run_against_a_canary_is_200_safe_and_503_when_the_control_plane_is_gone() -> None:
    with canary() as (service, fake):
        args = ["--target", service.url, "--llm-control", fake.url, "--item", "json_guard", "--", "-k", "live-jg-reask"]
        env = {**os.environ, "FAKE_LLM_CONTROL_TOKEN": TOKEN}
        with serving(lambda: run_verify(args, 240, env)) as client:
            response = client.get("/", timeout=240)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["verdict"] == "SAFE TO PROMOTE TO PRODUCTION (json_guard only)"
        assert body["exit_code"] == 0
        assert body["seconds"] > 0
        assert [s["id"] for s in body["scenarios"]] == ["live-jg-reask-reaches-model-with-reason"]
        down = ["--target", service.url, "--llm-control", "http://127.0.0.1:9", "--control-token", "gate-secret-token"]
        with serving(lambda: run_verify(down, 60, None)) as client:
            response = client.get("/", timeout=60)
        assert response.status_code == 503
        assert response.json()["verdict"] == "INCONCLUSIVE"
        assert response.json()["reasons"][-1].startswith("? INCONCLUSIVE (cannot reach the fake LLM's control plane")
        assert "gate-secret-token" not in response.text


def test_gate_refuses_bad_verify_options_at_start(capsys: pytest.CaptureFixture[str]) -> None:
    assert harness_main(["gate", "--port", "0", "--target", "http://127.0.0.1:1", "--no-such-option"]) == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_the_argo_and_flagger_wiring_calls_the_gate_and_reads_its_report() -> None:
    root = Path(__file__).resolve().parents[2]
    argo = next(yaml.safe_load_all((root / "deploy" / "argo-analysis-template.yaml").read_text()))
    assert argo["kind"] == "AnalysisTemplate"
    (metric,) = argo["spec"]["metrics"]
    assert metric["successCondition"] == "result.safe == true"  # `safe` is a key of the gate's body
    assert urlsplit(metric["provider"]["web"]["url"]).path == "/"
    flagger = yaml.safe_load((root / "deploy" / "flagger-canary.yaml").read_text())
    (hook,) = flagger["spec"]["analysis"]["webhooks"]
    assert hook["type"] in ("pre-rollout", "rollout")
    assert urlsplit(hook["url"]).path == "/"
    with serving(lambda: (0, {"safe": True, "verdict": "SAFE TO PROMOTE TO PRODUCTION"})) as client:
        assert client.get("/").json()["safe"] is True
