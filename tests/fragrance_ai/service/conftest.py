"""Fixtures of the service tests: a VirtualClock, a FaultyLLM on it (checked for unmatched requests at
teardown), and the reference system with every model served through that FaultyLLM (built and closed
by pytest_guards' ``open_harness``, as the plugin's ``guard_system`` fixture is)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from service_support import MODELS, harness_config, openai_overrides

from fragrance_ai.clock import VirtualClock
from fragrance_ai.service.system import GuardSystem
from pytest_guards import FaultyLLM, open_harness


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
    async with open_harness(harness_config(openai_overrides(faulty)), clock=clock, llm=faulty) as harness:
        yield harness.system
