"""Shared wiring of the service tests: the reference system on a VirtualClock, models pointed at a
FaultyLLM, an in-process client, and a backend that blows up. Fixtures built on these live in
``conftest.py``; this module only builds things (no fixtures, no assertions)."""

from __future__ import annotations

import random
import socket
import sys
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from fragrance_ai.clock import VirtualClock
from fragrance_ai.config_loader import Config, default_config_path, load_config
from fragrance_ai.llm.backends import CompletionRequest, CompletionResponse, LLMBackend
from fragrance_ai.service.system import GuardSystem
from pytest_guards import FaultyLLM

MODELS = ("qwen", "mistral", "llama")


def harness_config(overrides: dict[str, Any]) -> Config:
    """The default config with ``overrides``."""
    return load_config(default_config_path()).with_overrides(overrides)


def build(clock: VirtualClock, overrides: dict[str, Any], backends: dict[str, LLMBackend] | None = None) -> GuardSystem:
    """The default config with ``overrides``, wired on ``clock`` (no background cleanup: nothing runs unasked).

    For a test that wires its own backends or closes the system itself; the ``system`` fixture uses
    pytest_guards' ``open_harness`` instead."""
    config = harness_config(overrides)
    return GuardSystem.build(
        config,
        clock=clock,
        sleep=clock.sleep,
        asleep=clock.asleep,
        atimeout=clock.timeout,
        rng=random.Random(0),
        backends=backends,
        start_cleanup=False,
    )


def openai_overrides(faulty: FaultyLLM, **extra: Any) -> dict[str, Any]:
    """Overrides serving every model through the OpenAI-compatible backend at ``faulty``'s URL for it."""
    models = {m: {"backend": "openai", "base_url": faulty.base_url(m), "model_id": m, **extra} for m in MODELS}
    return {"llm": {"models": models}}


def client_for(app: FastAPI) -> httpx.AsyncClient:
    """An in-process client on ``app`` (a route's exception becomes its 500 response, as over the network)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


class Exploding:
    """A backend with a bug: every call raises an unexpected exception whose text must stay in the logs."""

    def __init__(self, name: str, message: str = "SECRET-TRACE-123") -> None:
        self.name = name
        self.message = message
        self.calls = 0

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        self.calls += 1
        raise RuntimeError(self.message)

    async def aclose(self) -> None:
        pass


def fragrance_ai() -> list[str]:
    """How to run ``fragrance-ai``: the installed script beside this Python, else ``python -m fragrance_ai.cli``."""
    script = Path(sys.executable).with_name("fragrance-ai")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fragrance_ai.cli"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
