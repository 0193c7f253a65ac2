"""The fake LLM server's control plane (behaviours over HTTP, token required) and its OpenAI-compatible surface.

Real network tests on 127.0.0.1: each server runs uvicorn in a thread; every request has a small timeout.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from pytest_guards import FakeLLMServer

pytestmark = pytest.mark.network

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"model": "qwen", "messages": [{"role": "user", "content": "a fresh summer scent"}], "temperature": 0.9}


@pytest.fixture
def controlled() -> Iterator[httpx.Client]:
    with (
        FakeLLMServer(["qwen", "mistral"], control_token=TOKEN) as server,
        httpx.Client(base_url=server.url, timeout=5) as client,
    ):
        yield client


def test_without_a_token_there_is_no_control_plane() -> None:
    with FakeLLMServer(["qwen"]) as server, httpx.Client(base_url=server.url, timeout=5) as client:
        assert client.get("/_control/models", headers=AUTH).status_code == 501
        assert client.put("/_control/models/qwen", json="timeout", headers=AUTH).status_code == 501
        assert server.unmatched, "a request to an absent control plane is an unexpected request"


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"bearer {TOKEN}"}]
)
def test_every_control_request_needs_the_token(controlled: httpx.Client, headers: dict[str, str]) -> None:
    for response in (
        controlled.get("/_control/models", headers=headers),
        controlled.put("/_control/models/qwen", json="timeout", headers=headers),
        controlled.get("/_control/models/qwen/calls", headers=headers),
        controlled.post("/_control/reset", headers=headers),
    ):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in response.text
    assert controlled.post("/qwen/v1/chat/completions", json=BODY).status_code == 200, "the script did not change"


def test_a_script_set_over_http_is_served_and_its_calls_are_logged(controlled: httpx.Client) -> None:
    script = [{"http_error": 503, "times": 2}, "valid"]
    put = controlled.put("/_control/models/qwen", json=script, headers=AUTH)
    assert put.status_code == 200, put.text
    statuses = [controlled.post("/qwen/v1/chat/completions", json=BODY).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert controlled.get("/_control/models", headers=AUTH).json() == {"models": {"qwen": {"calls": 3}, "mistral": {"calls": 0}}}
    calls = controlled.get("/_control/models/qwen/calls", headers=AUTH).json()["calls"]
    assert [c["status"] for c in calls] == [503, 503, 200]
    assert calls[0]["request"]["messages"] == BODY["messages"]
    assert calls[0]["request"]["temperature"] == 0.9  # what a scenario asserts the model received
    reset = controlled.post("/_control/reset", headers=AUTH)
    assert reset.status_code == 200
    assert controlled.get("/_control/models/qwen/calls", headers=AUTH).json()["calls"] == []
    assert controlled.post("/qwen/v1/chat/completions", json=BODY).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/_control/models/gpt4", "timeout", 404, "model_not_found"),
        ("/_control/models/qwen", {"timeot": None}, 400, "invalid_behaviour"),
        ("/_control/models/qwen", [], 400, "invalid_behaviour"),
        ("/_control/models/qwen", 42, 400, "invalid_behaviour"),
    ],
)
def test_control_mistakes_are_named(controlled: httpx.Client, path: str, body: object, status: int, code: str) -> None:
    response = controlled.put(path, json=body, headers=AUTH)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_a_body_that_is_not_json_or_too_large_is_refused(controlled: httpx.Client) -> None:
    broken = controlled.put("/_control/models/qwen", content=b"{not json", headers=AUTH)
    assert (broken.status_code, broken.json()["error"]["code"]) == (400, "invalid_json")
    large = controlled.put("/_control/models/qwen", content=b'"' + b"a" * 70_000 + b'"', headers=AUTH)
    assert large.status_code == 413


def test_an_openai_compatible_surface(controlled: httpx.Client) -> None:
    listed = controlled.get("/v1/models").json()
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == ["qwen", "mistral"]
    assert controlled.get("/qwen/v1/models").json() == listed
    unknown = controlled.post("/v1/chat/completions", json={**BODY, "model": "gpt-4o"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    answer = controlled.post("/qwen/v1/chat/completions", json=BODY).json()
    assert set(answer["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}


def test_the_standalone_server_takes_its_token_from_the_environment() -> None:
    port = _free_port()
    env = {**os.environ, "FAKE_LLM_CONTROL_TOKEN": TOKEN}
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_guards.faults.fake_llm_server", "--port", str(port), "--models", "qwen"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:  # real-time: the server is a real process; polled for at most 10 s
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # real-time: polling a real process for at most 10 s
        assert httpx.get(f"{url}/_control/models", timeout=5).status_code == 401
        assert httpx.put(f"{url}/_control/models/qwen", json="http_500", headers=AUTH, timeout=5).status_code == 200
        assert httpx.post(f"{url}/qwen/v1/chat/completions", json=BODY, timeout=5).status_code == 500
    finally:
        process.terminate()
        process.wait(10)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
