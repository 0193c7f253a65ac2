"""The hostile HTTP corpus against the service: in-process (httpx.ASGITransport) and over a real loopback socket.

Every case must get its documented status within its time bound and echo nothing it sent
(``http_corpus.py`` says what is checked). The reference config serves every model from the
simulator, so a valid brief costs no network.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from http_corpus import Case, load_corpus, run_case

from fragrance_ai.config_loader import get_config
from fragrance_ai.service.app import create_app
from pytest_guards import LiveService

CASES = load_corpus()
#: the whole socket run is bounded in time as well as in count
SOCKET_RUN_SECONDS = 120


def test_the_corpus_is_large_and_every_case_is_bounded() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)
    assert all(0 < c.max_ms <= 5000 for c in CASES)
    assert {c.status for c in CASES} >= {200, 404, 405, 413, 422}


@pytest.fixture(scope="module")
def app() -> FastAPI:
    """One service for every case (the reference config has no background probe to start)."""
    return create_app(get_config())


@pytest.fixture
async def in_process(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test", timeout=10) as client:
        yield client


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_each_case_in_process(in_process: httpx.AsyncClient, case: Case) -> None:
    result = await run_case(in_process, case, slack=2.0)  # 2x: two cores shared by the whole suite
    assert result.ok, result.line()


@pytest.mark.network
async def test_every_case_over_a_loopback_socket() -> None:
    with LiveService(get_config()) as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client, asyncio.timeout(SOCKET_RUN_SECONDS):
            results = [await run_case(client, case, slack=2.0) for case in CASES]
    failed = [r.line() for r in results if not r.ok]
    assert not failed, "\n".join(failed)
    assert len(results) == len(CASES)
