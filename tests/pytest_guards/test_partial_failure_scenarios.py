"""The partial-failure scenarios and the half-open policy scenario: they hold on the reference breaker and
fail, naming themselves, on the breaker as it was before (window of 20 calls, half-open judged on
consecutive successes), on the memory and on the Redis backend.

Through ``pytester`` in a subprocess, with ``--guards-config`` naming the config under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import pytest_guards

CHECKLIST = Path(pytest_guards.__file__).resolve().parent / "checklist"
PARTIAL = CHECKLIST / "partial_failure"
HALF_OPEN = CHECKLIST / "circuit_breaker" / "half_open_judged_on_failure_rate.scenario.yaml"
FLEET_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "fleet.yaml"
#: the breaker before issue 14: a 20-call window, and any failed half-open trial reopens
RANDOM_20 = PARTIAL / "random_20_percent_everywhere.scenario.yaml"
#: each run below simulates thousands of briefs in a subprocess (tens of seconds on a busy machine)
pytestmark = pytest.mark.timeout(600)
TODAY = "circuit_breaker:\n  window_size: 20\n  half_open_policy: consecutive\n"


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:logging", *args)


def test_partial_failure_and_half_open_scenarios_hold_on_the_reference_breaker(pytester: pytest.Pytester) -> None:
    result = run(pytester, str(PARTIAL), str(HALF_OPEN))
    result.assert_outcomes(passed=len(list(PARTIAL.glob("*.scenario.yaml"))) + 1)


def test_they_fail_on_the_breaker_as_it_was(pytester: pytest.Pytester) -> None:
    config = pytester.path / "today.yaml"
    config.write_text(TODAY, encoding="utf-8")
    result = run(pytester, "--guards-config", str(config), str(RANDOM_20), str(HALF_OPEN))
    out = result.stdout.str()
    result.assert_outcomes(failed=2)
    assert "DO NOT PROMOTE" in out
    # 20% random faults: the 20-call window opens on noise and consecutive trials keep breakers open
    assert "pf-20-percent-random-faults-on-every-model" in out.split("failing:")[1]
    assert "rates fallback_rate: expected < 0.02, found 0.0455" in out
    # one failed trial in five reopens a recovering model under `consecutive`
    assert "cb-half-open-one-failed-trial-of-five-closes" in out.split("failing:")[1]
    assert "breaker qwen: expected == 'closed', found 'open'" in out


@pytest.mark.network
@pytest.mark.timeout(600)
def test_half_open_policy_holds_on_redis_and_consecutive_is_kept_there(
    pytester: pytest.Pytester, redis_server: object
) -> None:
    result = run(pytester, "--guards-config", str(FLEET_CONFIG), str(HALF_OPEN))
    result.assert_outcomes(passed=1)
    config = pytester.path / "fleet_consecutive.yaml"
    config.write_text(FLEET_CONFIG.read_text(encoding="utf-8") + "circuit_breaker:\n  half_open_policy: consecutive\n")
    result = run(pytester, "--guards-config", str(config), str(HALF_OPEN))
    result.assert_outcomes(failed=1)
    assert "breaker qwen: expected == 'closed', found 'open'" in result.stdout.str()


GROWS = CHECKLIST / "circuit_breaker" / "open_period_grows.scenario.yaml"
#: the defect: every opening lasts `timeout`, whatever the multiplier says
#: (patched at import, in the pytester subprocess only: a scenario item takes no fixtures)
FIXED_OPEN_PERIOD = """
from fragrance_ai.llm import breaker_policy

breaker_policy.OpenPeriod.on_open = lambda self, now: self.timeout
"""


def test_the_open_period_scenario_holds_and_fails_on_a_fixed_open_period(pytester: pytest.Pytester) -> None:
    copy = pytester.path / GROWS.name  # beside the conftest below, so that it applies
    copy.write_text(GROWS.read_text(encoding="utf-8"), encoding="utf-8")
    run(pytester, str(copy)).assert_outcomes(passed=1)
    pytester.makeconftest(FIXED_OPEN_PERIOD)
    result = run(pytester, str(copy))
    result.assert_outcomes(failed=1)
    assert "cb-open-period-grows-on-consecutive-trips-and-resets" in result.stdout.str()
    assert "breaker qwen: expected == 'open', found 'half_open'" in result.stdout.str()


def test_a_redis_config_does_not_collect_the_memory_only_scenario(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--guards-config", str(FLEET_CONFIG), str(GROWS))
    assert "no tests ran" in result.stdout.str()
