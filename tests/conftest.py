"""What every test of the suite shares: pytest runs started by a test start lean.

Tests that run pytest in a subprocess (pytester, the xdist and verify runs) judge our plugin, not
hypothesis or schemathesis, whose entry points cost several seconds of imports per start. Those two
are blocked for the inner runs only; the outer run keeps them for the property and contract tests.
"""

from __future__ import annotations

import os

import pytest

LEAN_ADDOPTS = "-p no:hypothesispytest -p no:schemathesis"


@pytest.fixture(autouse=True)
def _lean_inner_pytest(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")  # it clears PYTEST_ADDOPTS as it starts: set ours after it
    existing = os.environ.get("PYTEST_ADDOPTS", "")
    monkeypatch.setenv("PYTEST_ADDOPTS", f"{existing} {LEAN_ADDOPTS}".strip())
