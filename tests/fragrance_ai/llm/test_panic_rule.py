"""The panic rule: one trial per interval, to the model closest to half-open, never a forced-open one."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from fragrance_ai.clock import VirtualClock
from fragrance_ai.llm.panic import PanicRule


@dataclass
class Breaker:
    wait: float
    forced: str | None = None

    def retry_after(self) -> float:
        return self.wait


def rule(clock: VirtualClock, **kw: bool) -> PanicRule:
    return PanicRule(interval=5.0, clock=clock, release_on_success=True, **kw)


def test_one_trial_per_interval_to_the_model_closest_to_half_open(caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock()
    r = rule(clock)
    breakers = {"qwen": Breaker(50), "mistral": Breaker(20), "llama": Breaker(20)}
    with caplog.at_level(logging.WARNING, logger="fragrance_ai.llm.panic"):
        assert r.pick("fast", ["llama", "mistral"], breakers) == "llama"  # tie: mode order
    assert "panic: every model of mode fast is open; one trial call to llama" in caplog.text
    assert r.pick("fast", ["llama", "mistral"], breakers) is None
    clock.advance(4.9)
    assert r.pick("creative", ["qwen", "mistral"], breakers) is None
    clock.advance(0.1)
    assert r.pick("creative", ["qwen", "mistral"], breakers) == "mistral"


def test_forced_open_models_are_never_tried_and_off_tries_nothing() -> None:
    clock = VirtualClock()
    forced = {"qwen": Breaker(0, forced="open"), "mistral": Breaker(10)}
    assert rule(clock).pick("balanced", ["qwen", "mistral"], forced) == "mistral"
    assert rule(clock).pick("balanced", ["qwen"], forced) is None
    assert rule(clock, enabled=False).pick("balanced", ["mistral"], forced) is None


def test_outcomes_are_counted_by_model() -> None:
    r = rule(VirtualClock())
    r.record("qwen", ok=True)
    r.record("qwen", ok=False)
    r.record("qwen", ok=False)
    assert r.snapshot() == {("qwen", "ok"): 1, ("qwen", "failed"): 2}


def test_a_zero_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="panic rule"):
        PanicRule(interval=0, clock=VirtualClock(), release_on_success=False)
