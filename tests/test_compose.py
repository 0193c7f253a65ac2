"""docker-compose.yml's wiring, checked without Docker: services, ports, every LLM URL through toxiproxy.

Parses the compose file and the files it mounts, and checks what ``docker compose up`` depends on:
the service on 8000 and the canary on 8001, each model's ``base_url`` going to a toxiproxy proxy
whose upstream is the fake LLM server, Prometheus scraping both with the project's rules, Grafana
provisioned with the dashboard, and every mounted config valid.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from fragrance_ai.config_loader import Config, default_config_path, load_config

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
TRACKS = {"app": 8000, "canary": 8001}
#: the fake LLM server behind each track (the canary's has the control plane the live fault suite scripts)
FAKES = {"app": "fake-llm", "canary": "canary-llm"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of the service's bind mounts (``./host:/container[:ro]``)."""
    out: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        host, container, *_ = volume.split(":")
        assert host.startswith("./"), f"expected a bind mount relative to the repo, found {volume!r}"
        out[container] = ROOT / host
    return out


def command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def flag(cmd: list[str], name: str) -> str:
    assert name in cmd, f"{name} missing from {cmd}"
    return cmd[cmd.index(name) + 1]


def service_config(services: dict[str, dict[str, Any]], name: str) -> tuple[Path, Config]:
    path = mounts(services[name])[flag(command(services[name]), "--config")]
    return path, load_config(path)


