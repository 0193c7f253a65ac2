"""README code that claims to work does: its examples run as tests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def block_starting_with(first_line: str) -> str:
    match = re.search(r"```python\n(" + re.escape(first_line) + r".*?)```", README, re.S)
    assert match, f"README has no python block starting with {first_line!r}"
    return match.group(1)


@pytest.mark.toxiproxy
@pytest.mark.network
def test_toxiproxy_example(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_example=block_starting_with("import httpx\nimport pytest\nfrom pytest_guards import LiveService"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=120)
    result.assert_outcomes(passed=1)
