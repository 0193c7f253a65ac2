"""The checklist's verification snippets for items 1-3 run as written against the package.

(``scripts/test_cache_ttl.py`` is run on a virtual clock in cache/test_lru_cache.py.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SNIPPETS = REPO / "scripts" / "checklist_snippets.sh"
SPEC = REPO.parent / "shared" / "spec" / "production-guards-checklist.md"
VENDORED = REPO / "docs" / "production-guards-checklist.md"


def python_snippets(text: str) -> list[str]:
    """The bodies of every ``python -c "..."`` block in a shell text."""
    return re.findall(r'python -c "\n(.*?)\n"', text, flags=re.S)


def test_three_snippets_are_present() -> None:
    assert len(python_snippets(SNIPPETS.read_text())) == 3


def test_snippets_match_the_checklist_word_for_word() -> None:
    spec_snippets = python_snippets(VENDORED.read_text())
    for snippet in python_snippets(SNIPPETS.read_text()):
        assert snippet in spec_snippets


def test_the_vendored_checklist_is_the_shared_one() -> None:
    """docs/ keeps a copy of the checklist so the comparison above never depends on the checkout's
    surroundings; where the shared original is beside the checkout, the copy must still match it."""
    if SPEC.exists():
        assert VENDORED.read_text() == SPEC.read_text()
    else:
        assert "## 📋 Complete Pre-Promotion Checklist" in VENDORED.read_text()


@pytest.mark.parametrize("index", [0, 1, 2])
def test_snippet_runs_as_written(index: int, tmp_path: Path) -> None:
    code = python_snippets(SNIPPETS.read_text())[index]
    code = code.replace('\\"', '"')  # the shell's escaping inside the double-quoted -c argument
    env = {k: v for k, v in os.environ.items() if k != "FRAGRANCE_AI_CONFIG"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    expected = [
        ["✓ JSON Hard Guard: ENABLED", "Max retries: 3", "Backoff base: 1.0s", "Fallback enabled: True"],
        ["✓ Circuit Breaker: ENABLED", "['qwen', 'mistral', 'llama']", "Failure threshold: 40%", "Timeout: 60s"],
        ["✓ LRU Cache: ENABLED", "Max size: 1000", "TTL: 600s (10 minutes)", "Utilization: 0.0%"],
    ][index]
    for line in expected:
        assert line in proc.stdout

