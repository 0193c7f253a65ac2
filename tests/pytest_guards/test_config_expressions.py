"""``${config:...}`` in scenario files: parsed and checked at load, computed from the config under test at run."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from pytest_guards.scenarios import (
    MISSING,
    ExpressionError,
    ScenarioFileError,
    load_scenario,
    lookup,
    parse_expression,
    resolve_scenario,
)

SETTINGS: dict[str, Any] = {
    "circuit_breaker": {"timeout": 120, "minimum_calls": 10, "models": {"qwen": {"failure_threshold": 0.4}}},
    "json_guard": {"max_retries": 4, "backoff_base": 1.0, "backoff_max": 8.0, "jitter": 0.5, "enabled": True},
}


def value(text: str) -> int | float:
    return parse_expression(text).evaluate(lambda key: lookup(SETTINGS, key))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${config:circuit_breaker.timeout}", 120),
        ("${config:circuit_breaker.timeout - 1}", 119),
        ("${(config:json_guard.max_retries + 1) * 3}", 15),
        ("${config:circuit_breaker.models.qwen.failure_threshold * 10}", 4.0),
        ("${min(config:circuit_breaker.timeout, 60) / 4}", 15.0),
        ("${ceil(config:circuit_breaker.timeout / 7)}", 18),
        ("${floor(-config:json_guard.jitter)}", -1),
        ("${backoff(config:json_guard.backoff_base, config:json_guard.backoff_max, config:json_guard.max_retries)}", 15.0),
        ("${backoff(1, 8, 5)}", 23),
        ("${7 // 2}", 3),
        ("  ${1}  ", 1),
    ],
)
def test_arithmetic_over_config_keys(text: str, expected: float) -> None:
    assert value(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${__import__('os')}", "calls min(...), max(...), ceil(x), floor(x) or backoff(base, cap, retries) only"),
        ("${config:json_guard.max_retries ** 2}", "allows + - * / // only"),
        ("${'a'}", "numbers only"),
        ("${True}", "numbers only"),
        ("${(1}", "is not valid arithmetic"),
        ("${max_retries}", "names a config key as config:section.key"),
        ("${json_guard.max_retries}", "allows numbers, config:key"),
        ("${config:json_guard.max_retries.real}", None),  # parses; it is the key that does not exist
        ("${ceil(1, 2)}", "ceil() takes 1 argument(s)"),
        ("${max(x=1)}", "calls min(...)"),
        ("${[1][0]}", "allows numbers, config:key"),
        ("${" + "1+" * 150 + "1}", "at most 200 characters"),
        ("config:x", "a whole value of the form ${...}"),
    ],
)
def test_anything_but_arithmetic_is_refused_at_parse(text: str, message: str | None) -> None:
    if message is None:
        parse_expression(text)
        return
    with pytest.raises(ExpressionError) as caught:
        parse_expression(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${config:circuit_breaker.nope}", "the config under test has no key circuit_breaker.nope"),
        ("${config:json_guard.enabled}", "config key json_guard.enabled is not a number"),
        ("${config:circuit_breaker.timeout / 0}", "division by zero"),
        ("${backoff(1, 8, 0.5)}", "whole number 0-100"),
    ],
)
def test_evaluation_problems_are_named(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        value(text)
    assert message in str(caught.value)


def test_a_missing_key_is_missing_not_none() -> None:
    assert lookup(SETTINGS, "circuit_breaker.nope") is MISSING


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.scenario.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


SCENARIO = """\
    id: cb-follows-config
    title: follows the config
    checklist: circuit_breaker
    given:
      llm:
        qwen: {valid: null, latency: "${config:health_check.timeout - 0.5}"}
    steps:
      - repeat:
          times: "${config:circuit_breaker.minimum_calls}"
          steps:
            - brief: {prompt: "x", distinct: true}
      - advance: "${config:circuit_breaker.timeout - 1}"
      - expect:
          calls: {qwen: "${config:circuit_breaker.minimum_calls + 1}"}
          elapsed: {range: ["${config:circuit_breaker.timeout}", "${config:circuit_breaker.timeout + 0.5}"]}
"""


def test_a_scenario_takes_its_numbers_from_the_settings_it_is_resolved_with(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, SCENARIO))
    settings = {"circuit_breaker": {"minimum_calls": 7, "timeout": 90}, "health_check": {"timeout": 4}}
    resolved, problems = resolve_scenario(scenario, settings)
    assert problems == []
    repeat, advance, expect = resolved.steps
    assert repeat.value["times"] == 7
    assert advance.value == 89
    assert expect.value["calls"] == {"qwen": 8}
    assert expect.value["elapsed"] == {"range": [90, 90.5]}
    step = resolved.given_llm["qwen"].steps[0]
    assert getattr(step, "latency", None) == 3.5, step
    # the loaded scenario is unchanged: another config resolves it anew
    config = {"circuit_breaker": {"minimum_calls": 3, "timeout": 60}, "health_check": {"timeout": 10}}
    again, _ = resolve_scenario(scenario, config)
    assert again.steps[0].value["times"] == 3


def test_a_value_the_format_refuses_is_named_with_its_expression(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, SCENARIO))
    config = {"circuit_breaker": {"minimum_calls": 0, "timeout": 0}, "health_check": {"timeout": 4}}
    _, problems = resolve_scenario(scenario, config)
    source = "(from ${config:circuit_breaker.minimum_calls})"
    assert any("steps[0].repeat.times (line 9)" in p and source in p for p in problems), problems
    assert any("steps[1].advance (line 12)" in p for p in problems), problems


def test_expression_mistakes_are_file_errors_with_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        id: cb-bad
        title: bad
        checklist: circuit_breaker
        steps:
          - advance: "${config:circuit_breaker.timeot}"
          - advance: "${config:circuit_breaker.timeout ** 2}"
        """,
    )
    with pytest.raises(ScenarioFileError) as caught:
        load_scenario(path)
    text = str(caught.value)
    assert f"{path}:5:" in text
    assert "config:circuit_breaker.timeot, which is not a config key" in text
    assert f"{path}:6:" in text
    assert "allows + - * / // only" in text


def test_a_model_key_may_name_any_model(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        id: cb-any-model
        title: any model
        checklist: circuit_breaker
        steps:
          - advance: "${config:circuit_breaker.models.gpt4o.failure_threshold * 100}"
        """,
    )
    scenario = load_scenario(path)
    resolved, problems = resolve_scenario(scenario, {"circuit_breaker": {"models": {"gpt4o": {"failure_threshold": 0.3}}}})
    assert problems == []
    assert resolved.steps[0].value == pytest.approx(30)
