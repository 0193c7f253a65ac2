"""Tests for fragrance_ai.llm.json_extract: finding one JSON value in fenced, prose-wrapped or bare answers."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from brief_support import BRIEF, BRIEF_SCHEMA, VALID

from fragrance_ai.clock import VirtualClock
from fragrance_ai.llm.guards import JSONHardGuard
from fragrance_ai.llm.json_extract import Rejection, clip, extract, scan


@pytest.fixture
def make_guard() -> Callable[..., JSONHardGuard]:
    clock = VirtualClock()

    def make(**kwargs: Any) -> JSONHardGuard:
        return JSONHardGuard(clock=clock, sleep=clock.sleep, asleep=clock.asleep, rng=random.Random(1234), **kwargs)

    return make


# --- through the guard (moved from test_guards) ------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        f"```json\n{VALID}\n```",
        f"```\n{VALID}\n```",
        f"Sure! Here is your brief:\n```json\n{json.dumps(BRIEF, indent=2)}\n```\nLet me know [if] you want {{more}}.",
        f"Here you go: {VALID} -- hope it helps }} ]",
        f"  \n{VALID}\n\n",
    ],
    ids=["fenced-json", "fenced-bare", "fenced-in-prose", "prose-wrapped", "whitespace"],
)
def test_json_is_extracted_from_fences_and_prose(make_guard: Callable[..., JSONHardGuard], answer: str) -> None:
    result = make_guard().guard(answer, BRIEF_SCHEMA)
    assert (result.source, result.value) == ("model", BRIEF)


def test_brackets_quotes_and_backslashes_inside_strings_do_not_confuse_extraction(
    make_guard: Callable[..., JSONHardGuard],
) -> None:
    tricky = {**BRIEF, "description": 'a } ] { [ "quoted" \\ back\\slash ends with \\', "notes": ["}", "[", '\\"']}
    answer = f"The answer is {json.dumps(tricky)} and that is all }}"
    result = make_guard().guard(answer, BRIEF_SCHEMA)
    assert (result.source, result.value) == ("model", tricky)


# --- the pure functions -----------------------------------------------------------------------------


def test_a_bare_object_is_returned_stripped() -> None:
    assert extract(f"  {VALID}\n", 64) == (VALID, True)


def test_the_first_fenced_block_wins_over_an_earlier_opener() -> None:
    text = 'see [1]\n```json\n{"a": 1}\n```'
    assert extract(text, 64) == ('{"a": 1}', True)


def test_no_opener_gives_the_stripped_text_and_false() -> None:
    assert extract("  42 ", 64) == ("42", False)


def test_too_deep_is_a_rejection_not_an_exception() -> None:
    found = extract("x " + "[" * 10 + "]" * 10, 5)
    assert isinstance(found, Rejection)
    assert found.reason == "too_deep"


def test_scan_stops_at_the_matching_closer_and_skips_strings() -> None:
    text = '{"a": "}"} trailing }'
    assert scan(text, 0, 8) == '{"a": "}"}'


def test_an_unbalanced_value_is_handed_on_whole() -> None:
    assert scan('{"a": [1, 2', 0, 8) == '{"a": [1, 2'


def test_clip_says_how_long_the_text_was() -> None:
    assert clip("abc", 5) == "abc"
    assert clip("x" * 300, 10) == "xxxxxxxxxx... (300 chars)"
