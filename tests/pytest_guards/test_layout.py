"""The shape of pytest_guards, checked by parsing every module: import direction, privacy, size, docstrings.

Folders show the flow (scenarios -> faults, network); a ``_name`` module is private to its package;
no file holds two jobs (500 lines at most); every module says what it is for. Importing the package,
which pytest does in every run of every environment that installs it, stays light.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import pytest_guards
from pytest_guards import faults, network, scenarios

ROOT = Path(faults.__file__).resolve().parents[1]  # the pytest_guards folder
MAX_LINES = 500

#: what each part of pytest_guards may import from the others (itself always)
ALLOWED: dict[str, set[str]] = {
    "tools": set(),
    "network": {"tools"},
    "faults": {"network"},
    "clock": set(),
    "metrics": set(),
    "session": {"faults", "network"},
    "harness": {"faults", "clock", "metrics"},
    "scenarios": {"faults", "network", "harness", "clock", "metrics", "session"},
    "report": {"scenarios"},
    "plugin": {"scenarios", "report", "faults", "network", "harness", "clock", "metrics", "session"},
    "__init__": {"scenarios", "faults", "network", "harness", "clock", "metrics", "session"},
    "gate": set(),
    "cli": {"plugin", "scenarios", "network", "tools", "gate"},
    "__main__": {"cli"},
}


def modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def dotted(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(path: Path) -> str:
    """The package a module belongs to: ``pytest_guards.faults`` for ``faults/_book.py`` and ``faults/__init__.py``."""
    return ".".join(path.relative_to(ROOT.parent).parent.parts)


def part_of(name: str) -> str:
    """The part of pytest_guards a dotted name is in: ``faults``, ``clock``, ... (``__init__`` for the package itself)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported(path: Path) -> Iterator[tuple[int, str]]:
    """Every pytest_guards module ``path`` imports (``from X import name`` counts as ``X.name`` when that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "pytest_guards":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "pytest_guards":
                continue
            yield node.lineno, node.module
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if is_module(candidate):
                    yield node.lineno, candidate


def is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative / "__init__.py").is_file()


def private_owner(name: str) -> str | None:
    """The package whose private module ``name`` is (or is inside), or None when it is public all the way."""
    parts = name.split(".")
    for index, part in enumerate(parts):
        if part.startswith("_"):
            return ".".join(parts[:index])
    return None


def test_there_are_modules_to_check() -> None:
    names = {dotted(p) for p in modules()}
    expected = {
        "pytest_guards.plugin", "pytest_guards.scenarios._run", "pytest_guards.faults._format",
        "pytest_guards.network._toxic_proxies",
    }
    assert expected <= names


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_imports_flow_one_way(path: Path) -> None:
    here = part_of(dotted(path))
    allowed = ALLOWED[here] | {here}
    wrong = [f"line {line}: {name}" for line, name in imported(path) if part_of(name) not in allowed]
    assert not wrong, f"{here} may import only {sorted(allowed)}; found:\n  " + "\n  ".join(wrong)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_no_module_imports_another_packages_private_module(path: Path) -> None:
    mine = package_of(path)
    wrong = [
        f"line {line}: {name} (private to {owner})"
        for line, name in imported(path)
        if (owner := private_owner(name)) is not None and owner != mine
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_every_file_is_at_most_500_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines: split it by job"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_every_module_starts_with_a_docstring(path: Path) -> None:
    body = ast.parse(path.read_text(encoding="utf-8")).body
    assert body, path
    assert isinstance(body[0], ast.Expr), path
    assert isinstance(body[0].value, ast.Constant), path
    assert isinstance(body[0].value.value, str), path
    assert body[0].value.value.strip(), path


@pytest.mark.parametrize("package", [pytest_guards, faults, network, scenarios], ids=lambda m: m.__name__)
def test_every_public_name_resolves(package: ModuleType) -> None:
    names = package.__all__
    assert names
    assert len(names) == len(set(names))
    missing = [name for name in names if not hasattr(package, name)]
    assert not missing


def test_tests_import_only_public_names() -> None:
    tests = Path(__file__).resolve().parents[1]
    wrong = []
    for path in sorted(tests.rglob("*.py")):
        for line, name in imported(path):
            if private_owner(name) is not None:
                wrong.append(f"{path.relative_to(tests)}:{line}: {name}")
    assert not wrong, "\n".join(wrong)


def test_loading_the_plugin_imports_no_toxiproxy_requests_or_web_server() -> None:
    heavy = ("toxiproxy", "requests", "uvicorn", "starlette", "fastapi")
    code = (
        "import sys, pytest_guards, pytest_guards.plugin\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == ""
