"""The HTML report and the timelines behind it, without a browser: escaping, what opens, what is recorded.

The browser test (``test_html_report_browser.py``) checks the page as drawn; these check the text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_guards.report import PLOT_LEFT, PLOT_WIDTH, column_x, render_chart, render_html
from pytest_guards.scenarios import ScenarioResult, Verdict, health_of

HOSTILE = "<img src=x onerror=alert(1)>\"'&"


def point(t: float, qwen: str, **extra: Any) -> dict[str, Any]:
    return {"t": t, "step": "brief", "line": 3, "breakers": {"qwen": qwen, HOSTILE: "closed"}, "mode": "creative", **extra}


def verdict_with(*results: ScenarioResult) -> Verdict:
    verdict = Verdict(config_source=f"/tmp/{HOSTILE}.yaml")
    for result in results:
        verdict.record(result)
    return verdict


def result(sid: str, outcome: str, message: str = "", timeline: dict[str, Any] | None = None) -> ScenarioResult:
    return ScenarioResult(sid, f"title {HOSTILE}", "circuit_breaker", f"/x/{HOSTILE}.scenario.yaml", 4, "in_process",
                          outcome, message, 0.1, 60.0, timeline)


def test_everything_from_scenarios_configs_and_services_is_escaped() -> None:
    timeline = {"clock": "virtual", "file": "f", "models": ["qwen", HOSTILE],
                "points": [point(0, "closed", brief={"source": HOSTILE, "model": HOSTILE}, health={HOSTILE: HOSTILE})]}
    page = render_html(verdict_with(result(f"id-{HOSTILE}", "failed", f"  ✗ mode: found {HOSTILE}", timeline)))
    assert "<img" not in page
    assert "onerror=alert(1)&gt;&quot;&#x27;&amp;" in page


def test_a_failing_scenario_opens_expanded_with_its_message_and_a_passing_one_is_closed() -> None:
    failure = "scenario cb-x [circuit_breaker] at steps[2] (f.yaml:9)\n  ✗ breaker qwen: expected == 'open', found 'closed'"
    page = render_html(verdict_with(result("cb-x", "failed", failure), result("cb-y", "passed")))
    assert '<details class="scenario failed" data-item="circuit_breaker" data-outcome="failed" id="s-cb-x" open>' in page
    assert 'id="s-cb-y">' in page
    assert "✗ breaker qwen: expected == &#x27;open&#x27;, found &#x27;closed&#x27;" in page
    assert page.index('id="s-cb-x"') < page.index('id="s-cb-y"'), "failures come first"


def test_the_page_fetches_nothing_and_pins_its_inline_style_and_script() -> None:
    plain = ScenarioResult("cb-y", "a title", "cache", "/x/y.scenario.yaml", 1, "in_process", "passed")
    page = render_html(Verdict(results=[plain]))
    assert not re.search(r"<[^>]*\s(src|href)=|url\(|@import", page), "nothing is loaded from elsewhere"
    assert "default-src 'none'; style-src 'sha256-" in page
    assert "script-src 'sha256-" in page


def test_bands_merge_runs_of_equal_states_at_the_recorded_columns() -> None:
    points = [point(0, "closed"), point(0, "closed"), point(0, "open"), point(60, "half_open"), point(60, "closed")]
    svg = render_chart({"clock": "virtual", "models": ["qwen"], "points": points})
    assert svg.count('data-m="qwen"') == 4
    assert f'data-s="open" data-i="2" data-j="2" x="{column_x(2, 5):.1f}"'.replace(".0\"", "\"") in svg
    assert column_x(0, 5) == PLOT_LEFT
    assert column_x(5, 5) == pytest.approx(PLOT_LEFT + PLOT_WIDTH)
    assert ">60s</text>" in svg


@pytest.mark.parametrize(
    ("body", "health"),
    [
        ({"status": "degraded", "models": {"qwen": {"status": "healthy"}, "llama": {"status": "unhealthy"}}},
         {"qwen": "healthy", "llama": "unhealthy"}),
        ({"model": "qwen", "status": "unhealthy", "reason": "timeout"}, {"qwen": "unhealthy"}),
        ("not json", {}),
    ],
)
def test_health_is_read_from_what_the_service_answered(body: Any, health: dict[str, str]) -> None:
    assert health_of(body) == health


def test_a_scenario_run_records_a_point_per_step_in_the_json_report(pytester: pytest.Pytester) -> None:
    pytester.makefile(".scenario.yaml", qwen=(
        "id: t-qwen\ntitle: qwen fails\nchecklist: circuit_breaker\ngiven:\n  llm:\n    qwen: {http_error: 500}\n"
        "steps:\n  - brief: amber\n  - health: qwen\n  - advance: 5\n  - expect:\n      mode: creative\n"
    ))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--guards-report", "r.json", "--guards-html", "r.html")
    result.assert_outcomes(passed=1)
    timeline = json.loads(Path(pytester.path / "r.json").read_text(encoding="utf-8"))["scenarios"][0]["timeline"]
    assert timeline["clock"] == "virtual"
    assert [(p["step"], p["line"], p["t"]) for p in timeline["points"]] == [
        ("start", 1, 0), ("brief", 8, 0), ("health", 9, 0), ("advance", 10, 5), ("expect", 11, 5)
    ]
    brief, health = timeline["points"][1], timeline["points"][2]
    assert brief["brief"] == {"source": "model", "model": "mistral"}
    assert brief["calls"]["qwen"] == 1
    assert brief["cache"] == {"size": 1, "hit_rate": 0.0}
    assert health["health"] == {"qwen": "unhealthy"}
    assert "brief" not in health
    assert timeline["points"][-1]["health"] == {"qwen": "unhealthy"}, "health stays known once reported"
    assert "t-qwen" in (pytester.path / "r.html").read_text(encoding="utf-8")
