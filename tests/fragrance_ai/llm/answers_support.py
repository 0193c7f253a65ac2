"""Build the hostile LLM answers of ``hostile_answers.yaml`` from their recipes (for the tests and ``make bench``).

The data file holds recipes, not megabytes: each answer is a list of parts, a part being a string or a
``{repeat: TEXT, times: N}`` / ``{repeat: TEXT, fill: true}`` (see the file's header). This module only
expands them; it judges nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CORPUS = Path(__file__).with_name("hostile_answers.yaml")


@dataclass(frozen=True)
class HostileAnswer:
    """One case: its name, the answer text, the expected reason (or ``accepted``) and its bound in ms."""

    name: str
    answer: str
    reason: str
    within_ms: float


def _expand(parts: list[Any], budget: int) -> str:
    """Join ``parts``; a ``fill`` part takes as many copies as keep the whole within ``budget`` UTF-8 bytes."""
    fixed = [p if isinstance(p, str) else "" if p.get("fill") else _repeat(p, p["times"]) for p in parts]
    room = budget - sum(len(text.encode("utf-8")) for text in fixed)
    out = []
    for part, text in zip(parts, fixed, strict=True):
        if isinstance(part, dict) and part.get("fill"):
            text, room = _fill(part["repeat"], room)
        out.append(text)
    return "".join(out)


def _copy(text: Any, index: int) -> str:
    return text.replace("{i}", str(index)) if isinstance(text, str) else _expand(text, 1 << 62)


def _repeat(part: dict[str, Any], times: int) -> str:
    text = part["repeat"]
    if isinstance(text, str) and "{i}" not in text:
        return text * times
    return "".join(_copy(text, index) for index in range(times))


def _fill(text: Any, room: int) -> tuple[str, int]:
    if isinstance(text, str) and "{i}" not in text:
        size = len(text.encode("utf-8"))
        return text * max(room // size, 0), room % size
    copies: list[str] = []
    index = 0
    while True:
        copy = _copy(text, index)
        size = len(copy.encode("utf-8"))
        if size > room:
            return "".join(copies), room
        copies.append(copy)
        room -= size
        index += 1


def load_corpus(max_input_bytes: int, path: Path = CORPUS) -> list[HostileAnswer]:
    """Every case of the corpus, its answer built for a guard whose cap is ``max_input_bytes``."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [
        HostileAnswer(case["name"], _expand(case["answer"], max_input_bytes), case["reason"], float(case["within_ms"]))
        for case in data["cases"]
    ]
