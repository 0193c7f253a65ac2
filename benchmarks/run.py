"""`make bench`: every benchmark against its anchor, in one run, printed as ratios with their goals.

Each ``bench_*.py`` module exposes ``run(number=None) -> list[dict]`` with rows
``{"name", "ours_ns", "anchor_ns", "ratio", "goal"}``. ``--quick`` runs fewer iterations (a smoke test
that the benchmarks still work; its numbers are noisy).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import platform
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MODULES = (
    "bench_cache", "bench_breaker", "bench_guard", "bench_service", "bench_service_load", "bench_scenarios", "bench_redis",
)


def _fmt_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:9.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:9.2f} us"
    return f"{ns:9.0f} ns"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few iterations: check the benchmarks run")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)  # guards log transitions and fallbacks; not part of the measurement
    rows: list[dict[str, Any]] = []
    print(f"# {platform.python_implementation()} {platform.python_version()} on {platform.machine()}")
    print(f"{'benchmark':<44} {'ours':>12} {'anchor':>12} {'ratio':>7}  goal")
    for name in MODULES:
        path = HERE / f"{name}.py"
        if not path.exists():
            continue
        module = importlib.import_module(name)
        number = getattr(module, "QUICK_NUMBER", 200) if args.quick else None
        for row in module.run(number):
            rows.append(row)
            print(
                f"{row['name']:<44} {_fmt_ns(row['ours_ns']):>12} {_fmt_ns(row['anchor_ns']):>12} "
                f"{row['ratio']:7.3f}  {row['goal']}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
