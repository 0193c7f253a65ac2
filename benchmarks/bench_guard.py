"""Benchmark: the JSON hard guard against what a careful user would write, and its worst hostile answer.

Anchors, each named as measured: ``json.loads`` + jsonschema-rs (the fastest compiled validator here,
goal <= 2.5x), ``json.loads`` + a PRECOMPILED jsonschema Draft 2020-12 validator (goal <= 0.15x), and for
the worst answer of the hostile corpus (tests/fragrance_ai/llm/hostile_answers.yaml) a 50 ms budget.
"""

from __future__ import annotations

import json
import logging
import sys
import timeit
from pathlib import Path
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator

from fragrance_ai.llm.guards import JSONHardGuard
from fragrance_ai.llm.schemas import brief_schema

# the schema the service validates every answer against (fragrance_ai/llm/schemas/brief.schema.json)
BRIEF_SCHEMA: dict[str, Any] = brief_schema()

BRIEF = {
    "description": "A bright citrus opening over a soft musk base, with a hint of bergamot and cedar.",
    "notes": ["bergamot", "lemon", "neroli", "white musk", "cedar"],
    "families": ["citrus", "woody"],
    "intensity": 62,
    "longevity": "long",
}
TEXT = json.dumps(BRIEF, ensure_ascii=False)
FENCED = f"Here is the brief you asked for:\n```json\n{json.dumps(BRIEF, indent=2)}\n```\nEnjoy!"
REPEAT = 7
CORPUS_DIR = Path(__file__).resolve().parents[1] / "tests" / "fragrance_ai" / "llm"


def _best_ns(fn: Any, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=REPEAT)) / number * 1e9


def _row(name: str, ours: Any, anchor: Any, number: int, goal: str) -> dict[str, Any]:
    ours_ns = _best_ns(ours, number)
    anchor_ns = _best_ns(anchor, number)
    return {"name": name, "ours_ns": ours_ns, "anchor_ns": anchor_ns, "ratio": ours_ns / anchor_ns, "goal": goal}


def _worst_hostile(guard: JSONHardGuard) -> dict[str, Any]:
    """The slowest answer of the hostile corpus (best of 3 each), against a 50 ms budget."""
    sys.path.insert(0, str(CORPUS_DIR))
    from answers_support import load_corpus

    schema = guard.compile(BRIEF_SCHEMA)
    worst_ns, worst_name = 0.0, ""
    for case in load_corpus(guard.max_input_bytes):
        answer: str = case.answer
        ns = min(timeit.repeat(lambda: guard.guard(answer, schema), number=1, repeat=3)) * 1e9  # noqa: B023 - called at once
        if ns > worst_ns:
            worst_ns, worst_name = ns, case.name
    return {"name": f"guard worst hostile answer ({worst_name[:30]})", "ours_ns": worst_ns, "anchor_ns": 50e6,
            "ratio": worst_ns / 50e6, "goal": "<= 1 (50 ms budget)"}


def run(number: int | None = None) -> list[dict[str, Any]]:
    """Time each case (best of REPEAT runs of ``number`` calls) and return one row per case."""
    n = 2000 if number is None else number
    guard = JSONHardGuard()
    rs = jsonschema_rs.validator_for(BRIEF_SCHEMA)
    draft = Draft202012Validator(BRIEF_SCHEMA)
    assert rs.is_valid(json.loads(TEXT))
    assert draft.is_valid(json.loads(TEXT))
    compiled_anchor = lambda: rs.is_valid(json.loads(TEXT))  # noqa: E731
    precompiled_anchor = lambda: draft.is_valid(json.loads(TEXT))  # noqa: E731
    assert guard.guard(TEXT, BRIEF_SCHEMA).source == "model"
    assert guard.guard(FENCED, BRIEF_SCHEMA).source == "model"
    logging.getLogger("fragrance_ai.llm.guards").disabled = True  # time the work, not the log handler
    try:
        return [
            _row("guard valid brief vs loads+jsonschema-rs", lambda: guard.guard(TEXT, BRIEF_SCHEMA), compiled_anchor,
                 n, "<= 2.5"),
            _row("guard valid brief vs loads+Draft202012 precompiled", lambda: guard.guard(TEXT, BRIEF_SCHEMA),
                 precompiled_anchor, n, "<= 0.15"),
            _row("guard fenced brief vs loads+jsonschema-rs", lambda: guard.guard(FENCED, BRIEF_SCHEMA),
                 compiled_anchor, n, "informative"),
            _worst_hostile(guard),
        ]
    finally:
        logging.getLogger("fragrance_ai.llm.guards").disabled = False


if __name__ == "__main__":
    for row in run():
        print(
            f"{row['name']:<28} ours {row['ours_ns'] / 1000:9.2f} us  anchor {row['anchor_ns'] / 1000:9.2f} us"
            f"  ratio {row['ratio']:.3f}  (goal {row['goal']})"
        )
