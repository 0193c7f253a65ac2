"""Partial-failure traffic: many briefs over many virtual minutes, and the rates they show.

A ``traffic`` step sends ``briefs`` distinct briefs one after the other, moving the virtual clock
``every`` seconds after each, and keeps a :class:`TrafficTally`: each brief's source, model and mode,
the answers that were not 200, and how long each model's breaker was open (its state read after each
brief, held for the interval that follows). ``expect: {rates: ...}`` judges the tally of the last
traffic step: ``fallback_rate``, ``error_rate`` (answers other than 200), ``model_share`` (per model,
the share of briefs it answered), ``open_share`` (per model, the share of virtual time its breaker was
open) and ``mode_share`` (per mode, the share of briefs served in it).

With random faults (``flaky`` behaviours, seeded) these are the checks of a guard under partial
failure, where single states say little: a breaker may open now and then, but not most of the time.

What this module must not do: wait in real time (traffic runs in process, on the virtual clock), or
judge anything itself (the runner's judge compares the rates).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_guards.scenarios._targets import Target

__all__ = ["TrafficTally", "run_traffic"]


@dataclass
class TrafficTally:
    """What one traffic step saw (counts; :meth:`rates` turns them into shares)."""

    briefs: int = 0
    seconds: float = 0.0
    errors: int = 0
    sources: Counter[str] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)
    modes: Counter[str] = field(default_factory=Counter)
    #: per model, how many of the intervals after a brief began with its breaker open
    open_intervals: Counter[str] = field(default_factory=Counter)
    breaker_models: tuple[str, ...] = ()

    def rates(self) -> dict[str, Any]:
        """The shares an ``expect: {rates: ...}`` step checks (every configured model and mode present)."""
        briefs = self.briefs or 1
        return {
            "fallback_rate": self.sources["fallback"] / briefs,
            "error_rate": self.errors / briefs,
            "model_share": {m: self.models[m] / briefs for m in self.breaker_models},
            "open_share": {m: self.open_intervals[m] / briefs for m in self.breaker_models},
            "mode_share": {m: n / briefs for m, n in self.modes.items()},
        }

    def summary(self) -> str:
        """One line for a failure report: the figures behind the rates."""
        rates = self.rates()
        shares = ", ".join(f"{m} {v:.1%}" for m, v in rates["model_share"].items())
        opened = ", ".join(f"{m} {v:.1%}" for m, v in rates["open_share"].items())
        modes = ", ".join(f"{m} {v:.1%}" for m, v in sorted(rates["mode_share"].items()))
        return (
            f"traffic: {self.briefs} briefs over {self.seconds:g} virtual s; fallback {rates['fallback_rate']:.2%}, "
            f"non-200 {self.errors}; answered by: {shares}; breaker open: {opened}; modes: {modes}"
        )


async def run_traffic(spec: dict[str, Any], target: Target, first: int) -> TrafficTally:
    """Send ``spec['briefs']`` briefs (prompts numbered from ``first``), ``spec['every']`` virtual s apart."""
    every = float(spec.get("every", 1.0))
    prompt = spec.get("prompt", "a fragrance brief")
    tally = TrafficTally(breaker_models=tuple(target.config.model_names))
    for index in range(spec["briefs"]):
        response = await target.brief(f"{prompt} #{first + index}", spec.get("mode"), spec.get("via", "ensemble"))
        tally.briefs += 1
        body = response.body if isinstance(response.body, dict) else {}
        if response.code != 200:
            tally.errors += 1
        else:
            tally.sources[str(body.get("source"))] += 1
            if body.get("source") == "model":
                tally.models[str(body.get("model"))] += 1
            tally.modes[str(body.get("mode"))] += 1
        for model, state in (await target.breaker_states()).items():
            if state == "open":
                tally.open_intervals[model] += 1
        tally.seconds = every * tally.briefs
        target.advance(every)
    return tally
