"""JSON Schemas shipped with the package."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["brief_schema"]


@cache
def brief_schema() -> dict[str, Any]:
    """The fragrance brief schema (loaded once; treat as read-only)."""
    text = resources.files(__package__).joinpath("brief.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
