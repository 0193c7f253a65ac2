"""Benchmark: the JSON hard guard's fast path against the naive ``jsonschema.validate(json.loads(text))``.

The anchor is what a guard without a compiled-validator cache would do per request: ``jsonschema.validate``
checks the schema against its metaschema and builds a fresh validator on every call.
"""

from __future__ import annotations

import json
import logging
import timeit
from typing import Any

import jsonschema

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
REPEAT = 5


def _best_ns(fn: Any, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=REPEAT)) / number * 1e9


def _row(name: str, ours: Any, anchor: Any, number: int, goal: str) -> dict[str, Any]:
    ours_ns = _best_ns(ours, number)
    anchor_ns = _best_ns(anchor, number)
    return {"name": name, "ours_ns": ours_ns, "anchor_ns": anchor_ns, "ratio": ours_ns / anchor_ns, "goal": goal}


def run(number: int | None = None) -> list[dict[str, Any]]:
    """Time each case (best of REPEAT runs of ``number`` calls) and return one row per case."""
    n = 300 if number is None else number
    guard = JSONHardGuard()
    naive = lambda: jsonschema.validate(json.loads(TEXT), BRIEF_SCHEMA)  # noqa: E731
    assert guard.guard(TEXT, BRIEF_SCHEMA).source == "model"
    assert guard.guard(FENCED, BRIEF_SCHEMA).source == "model"
    bad = TEXT.replace('"long"', '"forever"')
    logging.getLogger("fragrance_ai.llm.guards").disabled = True  # time the work, not the log handler
    try:
        return [
            _row("guard_valid_brief", lambda: guard.guard(TEXT, BRIEF_SCHEMA), naive, n, "ratio <= 0.1"),
            _row("guard_fenced_prose_brief", lambda: guard.guard(FENCED, BRIEF_SCHEMA), naive, n, "ratio <= 0.1"),
            _row("guard_invalid_to_fallback", lambda: guard.guard(bad, BRIEF_SCHEMA), naive, n, "ratio <= 0.5"),
        ]
    finally:
        logging.getLogger("fragrance_ai.llm.guards").disabled = False


if __name__ == "__main__":
    for row in run():
        print(
            f"{row['name']:<28} ours {row['ours_ns'] / 1000:9.2f} us  anchor {row['anchor_ns'] / 1000:9.2f} us"
            f"  ratio {row['ratio']:.3f}  (goal {row['goal']})"
        )
