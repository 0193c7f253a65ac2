"""docker-compose.fleet.yml's wiring, checked without Docker: two identical replicas on one Redis behind one port."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from fragrance_ai.config_loader import load_config

ROOT = Path(__file__).resolve().parents[1]


def services() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.fleet.yml").read_text())
    found: dict[str, Any] = data["services"]
    return found


def test_both_replicas_run_the_same_fleet_config_on_the_compose_redis() -> None:
    found = services()
    assert found["app-1"] == found["app-2"]
    replica = found["app-1"]
    host, container = replica["volumes"][0].removesuffix(":ro").split(":")
    assert container == "/config/llm_ensemble.yaml"
    config = load_config(ROOT / host)
    assert config.state.backend == "redis"
    assert config.state.url_env is not None
    assert replica["environment"][config.state.url_env] == "redis://redis:6379/0"
    assert "redis" in found
    assert "redis" in replica["depends_on"]


def test_one_port_balances_over_both_replicas() -> None:
    lb = services()["lb"]
    assert lb["ports"] == ["8080:8080"]
    conf = (ROOT / lb["volumes"][0].split(":")[0]).read_text()
    assert re.findall(r"server (app-\d):8000;", conf) == ["app-1", "app-2"]
