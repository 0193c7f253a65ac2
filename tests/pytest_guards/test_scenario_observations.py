"""The scenario format's observations over a run: ``requests`` and metric ``increases_by``, as the loader reads them.

How they judge a run is shown by the checklist scenarios that use them and by
``test_scenario_defects.py``; here: a mistake in them is one clear error naming file, line and key, and a
live target is refused what it cannot see.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_guards.scenarios import MISSING, ScenarioFileError, load_scenario, request_fields

HEAD = "id: obs\ntitle: observations\nchecklist: circuit_breaker\n"


def _load(tmp_path: Path, text: str) -> ScenarioFileError:
    path = tmp_path / "obs.scenario.yaml"
    path.write_text(HEAD + text)
    with pytest.raises(ScenarioFileError) as caught:
        load_scenario(path)
    return caught.value


def test_a_misspelt_requests_key_names_file_line_and_key(tmp_path: Path) -> None:
    error = _load(tmp_path, "steps:\n  - brief: x\n  - expect:\n      requests:\n        qwen: {cuont: 1}\n")
    text = str(error)
    assert f"{tmp_path / 'obs.scenario.yaml'}:8" in text
    assert "steps[1].expect.requests.qwen" in text
    assert "cuont" in text


def test_increases_by_takes_a_check_and_a_metric_needs_one_of_its_three_checks(tmp_path: Path) -> None:
    error = _load(tmp_path, "steps:\n  - expect:\n      metric:\n        - {name: llm_requests_total, increases_by: {gte: 1}}\n")
    assert "steps[0].expect.metric[0].increases_by" in str(error)
    error = _load(tmp_path, "steps:\n  - expect:\n      metric:\n        - {name: llm_requests_total}\n")
    assert "steps[0].expect.metric[0]" in str(error)


def test_a_live_scenario_cannot_read_the_models_requests(tmp_path: Path) -> None:
    error = _load(tmp_path, "target: live\nsteps:\n  - brief: x\n  - expect:\n      requests: {qwen: {count: 1}}\n")
    assert "requests" in str(error)
    assert "the requests its models received" in str(error)


def test_request_fields_of_an_openai_body() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "a rose"},
        {"role": "assistant", "content": "{"},
        {"role": "user", "content": "rejected: invalid JSON"},
    ]
    body = {"model": "m", "temperature": 0.3, "messages": messages}
    assert request_fields(body, "system") == "be brief"
    assert request_fields(body, "prompt") == "a rose"
    assert request_fields(body, "reask") == "rejected: invalid JSON"
    assert request_fields(body, "messages") == 4
    assert request_fields(body, "temperature") == 0.3
    assert request_fields(body, "top_p") is MISSING
    assert request_fields({"messages": messages[:2]}, "reask") is None
    assert request_fields("not json", "system") is MISSING
