"""Real network chaos: the real service on a real socket, each model's backend behind its own Toxiproxy proxy.

real-time: these tests measure real network timing through a real Toxiproxy server, so they run on
the wall clock (a virtual clock cannot slow a TCP stream). Every wait is short and bounded: health
timeout 0.5 s, breaker timeout and upshift quiet period 0.5-1 s, polls every 0.05 s.

The service under test is ``fragrance-ai``'s own app (``create_app``), served by uvicorn on
127.0.0.1; its models ``qwen``, ``mistral`` and ``llama`` are OpenAI-compatible backends whose
``base_url`` points through toxiproxy at ``fake_llm_server``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fragrance_ai.config_loader import Config
from fragrance_ai.llm.schemas import brief_schema
from pytest_guards import FakeLLMServer, LiveService, ToxicProxies, ToxicProxy

MODELS = ("qwen", "mistral", "llama")

# Small, fast guard settings: every real wait in this file stays around a second at most.
FAST: dict[str, Any] = {
    "llm": {"models": {m: {"timeout": 2.0, "connect_timeout": 0.5} for m in MODELS}},
    "health_check": {"timeout": 0.5, "cache_seconds": 0},
    "cache": {"enabled": False},  # every brief must reach the models
    "json_guard": {"backoff_base": 0.01, "jitter": 0, "backoff_max": 0.05, "deadline": 5},
    "circuit_breaker": {"window_size": 4, "minimum_calls": 2, "timeout": 1, "success_threshold": 1, "half_open_requests": 1},
    "mode_controller": {"upshift_quiet_period": 0.5},
}

pytestmark = [pytest.mark.toxiproxy, pytest.mark.network, pytest.mark.guards_config(FAST)]


@dataclass
class Chaos:
    """The running service, an HTTP client to it, and the proxy in front of each model."""

    service: LiveService
    http: httpx.Client
    proxies: dict[str, ToxicProxy]
    fake: FakeLLMServer

    def brief(self, prompt: str = "a fresh summer citrus", mode: str | None = None) -> dict[str, Any]:
        """POST /v1/briefs; whatever the network does, the answer is a 200 (never a 5xx)."""
        body: dict[str, Any] = {"prompt": prompt} if mode is None else {"prompt": prompt, "mode": mode}
        response = self.http.post("/v1/briefs", json=body)
        assert response.status_code == 200, f"expected 200, got {response.status_code}: {response.text}"
        data: dict[str, Any] = response.json()
        return data

    def health(self, model: str | None = None) -> httpx.Response:
        return self.http.get("/health/llm", params={"model": model} if model else None)

    def guards(self) -> dict[str, Any]:
        response = self.http.get("/health/guards")
        assert response.status_code == 200
        data: dict[str, Any] = response.json()
        return data

    def breaker(self, model: str) -> str:
        state: str = self.guards()["circuit_breaker"]["models"][model]["state"]
        return state

    def mode(self) -> str:
        mode: str = self.guards()["mode"]["current"]
        return mode

    def metric(self, name: str, **labels: str) -> float:
        """The sum of every sample of ``name`` on GET /metrics whose labels include ``labels``."""
        response = self.http.get("/metrics")
        assert response.status_code == 200
        total, seen = 0.0, False
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
                    seen = True
        assert seen, f"no sample {name}{labels or ''} on /metrics"
        return total


def wait_for(what: str, check: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``check`` until it is true, at most ``within`` seconds of real time."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {within:g}s (real time)", pytrace=False)
        time.sleep(0.05)  # real-time: waiting for a real breaker timeout / quiet period to pass


@pytest.fixture
def chaos(guards_config: Config, toxic_proxy: ToxicProxies, fake_llm_server: FakeLLMServer) -> Iterator[Chaos]:
    """The real service, each model's backend going through its own proxy to ``fake_llm_server``."""
    proxies = toxic_proxy.per_model(MODELS)
    config = guards_config.with_overrides(toxic_proxy.backend_overrides(proxies), source="chaos")
    with LiveService(config) as service, httpx.Client(base_url=service.url, timeout=10) as http:
        yield Chaos(service, http, proxies, fake_llm_server)


