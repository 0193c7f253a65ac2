"""The shipped Prometheus rules: valid, unit-tested by promtool, and written against metrics the service exports.

promtool checks the rules and runs guards.rules.test.yml; the tests here make sure that file covers
every alert both ways, that its input series have the label sets a real scrape has (so its vector
matching is the production one), that every rule names exported metrics and labels, that the
checklist's original expressions fail those tests, and that a broken expectation fails too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring_support import REPO, TARGET_LABELS, Scrape, find_promtool, promql_references, promtool_missing

from fragrance_ai.monitoring import RULES_FILE, RULES_TEST_FILE, rules_path, rules_test_path

RunPromtool = Callable[..., subprocess.CompletedProcess[str]]

CHECKLIST_ALERTS = ("HighJSONFallbackRate", "QwenCircuitBreakerOpen", "LowCacheHitRate", "LLMModelUnhealthy")
OPERATOR_ALERTS = ("LLMCircuitBreakerOpen", "LLMCircuitBreakerFlapping", "LLMHealthCheckFailing", "LLMRepeatedDownshifts",
                   "LLMModelClientErrors")

#: the checklist's expressions, verbatim: each must fail our promtool tests (that is why they were rewritten)
CHECKLIST_EXPRS = {
    "HighJSONFallbackRate": "rate(llm_json_fallback_used_total[5m]) / rate(llm_requests_total[5m]) > 0.01",
    "QwenCircuitBreakerOpen": 'circuit_breaker_state{model="qwen"} == 1',
    "LowCacheHitRate": "rate(cache_hits_total[5m]) / (rate(cache_hits_total[5m]) + rate(cache_misses_total[5m])) < 0.7",
    "LLMModelUnhealthy": "llm_health_status == 0",
}


def _seconds(duration: str | int | None) -> int:
    """A Prometheus duration like ``5m`` or ``1h30m`` in seconds."""
    if duration is None:
        return 0
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|[smhdwy])", str(duration))
    if not parts or "".join(n + u for n, u in parts) != str(duration):
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return int(sum(int(n) * units[u] for n, u in parts))


def _alerts(rules: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}


def _all_exprs(rules: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r.get("alert") or r["record"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


@pytest.fixture(scope="module")
def unit_tests() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(rules_test_path().read_text(encoding="utf-8"))
    return data


def _copy_pack(tmp_path: Path) -> tuple[Path, Path]:
    """The rules and their tests, copied side by side into ``tmp_path`` for a mutated run."""
    rules = shutil.copy(rules_path(), tmp_path / RULES_FILE)
    tests = shutil.copy(rules_test_path(), tmp_path / RULES_TEST_FILE)
    return Path(rules), Path(tests)


# ------------------------------------------------------------------------------------ promtool


def test_promtool_check_rules_accepts_the_shipped_rules(run_promtool: RunPromtool) -> None:
    result = run_promtool("check", "rules", str(rules_path()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 16 rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass(run_promtool: RunPromtool) -> None:
    result = run_promtool("test", "rules", RULES_TEST_FILE, cwd=rules_test_path().parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_broken_expectation_makes_promtool_test_rules_fail(run_promtool: RunPromtool, tmp_path: Path) -> None:
    """The negative test: promtool really compares, so a wrong expectation is reported, naming the alert."""
    _, tests = _copy_pack(tmp_path)
    text = tests.read_text(encoding="utf-8")
    right = "description: \"5% of briefs on app:8000 got the fallback brief"
    assert text.count(right) == 1
    tests.write_text(text.replace(right, right.replace("5%", "7%")), encoding="utf-8")

    result = run_promtool("test", "rules", RULES_TEST_FILE, cwd=tmp_path)

    assert result.returncode != 0, result.stdout
    assert "FAILED" in result.stdout + result.stderr
    assert "alertname: HighJSONFallbackRate, time: 6m" in result.stdout + result.stderr


def test_a_wrong_recorded_value_makes_promtool_test_rules_fail(run_promtool: RunPromtool, tmp_path: Path) -> None:
    _, tests = _copy_pack(tmp_path)
    text = tests.read_text(encoding="utf-8")
    right = 'model="qwen"}\'\n            value: 0.25'
    assert text.count(right) == 1
    tests.write_text(text.replace(right, right.replace("0.25", "0.4")), encoding="utf-8")

    result = run_promtool("test", "rules", RULES_TEST_FILE, cwd=tmp_path)

    assert result.returncode != 0, result.stdout
    assert 'expr: "instance_model:llm_request_failures:ratio_rate5m"' in result.stdout + result.stderr


@pytest.mark.parametrize("alert", CHECKLIST_ALERTS)
def test_the_checklists_own_expression_fails_the_unit_tests(
    alert: str, run_promtool: RunPromtool, tmp_path: Path
) -> None:
    """Why each checklist alert was rewritten: put its expression back and promtool says what goes wrong."""
    rules_file, _ = _copy_pack(tmp_path)
    rules = yaml.safe_load(rules_file.read_text(encoding="utf-8"))
    _alerts(rules)[alert]["expr"] = CHECKLIST_EXPRS[alert]
    rules_file.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")

    result = run_promtool("test", "rules", RULES_TEST_FILE, cwd=tmp_path)

    assert result.returncode != 0, f"the checklist's {alert} passed every test:\n{result.stdout}"
    assert f"alertname: {alert}," in result.stdout + result.stderr


# ------------------------------------------------------------------------ coverage of the tests


def test_the_rules_hold_the_checklist_alerts_and_the_operator_alerts(rules: dict[str, Any]) -> None:
    assert sorted(_alerts(rules)) == sorted(CHECKLIST_ALERTS + OPERATOR_ALERTS)
    for name, rule in _alerts(rules).items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert {"summary", "description"} <= set(rule["annotations"]), name


def test_every_alert_has_a_series_that_fires_it_and_one_that_must_not(
    rules: dict[str, Any], unit_tests: dict[str, Any]
) -> None:
    checks: dict[str, list[tuple[int, bool]]] = {}
    for case in unit_tests["tests"]:
        for check in case.get("alert_rule_test", ()):
            checks.setdefault(check["alertname"], []).append((_seconds(check["eval_time"]), bool(check["exp_alerts"])))
    problems = []
    for name, rule in _alerts(rules).items():
        hold = _seconds(rule.get("for"))
        seen = checks.get(name, [])
        if not any(firing and at >= hold for at, firing in seen):
            problems.append(f"{name}: no test expects it to fire (at or after its for: {rule.get('for')})")
        if not any(not firing and at > hold for at, firing in seen):
            problems.append(f"{name}: no test expects it silent after its for: {rule.get('for')} has run out")
    unknown = sorted(set(checks) - set(_alerts(rules)))
    assert not unknown, f"tests name alerts the rules do not define: {unknown}"
    assert not problems, "\n".join(problems)


def test_every_recording_rule_has_a_unit_test(recorded: dict[str, str], unit_tests: dict[str, Any]) -> None:
    tested = " ".join(check["expr"] for case in unit_tests["tests"] for check in case.get("promql_expr_test", ()))
    untested = [name for name in recorded if name not in tested]
    assert not untested, f"recording rules without a promql_expr_test: {untested}"


# --------------------------------------------------------------------- rules vs. the real /metrics


def test_the_scrape_is_a_real_one(scrape: Scrape) -> None:
    for model in ("qwen", "mistral", "llama"):
        assert f'llm_health_status{{model="{model}"}} 1.0' in scrape.text
    assert "llm_json_guard_requests_total" in scrape.labels
    assert scrape.types["llm_json_retry_count"] == "histogram"
    # the one brief came from a model; every source of the fallback rate's counter is there from start-up
    assert scrape.types["llm_briefs"] == "counter"
    for source, count in (("cache", 0), ("model", 1), ("fallback", 0)):
        assert f'llm_briefs_total{{source="{source}"}} {count}.0' in scrape.text


def test_promtool_check_metrics_is_clean_on_the_service_scrape(run_promtool: RunPromtool, scrape: Scrape) -> None:
    result = run_promtool("check", "metrics", stdin=scrape.text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).strip() == "", f"promtool lint findings:\n{result.stdout}{result.stderr}"


def test_promtool_check_metrics_would_flag_a_badly_named_counter(run_promtool: RunPromtool) -> None:
    """The lint above can fail: a counter without the _total suffix is reported."""
    result = run_promtool("check", "metrics", stdin="# HELP briefs Briefs.\n# TYPE briefs counter\nbriefs 1\n")
    assert result.returncode != 0
    assert "_total" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "name_expr",
    _all_exprs(yaml.safe_load(rules_path().read_text(encoding="utf-8"))),
    ids=lambda name_expr: name_expr[0],
)
def test_every_rule_uses_exported_metrics_with_their_labels(
    name_expr: tuple[str, str], check_refs: Callable[[str], list[str]]
) -> None:
    name, expr = name_expr
    problems = check_refs(expr)
    assert not problems, f"{name}:\n" + "\n".join(problems)


def test_unit_test_series_have_the_label_sets_of_the_scrape(unit_tests: dict[str, Any], scrape: Scrape) -> None:
    """promtool's vector matching is only the production one when its input series look like production's."""
    problems = set()
    for case in unit_tests["tests"]:
        for series in case["input_series"]:
            refs = promql_references(series["series"])
            ((name, labels),) = refs.metrics.items()
            if name not in scrape.labels:
                problems.add(f"{series['series']}: {name} is not exported")
            elif labels - TARGET_LABELS != scrape.labels[name]:
                problems.add(
                    f"{series['series']}: labels {sorted(labels - TARGET_LABELS)} besides job/instance, "
                    f"but the service exports {name} with {sorted(scrape.labels[name])}"
                )
            if not labels >= TARGET_LABELS:
                problems.add(f"{series['series']}: a scraped series always has job and instance")
    assert not problems, "\n".join(sorted(problems))


def test_annotations_only_use_labels_the_alert_carries(rules: dict[str, Any], scrape: Scrape) -> None:
    problems = []
    for name, rule in _alerts(rules).items():
        refs = promql_references(rule["expr"])
        carried = set(TARGET_LABELS)
        for metric in refs.metrics:
            carried |= scrape.labels.get(metric, frozenset())
        for text in rule["annotations"].values():
            for label in re.findall(r"\$labels\.(\w+)", text):
                if label not in carried:
                    problems.append(f"{name}: annotation uses $labels.{label}, which its series do not carry")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ the reference reader itself


def test_promql_references_reads_names_matchers_and_grouping() -> None:
    refs = promql_references(
        'sum by (job, instance) (rate(llm_requests_total{model="qwen", job=~"a|b"}[5m])) '
        "/ on (job, instance) group_left instance:cache_hits:ratio_rate5m > bool 0.5 offset 5m"
    )
    assert refs.metrics == {"llm_requests_total": {"model", "job"}, "instance:cache_hits:ratio_rate5m": set()}
    assert refs.grouping == {"job", "instance"}


def test_reference_check_reports_unknown_metrics_labels_and_records(check_refs: Callable[[str], list[str]]) -> None:
    assert check_refs('circuit_breaker_state{model="qwen"} > 0') == []
    assert any("not exported" in p for p in check_refs("rate(llm_brief_requests_total[5m])"))
    assert any("no label(s) ['reason']" in p for p in check_refs('circuit_breaker_state{reason="x"}'))
    assert any("no `record:`" in p for p in check_refs("instance:nothing:rate5m > 1"))
    assert any("grouping by ['model']" in p for p in check_refs("sum by (model) (rate(cache_hits_total[5m]))"))


# ----------------------------------------------------------------- the docker-compose Prometheus


def test_the_compose_prometheus_config_loads_the_shipped_rules(run_promtool: RunPromtool, tmp_path: Path) -> None:
    """deploy/prometheus.yml is valid, and with its rule_files pointed at the package's rules it loads them."""
    config_file = REPO / "deploy" / "prometheus.yml"
    syntax = run_promtool("check", "config", "--syntax-only", str(config_file))
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr

    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    assert [Path(p).name for p in config["rule_files"]] == [RULES_FILE]
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["app:8000", "canary:8001"]
    config["rule_files"] = [str(rules_path())]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config), encoding="utf-8")

    full = run_promtool("check", "config", str(local))
    assert full.returncode == 0, full.stdout + full.stderr
    assert "SUCCESS: 16 rules found" in full.stdout


# ------------------------------------------------------------------------- finding promtool


def test_promtool_is_found_in_tools_bin_before_path(tmp_path: Path) -> None:
    assert find_promtool(tmp_path, search_path="") is None
    local = tmp_path / ".tools" / "bin" / "promtool"
    local.parent.mkdir(parents=True)
    local.write_text("#!/bin/sh\n", encoding="utf-8")
    local.chmod(0o755)
    assert find_promtool(tmp_path, search_path="") == str(local)


@pytest.mark.parametrize("ci", ["", "false"])
def test_a_missing_promtool_skips_outside_ci_and_says_how_to_install_it(ci: str) -> None:
    with pytest.raises(pytest.skip.Exception, match=re.escape("run `fragrance-ai install-tools promtool --dir .tools/bin`")):
        promtool_missing({"CI": ci})


def test_a_missing_promtool_fails_under_ci() -> None:
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        promtool_missing({"CI": "true"})
