"""What every test of the suite shares: pytest runs started by a test start lean; no test leaks frozen time.

Tests that run pytest in a subprocess (pytester, the xdist and verify runs) judge our plugin, not
hypothesis or schemathesis, whose entry points cost several seconds of imports per start. Those two
are blocked for the inner runs only; the outer run keeps them for the property and contract tests.

A test that leaves freezegun running (a virtual clock started and never stopped, in any thread)
freezes ``time.time()`` for every test after it, which then hangs or fails far from the cause: the
test that leaks fails instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from freezegun import api as freezegun_api

LEAN_ADDOPTS = "-p no:hypothesispytest -p no:schemathesis"


@pytest.fixture(autouse=True)
def _lean_inner_pytest(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")  # it clears PYTEST_ADDOPTS as it starts: set ours after it
    existing = os.environ.get("PYTEST_ADDOPTS", "")
    monkeypatch.setenv("PYTEST_ADDOPTS", f"{existing} {LEAN_ADDOPTS}".strip())


@pytest.fixture(autouse=True)
def _no_frozen_time_leaks() -> Iterator[None]:
    before = len(freezegun_api.freeze_factories)
    yield
    leaked = len(freezegun_api.freeze_factories) - before
    assert leaked <= 0, f"this test left {leaked} frozen clock(s) running: time.time() stays frozen for the tests after it"
