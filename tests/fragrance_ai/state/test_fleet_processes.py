"""docker-compose.fleet.yml's fleet run as processes on 127.0.0.1, without a Docker engine.

The same pieces the compose file starts, from the same files: two ``fragrance-ai serve`` replicas (the
compose file's command, its ``FRAGRANCE_AI_REDIS_URL``, ``deploy/llm_ensemble.fleet.yaml`` with only the
addresses changed), a real redis-server, the fake LLM server, and one Toxiproxy proxy per model between
them (``app-<model>`` in ``deploy/toxiproxy.json``). Then the README's demo ("Several replicas"): qwen's
proxy disabled, ten briefs sent round robin (nginx's job in the compose file; here the test alternates),
and both replicas report qwen open and the mode ``balanced``, though each saw only half of the failures.
A replica killed and started again joins the fleet's open breaker instead of resetting it.

What this cannot check: the image build (``Dockerfile``) and nginx, for which a Docker engine is needed.
Real time on purpose (processes starting, answering over TCP); every wait is bounded and marked.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from pytest_guards import FakeLLMServer, ToxicProxies
from pytest_guards.network import RedisServer

pytestmark = [pytest.mark.network, pytest.mark.toxiproxy]

ROOT = Path(__file__).resolve().parents[3]
# real-time: a replica starts in 1-3 s here; the bounds are for a loaded CI machine
START_BOUND_S = 30.0
REQUEST_BOUND_S = 30.0
POLL_S = 0.1


def compose_replica() -> dict[str, Any]:
    """The ``app-1`` service of docker-compose.fleet.yml (``app-2`` is the same, tests/test_compose_fleet.py)."""
    services: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.fleet.yml").read_text())["services"]
    return dict(services["app-1"])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def fleet_config(tmp_path: Path, proxies: dict[str, Any], prefix: str, backend: str) -> Path:
    """deploy/llm_ensemble.fleet.yaml with the models behind this test's proxies and its own key prefix."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "llm_ensemble.fleet.yaml").read_text())
    for name, model in data["llm"]["models"].items():
        model["base_url"] = proxies[name].base_url(name)
    data["state"]["key_prefix"] = prefix  # the session's redis-server is shared with other tests
    data["state"]["backend"] = backend  # "memory": the defect, each replica on its own state
    path = tmp_path / "llm_ensemble.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Replica:
    """One ``fragrance-ai serve`` process started with the compose file's command and environment."""

    def __init__(self, config: Path, redis_url: str) -> None:
        service = compose_replica()
        command = list(service["command"])
        assert command[:2] == ["fragrance-ai", "serve"], command
        options = dict(zip(command[2::2], command[3::2], strict=True))
        assert set(options) == {"--host", "--port", "--config"}, options
        self.port = free_port()  # a tiny race with other processes, acceptable in a test
        script = Path(sys.executable).with_name("fragrance-ai")
        program = [str(script)] if script.exists() else [sys.executable, "-m", "fragrance_ai.cli"]
        self.argv = [*program, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--config", str(config)]
        env = {**os.environ, **{k: str(v) for k, v in service["environment"].items()}}
        env["FRAGRANCE_AI_REDIS_URL"] = redis_url  # the compose file's variable, pointed at this test's Redis
        self.env = env
        self.process: subprocess.Popen[str] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def spawn(self) -> Replica:
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        return self

    def start(self) -> Replica:
        """Spawn it (unless spawned) and wait until it answers ``/health/guards``."""
        if self.process is None or self.process.poll() is not None:
            self.spawn()
        assert self.process is not None
        waiter = threading.Event()
        for _ in range(int(START_BOUND_S / POLL_S)):
            assert self.process.poll() is None, f"the replica exited: {self.stop()}"
            try:
                if httpx.get(f"{self.url}/health/guards", timeout=REQUEST_BOUND_S).status_code == 200:
                    return self
            except httpx.TransportError:
                waiter.wait(POLL_S)  # real-time: waiting for the process to listen
        raise AssertionError(f"the replica did not answer within {START_BOUND_S} s")

    def guards(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.url}/health/guards", timeout=REQUEST_BOUND_S).json()
        return body

    def brief(self, prompt: str) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/briefs", json={"prompt": prompt}, timeout=REQUEST_BOUND_S)

    def kill(self) -> None:
        """SIGKILL, as a crashed container: no shutdown hook runs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=START_BOUND_S)  # real-time: the kernel reaps it

    def stop(self) -> str:
        """SIGTERM (``docker compose down``), bounded; its stderr."""
        if self.process is None:
            return ""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            _, stderr = self.process.communicate(timeout=START_BOUND_S)  # real-time: graceful shutdown
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate(timeout=START_BOUND_S)
        return stderr or ""


@pytest.fixture(params=["redis"])
def fleet(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    redis_server: RedisServer,
    fake_llm_server: FakeLLMServer,
    toxic_proxy: ToxicProxies,
) -> Iterator[tuple[list[Replica], dict[str, Any]]]:
    proxies = toxic_proxy.per_model()
    config = fleet_config(tmp_path, proxies, redis_server.new_prefix("compose-fleet"), request.param)
    replicas = [Replica(config, redis_server.url), Replica(config, redis_server.url)]
    try:
        for replica in replicas:
            replica.spawn()  # both start at once, as compose starts them
        for replica in replicas:
            replica.start()
        yield replicas, proxies
    finally:
        errors = [replica.stop() for replica in replicas]
    assert not any("Traceback" in e for e in errors), errors


def demo(replicas: list[Replica], proxies: dict[str, Any]) -> list[list[str]]:
    """The README's commands: qwen's proxy off, ten briefs round robin; each replica's [qwen state, mode]."""
    assert [r.guards()["circuit_breaker"]["models"]["qwen"]["state"] for r in replicas] == ["closed", "closed"]
    proxies["qwen"].disable()  # README: curl -X POST localhost:8474/proxies/app-qwen -d '{"enabled": false}'
    statuses = [replicas[i % 2].brief(f"walk {i}").status_code for i in range(10)]  # nginx's round robin
    assert statuses == [200] * 10, "qwen unreachable: every brief still served, by mistral"
    return [[r.guards()["circuit_breaker"]["models"]["qwen"]["state"], r.guards()["mode"]["current"]] for r in replicas]


def test_the_readme_demo_a_fleet_wide_breaker_opens_on_both_replicas(
    fleet: tuple[list[Replica], dict[str, Any]], fake_llm_server: FakeLLMServer
) -> None:
    replicas, proxies = fleet
    reached = fake_llm_server.call_count("qwen")  # the replicas' first background health probes
    seen = demo(replicas, proxies)
    assert seen == [["open", "balanced"], ["open", "balanced"]], seen
    assert fake_llm_server.call_count("qwen") == reached, "qwen was never reached: its proxy refused every connection"
    served = fake_llm_server.call_count("mistral")
    replicas[1].brief("after the opening")  # a new prompt on the replica that saw only half of the failures
    assert fake_llm_server.call_count("mistral") == served + 1, "balanced mode: mistral first, qwen not tried"


@pytest.mark.parametrize("fleet", ["memory"], indirect=True)
def test_the_defect_on_per_replica_state_the_demo_leaves_qwen_closed(fleet: tuple[list[Replica], dict[str, Any]]) -> None:
    """What the demo shows fails without shared state: five failures each is under minimum_calls (10)."""
    assert demo(*fleet) == [["closed", "creative"], ["closed", "creative"]]


def test_a_killed_replica_started_again_joins_the_fleets_open_breaker(
    fleet: tuple[list[Replica], dict[str, Any]],
) -> None:
    replicas, proxies = fleet
    assert demo(replicas, proxies) == [["open", "balanced"], ["open", "balanced"]]
    replicas[0].kill()
    replicas[0].start()
    guards = replicas[0].guards()
    assert guards["circuit_breaker"]["models"]["qwen"]["state"] == "open", "a starting replica must not reset the fleet"
    assert guards["mode"]["current"] == "balanced"
