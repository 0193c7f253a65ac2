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


@pytest.mark.toxiproxy
def test_cutting_redis_over_the_network_fails_a_backend_that_raises(pytester: pytest.Pytester, redis_server: object) -> None:
    """The network scenario that takes Redis down fails on the defect it is for: Redis errors let through (5xx)."""
    scenario = FLEET / "net_redis_down_and_back.scenario.yaml"
    raising = pytester.path / "raising.yaml"
    text = FLEET_CONFIG.read_text(encoding="utf-8")
    assert text.count("on_redis_error: local") == 1  # the line the copy changes
    raising.write_text(text.replace("on_redis_error: local", "on_redis_error: raise"), encoding="utf-8")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--guards-config", str(raising), str(scenario))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*fleet-net-redis-down-serves-local-then-recovers*", "*response code: expected == 200, found 5*"]
    )
