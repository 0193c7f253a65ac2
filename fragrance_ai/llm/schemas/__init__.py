"""JSON Schemas shipped with the package."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["brief_schema"]


@cache
def brief_schema(strict: bool = True) -> dict[str, Any]:
    """The fragrance brief schema (loaded once; treat as read-only).

    ``strict=False`` (``json_guard.strict_schema: false``) tolerates keys the schema does not name;
    the strict schema rejects them, so a model that invents fields is re-asked.
    """
    text = resources.files(__package__).joinpath("brief.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    if not strict:
        schema["additionalProperties"] = True
        schema["$id"] = schema["$id"].replace(".schema.json", ".lenient.schema.json")
    return schema