def assert_valid_brief(data: dict[str, Any], model: str) -> None:
    assert data["source"] == "model", data
    assert data["model"] == model, data
    jsonschema.validate(data["brief"], brief_schema())


# ---------------------------------------------------------------------------------------- latency


def test_latency_above_the_health_timeout_makes_that_model_unhealthy(chaos: Chaos) -> None:
    qwen = chaos.proxies["qwen"]
    assert chaos.health("qwen").status_code == 200

    # below the 0.5 s health timeout: healthy, and the added latency shows
    with qwen.latency(200, jitter=50):
        slow = chaos.health("qwen")
    assert slow.status_code == 200
    assert slow.json()["latency_ms"] >= 140

    # real-time: 1 s (+-100 ms jitter) of latency against the 0.5 s health timeout
    with qwen.latency(1000, jitter=100):
        single = chaos.health("qwen")
        overall = chaos.health()
    assert single.status_code == 503
    assert single.json()["reason"] == "timeout"
    assert overall.status_code == 200
    body = overall.json()
    assert body["status"] == "degraded"
    assert body["models"]["qwen"] == {**body["models"]["qwen"], "status": "unhealthy", "reason": "timeout"}
    assert {body["models"][m]["status"] for m in ("mistral", "llama")} == {"healthy"}

    assert chaos.health("qwen").status_code == 200  # the toxic is gone: healthy again


# --------------------------------------------------------------------- reset_peer, timeout -> breaker


@pytest.mark.parametrize(
    ("toxic", "outcome"),
    [
        pytest.param(lambda p: p.reset_peer(), "connection_error", id="reset_peer"),
        # timeout 0 holds the answer back until removed: the 0.3 s model timeout gives up first
        pytest.param(lambda p: p.timeout(0), "timeout", id="timeout"),
    ],
)
@pytest.mark.guards_config({"llm": {"models": {"qwen": {"timeout": 0.3}}}})
def test_a_failing_qwen_opens_its_breaker_and_briefs_come_from_the_others(
    chaos: Chaos, toxic: Callable[[ToxicProxy], contextlib.AbstractContextManager[str]], outcome: str
) -> None:
    assert chaos.mode() == "creative"
    with toxic(chaos.proxies["qwen"]):
        first, second = chaos.brief("a summer citrus"), chaos.brief("a winter amber")
        for data in (first, second):
            assert_valid_brief(data, "mistral")
            assert data["models_tried"] == [{"model": "qwen", "outcome": outcome}, {"model": "mistral", "outcome": "ok"}]
        # two failures in a window of two: qwen's breaker opened, and the mode stepped down
        assert chaos.breaker("qwen") == "open"
        assert chaos.mode() == "balanced"
        third = chaos.brief("an office musk")
        assert_valid_brief(third, "mistral")
        assert third["mode"] == "balanced"
        unhealthy = chaos.health("qwen")
        assert unhealthy.status_code == 503
        assert unhealthy.json()["reason"] == "circuit_breaker_open"
    assert chaos.metric("circuit_breaker_opened_total", model="qwen") == 1
    assert chaos.metric("llm_mode_downshift_total") == 1
    assert chaos.fake.call_count("mistral") == 3


def test_when_every_model_is_unreachable_the_brief_is_the_fallback_never_a_5xx(chaos: Chaos) -> None:
    with contextlib.ExitStack() as stack:
        for proxy in chaos.proxies.values():
            stack.enter_context(proxy.reset_peer())
        data = chaos.brief()
        health = chaos.health()
        overall = health.json()
    assert data["source"] == "fallback"
    assert data["models_tried"] == [{"model": m, "outcome": "connection_error"} for m in MODELS]
    jsonschema.validate(data["brief"], brief_schema())
    # the brief is still a 200 fallback, but no model is healthy: the load balancer sees 503
    assert (health.status_code, overall["status"]) == (503, "unhealthy")
    assert {r["reason"] for r in overall["models"].values()} == {"connection_error"}


