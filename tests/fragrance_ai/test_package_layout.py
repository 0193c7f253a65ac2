"""The shape of fragrance_ai, checked by parsing every module: layers, privacy, size, docstrings, no harness.

fragrance_ai is what production runs: it never imports pytest_guards (the harness is built on it, not the
other way round), its layers import downwards only (the bottom modules import nothing above them, the
service sits on top), a ``_name`` module is private to its package, and no file holds two jobs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import fragrance_ai

ROOT = Path(fragrance_ai.__file__).resolve().parent
MAX_LINES = 500

#: the bottom of the package: each may import only the modules listed (and the standard library)
BOTTOM: dict[str, set[str]] = {
    "fragrance_ai.constants": set(),
    "fragrance_ai.clock": set(),
    "fragrance_ai.yaml_positions": set(),
    "fragrance_ai.config_merge": {"fragrance_ai.yaml_positions"},
    "fragrance_ai.metrics": {"fragrance_ai.constants"},
    "fragrance_ai.config_state": set(),
}
#: nothing below the service imports it
TOP = "fragrance_ai.service"


def modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def dotted(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> Iterator[tuple[int, str]]:
    """Every absolute import in ``path``, at module level or inside functions, as (line, module)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def test_there_are_modules_to_check() -> None:
    names = {dotted(p) for p in modules()}
    assert {"fragrance_ai.llm.guards", "fragrance_ai.llm.circuit_breaker", "fragrance_ai.cache.lru_cache"} <= names
    assert set(BOTTOM) <= names


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_production_code_never_imports_the_harness(path: Path) -> None:
    bad = [f"{path.name}:{line}: {name}" for line, name in imported(path) if name.split(".")[0] == "pytest_guards"]
    assert not bad, bad


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_layers_import_downwards(path: Path) -> None:
    me = dotted(path)
    ours = [(line, name) for line, name in imported(path) if name.split(".")[0] == "fragrance_ai"]
    if me in BOTTOM:
        extra = [f"line {line}: {name}" for line, name in ours if name not in BOTTOM[me] and name != me]
        assert not extra, f"{me} sits at the bottom and may import only {sorted(BOTTOM[me]) or 'nothing of ours'}: {extra}"
    if not me.startswith(TOP) and me != "fragrance_ai.cli":
        upward = [f"line {line}: {name}" for line, name in ours if name.startswith(TOP)]
        assert not upward, f"{me} imports the service layer: {upward}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_another_packages_private_module(path: Path) -> None:
    package = ".".join(path.relative_to(ROOT.parent).parent.parts)
    bad = []
    for line, name in imported(path):
        parts = name.split(".")
        private = [i for i, part in enumerate(parts) if part.startswith("_") and not part.startswith("__")]
        if parts[0] == "fragrance_ai" and private and ".".join(parts[: private[0]]) != package:
            bad.append(f"line {line}: {name}")
    assert not bad, bad


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_is_at_most_500_lines_and_says_what_it_is_for(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count("\n") <= MAX_LINES, f"{path.name} holds {text.count(chr(10))} lines: two jobs?"
    docstring = ast.get_docstring(ast.parse(text))
    assert docstring, f"{path.name} has no module docstring"
    assert len(docstring.split()) >= 3, f"{path.name}'s docstring does not say what it is for"
