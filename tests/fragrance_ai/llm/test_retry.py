"""Tests for fragrance_ai.llm.retry: each re-ask policy called directly, no loop and no sleeping."""

from __future__ import annotations

import random

from fragrance_ai.llm.retry import RetryState, stop_after_attempt, stop_after_delay, wait_exponential_jitter


def test_exponential_wait_doubles_from_base_and_is_capped() -> None:
    wait = wait_exponential_jitter(base=0.5, max=3.0)
    assert [wait(RetryState(n)) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert wait(RetryState(10_000)) == 3.0  # no overflow for absurd attempt numbers


def test_jitter_draws_from_the_injected_rng() -> None:
    wait = wait_exponential_jitter(base=1.0, max=100.0, jitter=0.5, rng=random.Random(7))
    expected = random.Random(7)
    assert [wait(RetryState(n)) for n in (1, 2, 3)] == [2 ** (n - 1) + expected.uniform(0, 0.5) for n in (1, 2, 3)]


def test_stop_after_attempt_counts_answers_judged() -> None:
    stop = stop_after_attempt(3)
    assert [stop(RetryState(n)) for n in (1, 2, 3, 4)] == [False, False, True, True]


def test_stop_after_delay_stops_when_the_next_wait_reaches_the_deadline() -> None:
    stop = stop_after_delay(5.0)
    assert not stop(RetryState(1, 4.999))
    assert stop(RetryState(1, 5.0))
