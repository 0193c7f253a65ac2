"""The shipped Grafana dashboard: every query names metrics the service exports (or the rules record),
it shows what an operator needs, and its docker-compose provisioning points at the right data source.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring_support import REPO, promql_references

from fragrance_ai.metrics import STATE_VALUES
from fragrance_ai.monitoring import dashboard_path

PROVISIONING = REPO / "deploy" / "grafana" / "provisioning"  # docker-compose.yml mounts it

#: what the dashboard must show, as (what, metric names any of which a panel may query for it)
REQUIRED = (
    ("breaker state per model", {"circuit_breaker_state"}),
    ("current mode", {"llm_mode_current"}),
    ("downshifts", {"llm_mode_downshift_total"}),
    ("fallback rate", {"instance:llm_json_fallback:ratio_rate5m"}),
    ("retry counts", {"instance:llm_json_retry_count:p95_rate5m", "llm_json_retry_count_bucket"}),
    ("cache hit rate", {"instance:cache_hits:ratio_rate5m"}),
    ("cache size", {"cache_size"}),
    ("health status per model", {"llm_health_status"}),
    ("health-check latency per model", {"llm_health_check_duration_seconds_bucket"}),
)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(dashboard_path().read_text(encoding="utf-8"))
    return data


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", ())  # panels inside a collapsed row


def _queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target, annotation and template-variable query."""
    for panel in _panels(dashboard):
        for target in panel.get("targets", ()):
            yield f"panel {panel['title']!r} target {target['refId']}", target["expr"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["definition"])
            assert match, f"variable {variable['name']}: expected label_values(<selector>, <label>)"
            yield f"variable {variable['name']!r}", f"sum by ({match.group(2)}) ({match.group(1)})"


def test_every_query_names_exported_metrics_with_their_labels(
    dashboard: dict[str, Any], check_refs: Callable[[str], list[str]]
) -> None:
    problems = [f"{where}: {problem}" for where, expr in _queries(dashboard) for problem in check_refs(expr)]
    assert not problems, "\n".join(problems)


def test_a_query_of_a_missing_metric_would_be_reported(
    dashboard: dict[str, Any], check_refs: Callable[[str], list[str]]
) -> None:
    size = next(expr for _, expr in _queries(dashboard) if expr.startswith("cache_size"))
    assert check_refs(size) == []
    assert check_refs(size.replace("cache_size", "cache_entries")) != []


@pytest.mark.parametrize(("what", "names"), REQUIRED, ids=[what for what, _ in REQUIRED])
def test_the_dashboard_shows(what: str, names: set[str], dashboard: dict[str, Any]) -> None:
    used = {name for _, expr in _queries(dashboard) for name in promql_references(expr).metrics}
    assert used & names, f"no panel shows the {what} (querying any of {sorted(names)})"


def test_breaker_state_colours_follow_the_exported_values(dashboard: dict[str, Any]) -> None:
    panel = next(p for p in _panels(dashboard) if p["title"] == "Circuit breaker state per model")
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    shown = {int(value): option["text"].replace("-", "_") for value, option in mapping["options"].items()}
    assert shown == {value: state for state, value in STATE_VALUES.items()}


def test_panels_are_well_formed(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    occupied: set[tuple[int, int]] = set()
    for panel in _panels(dashboard):
        pos = panel["gridPos"]
        assert pos["x"] >= 0, f"{panel['title']!r} is wider than the grid"
        assert pos["x"] + pos["w"] <= 24, f"{panel['title']!r} is wider than the grid"
        cells = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & occupied, f"{panel['title']!r} overlaps another panel"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"{panel['title']!r} has no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"{panel['title']!r} repeats a refId"
        for target in panel["targets"]:
            ignored = f"{panel['title']!r} target {target['refId']} ignores the job/instance selectors"
            assert 'job=~"$job"' in target["expr"], ignored
            assert 'instance=~"$instance"' in target["expr"], ignored


def test_provisioning_serves_this_dashboard_from_the_provisioned_data_source(dashboard: dict[str, Any]) -> None:
    sources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))
    (source,) = sources["datasources"]
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")
    assert source["type"] == variable["query"] == "prometheus"
    assert variable["current"]["value"] == source["uid"]
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "fragrance-ai.yml").read_text(encoding="utf-8"))
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert Path(provider["options"]["path"]).is_absolute()
    assert dashboard["uid"] == "fragrance-ai-guards"
