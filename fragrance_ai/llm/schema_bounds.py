"""The sizes a schema bounds (``maxItems``, ``maxLength``, ``maxProperties``), checked before a full explanation.

An answer the compiled validator rejected is explained by the reference validator (``jsonschema``), whose
cost grows with the answer: 100,000 strings where ``maxItems`` is 24 take it about a second. This module
walks the schema beside the answer through the keywords that always apply (``properties``,
``additionalProperties``, ``items``, ``prefixItems``, ``allOf``) and reports every container or string
over its bound, so a hostile answer is explained in time bounded by the schema, not by the answer.

Pure and sound: each line it reports is a real violation. It must not follow ``$ref`` or combinators
that apply conditionally (``anyOf``, ``oneOf``, ``if``), look at more than ``SCAN_CAP`` members of any
one container, or recurse deeper than the answer already proved it can (the guard's depth cap).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from fragrance_ai.llm.json_extract import clip

__all__ = ["SCAN_CAP", "oversized"]

#: members of one container (array items, object values) looked at; past it the walk moves on
SCAN_CAP: Final = 1000


def _bound(schema: Mapping[str, Any], keyword: str) -> int | None:
    value = schema.get(keyword)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{clip(key, 40)!r}]"


def oversized(schema: object, instance: object, limit: int) -> list[str]:
    """Up to ``limit`` lines ``$.path: what is over which bound`` (empty when no stated size is exceeded)."""
    found: list[str] = []
    _walk(schema, instance, "$", found, limit)
    return found


def _walk(schema: object, instance: object, path: str, found: list[str], limit: int) -> None:  # noqa: C901 - one branch per keyword
    if len(found) >= limit or not isinstance(schema, Mapping):
        return
    for sub in schema.get("allOf", ()) if isinstance(schema.get("allOf"), list) else ():
        _walk(sub, instance, path, found, limit)
    if isinstance(instance, str):
        most = _bound(schema, "maxLength")
        if most is not None and len(instance) > most:
            found.append(f"{path}: a string of {len(instance):,} characters, over maxLength={most}")
    elif isinstance(instance, list):
        most = _bound(schema, "maxItems")
        if most is not None and len(instance) > most:
            found.append(f"{path}: {len(instance):,} items, over maxItems={most}")
        prefix = schema.get("prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        for index, item in enumerate(instance[: min(len(prefix), SCAN_CAP)]):
            _walk(prefix[index], item, f"{path}[{index}]", found, limit)
        items = schema.get("items")
        if isinstance(items, Mapping):
            for index in range(len(prefix), min(len(instance), SCAN_CAP)):
                _walk(items, instance[index], f"{path}[{index}]", found, limit)
    elif isinstance(instance, dict):
        most = _bound(schema, "maxProperties")
        if most is not None and len(instance) > most:
            found.append(f"{path}: {len(instance):,} properties, over maxProperties={most}")
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        for key, sub in properties.items():
            if key in instance:
                _walk(sub, instance[key], _key_path(path, key), found, limit)
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping) and "patternProperties" not in schema:
            others = (key for key in instance if key not in properties)
            for _, key in zip(range(SCAN_CAP), others, strict=False):
                _walk(extra, instance[key], _key_path(path, key), found, limit)


# -- before parsing: how many arrays/objects and members a valid answer can hold at most -------------------

#: keywords whose effect this bound does not model: a schema using one is treated as unbounded
_UNMODELLED: Final = frozenset({
    "$ref", "$dynamicRef", "allOf", "anyOf", "oneOf", "not", "if", "patternProperties", "dependentSchemas",
    "unevaluatedProperties", "unevaluatedItems", "prefixItems", "contains", "propertyNames",
})
_ALL_TYPES: Final = ("object", "array", "string", "number", "integer", "boolean", "null")


def _literal_counts(value: object) -> tuple[int, int]:
    if isinstance(value, dict):
        inner = [_literal_counts(v) for v in value.values()]
    elif isinstance(value, list):
        inner = [_literal_counts(v) for v in value]
    else:
        return 0, 0
    return 1 + sum(c for c, _ in inner), len(inner) + sum(m for _, m in inner)


def structure_bound(schema: object) -> tuple[int, int] | None:
    """``(containers, members)`` at most in any valid instance, or None when the schema does not bound them.

    Containers are arrays and objects; members are array items and object properties. A JSON text with
    more of either (counted outside strings) cannot be valid, so it can be rejected before parsing.
    """
    if schema is False:
        return 0, 0
    if not isinstance(schema, Mapping) or _UNMODELLED & schema.keys():
        return None
    for keyword in ("const", "enum"):
        if keyword in schema:
            options = [schema["const"]] if keyword == "const" else schema[keyword]
            if not isinstance(options, list):
                return None
            counts = [_literal_counts(option) for option in options] or [(0, 0)]
            return max(c for c, _ in counts), max(m for _, m in counts)
    declared = schema.get("type", list(_ALL_TYPES))
    types = [declared] if isinstance(declared, str) else declared
    containers = members = 0
    if "object" in types:
        properties = schema.get("properties", {})
        if schema.get("additionalProperties", True) is not False or not isinstance(properties, Mapping):
            return None
        subs = [structure_bound(sub) for sub in properties.values()]
        if any(sub is None for sub in subs):
            return None
        bounded = [sub for sub in subs if sub is not None]
        containers = 1 + sum(c for c, _ in bounded)
        members = len(bounded) + sum(m for _, m in bounded)
    if "array" in types:
        most, items = _bound(schema, "maxItems"), schema.get("items", True)
        sub = structure_bound(items)
        if most is None or sub is None:
            return None
        containers = max(containers, 1 + most * sub[0])
        members = max(members, most * (1 + sub[1]))
    return containers, members
