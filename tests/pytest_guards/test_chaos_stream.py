"""The streamed ``limit_data`` network scenario passes, and fails against a backend that drops a cut stream.

real-time: a network scenario runs the real service behind a real Toxiproxy, so this test runs on the
wall clock (two scenario runs of a few seconds each, each bounded by the pytester timeout).
"""

from __future__ import annotations

import shutil

import pytest

from pytest_guards.scenarios import CHECKLIST_DIR

pytest_plugins = ["pytester"]
pytestmark = [pytest.mark.toxiproxy, pytest.mark.network]

SCENARIO = CHECKLIST_DIR / "network" / "limit_data_stream_truncated.scenario.yaml"

#: the defect: a backend that treats a stream cut mid-answer as a connection failure (the answer never
#: reaches the guard, and the cut counts against the model's breaker)
DROPS_CUT_STREAMS = '''
from fragrance_ai.llm.backends import BackendConnectionError
from fragrance_ai.llm.backends import openai as backend_module

_read = backend_module.read_stream


async def refuses_cut_streams(chunks, *, model, **limits):
    answer = await _read(chunks, model=model, **limits)
    if not answer.complete:
        raise BackendConnectionError(model, "the stream was cut")
    return answer


backend_module.read_stream = refuses_cut_streams
'''


@pytest.fixture
def guards(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in ("CI", "TOXIPROXY_URL"):
        monkeypatch.delenv(name, raising=False)
    pytester.makeini("[pytest]\n")
    shutil.copy(SCENARIO, pytester.path / SCENARIO.name)
    return pytester


def run(pytester: pytest.Pytester) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", SCENARIO.name, timeout=120)


def test_a_cut_stream_reaches_the_guard_as_a_truncated_answer(guards: pytest.Pytester) -> None:
    run(guards).assert_outcomes(passed=1)


def test_the_scenario_fails_on_a_backend_that_drops_cut_streams(guards: pytest.Pytester) -> None:
    guards.makeconftest(DROPS_CUT_STREAMS)
    result = run(guards)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*jg-net-limit-data-cuts-a-stream*", "*llm_request_failures_total*", "*DO NOT PROMOTE*"])
