"""How a config file merges onto the packaged reference: plain dict operations, and where each value came from.

The rule: mappings merge key by key, scalars and lists replace, a ``null`` or empty mapping keeps the
reference's; a file's own ``llm.models`` replaces the reference's model set (and drops the reference's
per-model breaker overrides for models it does not define). Validation is ``config_loader``'s job.

What this module must not do: read files, validate values, or import anything but ``yaml_positions``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fragrance_ai.yaml_positions import KeyPath, format_path

__all__ = ["ValueSource", "leaves", "merge_onto_reference", "stale_reference_modes", "value_sources"]


@dataclass(frozen=True, slots=True)
class ValueSource:
    """Where one effective setting came from: a line of the loaded file, the reference, or a model's default.

    ``kind`` is ``file`` (the loaded file; ``line`` is where), ``reference`` (the packaged reference;
    ``file`` and ``line`` point into it) or ``default`` (a setting a model of the file's own
    ``llm.models`` leaves out: the :class:`ModelConfig` default).
    """

    kind: Literal["file", "reference", "default"]
    file: str
    line: int | None

    def __str__(self) -> str:
        if self.kind == "file":
            name = Path(self.file).name
            return f"from {name}:{self.line}" if self.line is not None else f"from {name}"
        return self.kind


def leaves(value: Any, path: KeyPath = ()) -> Iterator[KeyPath]:
    """The key path of every leaf: a scalar, a list, or an empty mapping."""
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            yield from leaves(sub, (*path, key))
    else:
        yield path


def merge_onto_reference(
    data: Mapping[str, Any], ref: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[KeyPath, bool]]:
    """``data`` merged onto the reference, and for every leaf whether it came from ``data`` (the rule: module doc)."""
    merged = copy.deepcopy(dict(ref))
    origin = dict.fromkeys(leaves(merged), False)
    llm = data.get("llm")
    own_models = llm.get("models") if isinstance(llm, dict) else None
    if own_models is not None:  # the file's model set replaces the reference's
        _drop(merged, ("llm", "models"), origin)
        if isinstance(own_models, dict):
            cb_models = merged.get("circuit_breaker", {}).get("models", {})
            for name in [n for n in cb_models if n not in own_models]:
                _drop(merged, ("circuit_breaker", "models", name), origin)
    _overlay(merged, data, (), origin)
    return merged, origin


def _drop(data: dict[str, Any], path: KeyPath, origin: dict[KeyPath, bool]) -> None:
    """Remove the value at ``path`` and the origin of every leaf under it."""
    parent: Any = data
    for key in path[:-1]:
        parent = parent[key]
    parent.pop(path[-1], None)
    _forget(origin, path)


def _forget(origin: dict[KeyPath, bool], path: KeyPath) -> None:
    for leaf in [p for p in origin if p[: len(path)] == path]:
        del origin[leaf]


def _overlay(base: dict[str, Any], over: Mapping[str, Any], path: KeyPath, origin: dict[KeyPath, bool]) -> None:
    for key, value in over.items():
        sub = (*path, key)
        current = base.get(key)
        if isinstance(current, dict) and (value is None or isinstance(value, dict)):
            if value:
                origin.pop(sub, None)  # an empty mapping of the reference is no longer a leaf
                _overlay(current, value, sub, origin)
            continue  # a null or empty mapping keeps the reference's
        _forget(origin, sub)
        base[key] = copy.deepcopy(value)
        origin.update(dict.fromkeys(leaves(value, sub), True))


def stale_reference_modes(
    merged: Mapping[str, Any], data: Mapping[str, Any], origin: Mapping[KeyPath, bool]
) -> tuple[str, list[str]] | None:
    """When the file's own models leave reference modes naming models it does not define: the message and those modes."""
    llm = data.get("llm")
    own = llm.get("models") if isinstance(llm, dict) else None
    modes = merged.get("modes")
    if not isinstance(own, dict) or not own or not isinstance(modes, dict):
        return None
    stale = [
        mode
        for mode, spec in modes.items()
        if isinstance(spec, dict)
        and isinstance(spec.get("models"), list)
        and origin.get(("modes", mode, "models")) is False
        and any(m not in own for m in spec["models"])
    ]
    if not stale:
        return None
    used = ", ".join(dict.fromkeys(m for mode in stale for m in modes[mode]["models"]))
    defined = ", ".join(map(str, own))
    if data.get("modes"):
        message = (
            f"the reference modes {', '.join(stale)} use {used}; your llm.models defines {defined}: "
            f"write models: for {', '.join(stale)}"
        )
    else:
        message = f"the reference modes use {used}; your llm.models defines {defined}: write modes: for your models"
    return message, stale


def value_sources(
    effective: Mapping[str, Any],
    origin: Mapping[KeyPath, bool],
    lines: Mapping[KeyPath, int],
    source: str,
    reference_source: str,
    reference_lines: Mapping[KeyPath, int],
) -> dict[str, ValueSource]:
    """Where every leaf of the ``effective`` settings came from: the loaded file, the reference, or a default."""

    def of(path: KeyPath) -> ValueSource:
        if path in origin:
            if origin[path]:
                return ValueSource("file", source, lines.get(path))
            return ValueSource("reference", reference_source, reference_lines.get(path))
        if path[:2] == ("circuit_breaker", "models") and len(path) == 4:
            return of(("circuit_breaker", path[3]))  # inherited from the section
        return ValueSource("default", "", None)

    return {format_path(path): of(path) for path in leaves(effective)}
