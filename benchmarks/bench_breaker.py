"""Benchmark: what a circuit breaker costs per call, against pybreaker as the anchor.

The breaker sits on every LLM request, so the closed path must stay lean. Each case times the whole
``breaker.call(f)`` of the same trivial function for both breakers (best of several repeats, same run).
"""

from __future__ import annotations

import contextlib
import timeit
from typing import Any

import pybreaker

from fragrance_ai.clock import VirtualClock
from fragrance_ai.llm.circuit_breaker import CircuitBreaker, CircuitBreakerOpenError

REPEAT = 7


def _best_ns(stmt: str, namespace: dict[str, Any], number: int) -> float:
    timer = timeit.Timer(stmt, globals=namespace)
    return min(timer.repeat(repeat=REPEAT, number=number)) / number * 1e9


def _case(name: str, ours: float, anchor: float, goal: str) -> dict[str, Any]:
    return {"name": name, "ours_ns": ours, "anchor_ns": anchor, "ratio": ours / anchor, "goal": goal}


def _reject(breaker: Any, func: Any, errors: tuple[type[BaseException], ...]) -> None:
    with contextlib.suppress(*errors):
        breaker.call(func)


def run(number: int | None = None) -> list[dict[str, Any]]:
    """Time each case; ``number`` calls per repeat (default 200_000 closed, 50_000 open)."""
    closed_n = number or 200_000
    open_n = number or 50_000

    def f() -> int:
        return 1

    results = []

    # closed: the path every healthy request takes
    ours = CircuitBreaker(model="bench")
    anchor = pybreaker.CircuitBreaker()
    ns = {"ours": ours, "anchor": anchor, "f": f}
    results.append(
        _case(
            "call_closed",
            _best_ns("ours.call(f)", ns, closed_n),
            _best_ns("anchor.call(f)", ns, closed_n),
            "<= 0.35",
        )
    )

    # open: rejecting without calling (ours builds an error naming the model and retry_after)
    clock = VirtualClock()
    ours_open = CircuitBreaker(model="bench", clock=clock, minimum_calls=1, window_size=1, timeout=1e9)
    with contextlib.suppress(ZeroDivisionError):
        ours_open.call(lambda: 1 / 0)
    assert ours_open.state == "open"
    anchor_open = pybreaker.CircuitBreaker(reset_timeout=10**9)
    anchor_open.open()
    ns = {
        "reject": _reject,
        "ours": ours_open,
        "anchor": anchor_open,
        "f": f,
        "ours_err": (CircuitBreakerOpenError,),
        "anchor_err": (pybreaker.CircuitBreakerError,),
    }
    results.append(
        _case(
            "call_rejected_open",
            _best_ns("reject(ours, f, ours_err)", ns, open_n),
            _best_ns("reject(anchor, f, anchor_err)", ns, open_n),
            "<= 1.0 (informative)",
        )
    )
    return results


if __name__ == "__main__":
    for row in run():
        print(
            f"{row['name']:<22} ours {row['ours_ns']:8.0f} ns   pybreaker {row['anchor_ns']:8.0f} ns   "
            f"ratio {row['ratio']:.2f}   goal {row['goal']}"
        )
