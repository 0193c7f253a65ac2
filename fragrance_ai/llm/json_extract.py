"""Find one JSON value in a model's answer: bare, fenced in a code block, or wrapped in prose.

Pure functions over strings, in linear time: no parsing, no schema, no clock, no logging. It must not
recurse or hand anything nested deeper than ``max_depth`` on to a parser (a hostile answer could
exhaust the interpreter's recursion limit there).
"""

from __future__ import annotations

import re
from typing import Final

from fragrance_ai.constants import Reason

__all__ = ["CLIP", "Rejection", "clip", "extract", "over_structure", "scan"]

#: how much of an answer or a message a log line or an error keeps (characters)
CLIP: Final = 200


class Rejection:
    """An attempt's verdict when it failed (a plain class: cheaper than an exception on this path)."""

    __slots__ = ("details", "message", "reason")

    def __init__(self, reason: Reason, message: str, details: tuple[str, ...] = ()) -> None:
        self.reason: Reason = reason
        self.message = message
        self.details = details

    def __repr__(self) -> str:
        return f"Rejection({self.reason!r}, {clip(self.message, 80)!r})"


def clip(text: str, limit: int = CLIP) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was (answers can be megabytes)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} chars)"


#: below this many characters after the first opener, scanning is cheaper than counting members first
_PRECHECK_CHARS: Final = 8192
_FIRST_OPEN: Final = re.compile(r"[\[{]")
# One token per match: an opener, a closer, or a run of everything else with whole string literals in it
# (so 100,000 strings in an array are one token); group 3 is a quote that opens an unterminated string.
# Possessive quantifiers and alternatives told apart by their first character: no backtracking, so the
# scan is linear in the text.
_TOKEN: Final = re.compile(r'([\[{])|([\]}])|(?:[^"\[\]{}]++|"(?:[^"\\]++|\\.)*+")++|(")', re.DOTALL)

# Each match runs to the next structural "[", "{" or "," (group 1), skipping whole string literals, or stops
# at a quote that opens an unterminated string (group 2). Linear, and the caller stops after a few matches.
_STRUCTURAL: Final = re.compile(r'(?:[^"\[{,]++|"(?:[^"\\]++|\\.)*+")*+(?:([\[{,])|("))', re.DOTALL)


def over_structure(
    candidate: str, start: int, structure: tuple[int, int], *, scan_decides_containers: bool = False
) -> Rejection | None:
    """A rejection when ``candidate`` holds more arrays/objects or members than any valid instance can.

    Counts structural openers and commas (n members need n - 1 commas in their container) and stops at the
    first count over its bound, so a hostile answer costs what its first few dozen tokens do.
    """
    containers, members = structure
    found_containers = found_commas = 0
    for match in _STRUCTURAL.finditer(candidate, start):
        token = match.group(1)
        if token is None:  # an unterminated string: the parser will say so
            return None
        if token == ",":
            found_commas += 1
            if found_commas > members:
                line = f"$: more than {members} members (array items and properties), the most the schema allows"
                return Rejection("schema_violation", "does not match the schema: " + line, (line,))
        else:
            found_containers += 1
            if found_containers > containers and scan_decides_containers:
                return None  # the scan stops there too, and tells too deep from too many
            if found_containers > containers:
                line = f"$: more than {containers} arrays or objects, the most the schema allows"
                return Rejection("schema_violation", "does not match the schema: " + line, (line,))
    return None


def scan(text: str, start: int, max_depth: int, max_containers: int | None = None) -> str | Rejection:
    """From the opener at ``start``, return the text up to its matching closer, or reject if too deep.

    ``max_containers`` (the most arrays and objects the schema allows, if it bounds them) stops the scan
    as soon as the value holds more: a hostile answer of 300,000 ``{}`` costs what 4 of them do.
    """
    depth = 0
    openers = 0
    most = max_containers if max_containers is not None else len(text)
    for token in _TOKEN.finditer(text, start):
        kind = token.lastindex
        if kind == 1:
            depth += 1
            openers += 1
            if depth > max_depth:
                return Rejection("too_deep", f"JSON is nested deeper than max_depth={max_depth}")
            if openers > most and openers > max_depth:  # deep nesting is reported as too deep
                return Rejection(
                    "schema_violation",
                    f"does not match the schema: more than {most} arrays or objects, the most it allows",
                    (f"$: more than {most} arrays or objects, the most the schema allows",),
                )
        elif kind == 2:
            depth -= 1
            if depth == 0:
                return text[start : token.end()]
        elif kind == 3:  # unterminated string: nothing after it is structure
            break
    # Unbalanced: hand the rest to the parser, whose error says what is missing; depth is known safe.
    return text[start:]


def extract(
    text: str, max_depth: int, max_containers: int | None = None, max_members: int | None = None
) -> tuple[str, bool] | Rejection:
    """Find one JSON value in ``text``; the flag is False when no ``{``/``[`` was found (a bare scalar?).

    ``max_containers`` and ``max_members`` are what the schema allows at most, if it bounds them: a value
    holding more is rejected while it is looked for, before the scan walks all of it.
    """
    stripped = text.strip()
    if stripped:
        first, last = stripped[0], stripped[-1]
        if (first == "{" and last == "}") or (first == "[" and last == "]"):
            # The whole answer is JSON-shaped. Counting openers is a C-speed upper bound on depth,
            # so the usual small answer skips the token scan entirely.
            if stripped.count("{") + stripped.count("[") <= max_depth:
                return stripped, True
            found = scan(stripped, 0, max_depth, max_containers)
            return found if isinstance(found, Rejection) else (found, True)
    # Prefer the first fenced code block (```json ... ```), else the first opener anywhere.
    fence = text.find("```")
    match = _FIRST_OPEN.search(text, fence + 3) if fence >= 0 else None
    if match is None:
        match = _FIRST_OPEN.search(text)
    if match is None:
        return stripped, False
    if max_members is not None and len(text) - match.start() > _PRECHECK_CHARS:
        # nesting is left to the scan (too deep wins over too many), so only members are counted here
        over = over_structure(text, match.start(), (max_depth, max_members), scan_decides_containers=True)
        if over is not None:
            return over
    found = scan(text, match.start(), max_depth, max_containers)
    return found if isinstance(found, Rejection) else (found, True)
