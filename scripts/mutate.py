"""``make mutate``: how many mutants of the six guard modules the scenario suite ALONE kills (a benchmark, not CI).

mutmut 3 (configured in ``pyproject.toml`` ``[tool.mutmut]``: the six modules, the in-process scenarios
of ``pytest_guards/checklist`` as the only test command) generates every mutant; this script then picks
a uniform sample per module with a fixed seed (mutmut 3 has no sampling of its own), runs exactly those
by name, and prints the kill rate per module and every survivor with its file:line and the mutated line.
Timeouts count as kills (a mutant that hangs a scenario is caught). Mutants named in
``benchmarks/mutation_equivalents.txt`` (``<name> <category>: <why>`` on one line) are reported apart as
judged harmless, counted per category, and an adjusted rate is printed beside the raw one.
``--module`` runs one module's share of the same seeded sample (drawn over all six first).

    python scripts/mutate.py [--per-module 40] [--seed 18] [--max-children 2] [--json mutants/report.json]
                             [--module fragrance_ai/llm/guards.py ...]

What this script must not do: run the unit tests (the point is what the scenarios alone catch), or
keep results between runs (``mutants/`` is rebuilt, so the figures are always of the current code).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODULES = (
    "fragrance_ai/llm/guards.py",
    "fragrance_ai/llm/mode_controller.py",
    "fragrance_ai/cache/lru_cache.py",
    "fragrance_ai/llm/circuit_breaker.py",
    "fragrance_ai/llm/health_check.py",
    "fragrance_ai/llm/ensemble.py",
)
EQUIVALENTS = ROOT / "benchmarks" / "mutation_equivalents.txt"
#: mutmut's exit codes (mutmut/models/results.py) that mean the scenarios caught the mutant
#: (a crash of the run, -9/-11, is a kill too: the scenario run did not pass)
_KILLED = {1: "killed", 3: "killed", 37: "caught by type check", 36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout",
           255: "timeout", -9: "killed (SIGKILL)", -11: "crashed"}
_SURVIVED = {0: "survived", 33: "no scenario reaches it", 5: "no scenario reaches it", 34: "skipped", None: "not checked"}


@dataclass
class Mutant:
    name: str
    module: str
    code: int | None

    @property
    def killed(self) -> bool:
        return self.code in _KILLED

    @property
    def status(self) -> str:
        return _KILLED.get(self.code) or _SURVIVED.get(self.code) or f"exit code {self.code}"


def _mutmut(*args: str, quiet: bool) -> int:
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # only the guards plugin: as `fragrance-ai verify` runs
    command = [str(Path(sys.executable).with_name("mutmut")), *args]
    out = subprocess.DEVNULL if quiet else None
    return subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=out, check=False).returncode


def _names(module: str) -> dict[str, int | None]:
    meta = ROOT / "mutants" / (module + ".meta")
    data: dict[str, Any] = json.loads(meta.read_text())
    codes: dict[str, int | None] = data["exit_code_by_key"]
    return codes


def _module_of(name: str) -> str:
    """``fragrance_ai.llm.guards.xǁ...__mutmut_3`` -> ``fragrance_ai/llm/guards.py``."""
    dotted = name.split(".x_")[0].split(".xǁ")[0]
    return dotted.replace(".", "/") + ".py"


def _function_lines(module: str) -> dict[str, tuple[int, int]]:
    """``Class.method`` / ``function`` -> (first line, last line) in the original file."""
    tree = ast.parse((ROOT / module).read_text())
    found: dict[str, tuple[int, int]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[node.name] = (node.lineno, node.end_lineno or node.lineno)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found[f"{node.name}.{item.name}"] = (item.lineno, item.end_lineno or item.lineno)
    return found


def _where(mutant: Mutant, lines: dict[str, tuple[int, int]]) -> tuple[int, str]:
    """(line, the mutated line as it now reads) of a mutant, from mutmut's diff."""
    source = (ROOT / mutant.module).read_text().splitlines()
    tail = mutant.name.rsplit(".", 1)[-1]
    parts = [p for p in re.split(r"ǁ", tail) if p]
    function = tail.split("__mutmut_")[0]
    if len(parts) >= 3:  # x ǁ Class ǁ method__mutmut_N
        function = f"{parts[1]}.{parts[2].split('__mutmut_')[0]}"
    elif function.startswith("x_"):
        function = function[2:]
    start, end = lines.get(function, (1, len(source)))
    show = [str(Path(sys.executable).with_name("mutmut")), "show", mutant.name]
    diff = subprocess.run(show, cwd=ROOT, capture_output=True, text=True, check=False).stdout.splitlines()
    removed = [line[1:].strip() for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in diff if line.startswith("+") and not line.startswith("+++")]
    for number in range(start, end + 1):
        if removed and source[number - 1].strip() == removed[0]:
            return number, (added[0] if added else "(line removed)")
    return start, (added[0] if added else "?")


