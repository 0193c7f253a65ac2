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
from typing import Any

from fragrance_ai.config_loader import Config, default_config_path, load_config
from fragrance_ai.service.app import create_app
from fragrance_ai.service.system import GuardSystem
from pytest_guards import FakeLLMServer
from pytest_guards.cli import main as harness_main
from pytest_guards.network import LiveService

TOKEN = "live-fault-token"
MODELS = ("qwen", "mistral", "llama")

#: a canary config whose real waits are short: the live fault suite runs in seconds
FAST: dict[str, Any] = {
    "json_guard": {"backoff_base": 0.05, "jitter": 0.01, "backoff_max": 0.2, "deadline": 10.0},
    "circuit_breaker": {"timeout": 5},
    "cache": {"ttl_seconds": 1.5, "cleanup_interval": 1},
    "health_check": {"timeout": 1.0, "cache_seconds": 0.2},
}


def canary_config(fake: FakeLLMServer, overrides: dict[str, Any] | None = None) -> Config:
    models = {m: {"backend": "openai", "base_url": fake.base_url(m), "model_id": m} for m in MODELS}
    base = load_config(default_config_path())
    settings = overrides if overrides is not None else FAST
    return base.with_overrides({**settings, "llm": {"models": models}}, source="live canary")


@contextmanager
def canary(
    overrides: dict[str, Any] | None = None, swap: Callable[[GuardSystem], None] | None = None
) -> Iterator[tuple[LiveService, FakeLLMServer]]:
    """The service for the fast config (or ``overrides``) with ``swap`` applied to its system, and its fake models."""
    with FakeLLMServer(list(MODELS), control_token=TOKEN) as fake:
        app = create_app(canary_config(fake, overrides))
        if swap is not None:
            swap(app.state.system)
        with LiveService(app=app) as service:
            yield service, fake


def verify_live(service: LiveService, fake: FakeLLMServer | None, *extra: str, control_url: str | None = None) -> tuple[int, str]:
    """``python -m pytest_guards verify --target`` against the canary; (exit code, output)."""
    out = io.StringIO()
    argv = ["verify", "--target", service.url, "--control-token", TOKEN, "--live-max-wait", "10"]
    if control_url or fake is not None:
        argv += ["--llm-control", control_url or (fake.url if fake is not None else "")]
    code = harness_main([*argv, *extra], out=out)
    return code, out.getvalue()
