"""The small brief schema and valid brief the guard and extraction tests share (test data only)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["BRIEF", "BRIEF_SCHEMA", "VALID"]

BRIEF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "description": {"type": "string"},
        "notes": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "families": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "intensity": {"type": "integer", "minimum": 0, "maximum": 100},
        "longevity": {"enum": ["short", "medium", "long"]},
        "error": {"type": "boolean"},
    },
    "required": ["description", "notes", "families", "intensity", "longevity"],
    "additionalProperties": False,
}
BRIEF: dict[str, Any] = {
    "description": "Bergamot over soft musk",
    "notes": ["bergamot", "musk"],
    "families": ["citrus"],
    "intensity": 60,
    "longevity": "long",
}
VALID = json.dumps(BRIEF)
