"""Safe YAML loading that remembers where every key and item is, so errors can name file, line and column.

Duplicate keys are reported (PyYAML would silently keep the last one). Used by the config loader
and by the scenario files of pytest_guards. Depends on nothing else in the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["KeyPath", "Position", "YAMLProblem", "format_path", "load_yaml_with_positions"]

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass(frozen=True, slots=True)
class YAMLProblem:
    """A problem found while reading the YAML itself (syntax, duplicate key)."""

    path: KeyPath
    position: Position | None
    message: str


def format_path(path: KeyPath) -> str:
    """``("a", "b", 0, "c")`` -> ``a.b[0].c``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_yaml_with_positions(text: str) -> tuple[Any, dict[KeyPath, Position], list[YAMLProblem]]:
    """Parse one YAML document: its data, the position of every key path, and any problems.

    On a syntax error the data is ``None`` and the single problem says where.
    """
    loader = yaml.SafeLoader(text)
    positions: dict[KeyPath, Position] = {}
    problems: list[YAMLProblem] = []
    try:
        node = loader.get_single_node()
        if node is None:
            return None, positions, problems
        _walk(node, (), positions, problems, set())
        if any(p.message.startswith(_ALIAS) for p in problems):
            return None, positions, problems  # never construct it: an alias can nest without end
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Position(mark.line + 1, mark.column + 1) if mark is not None else None
        return None, positions, [YAMLProblem((), where, f"invalid YAML: {exc.problem or exc.context}")]
    except yaml.YAMLError as exc:
        return None, positions, [YAMLProblem((), None, f"invalid YAML: {exc}")]
    finally:
        loader.dispose()
    return data, positions, problems


def _at(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


_ALIAS = "YAML aliases"


def _walk(
    node: yaml.Node, path: KeyPath, positions: dict[KeyPath, Position], problems: list[YAMLProblem], seen: set[int]
) -> None:
    if id(node) in seen:
        # A node reached twice is an alias (*name). Aliases can refer to themselves or nest exponentially
        # ("billion laughs"); these files are short and hand-written, so they are refused outright.
        problems.append(YAMLProblem(path, _at(node), f"{_ALIAS} (*name) are not supported here; write the value out"))
        return
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        seen.add(id(node))
    positions.setdefault(path, _at(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            sub = (*path, key)
            if key in keys:
                problems.append(YAMLProblem(sub, _at(key_node), "duplicate key"))
            keys.add(key)
            positions[sub] = _at(key_node)
            _walk(value_node, sub, positions, problems, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), positions, problems, seen)
