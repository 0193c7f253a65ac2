"""LiveService: the real service on a real loopback socket, started and stopped within bounds."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest

from fragrance_ai.config_loader import Config
from pytest_guards import FakeLLMServer, LiveService
from pytest_guards.network import UvicornThread

pytestmark = pytest.mark.network


def test_it_serves_the_app_on_loopback_and_closes_the_system_on_stop(
    guards_config: Config, fake_llm_server: FakeLLMServer
) -> None:
    config = guards_config.with_overrides(
        {"llm": {"models": {m: {"backend": "openai", "base_url": fake_llm_server.base_url(m)} for m in fake_llm_server.models}}}
    )
    with LiveService(config) as service:
        assert service.url.startswith("http://127.0.0.1:")
        brief = httpx.post(f"{service.url}/v1/briefs", json={"prompt": "a summer citrus"}, timeout=10)
        assert brief.status_code == 200
        assert brief.json()["source"] == "model"
        assert fake_llm_server.call_count(brief.json()["model"]) == 1
        client = service.system._owned_client
        assert client is not None
        assert not client.is_closed
    assert client.is_closed  # the app's lifespan shutdown ran
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{service.url}/health/guards", timeout=2)


def test_it_refuses_ambiguous_arguments_and_use_before_start(guards_config: Config) -> None:
    with pytest.raises(ValueError, match="exactly one of config= or app="):
        LiveService()
    with pytest.raises(ValueError, match="start_timeout must be a positive number of seconds, found 0"):
        LiveService(guards_config, start_timeout=0)
    with pytest.raises(RuntimeError, match="not started"):
        _ = LiveService(guards_config).url


def test_a_service_that_cannot_start_is_an_error_within_the_timeout(guards_config: Config) -> None:
    async def broken_app(scope: dict[str, object], receive: object, send: object) -> None:
        raise RuntimeError("no lifespan here")

    # uvicorn with lifespan "on" reports an app whose startup raises, and does not start
    with pytest.raises(RuntimeError, match="did not start"):
        LiveService(app=broken_app, start_timeout=5).start()


async def _echo_client(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app answering with the peer address uvicorn saw (so the test can find its connection)."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(list(scope["client"])).encode()})


def test_its_connections_have_tcp_nodelay() -> None:
    """The pre-bound socket says it is TCP, so asyncio sets TCP_NODELAY on every accepted connection.

    A socket made with proto 0 leaves Nagle on: uvicorn writes the head and the body apart, and the body
    waits for the client's delayed ACK, 40-44 ms under every request to the fake LLM server or LiveService.
    """
    server = UvicornThread(_echo_client, label="nodelay", lifespan="off")
    server.start(10.0)  # real-time: a loopback server starting
    try:
        with httpx.Client(timeout=10.0) as client:  # keep-alive: the connection stays open for the check
            peer = client.get(f"http://127.0.0.1:{server.port}/").json()
            assert server.server is not None
            transport = server.server.transport_of(peer)
            assert transport is not None, "the connection the request came on is open"
            sock = transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        server.stop(10.0)
