"""The FastAPI app in-process (httpx.ASGITransport) on a virtual clock: health gate, guard settings, metrics,
briefs, request validation, and that no response ever carries exception text or a secret."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from service_support import MODELS, Exploding, build, client_for, openai_overrides

from fragrance_ai.clock import VirtualClock
from fragrance_ai.config_loader import default_config_path, load_config
from fragrance_ai.llm.backends import LLMBackend, SimulatedBackend
from fragrance_ai.llm.schemas import brief_schema
from fragrance_ai.service.app import MAX_PROMPT_CHARS, create_app
from fragrance_ai.service.system import GuardSystem
from pytest_guards import FaultyLLM
from pytest_guards.faults import connection_error, http_error, invalid_json, timeout, valid

BRIEF = Draft202012Validator(brief_schema())
SECRET_KEY = "sk-live-SECRET-KEY-4f8a1c"
SECRET_PASSWORD = "pw-SECRET-9d2e"

#: every guard metric the service must expose (counters with their _total suffix)
METRIC_NAMES = (
    "cache_hits_total",
    "cache_misses_total",
    "cache_evictions_total",
    "cache_ttl_expirations_total",
    "cache_size",
    "cache_max_size",
    "circuit_breaker_state",
    "circuit_breaker_rejected_total",
    "circuit_breaker_opened_total",
    "llm_requests_total",
    "llm_request_failures_total",
    "llm_mode_downshift_total",
    "llm_mode_downshift_requests_total",
    "llm_mode_upshift_total",
    "llm_mode_current",
    "llm_json_parse_failures_total",
    "llm_json_fallback_used_total",
    "llm_json_guard_requests_total",
    "llm_json_retry_count_bucket",
    "llm_health_status",
    "llm_health_check_duration_seconds_bucket",
    "llm_health_check_failures_total",
)


@pytest.fixture
async def client(system: GuardSystem) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(system=system)) as c:
        yield c


async def open_qwen_breaker(client: httpx.AsyncClient, faulty: FaultyLLM) -> None:
    faulty.set("qwen", http_error(500))
    for n in range(10):
        response = await client.post("/v1/briefs", json={"prompt": f"traffic {n}"})
        assert response.status_code == 200


# ------------------------------------------------------------------------------------- /health/llm


@pytest.mark.parametrize("query", ["?model=all", ""], ids=["all", "no model param"])
async def test_health_all_is_200_healthy_with_every_model(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get(f"/health/llm{query}")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert list(body["models"]) == list(MODELS)
    for model, result in body["models"].items():
        assert result["model"] == model
        assert (result["status"], result["circuit_state"]) == ("healthy", "closed")
        assert set(result) == {"model", "status", "latency_ms", "circuit_state"}


async def test_health_all_is_degraded_but_200_when_one_model_is_unhealthy(
    client: httpx.AsyncClient, faulty: FaultyLLM
) -> None:
    faulty.set("mistral", connection_error())
    response = await client.get("/health/llm?model=all")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["models"]["mistral"]["reason"] == "connection_error"
    assert body["models"]["qwen"]["status"] == body["models"]["llama"]["status"] == "healthy"


@pytest.mark.parametrize("model", MODELS)
async def test_health_of_one_healthy_model_is_200(client: httpx.AsyncClient, model: str) -> None:
    response = await client.get(f"/health/llm?model={model}")
    assert response.status_code == 200
    assert response.json()["model"] == model
    assert response.json()["status"] == "healthy"


async def test_health_of_one_unhealthy_model_is_503_with_its_reason(
    client: httpx.AsyncClient, faulty: FaultyLLM, clock: VirtualClock
) -> None:
    faulty.set("qwen", valid().after(30))
    response = await client.get("/health/llm?model=qwen")
    assert response.status_code == 503
    body = response.json()
    assert (body["model"], body["status"], body["reason"]) == ("qwen", "unhealthy", "timeout")
    assert body["detail"] == "Model qwen is unhealthy"
    assert clock() == 10.0


async def test_health_shows_a_breaker_opened_by_live_traffic(client: httpx.AsyncClient, faulty: FaultyLLM) -> None:
    await open_qwen_breaker(client, faulty)
    calls = faulty.call_count("qwen")
    response = await client.get("/health/llm?model=qwen")
    assert response.status_code == 503
    assert (response.json()["reason"], response.json()["circuit_state"]) == ("circuit_breaker_open", "open")
    everything = (await client.get("/health/llm")).json()
    assert everything["status"] == "degraded"
    assert everything["models"]["qwen"]["reason"] == "circuit_breaker_open"
    assert faulty.call_count("qwen") == calls


@pytest.mark.parametrize("model", ["gpt4", "QWEN", "", "qwen,mistral"])
async def test_health_of_an_unknown_model_is_422(client: httpx.AsyncClient, faulty: FaultyLLM, model: str) -> None:
    response = await client.get("/health/llm", params={"model": model})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_request"
    (detail,) = body["detail"]
    assert detail["field"] == "query.model"
    assert detail["type"] == "unknown_model"
    assert "expected one of: qwen, mistral, llama, all" in detail["message"]
    assert sum(faulty.call_count(m) for m in MODELS) == 0


async def test_health_probes_are_cached(client: httpx.AsyncClient, faulty: FaultyLLM) -> None:
    for _ in range(3):
        assert (await client.get("/health/llm?model=all")).status_code == 200
    assert (await client.get("/health/llm?model=qwen")).status_code == 200
    assert [faulty.call_count(m) for m in MODELS] == [1, 1, 1]


# ----------------------------------------------------------------------------------- /health/guards


async def test_guard_settings_show_the_effective_configuration_and_live_state(
    client: httpx.AsyncClient, faulty: FaultyLLM
) -> None:
    body = (await client.get("/health/guards")).json()
    guard = body["json_guard"]
    assert (guard["enabled"], guard["max_retries"], guard["fallback_enabled"]) == (True, 3, True)
    assert (guard["backoff_base"], guard["jitter"], guard["backoff_max"]) == (1.0, 0.5, 8.0)
    breakers = body["circuit_breaker"]["models"]
    assert breakers["qwen"]["failure_threshold"] == 0.4
    assert breakers["mistral"]["failure_threshold"] == breakers["llama"]["failure_threshold"] == 0.5
    assert {m: b["state"] for m, b in breakers.items()} == dict.fromkeys(MODELS, "closed")
    assert (body["cache"]["max_size"], body["cache"]["ttl_seconds"]) == (1000, 600)
    assert body["cache"]["stats"]["size"] == 0
    assert body["mode"]["current"] == "creative"
    assert body["models"]["qwen"] == {
        "backend": "openai", "model_id": "qwen", "timeout": 30, "stream": False, "chunk_timeout": 10
    }
    assert body["health_check"] == {"timeout": 10, "cache_seconds": 5, "probe_interval": 0}

    await open_qwen_breaker(client, faulty)
    after = (await client.get("/health/guards")).json()
    assert after["circuit_breaker"]["models"]["qwen"]["state"] == "open"
    assert after["mode"]["current"] == "balanced"
    assert after["mode"]["downshifts_total"] == 1
    assert after["cache"]["stats"]["size"] == 10
    assert after["cache"]["stats"]["misses"] == 10


async def test_no_secret_ever_reaches_a_response(clock: VirtualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAGRANCE_TEST_API_KEY", SECRET_KEY)

    def url_with_password(model: str) -> str:
        return f"http://svc:{SECRET_PASSWORD}@127.0.0.1:9/{model}/v1"

    with FaultyLLM(MODELS, asleep=clock.asleep, sleep=clock.sleep, base_url_for=url_with_password) as faulty:
        system = build(clock, openai_overrides(faulty, api_key_env="FRAGRANCE_TEST_API_KEY"))
        configured = system.config.llm.models["qwen"]
        assert configured.base_url is not None
        assert SECRET_PASSWORD in configured.base_url
        assert configured.api_key_env == "FRAGRANCE_TEST_API_KEY"
        bodies: list[str] = []
        try:
            async with client_for(create_app(system=system)) as client:

                async def hit(method: str, url: str, **kwargs: Any) -> None:
                    bodies.append((await client.request(method, url, **kwargs)).text)

                await hit("GET", "/health/llm?model=all")
                await hit("POST", "/v1/briefs", json={"prompt": "a"})
                # the server's error body echoes the key; the backend redacts it from its own excerpt
                faulty.set("qwen", http_error(401, body=f'{{"error": "invalid key {SECRET_KEY}"}}'))
                faulty.set("mistral", http_error(500, body=f"proxy at http://svc:{SECRET_PASSWORD}@127.0.0.1:9"))
                faulty.set("llama", connection_error())
                clock.advance(5)
                await hit("GET", "/health/llm?model=all")
                for model in MODELS:
                    await hit("GET", f"/health/llm?model={model}")
                await hit("POST", "/v1/briefs", json={"prompt": "b"})
                await hit("GET", "/health/guards")
                await hit("GET", "/metrics")
                await hit("GET", "/health/llm?model=nope")
                await hit("POST", "/v1/briefs", json={"prompt": ""})
                await hit("GET", "/openapi.json")
            faulty.check()
        finally:
            await system.aclose()
    assert len(bodies) == 12
    assert all(bodies)
    assert '"source":"fallback"' in bodies[6]
    for text in bodies:
        assert SECRET_KEY not in text
        assert SECRET_PASSWORD not in text
        assert "FRAGRANCE_TEST_API_KEY" not in text


# ------------------------------------------------------------------------------------------ /metrics


async def test_metrics_expose_every_guard_metric(client: httpx.AsyncClient) -> None:
    await client.post("/v1/briefs", json={"prompt": "warm amber"})
    await client.post("/v1/briefs", json={"prompt": "warm amber"})
    await client.get("/health/llm")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {line.split("{")[0].split(" ")[0] for line in response.text.splitlines() if line and not line.startswith("#")}
    missing = [name for name in METRIC_NAMES if name not in names]
    assert not missing, f"missing from /metrics: {missing}"
    assert 'llm_requests_total{model="qwen"} 1.0' in response.text
    assert "cache_hits_total 1.0" in response.text
    assert 'llm_health_status{model="llama"} 1.0' in response.text
    assert 'llm_mode_current{mode="creative"} 1.0' in response.text


# --------------------------------------------------------------------------------------- /v1/briefs


async def test_a_brief_comes_with_its_source_model_and_mode(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/briefs", json={"prompt": "a fresh summer citrus scent"})
    assert response.status_code == 200
    body = response.json()
    assert (body["source"], body["model"], body["mode"], body["attempts"]) == ("model", "qwen", "creative", 1)
    assert BRIEF.is_valid(body["brief"])
    assert "error" not in body["brief"]
    assert body["models_tried"] == [{"model": "qwen", "outcome": "ok"}]
    again = (await client.post("/v1/briefs", json={"prompt": "a fresh summer citrus scent"})).json()
    assert (again["source"], again["brief"]) == ("cache", body["brief"])


async def test_a_brief_in_a_chosen_mode(client: httpx.AsyncClient, faulty: FaultyLLM) -> None:
    body = (await client.post("/v1/briefs", json={"prompt": "x", "mode": "fast"})).json()
    assert (body["mode"], body["model"]) == ("fast", "llama")
    assert faulty.calls("llama")[0].request["max_tokens"] == 256


async def test_a_prompt_of_exactly_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/briefs", json={"prompt": "r" * MAX_PROMPT_CHARS})
    assert response.status_code == 200


BAD_REQUESTS: list[tuple[str, dict[str, Any], str, str]] = [
    ("missing prompt", {"json": {}}, "body.prompt", "missing"),
    ("missing prompt with mode", {"json": {"mode": "fast"}}, "body.prompt", "missing"),
    ("empty prompt", {"json": {"prompt": ""}}, "body.prompt", "string_too_short"),
    ("blank prompt", {"json": {"prompt": " \n\t "}}, "body.prompt", "value_error"),
    ("oversized prompt", {"json": {"prompt": "x" * (MAX_PROMPT_CHARS + 1)}}, "body.prompt", "string_too_long"),
    ("prompt not a string", {"json": {"prompt": 42}}, "body.prompt", "string_type"),
    ("unknown mode", {"json": {"prompt": "a", "mode": "turbo"}}, "body.mode", "literal_error"),
    # an unknown key is never named: the field is the schema's (body), not the client's key
    ("extra field", {"json": {"prompt": "a", "temperature": 2}}, "body", "extra_forbidden"),
    ("not JSON", {"content": b"prompt=a", "headers": {"content-type": "application/json"}}, "body", "json_invalid"),
    ("not UTF-8", {"content": b'{"prompt": "\xff"}', "headers": {"content-type": "application/json"}}, "body", "json_encoding"),
    ("form content type", {"data": {"prompt": "a"}}, "body", "content_type"),
    ("a JSON list", {"json": ["prompt"]}, "body", "model_attributes_type"),
]


@pytest.mark.parametrize(("request_kwargs", "field", "kind"), [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
async def test_a_bad_brief_request_is_422_naming_the_field(
    client: httpx.AsyncClient, faulty: FaultyLLM, request_kwargs: dict[str, Any], field: str, kind: str
) -> None:
    response = await client.post("/v1/briefs", **request_kwargs)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_request"
    assert [(d["field"], d["type"]) for d in body["detail"]] == [(field, kind)]
    assert body["detail"][0]["message"]
    assert len(response.content) < 500  # the input is never echoed back
    assert sum(faulty.call_count(m) for m in MODELS) == 0


async def test_an_oversized_prompt_is_not_echoed(client: httpx.AsyncClient) -> None:
    prompt = "Z" * (MAX_PROMPT_CHARS + 1)
    response = await client.post("/v1/briefs", json={"prompt": prompt})
    assert response.status_code == 422
    assert "ZZZZZZZZ" not in response.text
    assert response.json()["detail"][0]["message"] == "String should have at most 4000 characters"


async def test_every_model_failing_is_a_200_fallback_marked_error(client: httpx.AsyncClient, faulty: FaultyLLM) -> None:
    faulty.set("qwen", timeout())
    faulty.set("mistral", http_error(429, retry_after=10))
    faulty.set("llama", invalid_json())
    response = await client.post("/v1/briefs", json={"prompt": "rain"})
    assert response.status_code == 200
    body = response.json()
    assert (body["source"], body["model"], body["brief"]["error"]) == ("fallback", None, True)
    assert BRIEF.is_valid(body["brief"])
    assert body["models_tried"] == [
        {"model": "qwen", "outcome": "timeout"},
        {"model": "mistral", "outcome": "http_error"},
        {"model": "llama", "outcome": "invalid_response"},
    ]


async def test_fallback_disabled_and_every_model_failing_is_a_503_not_a_500(
    clock: VirtualClock, faulty: FaultyLLM
) -> None:
    system = build(clock, {**openai_overrides(faulty), "json_guard": {"fallback_enabled": False}})
    try:
        for model in MODELS:
            faulty.set(model, http_error(500))
        async with client_for(create_app(system=system)) as client:
            response = await client.post("/v1/briefs", json={"prompt": "rain"})
        assert response.status_code == 503
        assert response.json() == {
            "error": "no_model_available",
            "mode": "creative",
            "models_tried": [{"model": m, "outcome": "http_error"} for m in MODELS],
        }
    finally:
        await system.aclose()


# -------------------------------------------------------------------------------- no exception text


async def test_no_response_contains_a_backends_exception_text(clock: VirtualClock) -> None:
    backends: dict[str, LLMBackend] = {m: Exploding(m) for m in MODELS}
    system = build(clock, {}, backends)
    try:
        async with client_for(create_app(system=system)) as client:
            brief = await client.post("/v1/briefs", json={"prompt": "x"})
            assert brief.status_code == 200
            assert brief.json()["source"] == "fallback"
            assert [t["outcome"] for t in brief.json()["models_tried"]] == ["error"] * 3
            everything = await client.get("/health/llm")
            assert everything.status_code == 503  # no model is healthy: a load balancer must see it
            assert everything.json()["status"] == "unhealthy"
            one = await client.get("/health/llm?model=qwen")
            assert one.status_code == 503
            assert one.json()["reason"] == "error"
            responses = [brief, everything, one, await client.get("/health/guards"), await client.get("/metrics")]
        for response in responses:
            assert "SECRET-TRACE-123" not in response.text
            assert "Traceback" not in response.text
            assert "RuntimeError" not in response.text
    finally:
        await system.aclose()


@pytest.mark.parametrize(
    ("method", "url", "target", "kwargs"),
    [
        ("POST", "/v1/briefs", "ensemble.generate_brief", {"json": {"prompt": "x"}}),
        ("GET", "/health/llm", "health_checker.check_all_models", {}),
        ("GET", "/health/llm?model=qwen", "health_checker.check_model", {}),
        ("GET", "/health/guards", "guard_settings", {}),
    ],
)
async def test_an_unexpected_exception_in_a_route_is_a_bare_500(
    system: GuardSystem,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    method: str,
    url: str,
    target: str,
    kwargs: dict[str, Any],
) -> None:
    def boom(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("SECRET-TRACE-123")

    owner_name, _, attr = target.rpartition(".")
    owner = getattr(system, owner_name) if owner_name else system
    monkeypatch.setattr(owner, attr, boom)
    response = await client.request(method, url, **kwargs)
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error"}
    assert "SECRET-TRACE-123" in caplog.text  # logged for the operator, never sent to the client


# --------------------------------------------------------------------------------------- lifecycle


async def test_create_app_from_a_config_owns_and_closes_its_system() -> None:
    app = create_app(load_config(default_config_path()))
    system: GuardSystem = app.state.system
    assert all(isinstance(b, SimulatedBackend) for b in system.backends.values())
    async with app.router.lifespan_context(app):
        async with client_for(app) as client:
            assert (await client.get("/health/llm")).json()["status"] == "healthy"
            assert (await client.post("/v1/briefs", json={"prompt": "x"})).json()["source"] == "model"
        assert system.cache is not None
        assert not system.cache.closed
    assert system.cache.closed


async def test_create_app_around_a_given_system_leaves_it_open(
    system: GuardSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[bool] = []

    async def aclose() -> None:
        closed.append(True)

    monkeypatch.setattr(system, "aclose", aclose)
    app = create_app(system=system)
    async with app.router.lifespan_context(app):
        pass
    assert closed == []  # the caller built it, the caller closes it
    assert app.state.system is system
