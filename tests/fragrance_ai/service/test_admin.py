"""The admin endpoint: absent without FRAGRANCE_ADMIN_TOKENS, bearer tokens compared in constant time, the
operator named in the audit line and the metric, never a token; forced states hold until released."""

from __future__ import annotations

import logging
import re

import pytest
from service_support import client_for

from fragrance_ai.clock import VirtualClock
from fragrance_ai.service.admin import AdminTokenError, AdminTokens
from fragrance_ai.service.app import create_app
from fragrance_ai.service.system import GuardSystem
from pytest_guards import FaultyLLM
from pytest_guards.faults import http_error

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-fedcba9876543210xx"
ENV = {"FRAGRANCE_ADMIN_TOKENS": f"alice:{ALICE}, bob:{BOB}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_without_tokens_the_admin_routes_do_not_exist(system: GuardSystem) -> None:
    async with client_for(create_app(system=system, environ={})) as client:
        response = await client.post("/admin/breakers/qwen/force-open", headers=bearer(ALICE))
        assert response.status_code == 404
        assert system.breakers.get_breaker("qwen").state == "closed"  # type: ignore[union-attr]


async def test_the_admin_routes_are_not_in_the_public_openapi_document(system: GuardSystem) -> None:
    async with client_for(create_app(system=system, environ=ENV)) as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert not [p for p in paths if p.startswith("/admin")]


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("alice-token-0123456789abcdeX"), {"Authorization": f"Basic {ALICE}"}, {"Authorization": "Bearer "}],
)
async def test_a_missing_or_wrong_token_is_401_and_changes_nothing(system: GuardSystem, headers: dict[str, str]) -> None:
    async with client_for(create_app(system=system, environ=ENV)) as client:
        response = await client.post("/admin/breakers/qwen/force-open", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"error": "unauthorized"}
        assert system.breakers.get_breaker("qwen").state == "closed"  # type: ignore[union-attr]


async def test_force_open_holds_past_the_timeout_until_released_with_audit_and_metric(
    system: GuardSystem, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with client_for(create_app(system=system, environ=ENV)) as client:
        with caplog.at_level(logging.WARNING, logger="fragrance_ai.audit"):
            response = await client.post("/admin/breakers/qwen/force-open", headers=bearer(BOB))
        assert response.status_code == 200
        assert response.json() == {"model": "qwen", "action": "force-open", "operator": "bob", "state": "open", "forced": "open"}
        assert "admin action: operator=bob action=force-open model=qwen state=open" in caplog.text
        assert ALICE not in caplog.text
        assert BOB not in caplog.text
        clock.advance(3600)  # no half-open while forced
        assert system.breakers.get_breaker("qwen").state == "open"  # type: ignore[union-attr]
        brief = (await client.post("/v1/briefs", json={"prompt": "a citrus scent", "mode": "creative"})).json()
        assert brief["model"] == "mistral"
        metrics = (await client.get("/metrics")).text
        assert 'circuit_breaker_admin_actions_total{action="force-open",model="qwen",operator="bob"} 1.0' in metrics
        released = await client.post("/admin/breakers/qwen/release", headers=bearer(ALICE))
        assert released.json()["state"] == "closed"
        assert released.json()["forced"] is None


async def test_force_closed_never_opens_on_failures_until_released(system: GuardSystem, faulty: FaultyLLM) -> None:
    faulty.set("qwen", http_error(500))
    breaker = system.breakers.get_breaker("qwen")
    assert breaker is not None
    async with client_for(create_app(system=system, environ=ENV)) as client:
        assert (await client.post("/admin/breakers/qwen/force-closed", headers=bearer(ALICE))).status_code == 200
        for n in range(breaker.minimum_calls + 5):
            await client.post("/v1/briefs", json={"prompt": f"vetiver {n}", "mode": "creative"})
        assert breaker.state == "closed"
        await client.post("/admin/breakers/qwen/release", headers=bearer(ALICE))
        for n in range(breaker.minimum_calls):
            await client.post("/v1/briefs", json={"prompt": f"saffron {n}", "mode": "creative"})
        assert breaker.state == "open"


async def test_an_unknown_model_or_action_is_404_without_echo(system: GuardSystem) -> None:
    async with client_for(create_app(system=system, environ=ENV)) as client:
        for path in ("/admin/breakers/gpt-9/force-open", "/admin/breakers/qwen/explode"):
            response = await client.post(path, headers=bearer(ALICE))
            assert response.status_code == 404
            assert "gpt-9" not in response.text
            assert "explode" not in response.text


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("alice", "entry 1: expected name:token"),
        ("Alice:" + ALICE, "entry 1: the name must be lower-case"),
        ("alice:short", "entry 1 (alice): the token must be at least 16 printable characters"),
        (f"alice:{ALICE},alice:{BOB}", "entry 2: the name 'alice' is given twice"),
        (f"alice:{ALICE},bob:{ALICE}", "entry 2 (bob): the same token as another operator's"),
    ],
)
def test_malformed_tokens_are_one_clear_error_that_never_shows_a_token(value: str, message: str) -> None:
    with pytest.raises(AdminTokenError, match=re.escape(message)) as info:
        AdminTokens.from_env({"FRAGRANCE_ADMIN_TOKENS": value})
    assert ALICE not in str(info.value)
    assert str(info.value).startswith("FRAGRANCE_ADMIN_TOKENS: ")


def test_a_malformed_token_variable_starts_nothing() -> None:
    with pytest.raises(AdminTokenError):
        create_app(environ={"FRAGRANCE_ADMIN_TOKENS": "alice:short"})


def test_who_names_the_matching_operator_only() -> None:
    tokens = AdminTokens.from_env(ENV)
    assert tokens is not None
    assert tokens.names == ("alice", "bob")
    assert tokens.who(f"Bearer {ALICE}") == "alice"
    assert tokens.who(f"bearer {BOB}") == "bob"
    assert tokens.who(f"Bearer {ALICE}x") is None
    assert tokens.who(None) is None
    assert ALICE not in repr(tokens)


async def test_with_the_redis_backend_forcing_is_refused_409(system: GuardSystem) -> None:
    object.__setattr__(system, "state", object())  # stands for a RedisLink: the route only asks whether there is one
    try:
        async with client_for(create_app(system=system, environ=ENV)) as client:
            response = await client.post("/admin/breakers/qwen/force-open", headers=bearer(ALICE))
            assert response.status_code == 409
            assert response.json()["error"] == "memory_only"
    finally:
        object.__setattr__(system, "state", None)

