"""The streaming and token-accounting scenarios pass on the reference system and fail on the defect each targets.

Each defect is built here by changing one part of a freshly wired system (a backend that ignores
``stream``, one without a per-chunk or an overall timeout, an ensemble that books every token as
``brief``, a health checker blind to open breakers), and the scenario must then fail naming itself.
Everything runs in process on virtual time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from in_process_scenario import Defect, run_checklist_scenario  # this directory's helper

from fragrance_ai.constants import Purpose
from fragrance_ai.llm.backends import CompletionResponse, OpenAICompatibleBackend
from pytest_guards.harness import GuardHarness
from pytest_guards.scenarios import CHECKLIST_DIR, ScenarioFailure


async def run_file(name: str, defect: Defect | None = None) -> ScenarioFailure | None:
    """Run the checklist scenario ``name`` (path under the checklist dir) in process; its failure, or None."""
    try:
        await run_checklist_scenario(CHECKLIST_DIR / name, defect)
    except ScenarioFailure as failure:
        return failure
    return None


def _qwen(harness: GuardHarness) -> OpenAICompatibleBackend:
    backend = harness.system.backends["qwen"]
    assert isinstance(backend, OpenAICompatibleBackend)
    return backend


def ignores_stream(harness: GuardHarness) -> None:
    """A backend that never asks for a stream, whatever the config says."""
    _qwen(harness).stream = False


def no_chunk_timeout(harness: GuardHarness) -> None:
    """A stream bounded only overall: a stall waits for the whole timeout."""
    _qwen(harness).chunk_timeout = 1e6


def no_overall_timeout(harness: GuardHarness) -> None:
    """A stream bounded only per chunk, and a call nobody bounds overall."""
    _qwen(harness).total_timeout = 1e6

    @contextlib.asynccontextmanager
    async def unbounded(seconds: float) -> AsyncIterator[None]:
        yield

    harness.system.ensemble._atimeout = unbounded


def every_token_is_a_brief(harness: GuardHarness) -> None:
    """Token accounting that books re-asks and probes as briefs."""
    ensemble = harness.system.ensemble
    count = ensemble.count_tokens

    def as_brief(model: str, purpose: Purpose, response: CompletionResponse) -> None:
        count(model, "brief", response)

    ensemble.count_tokens = as_brief  # type: ignore[method-assign]


def health_blind_to_breakers(harness: GuardHarness) -> None:
    """The checklist illustration's defect: a health checker that sees no breaker (its own fresh manager)."""

    class NoBreakers:
        def get_breaker(self, model: str) -> Any:
            return None

        def evaluate_upshift(self) -> None:
            return None

    harness.system.health_checker.circuit_breaker_manager = NoBreakers()  # type: ignore[assignment]


CASES: list[tuple[str, Defect]] = [
    ("json_guard/stream_cut_reasked.scenario.yaml", ignores_stream),
    ("json_guard/finish_length_reasked.scenario.yaml", every_token_is_a_brief),
    ("json_guard/reask_token_cost.scenario.yaml", every_token_is_a_brief),
    ("circuit_breaker/stream_stall_times_out.scenario.yaml", no_chunk_timeout),
    ("circuit_breaker/stream_slow_chunks_overall_timeout.scenario.yaml", no_overall_timeout),
    ("health_check/stream_stall_unhealthy.scenario.yaml", no_chunk_timeout),
    ("health_check/open_breaker_costs_no_tokens.scenario.yaml", health_blind_to_breakers),
]


@pytest.mark.parametrize(("name", "defect"), CASES, ids=[Path(n).name.split(".")[0] for n, _ in CASES])
async def test_scenario_passes_on_the_reference_and_fails_on_its_defect(name: str, defect: Defect) -> None:
    assert await run_file(name) is None
    failure = await run_file(name, defect)
    assert failure is not None, f"{name} passed against {defect.__name__}"
    assert failure.scenario.id in str(failure), str(failure)
