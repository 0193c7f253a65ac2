"""Safe YAML loading that remembers where every key and item is, so errors can name file, line and column.

Duplicate keys are reported (PyYAML would silently keep the last one). Every input gives data or
problems, never an exception: bytes that are not UTF-8, characters YAML forbids (NUL, C0, C1), values
a constructor refuses (``2001-02-30``, ``!!int x``) and nesting deeper than :data:`MAX_DEPTH` are
problems with a position. Positions are counted as editors count them: only ``\\n``, ``\\r\\n`` and ``\\r``
end a line (PyYAML also breaks lines at NEL ``\\x85``, U+2028 and U+2029, which would shift every line
after one). Used by the config loader and by the scenario files of pytest_guards. Depends on nothing
else in the package.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Any, Final

import yaml

__all__ = ["MAX_DEPTH", "KeyPath", "Position", "YAMLProblem", "decode_yaml", "format_path", "load_yaml_with_positions"]

KeyPath = tuple[str | int, ...]

#: mappings and lists nested deeper than this are refused (hand-written files never come close)
MAX_DEPTH: Final = 64
_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")
_LINE_BREAK_BYTES: Final = re.compile(rb"\r\n|\r|\n")


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

    @property
    def line(self) -> int | None:
        return self.position.line if self.position is not None else None


def format_path(path: KeyPath) -> str:
    """``("a", "b", 0, "c")`` -> ``a.b[0].c``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Lines:
    """Character offsets -> (line, column) as an editor shows them (only CR, LF and CRLF end a line)."""

    def __init__(self, text: str) -> None:
        self._starts = [0, *(m.end() for m in _LINE_BREAK.finditer(text))]

    def at(self, index: int) -> Position:
        line = bisect.bisect_right(self._starts, index) - 1
        return Position(line + 1, index - self._starts[line] + 1)


def decode_yaml(data: bytes) -> tuple[str, YAMLProblem | None]:
    """``data`` as text, or ``""`` and the problem (with the line of the first byte that is not UTF-8)."""
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        start = exc.start
        starts = [0, *(m.end() for m in _LINE_BREAK_BYTES.finditer(data, 0, start))]
        where = Position(len(starts), start - starts[-1] + 1)
        return "", YAMLProblem((), where, f"not UTF-8: byte 0x{data[start]:02x} cannot start a character here")


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, but a value its constructors refuse is a marked error, not a bare ValueError."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:
            # the innermost node fails first; a ConstructorError is a YAMLError, so outer nodes let it through
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this {node.tag.rsplit(':', 1)[-1]} value ({type(exc).__name__})", node.start_mark
            ) from None


def load_yaml_with_positions(text: str) -> tuple[Any, dict[KeyPath, Position], list[YAMLProblem]]:
    """Parse one YAML document: its data, the position of every key path, and any problems.

    On a syntax error the data is ``None`` and the single problem says where.
    """
    lines = _Lines(text)
    positions: dict[KeyPath, Position] = {}
    problems: list[YAMLProblem] = []
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # the reader checks every character here already
        node = loader.get_single_node()
        if node is None:
            return None, positions, problems
        _walk(node, (), positions, problems, set(), lines)
        if any(p.message.startswith(_REFUSED) for p in problems):
            return None, positions, problems  # never construct it: an alias can nest without end, and so can lists
        data = loader.construct_document(node)
    except yaml.reader.ReaderError as exc:
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        message = f"invalid YAML: the character U+{code:04X} is not allowed (control characters other than tab and line breaks)"
        return None, positions, [YAMLProblem((), lines.at(exc.position), message)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = lines.at(mark.index) if mark is not None else Position(1, 1)
        return None, positions, [YAMLProblem((), where, f"invalid YAML: {exc.problem or exc.context}")]
    except yaml.YAMLError as exc:
        return None, positions, [YAMLProblem((), Position(1, 1), f"invalid YAML: {exc}")]
    except RecursionError:
        where = lines.at(loader.get_mark().index) if loader is not None else Position(1, 1)
        return None, positions, [YAMLProblem((), where, _DEEP)]
    finally:
        if loader is not None:
            loader.dispose()
    return data, positions, problems


_ALIAS = "YAML aliases"
_DEEP = f"nested more than {MAX_DEPTH} levels deep"
#: problems after which the document is not constructed at all
_REFUSED = (_ALIAS, _DEEP)


def _walk(
    node: yaml.Node,
    path: KeyPath,
    positions: dict[KeyPath, Position],
    problems: list[YAMLProblem],
    seen: set[int],
    lines: _Lines,
) -> None:
    at = lines.at(node.start_mark.index)
    if id(node) in seen:
        # A node reached twice is an alias (*name). Aliases can refer to themselves or nest exponentially
        # ("billion laughs"); these files are short and hand-written, so they are refused outright.
        problems.append(YAMLProblem(path, at, f"{_ALIAS} (*name) are not supported here; write the value out"))
        return
    if len(path) > MAX_DEPTH:
        problems.append(YAMLProblem((), at, _DEEP))
        return
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        seen.add(id(node))
    positions.setdefault(path, at)
    if isinstance(node, yaml.MappingNode):
        keys: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            sub = (*path, key)
            if key in keys:
                problems.append(YAMLProblem(sub, lines.at(key_node.start_mark.index), "duplicate key"))
            keys.add(key)
            positions[sub] = lines.at(key_node.start_mark.index)
            _walk(value_node, sub, positions, problems, seen, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), positions, problems, seen, lines)
