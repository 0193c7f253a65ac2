"""One shipped checklist scenario run in this process against the reference system, as the plugin runs it.

For tests that break one part of the system (a monkeypatch, or ``defect`` given the wired harness) and
check that the scenario written for that defect fails. Imported by those tests from this directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fragrance_ai.config_loader import default_config_path, load_config
from pytest_guards.clock import GuardClock
from pytest_guards.faults import FaultyLLM
from pytest_guards.harness import GuardHarness, open_harness
from pytest_guards.scenarios import InProcessTarget, Timeline, load_scenario, resolve_scenario, run_scenario

Defect = Callable[[GuardHarness], None]


async def run_checklist_scenario(path: Path, defect: Defect | None = None) -> None:
    """Run the scenario at ``path`` on the reference config (with its overrides); raises ScenarioFailure."""
    scenario = load_scenario(path)
    base = load_config(default_config_path())
    config = base.with_overrides(scenario.config, source="defect test") if scenario.config else base
    scenario, problems = resolve_scenario(scenario, config.to_dict())
    assert not problems
    clock = GuardClock().start()
    llm = FaultyLLM(config.model_names, asleep=clock.asleep, sleep=clock.sleep)
    llm.start()
    try:
        async with open_harness(config, clock=clock, llm=llm) as harness:
            if defect is not None:
                defect(harness)
            for model, script in scenario.given_llm.items():
                llm.set(model, script)
            if scenario.given_mode:
                harness.mode_controller.set_mode(scenario.given_mode)
            timeline = Timeline(lambda: clock.elapsed, kind="virtual", file=str(scenario.file))
            await run_scenario(scenario, InProcessTarget(harness), clock_elapsed=lambda: clock.elapsed, timeline=timeline)
    finally:
        llm.stop()
        clock.stop()
