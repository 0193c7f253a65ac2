"""A canary for the live fault suite, built in the tests: the real service on 127.0.0.1 (uvicorn thread),
its models on a fake LLM server with the control plane on, and ``verify`` run against it.

``canary(config, swap=...)`` yields ``(service, fake)``; ``swap`` replaces ONE part of the running
system (the defective canaries). ``FAST`` is the small config the tests use so the whole live suite
takes seconds (short breaker timeout, TTL, health timeout and backoff); the reference config's real
waits are measured by hand (README).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from fragrance_ai.config_loader import Config, default_config_path, load_config
from fragrance_ai.service.app import create_app
from fragrance_ai.service.system import GuardSystem
from pytest_guards import FakeLLMServer
from pytest_guards.cli import main as harness_main
from pytest_guards.network import LiveService, ToxiproxyServer, ToxiproxyUnavailable, open_server

TOKEN = "live-fault-token"
MODELS = ("qwen", "mistral", "llama")

#: a canary config whose real waits are short: the live fault suite runs in seconds
FAST: dict[str, Any] = {
    "json_guard": {"backoff_base": 0.05, "jitter": 0.01, "backoff_max": 0.2, "deadline": 10.0},
    "circuit_breaker": {"timeout": 5, "window_size": 20},  # the checklist's window: a 5 s breaker is open for ~20 briefs, not 100
    "cache": {"ttl_seconds": 1.5, "cleanup_interval": 1},
    "health_check": {"timeout": 1.0, "cache_seconds": 0.2},
}


#: the canary's Toxiproxy proxy per model (``--proxy-name``)
PROXY_NAME = "canary-{model}"
ROOT = Path(__file__).resolve().parents[2]


def canary_config(fake: FakeLLMServer, overrides: dict[str, Any] | None = None, urls: dict[str, str] | None = None) -> Config:
    """The canary's config: each model on the fake server (or at ``urls[model]``, its proxy)."""
    roots = urls or {m: fake.base_url(m) for m in MODELS}
    models = {m: {"backend": "openai", "base_url": roots[m], "model_id": m} for m in MODELS}
    base = load_config(default_config_path())
    settings = overrides if overrides is not None else FAST
    return base.with_overrides({**settings, "llm": {"models": models}}, source="live canary")


@contextmanager
def toxiproxy() -> Iterator[ToxiproxyServer]:
    """A Toxiproxy server from .tools/bin (skips the test when none is installed)."""
    try:
        server = open_server(None, [ROOT])
    except ToxiproxyUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.close()


def _proxies(server: ToxiproxyServer, fake: FakeLLMServer) -> dict[str, str]:
    """One proxy per model, named ``canary-<model>``, in front of the fake server: each model's base_url through it."""
    upstream = fake.url.removeprefix("http://")
    urls = {}
    for model in MODELS:
        name = PROXY_NAME.replace("{model}", model)
        server.delete_proxy(name)
        info = server.api("POST", "/proxies", json={"name": name, "listen": "127.0.0.1:0", "upstream": upstream}).json()
        urls[model] = f"http://{info['listen']}/{model}/v1"
    return urls


@contextmanager
def canary(
    overrides: dict[str, Any] | None = None,
    swap: Callable[[GuardSystem], None] | None = None,
    proxies: ToxiproxyServer | None = None,
) -> Iterator[tuple[LiveService, FakeLLMServer]]:
    """The service for the fast config (or ``overrides``) with ``swap`` applied to its system, and its fake models.

    With ``proxies`` (a Toxiproxy server) each model is reached through its own ``canary-<model>`` proxy.
    """
    with FakeLLMServer(list(MODELS), control_token=TOKEN) as fake:
        app = create_app(canary_config(fake, overrides, _proxies(proxies, fake) if proxies is not None else None))
        if swap is not None:
            swap(app.state.system)
        with LiveService(app=app) as service:
            yield service, fake


def verify_live(
    service: LiveService,
    fake: FakeLLMServer | None,
    *extra: str,
    control_url: str | None = None,
    proxies: ToxiproxyServer | None = None,
) -> tuple[int, str]:
    """``python -m pytest_guards verify --target`` against the canary; (exit code, output)."""
    out = io.StringIO()
    argv = ["verify", "--target", service.url, "--control-token", TOKEN, "--live-max-wait", "10"]
    if proxies is not None:
        argv += ["--toxiproxy-url", proxies.url, "--proxy-name", PROXY_NAME]
    if control_url or fake is not None:
        argv += ["--llm-control", control_url or (fake.url if fake is not None else "")]
    code = harness_main([*argv, *extra], out=out)
    return code, out.getvalue()
