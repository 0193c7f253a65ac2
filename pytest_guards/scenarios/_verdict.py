"""The checklist verdict: scenario results grouped by checklist item, and SAFE / DO NOT PROMOTE.

Safe means: every one of the four checklist items had at least one scenario, none failed, and no
scenario file was invalid. Anything less is DO NOT PROMOTE, with the reason named.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pytest_guards.scenarios._policy import Policy
from pytest_guards.scenarios._schema import CHECKLIST_ITEMS

#: up to this many scenarios left out for one reason are named; more are counted
_NAMED = 3

__all__ = ["INCONCLUSIVE", "ITEM_TITLES", "SAFE", "UNSAFE", "ScenarioResult", "Verdict"]

SAFE = "SAFE TO PROMOTE TO PRODUCTION"
UNSAFE = "DO NOT PROMOTE"
#: the harness could not run some scenario (target or control plane unreachable) and none failed
INCONCLUSIVE = "INCONCLUSIVE"

#: each checklist item as the verdict (and the HTML report) names it
ITEM_TITLES = {
    "json_guard": "1. JSON Hard Guard",
    "circuit_breaker": "2. Circuit Breaker",
    "cache": "3. Cache LRU+TTL",
    "health_check": "4. LLM Health Check",
}


@dataclass
class ScenarioResult:
    id: str
    title: str
    checklist: str | None  # None for a file that could not be read
    file: str
    line: int
    target: str
    outcome: str  # passed | failed | skipped | inconclusive (the harness could not run it)
    message: str = ""
    duration_s: float = 0.0
    virtual_seconds: float = 0.0
    #: ``Timeline.to_dict()``: what the target showed after each step (None when the scenario did not run)
    timeline: dict[str, Any] | None = None


@dataclass
class Verdict:
    results: list[ScenarioResult] = field(default_factory=list)
    target: str = "in_process"
    config_source: str = ""
    #: count skipped scenarios and a loosened policy against the verdict (``--guards-strict``); otherwise they are shown
    strict: bool = False
    #: the checklist items this run verifies (``--guards-item``); empty: all four
    items: tuple[str, ...] = ()
    policy: Policy | None = None
    #: real seconds the whole run took (set when the session ends)
    seconds: float = 0.0
    #: scenarios this run left out, id -> (checklist item, why): live fault scenarios without their control
    #: plane, or over the run's wait budget
    not_run: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def checked_items(self) -> tuple[str, ...]:
        return tuple(c for c in CHECKLIST_ITEMS if not self.items or c in self.items)

    def record(self, result: ScenarioResult) -> None:
        self.results = [r for r in self.results if not (r.id == result.id and r.file == result.file)]
        self.results.append(result)

    @property
    def ran(self) -> bool:
        return bool(self.results)

    def item(self, checklist: str) -> dict[str, Any]:
        mine = [r for r in self.results if r.checklist == checklist]
        return {
            "passed": sum(r.outcome == "passed" for r in mine),
            "failed": sum(r.outcome == "failed" for r in mine),
            "skipped": sum(r.outcome == "skipped" for r in mine),
            "inconclusive": [r.id for r in mine if r.outcome == "inconclusive"],
            "failing": [r.id for r in mine if r.outcome == "failed" or (self.strict and r.outcome == "skipped")],
            "skipped_ids": [r.id for r in mine if r.outcome == "skipped"],
        }

    @property
    def invalid_files(self) -> list[ScenarioResult]:
        return [r for r in self.results if r.checklist is None]

    def _blocking(self) -> list[tuple[str, str]]:
        """What stands between this run and SAFE, each as (kind, reason); kind ``inconclusive`` is the harness's own."""
        out: list[tuple[str, str]] = []
        for checklist in self.checked_items:
            counts = self.item(checklist)
            if counts["failing"]:
                out.append(("failing", f"{ITEM_TITLES[checklist]}: failing {', '.join(counts['failing'])}"))
            elif counts["inconclusive"]:
                out.append(("inconclusive", f"{ITEM_TITLES[checklist]}: could not run {', '.join(counts['inconclusive'])}"))
            elif counts["passed"] == 0:
                out.append(("unverified", f"{ITEM_TITLES[checklist]}: no scenario verified it"))
        out.extend(("invalid", f"invalid scenario file {bad.file}") for bad in self.invalid_files)
        if self.strict and self.policy is not None and self.policy.loosened:
            out.append(("policy", "the policy was loosened (--guards-strict holds it to the shipped bounds or tighter)"))
        return out

    def reasons(self) -> list[str]:
        """Why not safe (empty when safe)."""
        return [reason for _, reason in self._blocking()]

    @property
    def safe(self) -> bool:
        return self.ran and not self._blocking()

    @property
    def inconclusive(self) -> bool:
        """Not safe only because the harness could not run some scenario: nothing failed, nothing is missing."""
        blocking = self._blocking()
        return self.ran and bool(blocking) and all(kind == "inconclusive" for kind, _ in blocking)

    @property
    def word(self) -> str:
        if self.inconclusive:
            return INCONCLUSIVE
        if not self.safe:
            return UNSAFE
        return SAFE if len(self.checked_items) == len(CHECKLIST_ITEMS) else f"{SAFE} ({', '.join(self.checked_items)} only)"

    def lines(self) -> list[str]:
        out = [f"target: {self.target}" + (f"   config: {self.config_source}" if self.config_source else "")]
        if self.seconds:
            out.append(f"took {self.seconds:.1f} s (real time)")
        if self.policy is not None and len(self.policy.sources) > 1:
            out.append("policy: " + " + ".join(self.policy.sources[1:]) + " over the shipped policy")
        for loosened in self.policy.describe_loosened() if self.policy is not None else ():
            out.append(f"⚠ policy loosened: {loosened}")
        for checklist in self.checked_items:
            counts = self.item(checklist)
            mark = "✓" if counts["passed"] and not counts["failing"] else "✗"
            line = f"{mark} {ITEM_TITLES[checklist]:<22} {counts['passed']} passed, {counts['failed']} failed"
            if counts["inconclusive"]:
                line += f", {len(counts['inconclusive'])} could not run ({', '.join(counts['inconclusive'])})"
            if counts["skipped"]:
                line += f", {counts['skipped']} skipped ({', '.join(counts['skipped_ids'])})"
            if counts["failing"]:
                line += "   failing: " + ", ".join(counts["failing"])
            elif counts["passed"] == 0:
                line += "   (no scenario verified it)"
            out.append(line)
        for bad in self.invalid_files:
            out.append(f"✗ invalid scenario file: {bad.file}")
        out.extend(self._not_run_lines())
        for skipped in (r for r in self.results if r.outcome == "skipped" and r.checklist in self.checked_items):
            out.append(f"{'✗' if self.strict else '-'} skipped {skipped.id}: {skipped.message}")
        out.append("=" * 38)
        out.append(("✓ " if self.safe else "? " if self.inconclusive else "✗ ") + self.word)
        return out

    def _not_run_lines(self) -> list[str]:
        """One line per reason scenarios were left out of this run, naming them (or counting, when many)."""
        by_reason: dict[str, list[str]] = {}
        for sid, (checklist, reason) in sorted(self.not_run.items()):
            if checklist in self.checked_items:
                by_reason.setdefault(reason, []).append(sid)
        return [
            f"- not run: {', '.join(ids) if len(ids) <= _NAMED else f'{len(ids)} live fault scenarios'} ({reason})"
            for reason, ids in by_reason.items()
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.word,
            "safe": self.safe,
            "inconclusive": self.inconclusive,
            "target": self.target,
            "config": self.config_source,
            "reasons": self.reasons(),
            "seconds": round(self.seconds, 3),
            "items": {c: self.item(c) for c in self.checked_items},
            "policy": self.policy.to_dict() if self.policy is not None else None,
            "scenarios": [asdict(r) for r in self.results],
            "not_run": [
                {"id": sid, "checklist": checklist, "reason": reason}
                for sid, (checklist, reason) in sorted(self.not_run.items())
                if checklist in self.checked_items
            ],
        }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
