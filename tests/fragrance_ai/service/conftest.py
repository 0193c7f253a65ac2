"""Fixtures of the service tests: a VirtualClock, a FaultyLLM on it (checked for unmatched requests at
teardown), and the reference system with every model served through that FaultyLLM."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from service_support import MODELS, build, openai_overrides

from fragrance_ai.clock import VirtualClock
from fragrance_ai.service.system import GuardSystem
from pytest_guards import FaultyLLM


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def faulty(clock: VirtualClock) -> Iterator[FaultyLLM]:
    with FaultyLLM(MODELS, asleep=clock.asleep, sleep=clock.sleep) as fake:
        yield fake
    fake.check()


@pytest.fixture
async def system(clock: VirtualClock, faulty: FaultyLLM) -> AsyncIterator[GuardSystem]:
    built = build(clock, openai_overrides(faulty))
    yield built
    await built.aclose()
