"""The issue-14 breaker semantics scenarios (slow calls, client errors, 429 Retry-After): each holds on the reference
breaker and fails, naming itself, on a breaker with the defect it targets.

Through ``pytester`` in a subprocess; the defect is patched in by a conftest beside a copy of the
scenario (a scenario item takes no fixtures).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import pytest_guards

CIRCUIT_BREAKER = Path(pytest_guards.__file__).resolve().parent / "checklist" / "circuit_breaker"
FLEET_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "fleet.yaml"
SLOW = CIRCUIT_BREAKER / "slow_calls_open.scenario.yaml"
CLIENT_ERROR = CIRCUIT_BREAKER / "client_error_reported.scenario.yaml"
RETRY_AFTER = CIRCUIT_BREAKER / "retry_after_opens.scenario.yaml"
pytestmark = pytest.mark.timeout(300)

#: the defect: a breaker that never judges how long a successful call took
SLOW_CALLS_IGNORED = """
from fragrance_ai.llm import circuit_breaker

_init = circuit_breaker.CircuitBreaker.__init__


def _ignore_slow_calls(self, *args, **kwargs):
    kwargs["slow_call_duration"] = 0
    _init(self, *args, **kwargs)


circuit_breaker.CircuitBreaker.__init__ = _ignore_slow_calls
"""

#: the defect: a slow half-open trial judged as a success (only the closed window counts slow calls);
#: in this scenario no call raises, so every failed trial is a slow one
SLOW_TRIAL_PASSES = """
from fragrance_ai.llm import circuit_breaker

_judge = circuit_breaker.CircuitBreaker._judge_trial_locked


def _slow_trial_passes(self, outcome):
    return _judge(self, circuit_breaker._SUCCESS if self.failures_total == 0 else outcome)


circuit_breaker.CircuitBreaker._judge_trial_locked = _slow_trial_passes
"""


#: the defect: a 401 reported as a plain http_error, like any flaky answer
CLIENT_ERROR_AS_HTTP_ERROR = """
from fragrance_ai.llm import failures

failures.CLIENT_ERROR_STATUSES = frozenset()
"""


#: the defect: a 429 counts as one more failure, whatever its Retry-After says
RETRY_AFTER_IGNORED = """
from fragrance_ai.llm import circuit_breaker

circuit_breaker.retry_after_hold = lambda exc, cap: 0.0
"""

#: the defect: a 429 opens the breaker at once, but for the usual timeout only
RETRY_AFTER_TOO_SHORT = """
from fragrance_ai.llm import circuit_breaker

circuit_breaker.retry_after_hold = lambda exc, cap: 0.001 if getattr(exc, "retry_after", None) else 0.0
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:logging", *args)


def copy_of(pytester: pytest.Pytester, scenario: Path) -> Path:
    copy = pytester.path / scenario.name  # beside the conftest, so that it applies
    copy.write_text(scenario.read_text(encoding="utf-8"), encoding="utf-8")
    return copy


@pytest.mark.parametrize("scenario", [SLOW, CLIENT_ERROR, RETRY_AFTER], ids=lambda p: p.stem)
def test_each_scenario_holds_on_the_reference_breaker(pytester: pytest.Pytester, scenario: Path) -> None:
    run(pytester, str(copy_of(pytester, scenario))).assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("scenario", "scenario_id", "defect", "symptom"),
    [
        (SLOW, "cb-slow-calls-count-as-failures", SLOW_CALLS_IGNORED, "breaker qwen: expected == 'open', found 'closed'"),
        (SLOW, "cb-slow-calls-count-as-failures", SLOW_TRIAL_PASSES, "breaker qwen: expected == 'open', found 'half_open'"),
        (CLIENT_ERROR, "cb-client-error-reported-as-such", CLIENT_ERROR_AS_HTTP_ERROR,
         "expected == {'model': 'qwen', 'outcome': 'client_error'}, found {'model': 'qwen', 'outcome': 'http_error'}"),
        (RETRY_AFTER, "cb-429-retry-after-opens-for-at-least-its-delay", RETRY_AFTER_IGNORED,
         "breaker qwen: expected == 'open', found 'closed'"),
        (RETRY_AFTER, "cb-429-retry-after-opens-for-at-least-its-delay", RETRY_AFTER_TOO_SHORT,
         "breaker qwen: expected == 'open', found 'half_open'"),
    ],
    ids=["slow-calls-ignored", "slow-trial-passes", "401-as-http-error", "retry-after-ignored", "open-for-timeout-only"],
)
def test_each_scenario_fails_on_its_defect(
    pytester: pytest.Pytester, scenario: Path, scenario_id: str, defect: str, symptom: str
) -> None:
    copy = copy_of(pytester, scenario)
    pytester.makeconftest(defect)
    result = run(pytester, str(copy))
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert scenario_id in out
    assert symptom in out
    assert "DO NOT PROMOTE" in out


@pytest.mark.parametrize("scenario", [SLOW, RETRY_AFTER], ids=lambda p: p.stem)
def test_a_redis_config_does_not_collect_the_memory_only_scenarios(pytester: pytest.Pytester, scenario: Path) -> None:
    result = run(pytester, "--guards-config", str(FLEET_CONFIG), str(scenario))
    assert "no tests ran" in result.stdout.str()