def toxiproxy_proxies(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    toxiproxy = services["toxiproxy"]
    config_arg = next(a for a in command(toxiproxy) if a.startswith("-config="))
    path = mounts(toxiproxy)[config_arg.split("=", 1)[1]]
    return {p["name"]: p for p in json.loads(path.read_text())}


def test_every_service_is_there(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= {"app", "canary", "toxiproxy", "fake-llm", "canary-llm", "prometheus", "grafana"}
    assert services["toxiproxy"]["image"] == "ghcr.io/shopify/toxiproxy:2.12.0"


@pytest.mark.parametrize(("name", "port"), TRACKS.items())
def test_the_service_and_the_canary_serve_on_their_ports(
    services: dict[str, dict[str, Any]], name: str, port: int
) -> None:
    service = services[name]
    cmd = command(service)
    assert cmd[:2] == ["fragrance-ai", "serve"]
    assert flag(cmd, "--host") == "0.0.0.0"
    assert flag(cmd, "--port") == str(port)
    assert f"{port}:{port}" in service["ports"]
    assert service["build"] == "."
    assert (ROOT / "Dockerfile").is_file()
    assert str(port) in " ".join(service["healthcheck"]["test"])


@pytest.mark.parametrize("name", TRACKS)
def test_every_model_url_goes_through_toxiproxy_to_the_fake_llm(services: dict[str, dict[str, Any]], name: str) -> None:
    _, config = service_config(services, name)
    proxies = toxiproxy_proxies(services)
    fake = FAKES[name]
    fake_port = flag(command(services[fake]), "--port")
    assert flag(command(services[fake]), "--host") == "0.0.0.0"
    for model, settings in config.llm.models.items():
        assert settings.backend == "openai", f"{name}: {model} does not go over the network"
        assert settings.base_url is not None
        url = urlsplit(settings.base_url)
        assert url.hostname == "toxiproxy", f"{name}: {model} bypasses toxiproxy: {settings.base_url}"
        listening = {p["listen"].rsplit(":", 1)[1]: p for p in proxies.values()}
        proxy = listening[str(url.port)]
        assert proxy["name"] == f"{name}-{model}"
        assert proxy["listen"].startswith("0.0.0.0:")
        assert proxy["upstream"] == f"{fake}:{fake_port}"
        # the fake server routes /<model>/v1/chat/completions to the model of that name
        assert url.path == f"/{model}/v1"
    assert set(flag(command(services[fake]), "--models").split(",")) == set(config.llm.models)


def test_each_proxy_serves_exactly_one_model_of_one_service(services: dict[str, dict[str, Any]]) -> None:
    proxies = toxiproxy_proxies(services)
    used = {
        urlsplit(m.base_url or "").port
        for name in TRACKS
        for m in service_config(services, name)[1].llm.models.values()
    }
    ports = [int(p["listen"].rsplit(":", 1)[1]) for p in proxies.values()]
    assert len(ports) == len(set(ports)) == len(used)
    assert set(ports) == used


def test_the_canary_config_differs_from_the_service_config_only_in_its_proxy_ports_and_probe(
    services: dict[str, dict[str, Any]],
) -> None:
    def without_urls(config: Config) -> dict[str, Any]:
        data = config.to_dict()
        data.pop("source", None)
        for model in data["llm"]["models"].values():
            model.pop("base_url")
        return data

    app, canary = (without_urls(service_config(services, name)[1]) for name in TRACKS)
    # the app probes in the background (fresh llm_health_status); the canary does not: the live fault
    # suite counts every call its models get
    assert app["health_check"].pop("probe_interval") > 0
    assert canary["health_check"].pop("probe_interval") == 0
    assert app == canary
    # and, as their header says, everything but llm (and the background probe) is the shipped default
    shipped = load_config(default_config_path()).to_dict()
    deployed = app
    shipped["health_check"].pop("probe_interval")
    for section, value in deployed.items():
        if section != "llm":
            assert value == shipped[section], f"deploy config section {section!r} drifted from the shipped default"


def test_prometheus_scrapes_both_with_the_project_rules(services: dict[str, dict[str, Any]]) -> None:
    prometheus = services["prometheus"]
    mounted = mounts(prometheus)
    config_path = mounted[flag_eq(command(prometheus), "--config.file")]
    config = yaml.safe_load(config_path.read_text())
    targets = {t for job in config["scrape_configs"] for group in job["static_configs"] for t in group["targets"]}
    assert targets == {f"{name}:{port}" for name, port in TRACKS.items()}
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in config["scrape_configs"])
    rules = [mounted[rule] for rule in config["rule_files"]]
    assert rules == [ROOT / "fragrance_ai" / "monitoring" / "guards.rules.yml"]
    assert yaml.safe_load(rules[0].read_text())["groups"]


def flag_eq(cmd: list[str], name: str) -> str:
    value = next((a.split("=", 1)[1] for a in cmd if a.startswith(f"{name}=")), None)
    assert value is not None, f"{name}=... missing from {cmd}"
    return value


def test_grafana_is_provisioned_with_the_dashboard_and_prometheus(services: dict[str, dict[str, Any]]) -> None:
    mounted = mounts(services["grafana"])
    provisioning = mounted["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert [d["url"] for d in datasources if d["type"] == "prometheus" and d.get("isDefault")] == ["http://prometheus:9090"]
    provider = yaml.safe_load((provisioning / "dashboards" / "fragrance-ai.yml").read_text())["providers"][0]
    dashboard = next(host for container, host in mounted.items() if container.startswith(provider["options"]["path"] + "/"))
    assert dashboard == ROOT / "fragrance_ai" / "monitoring" / "grafana-dashboard.json"
    assert json.loads(dashboard.read_text())["panels"]


def test_every_mounted_file_exists(services: dict[str, dict[str, Any]]) -> None:
    missing = [f"{name}: {host}" for name, s in services.items() for host in mounts(s).values() if not host.exists()]
    assert missing == []


def test_the_canary_llm_has_the_control_plane_with_a_token_from_the_environment(
    services: dict[str, dict[str, Any]],
) -> None:
    canary_llm, app_llm = services["canary-llm"], services["fake-llm"]
    token = canary_llm["environment"]["FAKE_LLM_CONTROL_TOKEN"]
    assert token.startswith("${FAKE_LLM_CONTROL_TOKEN:?"), "compose must refuse to start the control plane without a token"
    assert canary_llm["ports"] == ["127.0.0.1:9001:9000"]  # published on the host's loopback only
    assert "FAKE_LLM_CONTROL_TOKEN" not in app_llm.get("environment", {})  # the app's models have no control plane
    assert "ports" not in app_llm
    assert services["canary"]["depends_on"]["canary-llm"]["condition"] == "service_healthy"


def test_the_canary_target_file_names_the_canary_its_control_plane_and_its_proxies(
    services: dict[str, dict[str, Any]],
) -> None:
    target = yaml.safe_load((ROOT / "deploy" / "canary.target.yaml").read_text())
    assert urlsplit(target["url"]).port == TRACKS["canary"]
    assert f"127.0.0.1:{urlsplit(target['llm_control']).port}:9000" in services["canary-llm"]["ports"]
    assert target["control_token_env"] == "FAKE_LLM_CONTROL_TOKEN"
    assert f"{urlsplit(target['toxiproxy_url']).port}:8474" in " ".join(services["toxiproxy"]["ports"])
    proxies = toxiproxy_proxies(services)
    for model in service_config(services, "canary")[1].llm.models:
        assert target["proxy_name"].replace("{model}", model) in proxies


def test_the_documented_break_command_disables_a_proxy_of_the_canary(services: dict[str, dict[str, Any]]) -> None:
    """The README's walkthrough flips the verdict with one command: it must name a real canary proxy."""
    readme = (ROOT / "README.md").read_text()
    header = COMPOSE.read_text()
    command_line = "curl -X POST localhost:8474/proxies/canary-mistral -d '{\"enabled\": false}'"
    assert command_line in header
    assert command_line in readme
    assert "canary-mistral" in toxiproxy_proxies(services)
