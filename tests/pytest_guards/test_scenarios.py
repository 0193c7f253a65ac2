"""Scenario files as users write them: collection, validation errors, reports, verdict, junit names."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pytest_guards.scenarios import SCENARIO_SCHEMA, SCHEMA_FILE, check

pytest_plugins = ["pytester"]

ONE_PER_ITEM = {
    "jg": ("json_guard", "expect:\n      config: {json_guard.max_retries: {ge: 3}}"),
    "cb": ("circuit_breaker", "expect:\n      breaker: {qwen: closed}"),
    "cache": ("cache", "expect:\n      cache: {ttl_seconds: 600}"),
    "hc": ("health_check", "health: all"),
}


def scenario(sid: str, checklist: str, steps: str, extra: str = "") -> str:
    return f"id: {sid}\ntitle: {sid} title\nchecklist: {checklist}\n{extra}steps:\n  - {steps}\n"


@pytest.fixture
def guards(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\n")
    return pytester


def write(pytester: pytest.Pytester, name: str, text: str) -> Path:
    path = pytester.path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def esc(text: str) -> str:
    """Quote ``[`` for fnmatch (``steps[0]`` would be a character class)."""
    return text.replace("[", "[[]")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)


def four_good(pytester: pytest.Pytester) -> None:
    for prefix, (item, step) in ONE_PER_ITEM.items():
        write(pytester, f"scenarios/{item}/ok.scenario.yaml", scenario(f"{prefix}-ok", item, step))


def test_schema_file_shipped_in_the_package_is_current() -> None:
    shipped = Path(__file__).resolve().parents[2] / "pytest_guards" / "scenarios" / "scenario.schema.json"
    assert shipped == SCHEMA_FILE
    assert json.loads(shipped.read_text()) == json.loads(json.dumps(SCENARIO_SCHEMA))


def test_one_scenario_per_item_passing_is_safe_to_promote(guards: pytest.Pytester) -> None:
    four_good(guards)
    result = run(guards, "--guards-report", "out.json")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*production guards checklist*",
            "*1. JSON Hard Guard*1 passed, 0 failed*",
            "*2. Circuit Breaker*1 passed, 0 failed*",
            "*3. Cache LRU+TTL*1 passed, 0 failed*",
            "*4. LLM Health Check*1 passed, 0 failed*",
            "*SAFE TO PROMOTE TO PRODUCTION*",
        ]
    )
    report = json.loads((guards.path / "out.json").read_text())
    assert report["safe"] is True
    assert report["verdict"] == "SAFE TO PROMOTE TO PRODUCTION"
    assert {s["id"] for s in report["scenarios"]} == {"jg-ok", "cb-ok", "cache-ok", "hc-ok"}
    assert all(s["outcome"] == "passed" for s in report["scenarios"])


def test_an_item_without_scenarios_is_not_safe(guards: pytest.Pytester) -> None:
    write(guards, "cb.scenario.yaml", scenario("cb-ok", "circuit_breaker", ONE_PER_ITEM["cb"][1]))
    result = run(guards, "--guards-report", "out.json")
    assert result.ret == 0  # a partial run exits on its tests ...
    result.stdout.fnmatch_lines(["*1. JSON Hard Guard*(no scenario verified it)*", "*DO NOT PROMOTE*"])
    assert json.loads((guards.path / "out.json").read_text())["safe"] is False  # ... the verdict still says no
    strict = run(guards, "--guards-strict")
    assert strict.ret == 1  # under --guards-strict an incomplete checklist fails the run


def test_an_unrelated_projects_config_does_not_break_its_tests(guards: pytest.Pytester) -> None:
    write(guards, "configs/llm_ensemble.yaml", "some_other_tool:\n  setting: 1\n")
    guards.makepyfile(test_plain="def test_plain():\n    assert True\n", test_uses="def test_uses(guards_config):\n    pass\n")
    result = run(guards)
    result.assert_outcomes(passed=1, errors=1)  # only the test that asks for the guards config hears about it
    result.stdout.fnmatch_lines(
        ["*guards config configs/llm_ensemble.yaml is invalid (1 error(s))*", "*some_other_tool: unknown key*"]
    )


def test_unique_ids_regex_and_alias_mistakes_are_file_errors(guards: pytest.Pytester) -> None:
    four_good(guards)
    write(guards, "scenarios/cache/again.scenario.yaml", scenario("cache-ok", "cache", "health: all"))
    write(
        guards, "scenarios/cache/regex.scenario.yaml",
        scenario("cache-re", "cache", 'health: all\n  - expect:\n      response: {status: {regex: "("}}'),
    )
    write(guards, "scenarios/cache/alias.scenario.yaml", "id: &a cache-alias\ntitle: *a\nchecklist: cache\nsteps: &s [*s]\n")
    result = run(guards)
    result.assert_outcomes(passed=4, failed=3)
    result.stdout.fnmatch_lines_random(
        [
            "*cache/ok.scenario.yaml:1:1: id: id 'cache-ok' is already used by *again.scenario.yaml",
            "*regex.scenario.yaml:7:*status.regex: invalid regular expression '(': missing ), unterminated subpattern*",
            "*alias.scenario.yaml:4:8: steps*: YAML aliases (*name) are not supported here*",
        ]
    )


def test_three_mistakes_are_all_reported_and_the_rest_still_runs(guards: pytest.Pytester) -> None:
    four_good(guards)
    write(
        guards,
        "scenarios/cb/bad.scenario.yaml",
        """\
        id: cb-bad
        title: three mistakes
        checklist: circuit_breakers
        steps:
          - brief: {prompt: "x", mood: happy}
          - advnce: 5
        """,
    )
    result = run(guards)
    result.assert_outcomes(passed=4, failed=1)
    path = guards.path / "scenarios/cb/bad.scenario.yaml"
    result.stdout.fnmatch_lines(
        [
            "*invalid scenario file (3 problem(s))*",
            f"*{path}:3:1: checklist: 'circuit_breakers' is not one of*",
            esc(f"*{path}:5:26: steps[0].brief.mood: unknown key (allowed: distinct, mode, prompt, via)*"),
            esc(f"*{path}:6:5: steps[1]: unknown step 'advnce'; expected one of: brief, advance,*"),
            "*invalid scenario file: *bad.scenario.yaml*",
            "*DO NOT PROMOTE*",
        ]
    )


def test_failure_reads_like_a_checklist_line(guards: pytest.Pytester) -> None:
    write(
        guards,
        "cb.scenario.yaml",
        """\
        id: cb-wrong
        title: a wrong expectation
        checklist: circuit_breaker
        given:
          llm:
            qwen: {http_error: 500}
        steps:
          - brief: "a citrus scent"
          - expect:
              breaker: {qwen: open}
              response: {model: {in: [qwen, llama]}, brief.intensity: {range: [0, 100]}}
        """,
    )
    result = run(guards)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            esc(f"scenario cb-wrong [circuit_breaker] at steps[1] ({guards.path / 'cb.scenario.yaml'}:9)"),
            "  ✗ breaker qwen: expected == 'open', found 'closed'",
            esc("  ✗ response model: expected one of ['qwen', 'llama'], found 'mistral'"),
        ]
    )
    out = result.stdout.str()
    assert "Traceback" not in out
    assert "def runtest" not in out
    assert "_scenario_run.py" not in out
    assert "brief.intensity" not in out  # the holding check is not reported


def test_junitxml_names_each_scenario_by_its_id(guards: pytest.Pytester) -> None:
    four_good(guards)
    run(guards, "--junitxml", "junit.xml").assert_outcomes(passed=4)
    names = {case.get("name") for case in ET.parse(guards.path / "junit.xml").iter("testcase")}
    assert names == {"jg-ok", "cb-ok", "cache-ok", "hc-ok"}


def test_env_variables_only_from_env(guards: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDS_PROMPT", "a rose {with braces}")
    write(
        guards,
        "jg.scenario.yaml",
        scenario(
            "jg-env", "json_guard",
            'brief: "${env:GUARDS_PROMPT}"\n  - expect:\n'
            '      response: {code: 200, brief.description: {regex: "${env:NOPE:-.}"}}',
        ),
    )
    write(guards, "jg2.scenario.yaml", scenario("jg-env-missing", "json_guard", 'brief: "${env:GUARDS_UNSET_VAR}"'))
    result = run(guards)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([esc("*jg2.scenario.yaml:5:*steps[0].brief: environment variable GUARDS_UNSET_VAR is not set*")])


def test_live_scenarios_cannot_use_in_process_powers(guards: pytest.Pytester) -> None:
    write(
        guards,
        "cb.scenario.yaml",
        scenario("cb-live", "circuit_breaker", "advance: 60\n  - expect:\n      calls: {qwen: 0}", extra="target: both\n"),
    )
    result = run(guards)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            esc("*cb.scenario.yaml:6:5: steps[0]: target 'both' runs against a live service, which cannot move virtual time*"),
            esc(
                "*cb.scenario.yaml:8:7: steps[1].expect.calls: target 'both' runs against a live service, "
                "which cannot read LLM call logs*"
            ),
        ]
    )


def test_config_overrides_and_unknown_models_are_named(guards: pytest.Pytester) -> None:
    write(
        guards, "a.scenario.yaml",
        scenario("cache-bad-override", "cache", "health: all", extra="config:\n  cache: {ttl_seconds: 0}\n"),
    )
    write(
        guards, "b.scenario.yaml",
        scenario("cb-unknown-model", "circuit_breaker", "health: all", extra="given:\n  llm:\n    gpt4: timeout\n"),
    )
    result = run(guards)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*config override cache.ttl_seconds: must be a finite number > 0, found 0*"])
    result.stdout.fnmatch_lines(["*given.llm.gpt4 (line 6): no model 'gpt4' is configured (configured: qwen, mistral, llama)*"])


def test_scenario_glob_is_an_ini_setting(guards: pytest.Pytester) -> None:
    guards.makeini("[pytest]\nguards_scenario_glob = checks/**/*.yml\n")
    write(guards, "checks/x/cb.yml", scenario("cb-yml", "circuit_breaker", ONE_PER_ITEM["cb"][1]))
    write(guards, "other/cb.scenario.yaml", scenario("cb-ignored", "circuit_breaker", ONE_PER_ITEM["cb"][1]))
    result = run(guards, "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*cb.yml::cb-yml PASSED*"])


@pytest.mark.parametrize(
    ("spec", "actual", "problem"),
    [
        ("open", "open", None),
        ("open", "closed", "== 'open'"),
        (1, 1.0, None),
        (True, 1, "== true"),
        ({"ge": 3}, 3, None),
        ({"ge": 3}, 2, ">= 3"),
        ({"ge": 3}, "3", ">= 3"),
        ({"le": 10, "gt": 0}, 10, None),
        ({"in": ["balanced", "fast"]}, "fast", None),
        ({"range": [0, 100]}, 101, "in range [0, 100]"),
        ({"regex": "^향수"}, "향수 생성 중", None),
        ({"ne": "open"}, "open", "!= 'open'"),
        ([1, 2], [1, 2], None),
    ],
)
def test_check_operators(spec: Any, actual: Any, problem: str | None) -> None:
    assert check(spec, actual) == problem


def test_network_faults_need_toxiproxy_and_real_time(guards: pytest.Pytester) -> None:
    write(guards, "a.scenario.yaml", scenario("hc-net-a", "health_check", "network: {qwen: down}"))
    write(guards, "b.scenario.yaml", scenario("hc-net-b", "health_check", "advance: 5", extra="requires: [toxiproxy]\n"))
    write(guards, "c.scenario.yaml", scenario("hc-net-c", "health_check", "wait: 1"))
    write(
        guards, "d.scenario.yaml",
        scenario("hc-net-d", "health_check", "health: all", extra="requires: [toxiproxy]\ntarget: both\n"),
    )
    result = run(guards)
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines_random(
        [
            esc("*a.scenario.yaml:5:5: steps[0]: network faults need `requires: [toxiproxy]`*"),
            esc("*b.scenario.yaml:6:5: steps[0]: a toxiproxy or live fault scenario runs in real time: use `wait: seconds`*"),
            esc("*c.scenario.yaml:5:5: steps[0]: `wait` is real time, for toxiproxy and live fault scenarios only*"),
            "*d.scenario.yaml:4:1: requires: target 'both' runs against a live service, "
            "which cannot be given faults unless the scenario is target: live*",
        ]
    )


def test_skip_markers_and_huge_numbers_are_refused_clearly(guards: pytest.Pytester) -> None:
    huge = "9" * 400
    write(guards, "a.scenario.yaml", scenario("cb-a", "circuit_breaker", "health: all", extra="markers: [xfail]\n"))
    write(guards, "b.scenario.yaml", scenario("cb-b", "circuit_breaker", f"advance: {huge}"))
    write(
        guards, "c.scenario.yaml",
        scenario("cb-c", "circuit_breaker", f"health: all\n  - expect:\n      response: {{code: {huge}}}"),
    )
    result = run(guards)
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    assert "Traceback" not in out
    assert "INTERNALERROR" not in out
    result.stdout.fnmatch_lines_random(
        [
            esc("*a.scenario.yaml:4:*markers[0]: 'xfail' should not be valid under*"),
            esc("*b.scenario.yaml:5:*steps[0].advance: * is greater than the maximum of 315360000*"),
            f"*response code: expected == {huge[:20]}*",
        ]
    )