def _equivalents() -> dict[str, str]:
    if not EQUIVALENTS.exists():
        return {}
    found = {}
    for line in EQUIVALENTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, why = line.partition(" ")
            found[name] = why.strip()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-module", type=int, default=40, help="mutants sampled per module (default 40)")
    parser.add_argument("--seed", type=int, default=18, help="the sample's seed (default 18)")
    parser.add_argument("--max-children", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument("--json", type=Path, default=ROOT / "mutants" / "scenario-mutation-report.json")
    parser.add_argument("--keep", action="store_true", help="reuse mutants/ (only when nothing changed since)")
    parser.add_argument("--report-only", action="store_true", help="report the sample's results in mutants/ as they stand")
    parser.add_argument("--module", action="append", choices=MODULES, metavar="PATH",
                        help="run and report only this module's share of the sample (repeatable); the sample is "
                             "drawn over all six first, so the mutants are the same as in a full run")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if not args.keep and not args.report_only:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    if not args.report_only:
        print("generating mutants and recording which scenario reaches which function (one scenario run) ...", flush=True)
        _mutmut("run", "--max-children", str(args.max_children), "__select_nothing__", quiet=True)  # generate only
    rng = random.Random(args.seed)
    sample: list[str] = []
    totals = {}
    for module in MODULES:
        names = sorted(_names(module))
        totals[module] = len(names)
        sample += rng.sample(names, min(args.per_module, len(names)))
    if args.module:
        sample = [name for name in sample if _module_of(name) in args.module]
    print(f"running {len(sample)} of {sum(totals.values())} mutants (seed {args.seed}, {args.per_module} per module)", flush=True)
    if not args.report_only:
        _mutmut("run", "--max-children", str(args.max_children), *sample, quiet=True)
    chosen = set(sample)
    mutants = [Mutant(n, m, c) for m in (args.module or MODULES) for n, c in _names(m).items() if n in chosen]
    return _report(mutants, totals, args, time.monotonic() - started)


def _report(mutants: list[Mutant], totals: dict[str, int], args: argparse.Namespace, wall: float) -> int:
    equivalents = _equivalents()
    rows = []
    print(f"\n{'module':<34} {'sampled':>7} {'killed':>6} {'rate':>6} {'equiv.':>6} {'adjusted':>8}")
    for module in args.module or MODULES:
        mine = [m for m in mutants if m.module == module]
        killed = sum(m.killed for m in mine)
        equivalent = sum(1 for m in mine if not m.killed and m.name in equivalents)
        rate = killed / len(mine) if mine else 0.0
        adjusted = killed / (len(mine) - equivalent) if len(mine) > equivalent else 0.0
        rows.append({"module": module, "mutants": totals[module], "sampled": len(mine), "killed": killed,
                     "equivalent": equivalent, "rate": rate, "adjusted": adjusted})
        print(f"{module:<34} {len(mine):>7} {killed:>6} {rate:>6.0%} {equivalent:>6} {adjusted:>8.0%}")
    killed = sum(m.killed for m in mutants)
    equivalent = sum(1 for m in mutants if not m.killed and m.name in equivalents)
    rate = killed / len(mutants) if mutants else 0.0
    adjusted = killed / (len(mutants) - equivalent) if len(mutants) > equivalent else 0.0
    label = "all six" if not args.module else "together"
    print(f"{label:<34} {len(mutants):>7} {killed:>6} {rate:>6.0%} {equivalent:>6} {adjusted:>8.0%}")
    kinds: dict[str, int] = {}
    for m in mutants:
        if not m.killed and m.name in equivalents:
            kind = equivalents[m.name].split(":", 1)[0]
            kinds[kind] = kinds.get(kind, 0) + 1
    if kinds:
        print(f"judged harmless: {equivalent} ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}; "
              f"{EQUIVALENTS.relative_to(ROOT)} says why)")
    unchecked = sum(1 for m in mutants if m.code is None)
    if unchecked:
        print(f"({unchecked} sampled mutants not checked yet: the run was stopped; they count as survivors above)")
    print(f"\nwall time {wall / 60:.1f} min (--max-children {args.max_children}; the machine may be shared)")
    survivors = []
    print("\nsurvivors:")
    for module in args.module or MODULES:
        lines = _function_lines(module)
        for m in sorted((m for m in mutants if m.module == module and not m.killed), key=lambda m: m.name):
            number, text = _where(m, lines)
            note = f"  [judged {equivalents[m.name]}]" if m.name in equivalents else ""
            print(f"  {module}:{number}  {m.status:<22} {text[:90]}  ({m.name}){note}")
            survivors.append({"name": m.name, "file": module, "line": number, "status": m.status, "mutated": text,
                              "equivalent": equivalents.get(m.name)})
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"seed": args.seed, "per_module": args.per_module, "wall_seconds": round(wall),
                                     "rate": rate, "adjusted": adjusted, "harmless_by_kind": kinds, "modules": rows,
                                     "survivors": survivors}, indent=2))
    print(f"\nreport: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
