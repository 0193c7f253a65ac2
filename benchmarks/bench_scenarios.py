"""Benchmark: the in-process scenario suite's wall time, and the virtual seconds it simulates per wall second.

The toxiproxy scenarios are excluded: they run in real time by nature.

Runs ``pytest scenarios`` in a subprocess with ``--guards-report`` and reads each scenario's virtual
seconds from the report. Rows: "scenario suite wall time" vs the 10 s budget (goal ratio < 1), and
"virtual seconds per wall second" (ratio = virtual / wall of the scenarios themselves, goal >= 100).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QUICK_NUMBER = 1
BUDGET_S = 10.0


def run(number: int | None = None) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pytest", "pytest_guards/checklist", "-q", "-p", "no:cacheprovider", "-m", "not toxiproxy",
             "--guards-report", str(report)],
            cwd=ROOT, check=False, capture_output=True, timeout=300,
        )
        wall = time.perf_counter() - started
        data = json.loads(report.read_text())
    scenarios = data["scenarios"]
    virtual = sum(s["virtual_seconds"] for s in scenarios)
    running = sum(s["duration_s"] for s in scenarios) or 1e-9
    return [
        {
            "name": f"scenario suite wall time ({len(scenarios)} scenarios, incl. pytest start)",
            "ours_ns": wall * 1e9,
            "anchor_ns": BUDGET_S * 1e9,
            "ratio": wall / BUDGET_S,
            "goal": "< 1 (under 10 s)",
        },
        {
            "name": f"virtual s per wall s ({virtual:.0f} virtual s)",
            "ours_ns": virtual * 1e9,
            "anchor_ns": running * 1e9,
            "ratio": virtual / running,
            "goal": ">= 100 (ratio = virtual / wall)",
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(f"{row['name']:<60} ratio {row['ratio']:10.2f}   goal {row['goal']}")
