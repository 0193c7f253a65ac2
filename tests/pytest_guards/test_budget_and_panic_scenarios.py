"""The retry-budget and panic-rule scenarios (issue 14): each holds on the reference code and fails, naming
itself, on the defect it targets: unlimited re-asks (the budget admits every re-ask, or is switched off);
no panic trial (every model open -> fallbacks for the whole timeout); unbounded panic trials.

Through ``pytester`` in a subprocess, like the other partial-failure scenario tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import pytest_guards

CHECKLIST = Path(pytest_guards.__file__).resolve().parent / "checklist"
BUDGET = CHECKLIST / "json_guard" / "retry_budget_caps_reasks.scenario.yaml"
BUDGET_ID = "jg-retry-budget-caps-reasks-in-a-json-outage"
pytestmark = pytest.mark.timeout(600)
#: the defect: every re-ask is admitted, whatever the budget says (patched in the subprocess only)
UNLIMITED_REASKS = """
from fragrance_ai.llm import retry_budget

retry_budget.RetryBudget.try_reask = lambda self: True
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:logging", *args)


def test_the_retry_budget_scenario_holds_and_fails_on_unlimited_reasks(pytester: pytest.Pytester) -> None:
    copy = pytester.path / BUDGET.name  # beside the conftest below, so that it applies
    copy.write_text(BUDGET.read_text(encoding="utf-8"), encoding="utf-8")
    run(pytester, str(copy)).assert_outcomes(passed=1)
    pytester.makeconftest(UNLIMITED_REASKS)
    result = run(pytester, str(copy))
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "DO NOT PROMOTE" in out
    assert BUDGET_ID in out.split("failing:")[1]
    assert "calls to qwen: expected <= 560, found 1600" in out


def test_the_retry_budget_scenario_fails_with_the_budget_switched_off(pytester: pytest.Pytester) -> None:
    config = pytester.path / "no_budget.yaml"
    config.write_text("json_guard:\n  retry_budget_enabled: false\n", encoding="utf-8")
    result = run(pytester, "--guards-config", str(config), str(BUDGET))
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert BUDGET_ID in out.split("failing:")[1]
    assert "metric json_guard_retry_budget_denied_total delta: expected >= 800, found 0" in out


RECOVERS = CHECKLIST / "circuit_breaker" / "panic_trial_recovers_the_fleet.scenario.yaml"
DEAD = CHECKLIST / "circuit_breaker" / "panic_dead_fleet_bounded.scenario.yaml"
#: the defect: the rule never hands out a trial (the checklist's all-open -> fallback for a whole timeout)
NO_PANIC = """
from fragrance_ai.llm import panic

panic.PanicRule.pick = lambda self, mode, models, breakers: None
"""
#: the defect: a trial on every all-open brief, however recent the last one
UNBOUNDED_PANIC = """
from fragrance_ai.llm import panic

_pick = panic.PanicRule.pick


def pick(self, mode, models, breakers):
    self._last_trial = None
    return _pick(self, mode, models, breakers)


panic.PanicRule.pick = pick
"""


def copies(pytester: pytest.Pytester, *scenarios: Path) -> list[str]:
    paths = []
    for scenario in scenarios:
        copy = pytester.path / scenario.name
        copy.write_text(scenario.read_text(encoding="utf-8"), encoding="utf-8")
        paths.append(str(copy))
    return paths


def test_the_panic_scenarios_hold_on_the_reference_code(pytester: pytest.Pytester) -> None:
    run(pytester, *copies(pytester, RECOVERS, DEAD)).assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("defect", "failing", "figure"),
    [
        (NO_PANIC, "cb-panic-trial-recovers-the-fleet-before-the-timeout", "rates fallback_rate: expected <= 0.15, found 1.0"),
        (UNBOUNDED_PANIC, "cb-panic-asks-a-dead-fleet-at-most-once-per-interval", "calls to llama: expected <= 22, found"),
    ],
    ids=["no-panic-trial", "unbounded-panic-trials"],
)
def test_each_panic_scenario_fails_on_its_defect(pytester: pytest.Pytester, defect: str, failing: str, figure: str) -> None:
    paths = copies(pytester, RECOVERS, DEAD)
    pytester.makeconftest(defect)
    result = run(pytester, *paths)
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert failing in out.split("failing:")[1]
    assert figure in out


FLEET_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "fleet.yaml"


@pytest.mark.network
def test_on_redis_the_budget_holds_per_replica_and_the_panic_scenarios_are_memory_only(
    pytester: pytest.Pytester, redis_server: object
) -> None:
    result = run(pytester, "--guards-config", str(FLEET_CONFIG), str(BUDGET), str(RECOVERS), str(DEAD))
    result.assert_outcomes(passed=1)  # the two panic scenarios are not collected for a Redis config
    assert "Circuit Breaker     0 passed, 0 failed" in result.stdout.str()
