"""A scenario run's timeline: after every step, what the target shows, on the run's clock.

One point per step (and one before the first): the time (virtual for in-process runs, real for network
and live ones), the step's kind and line, each model's breaker state and call count, the mode, the
cache's size and hit rate, each model's health as the service last reported it, and the brief's source.
It goes into the JSON report and the HTML report's charts.

What this module must not do: judge anything, or read a target beyond one
:meth:`~pytest_guards.scenarios.Target.snapshot` per step (a live run records what the service shows, and
recording stays cheap enough for the in-process suite).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from pytest_guards.scenarios._model import Step
    from pytest_guards.scenarios._targets import Response, Target

__all__ = ["Timeline", "health_of"]


def health_of(body: Any) -> dict[str, str]:
    """Each model's health status in a ``/health/llm`` answer (one model's, or ``models`` of all)."""
    if not isinstance(body, dict):
        return {}
    models = body.get("models")
    if isinstance(models, dict):
        return {str(n): str(m["status"]) for n, m in models.items() if isinstance(m, dict) and "status" in m}
    if isinstance(body.get("model"), str) and isinstance(body.get("status"), str):
        return {body["model"]: body["status"]}
    return {}


def _brief_of(response: Response | None) -> dict[str, Any] | None:
    """Where a brief came from: ``{source, model}`` from the answer, ``none`` when the service had no brief."""
    if response is None:
        return None
    body = response.body if isinstance(response.body, dict) else {}
    source = body.get("source")
    if not isinstance(source, str):
        return {"source": "none", "code": response.code}
    return {"source": source, "model": body.get("model")}


class Timeline:
    """The points of one run, appended by the runner; :meth:`to_dict` is what the report holds."""

    def __init__(self, clock: Callable[[], float] | None = None, *, kind: str = "virtual", file: str = "") -> None:
        """``clock``: seconds since the run began (default: real time from now, with ``kind="real"``)."""
        started = time.monotonic()

        def real() -> float:
            return time.monotonic() - started

        self.clock = clock or real
        self.kind = kind if clock is not None else "real"
        self.file = file
        self.points: list[dict[str, Any]] = []
        self.models: list[str] = []
        self._health: dict[str, str] = {}

    async def record(self, target: Target, step: Step | None, line: int, response: Response | None = None) -> None:
        """Append the point after ``step`` (None: the start); a target that cannot be read leaves its states out."""
        point: dict[str, Any] = {"t": round(self.clock(), 6), "step": step.kind if step else "start", "line": line}
        try:
            snap = await target.snapshot()
        except (httpx.HTTPError, RuntimeError, ValueError) as exc:
            point["unreadable"] = f"{type(exc).__name__}: {exc}"
        else:
            if not self.models:
                self.models = list(snap["breakers"])
            point.update(snap)
        if step is not None and step.kind == "health" and response is not None:
            self._health.update(health_of(response.body))
        if self._health:
            point["health"] = dict(self._health)
        if step is not None and step.kind == "brief":
            point["brief"] = _brief_of(response)
        self.points.append(point)

    def to_dict(self) -> dict[str, Any]:
        return {"clock": self.kind, "file": self.file, "models": self.models, "points": self.points}
