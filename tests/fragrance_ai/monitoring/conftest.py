"""Fixtures of the monitoring-pack tests: promtool, a real /metrics scrape, and a checker of PromQL references.

promtool comes from ``<repo>/.tools/bin`` (``fragrance-ai install-tools promtool``) or PATH. Without it the
tests skip locally and FAIL under ``CI=true``: in CI a skipped rules test is an untested alert.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from monitoring_support import TARGET_LABELS, Scrape, find_promtool, promql_references, promtool_missing
from prometheus_client.parser import text_string_to_metric_families

from fragrance_ai.clock import VirtualClock
from fragrance_ai.config_loader import default_config_path, load_config
from fragrance_ai.monitoring import rules_path
from fragrance_ai.service.app import create_app
from fragrance_ai.service.system import GuardSystem


@pytest.fixture(scope="session")
def scrape() -> Scrape:
    """/metrics of the service (default config, simulated backends) after one brief and one health check."""

    async def run() -> str:
        clock = VirtualClock()
        system = GuardSystem.build(
            load_config(default_config_path()),
            clock=clock,
            asleep=clock.asleep,
            atimeout=clock.timeout,
            start_cleanup=False,
        )
        app = create_app(system=system)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as client:
                brief = await client.post("/v1/briefs", json={"prompt": "x"})
                assert brief.status_code == 200, brief.text
                health = await client.get("/health/llm", params={"model": "all"})
                assert health.status_code == 200, health.text
                metrics = await client.get("/metrics")
                assert metrics.status_code == 200, metrics.text
                return metrics.text
        finally:
            await system.aclose()

    text = asyncio.run(run())
    labels: dict[str, set[str]] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return Scrape(text, {name: frozenset(names) for name, names in labels.items()}, types)


@pytest.fixture(scope="session")
def rules() -> dict[str, Any]:
    """The shipped rules file, parsed."""
    data: dict[str, Any] = yaml.safe_load(rules_path().read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="session")
def recorded(rules: dict[str, Any]) -> dict[str, str]:
    """Recording-rule name -> its expression."""
    return {r["record"]: r["expr"] for g in rules["groups"] for r in g["rules"] if "record" in r}


def _labels_of(scrape: Scrape, recorded: dict[str, str], name: str, seen: frozenset[str] = frozenset()) -> set[str] | None:
    """The labels series ``name`` carries: scraped, or derived through its recording rule; None when neither."""
    if name in scrape.labels:
        labels: set[str] = set(scrape.labels[name]) | TARGET_LABELS
        return labels
    if name in recorded and name not in seen:
        refs = promql_references(recorded[name])
        out = set(TARGET_LABELS)
        for metric in refs.metrics:
            out |= _labels_of(scrape, recorded, metric, seen | {name}) or set()
        return out
    return None


@pytest.fixture(scope="session")
def check_refs(scrape: Scrape, recorded: dict[str, str]) -> Callable[[str], list[str]]:
    """A checker: the problems (empty when none) of one expression's references against the scrape."""

    def check(expr: str) -> list[str]:
        problems: list[str] = []
        try:
            refs = promql_references(expr)
        except ValueError as exc:
            return [str(exc)]
        if not refs.metrics:
            problems.append(f"{expr!r} names no metric")
        available: set[str] = set()
        for name, matcher_labels in sorted(refs.metrics.items()):
            if ":" in name and name not in recorded:
                problems.append(f"{name} looks like a recording rule but no `record:` defines it")
                continue
            labels = _labels_of(scrape, recorded, name)
            if labels is None:
                problems.append(f"{name} is not exported by /metrics (and is not a recording rule)")
                continue
            available |= labels
            missing = matcher_labels - labels
            if missing:
                problems.append(f"{name} has no label(s) {sorted(missing)}; it has {sorted(labels)}")
        if refs.metrics and not problems:
            unknown = refs.grouping - available
            if unknown:
                problems.append(f"grouping by {sorted(unknown)}, which none of {sorted(refs.metrics)} has")
        return problems

    return check


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool; skips without it, except under CI=true, where a missing promtool is an error."""
    path: str | None = find_promtool()
    if path is None:
        promtool_missing(os.environ)
    assert path is not None  # promtool_missing skips or fails
    return path


@pytest.fixture(scope="session")
def run_promtool(promtool: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_promtool(*args, stdin=None, cwd=None)``: promtool's exit code and output, never raising on failure."""

    def run(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        command: Sequence[str] = [promtool, *args]
        return subprocess.run(command, input=stdin, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)

    return run
