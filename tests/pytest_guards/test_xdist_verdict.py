"""``pytest -n 2`` over scenarios gives the same checklist verdict and report as a serial run.

Each run is a real pytest subprocess (xdist starts worker processes); the reports are compared with
only the wall-clock durations left out. The fleet scenarios in the selection need redis-server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pytest_guards

CHECKLIST = Path(pytest_guards.__file__).resolve().parent / "checklist"
FLEET_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "fleet.yaml"  # the fleet scenarios run on Redis only
FILES = [
    CHECKLIST / "cache" / "single_flight.scenario.yaml",
    CHECKLIST / "cache" / "lru_order.scenario.yaml",
    CHECKLIST / "circuit_breaker" / "half_open_concurrent_limit.scenario.yaml",
    CHECKLIST / "circuit_breaker" / "qwen_opens_and_downshifts.scenario.yaml",
    CHECKLIST / "fleet" / "half_open_trials_fleet_wide.scenario.yaml",
    CHECKLIST / "fleet" / "concurrent_misses_one_pass.scenario.yaml",
]


def run(tmp_path: Path, name: str, *extra: str) -> tuple[dict[str, Any], str]:
    report = tmp_path / f"{name}.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--guards-report", str(report),
         "--guards-config", str(FLEET_CONFIG), *extra, *map(str, FILES)],
        capture_output=True, text=True, check=False, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    assert data.pop("seconds") > 0  # the run's wall time: differs between any two runs
    for result in data["scenarios"]:
        del result["duration_s"]  # wall time too
    data["scenarios"].sort(key=lambda r: (r["id"], r["file"]))
    return data, done.stdout


@pytest.mark.network
def test_a_parallel_run_gives_the_serial_runs_verdict_and_report(tmp_path: Path, redis_server: object) -> None:
    serial, serial_out = run(tmp_path, "serial")
    parallel, parallel_out = run(tmp_path, "parallel", "-n", "2")
    assert len(serial["scenarios"]) == len(FILES)
    assert parallel == serial
    summary = [line for line in serial_out.splitlines() if line.startswith(("✓", "✗"))]
    assert summary
    assert summary == [line for line in parallel_out.splitlines() if line.startswith(("✓", "✗"))]
