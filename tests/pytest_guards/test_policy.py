"""The checklist's policy as data: bounds with reasons, team files that tighten them, loosened bounds shown."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from pytest_guards.scenarios import CHECKLIST_ITEMS, POLICY_FILE, PolicyError, load_policy, shipped_policy

REFERENCE = {
    "json_guard": {
        "enabled": True, "max_retries": 3, "backoff_base": 1.0, "jitter": 0.5, "fallback_enabled": True, "strict_schema": True,
    },
}


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_the_shipped_policy_covers_every_item_and_every_bound_has_a_reason() -> None:
    policy = shipped_policy()
    assert policy.sources == ("shipped policy.yaml",)
    for item in CHECKLIST_ITEMS:
        assert policy.for_item(item), item
    assert all(b.reason and b.where.startswith("shipped policy.yaml:") for b in policy.bounds)
    assert POLICY_FILE.is_file()


def test_a_bound_judges_a_setting_and_names_key_bound_found_and_reason() -> None:
    bound = next(b for b in shipped_policy().bounds if b.key == "json_guard.max_retries")
    assert bound.judge({"json_guard": {"max_retries": 3}}) is None
    assert bound.judge({"json_guard": {"max_retries": 10}}) is None
    line = bound.judge({"json_guard": {"max_retries": 1}})
    assert line is not None
    assert line.startswith("config json_guard.max_retries: expected >= 3, found 1 (policy: at least 3 re-asks")
    assert line.endswith(f"; {bound.where})")
    too_many = bound.judge({"json_guard": {"max_retries": 11}})
    assert too_many is not None
    assert "expected <= 10, found 11" in too_many
    absent = bound.judge({})
    assert absent is not None
    assert "but it is absent" in absent


@pytest.mark.parametrize(
    ("team", "loosened"),
    [
        ("{ge: 4, le: 10}", False),  # tighter
        ("ge: 4", True),  # a higher floor, but the ceiling dropped
        ("{ge: 3, le: 5}", False),
        ("{range: [3, 10]}", False),  # the same interval, written otherwise
        ("ge: 2", True),  # a lower floor
        ("{ge: 3}", True),  # the ceiling dropped
        ("{gt: 2, le: 10}", True),  # admits 2.5
        ("{gt: 3, le: 10}", False),
        ("{eq: 3}", False),
        ("{in: [3, 4]}", False),
        ("{in: [3, 11]}", True),
        ("{ne: 5}", True),  # cannot be compared: counted as loosened
    ],
)
def test_a_team_bound_that_admits_what_the_shipped_one_refuses_is_loosened(tmp_path: Path, team: str, loosened: bool) -> None:
    text = "json_guard:\n  json_guard.max_retries:\n    reason: ours\n"
    spec = team if team.startswith("{") else "{" + team + "}"
    text += "".join(f"    {k.strip()}: {v.strip()}\n" for k, v in (part.split(":", 1) for part in _split(spec)))
    merged = shipped_policy().with_team(load_policy(write(tmp_path, text)))
    assert bool(merged.loosened) is loosened, merged.describe_loosened()
    bound = next(b for b in merged.bounds if b.key == "json_guard.max_retries")
    assert bound.reason == "ours"


def _split(flow: str) -> list[str]:
    """``{ge: 3, le: 5}`` -> ``["ge: 3", "le: 5"]`` (commas inside [...] kept)."""
    body, parts, depth, current = flow.strip()[1:-1], [], 0, ""
    for char in body:
        depth += char == "["
        depth -= char == "]"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def test_a_team_policy_replaces_bounds_key_by_key_and_keeps_the_rest(tmp_path: Path) -> None:
    path = write(tmp_path, "cache:\n  cache.max_size: {ge: 100, le: 2000, reason: our memory budget}\n")
    merged = shipped_policy().with_team(load_policy(path))
    assert merged.sources == ("shipped policy.yaml", str(path))
    assert not merged.loosened
    size = next(b for b in merged.bounds if b.key == "cache.max_size")
    assert size.spec() == {"ge": 100, "le": 2000}
    assert size.where == f"{path}:2"
    assert len(merged.bounds) == len(shipped_policy().bounds)
    report = merged.to_dict()
    assert json.loads(json.dumps(report))["loosened"] == []


def test_every_mistake_in_a_policy_file_is_named_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        json_guard:
          json_guard.max_retries: {ge: 3}
          json_guard.jitter: {about: 1, reason: x}
          json_guard.backoff_base: {range: [5, 1], reason: x}
        caching:
          cache.max_size: {le: 5, reason: x}
        cache:
          cache.ttl_seconds: {le: .inf, reason: x}
        """,
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    issues = caught.value.issues
    assert f"{path}:2: json_guard.json_guard.max_retries: every bound needs a one-line reason" in issues[0]
    assert any(i.startswith(f"{path}:3:") and "unknown bound 'about'" in i for i in issues)
    assert any(i.startswith(f"{path}:4:") and "range: expected [low, high] with low <= high" in i for i in issues)
    assert any(i.startswith(f"{path}:5:") and "unknown checklist item" in i for i in issues)
    assert any(i.startswith(f"{path}:8:") and "expected a finite number" in i for i in issues)


@pytest.mark.parametrize(
    "content",
    [b"", b"- a\n- b\n", b"json_guard: [1]\n", b"\xff\xfe", b"a: &x [1]\nb: *x\n", b"json_guard:\n  a: 1\n  a: 2\n"],
)
def test_any_broken_file_is_one_clear_error_never_a_traceback(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(content)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert all(str(path) in issue for issue in caught.value.issues)


def test_plugin_shows_a_loosened_policy_and_strict_refuses_it(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    (pytester.path / "team.yaml").write_text("json_guard:\n  json_guard.max_retries: {ge: 2, reason: ours}\n", encoding="utf-8")
    (pytester.path / "p.scenario.yaml").write_text(
        "id: jg-policy\ntitle: policy\nchecklist: json_guard\nsteps:\n  - expect:\n      policy: json_guard\n", encoding="utf-8"
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--guards-policy", "team.yaml", "--guards-item", "json_guard", timeout=120
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "policy: *team.yaml over the shipped policy",
            "⚠ policy loosened: json_guard.max_retries >= 2 (shipped: >= 3 and <= 10; *team.yaml:2)",
            "✓ SAFE TO PROMOTE TO PRODUCTION (json_guard only)",
        ]
    )
    strict = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--guards-policy", "team.yaml", "--guards-item", "json_guard", "--guards-strict", timeout=120
    )
    strict.stdout.fnmatch_lines(["✗ DO NOT PROMOTE"])
    assert strict.ret != 0


def test_a_bad_team_policy_stops_the_session_naming_the_line(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    (pytester.path / "team.yaml").write_text("json_guard:\n  json_guard.max_retries: {ge: three, reason: x}\n", encoding="utf-8")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--guards-policy", "team.yaml", timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*team.yaml:2: json_guard.json_guard.max_retries: ge: expected a finite number*"])
