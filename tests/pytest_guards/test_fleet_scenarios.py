"""The fleet scenarios (``replicas: N``) run on the Redis backend, and only there.

Through ``pytester`` in this process: with ``configs/fleet.yaml`` every fleet scenario runs (on the
session's real redis-server) and passes, none skipped; with the memory reference config they are not
collected at all (a single-replica config has no shared state to verify).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import pytest_guards

FLEET = Path(pytest_guards.__file__).resolve().parent / "checklist" / "fleet"
FLEET_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "fleet.yaml"

pytestmark = pytest.mark.network


def test_every_fleet_scenario_holds_on_redis(pytester: pytest.Pytester, redis_server: object) -> None:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--guards-config", str(FLEET_CONFIG), str(FLEET))
    result.assert_outcomes(passed=len(list(FLEET.glob("*.scenario.yaml"))))


def test_a_memory_config_collects_no_fleet_scenario(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", str(FLEET))
    result.assert_outcomes()
    assert "no tests ran" in result.stdout.str()