# ------------------------------------------------------------ bandwidth, slicer, slow_close -> whole


@pytest.mark.parametrize(
    ("toxic", "min_seconds"),
    [
        # real-time: ~500 bytes at 2 KB/s take about a quarter of a second
        pytest.param(lambda p: p.bandwidth(2), 0.15, id="bandwidth"),
        pytest.param(lambda p: p.slicer(16, 8, 2000), 0.0, id="slicer"),
        # a keep-alive client has its answer long before the delayed close
        pytest.param(lambda p: p.slow_close(500), 0.0, id="slow_close"),
    ],
)
def test_a_slow_or_sliced_stream_still_delivers_a_whole_valid_answer(
    chaos: Chaos, toxic: Callable[[ToxicProxy], contextlib.AbstractContextManager[str]], min_seconds: float
) -> None:
    qwen = chaos.proxies["qwen"]
    with toxic(qwen) as name:
        assert name in qwen.toxics()
        started = time.monotonic()
        data = chaos.brief()
        elapsed = time.monotonic() - started
    assert_valid_brief(data, "qwen")
    assert data["models_tried"] == [{"model": "qwen", "outcome": "ok"}]
    assert data["attempts"] == 1  # arrived whole: the guard accepted the first answer
    assert elapsed >= min_seconds
    assert chaos.metric("llm_json_parse_failures_total") == 0
    assert chaos.breaker("qwen") == "closed"


# ---------------------------------------------------------------------------------- limit_data


def test_limit_data_cuts_the_answer_which_is_rejected_and_asked_of_the_next_model(chaos: Chaos) -> None:
    qwen = chaos.proxies["qwen"]
    with qwen.limit_data(300):  # the headers and the start of the body, then the connection closes
        cut = chaos.brief()
    # the request reached the server whole; its answer was cut in transit and rejected (HTTP framing
    # sees the missing bytes before the JSON guard would), so the brief was asked of mistral
    assert chaos.fake.call_count("qwen") == 1
    assert cut["models_tried"] == [{"model": "qwen", "outcome": "connection_error"}, {"model": "mistral", "outcome": "ok"}]
    assert_valid_brief(cut, "mistral")
    assert chaos.metric("llm_request_failures_total", model="qwen") == 1
    assert chaos.metric("llm_json_parse_failures_total") == 0  # no cut text ever passed for an answer

    whole = chaos.brief("again, now that the stream is whole")
    assert_valid_brief(whole, "qwen")
    assert chaos.fake.call_count("qwen") == 2


# ------------------------------------------------------------------------------ down -> recovery


@pytest.mark.guards_config({"circuit_breaker": {"timeout": 0.5}})
def test_down_is_a_connection_error_then_the_breaker_closes_and_the_mode_upshifts(chaos: Chaos) -> None:
    qwen = chaos.proxies["qwen"]
    with qwen.down():
        health = chaos.health("qwen")
        assert health.status_code == 503
        assert health.json()["reason"] == "connection_error"
        for prompt in ("a summer citrus", "a winter amber"):
            data = chaos.brief(prompt)
            assert data["models_tried"][0] == {"model": "qwen", "outcome": "connection_error"}
            assert_valid_brief(data, "mistral")
        assert chaos.mode() == "balanced"
    assert qwen.enabled

    # real-time: the 0.5 s breaker timeout passes, then a creative brief is qwen's trial call
    wait_for("qwen's breaker going half-open", lambda: chaos.breaker("qwen") == "half_open")
    trial = chaos.brief("a creative trial", mode="creative")
    assert_valid_brief(trial, "qwen")
    assert chaos.breaker("qwen") == "closed"

    # real-time: every breaker closed for the 0.5 s quiet period; the next brief steps the mode back up
    wait_for("the mode upshifting to creative", lambda: chaos.brief()["mode"] == "creative")
    assert chaos.mode() == "creative"
    assert chaos.metric("llm_mode_upshift_total") == 1
    assert chaos.health().json()["status"] == "healthy"
