"""PromQL reference reading and scrape shapes shared by the monitoring-pack tests (not a test module).

Kept out of conftest.py so that test modules import it by a unique name.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[3]

#: labels a Prometheus scrape adds to every series; rules may group or match on them
TARGET_LABELS = frozenset({"job", "instance"})

# PromQL words that are not metric names (functions are also recognised by the "(" after them)
_NOT_METRICS = frozenset(
    [
        "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
        "group", "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
        "offset", "atan2", "rate", "irate", "increase", "delta", "idelta", "deriv", "predict_linear", "resets",
        "changes", "histogram_quantile", "histogram_count", "histogram_sum", "histogram_fraction", "abs", "absent",
        "absent_over_time", "ceil", "floor", "round", "exp", "ln", "log2", "log10", "sqrt", "sgn", "clamp",
        "clamp_min", "clamp_max", "label_replace", "label_join", "vector", "scalar", "time", "timestamp", "sort",
        "sort_desc", "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
        "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time", "present_over_time",
        "day_of_month", "day_of_week", "day_of_year", "days_in_month", "hour", "minute", "month", "year", "inf",
        "nan",
    ]
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_RANGE = re.compile(r"\[[^\]]*\]")
_SELECTOR = re.compile(r"(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)?\s*\{(?P<matchers>[^}]*)\}")
_MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"(?:[^\"\\]|\\.)*\"\s*,?")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w.:$])([A-Za-z_:][A-Za-z0-9_:]*)(?!\w)(\s*\()?")
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$__\w+|\$\w+")


@dataclass
class PromQLRefs:
    """What one PromQL expression refers to."""

    metrics: dict[str, set[str]] = field(default_factory=dict)  # metric name -> labels in its matchers
    grouping: set[str] = field(default_factory=set)  # labels in by/without/on/ignoring/group_*


def promql_references(expr: str) -> PromQLRefs:
    """The metric names (with their matcher labels) and grouping labels ``expr`` uses.

    A small tokenizer, not a parser: enough for the rules and dashboard this project ships. Grafana
    variables are blanked first, and a matcher list it cannot read raises, so nothing is skipped silently.
    """
    text = _GRAFANA_VAR.sub("1", expr)
    text = _RANGE.sub("", text)  # [5m], [30m:1m], [$__rate_interval]
    refs = PromQLRefs()

    def selector(match: re.Match[str]) -> str:
        matchers = match.group("matchers")
        labels = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
        if _MATCHER.sub("", matchers).strip():
            raise ValueError(f"cannot read the label matchers {{{matchers}}} in {expr!r}")
        name = match.group("name")
        if name is None or name in _NOT_METRICS:
            raise ValueError(f"a selector without a metric name in {expr!r}: {match.group(0)!r}")
        refs.metrics.setdefault(name, set()).update(labels)
        return " "

    text = _SELECTOR.sub(selector, text)
    for labels in _GROUPING.findall(text):
        refs.grouping.update(label.strip() for label in labels.split(",") if label.strip())
    text = _GROUPING.sub(" ", text)
    text = _STRING.sub(" ", text)
    for name, call in _IDENT.findall(text):
        if call or name.lower() in _NOT_METRICS:
            continue
        refs.metrics.setdefault(name, set())
    return refs


@dataclass(frozen=True)
class Scrape:
    """One /metrics scrape of the running service."""

    text: str
    labels: dict[str, frozenset[str]]  # sample name (cache_hits_total, ..._bucket) -> its label names
    types: dict[str, str]  # family name -> counter | gauge | histogram ...


def find_promtool(repo: Path = REPO, search_path: str | None = None) -> str | None:
    """``<repo>/.tools/bin/promtool`` (``make tools`` puts it there), else promtool on PATH."""
    local = repo / ".tools" / "bin" / "promtool"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("promtool", path=search_path)


def promtool_missing(environ: Mapping[str, str]) -> NoReturn:
    """Skip the test, or fail it under CI=true: in CI a skipped rules test is an untested alert."""
    message = "promtool not found in .tools/bin or on PATH: run `fragrance-ai install-tools promtool --dir .tools/bin`"
    if environ.get("CI", "").strip().lower() in {"true", "1", "yes"}:
        pytest.fail(f"{message} (CI=true: the monitoring tests must not be skipped)", pytrace=False)
    pytest.skip(message)
