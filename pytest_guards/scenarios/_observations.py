"""Expectations over a run, read from what a team's service exposes: the requests its models received and counter shapes.

``expect: {requests: {MODEL: ...}}`` judges the requests a (fake) model received, as the model sees them:
``count`` (all of them in this run), ``increases_by`` (how many since the previous ``requests``
expectation of that model: call counts over time), and the fields of the ``last`` request or of
``every`` request since that previous expectation. A request's fields (:func:`request_fields`) are read
from its OpenAI-style body: ``system`` (the system prompt), ``prompt`` (the first user turn), ``reask``
(the last user turn of a re-ask, saying why the answer was rejected; null when the request is no
re-ask), ``messages`` (how many), and any key of the body itself (``temperature``, ``top_p``,
``max_tokens``, ``model``...).

A metric's ``increases_by`` is its change since the previous expectation that read the same series (or
since the run started): a counter's *shape*, step by step, where ``delta`` only sees the total.

What this module must not do: read a target beyond the ``requests_seen`` it may offer (a target without
it cannot show its models' requests, and the check says so), or keep anything between runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pytest_guards.scenarios._expressions import MISSING, Judge, lookup

__all__ = ["REQUEST_FIELDS", "Observer", "expect_requests", "request_fields"]

#: the derived fields of one request (any other field is a key of the request body)
REQUEST_FIELDS: Final = ("system", "prompt", "reask", "messages")
_SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class Observer:
    """What earlier expectations of one run saw: metric values by series, requests counted by model."""

    metric_seen: dict[_SeriesKey, float] = field(default_factory=dict)
    requests_seen: dict[str, int] = field(default_factory=dict)

    def metric_increase(self, name: str, labels: Mapping[str, str], value: float, baseline: float) -> float:
        """``value`` minus what the previous read of this series found (``baseline`` for the first read)."""
        key = (name, tuple(sorted(labels.items())))
        increase = value - self.metric_seen.get(key, baseline)
        self.metric_seen[key] = value
        return increase

    def remember_metric(self, name: str, labels: Mapping[str, str], value: float) -> None:
        self.metric_seen[(name, tuple(sorted(labels.items())))] = value


def _messages(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    messages = body.get("messages")
    return [m for m in messages if isinstance(m, Mapping)] if isinstance(messages, list) else []


def _content(messages: list[Mapping[str, Any]], role: str, *, last: bool = False) -> Any:
    found = [m.get("content") for m in messages if m.get("role") == role]
    if not found:
        return MISSING
    return found[-1] if last else found[0]


def request_fields(body: Any, name: str) -> Any:
    """Field ``name`` of one request body (``MISSING`` when it has none)."""
    if not isinstance(body, Mapping):
        return MISSING
    messages = _messages(body)
    if name == "system":
        return _content(messages, "system")
    if name == "prompt":
        return _content(messages, "user")
    if name == "reask":
        users = [m for m in messages if m.get("role") == "user"]
        return users[-1].get("content") if len(users) > 1 else None
    if name == "messages":
        return len(messages)
    return lookup(body, name)


def _judge_fields(judge: Judge, label: str, want: Mapping[str, Any], body: Any) -> None:
    for key, spec in want.items():
        judge(f"{label} {key}", spec, request_fields(body, key))


def expect_requests(want: Mapping[str, Any], target: object, observer: Observer, judge: Judge) -> None:
    """Judge ``requests: {MODEL: {count, increases_by, last, every}}`` against the target's request logs."""
    seen: Callable[[str], list[Any]] | None = getattr(target, "requests_seen", None)
    if seen is None:
        judge.fail(f"requests: target {getattr(target, 'name', '?')} cannot show the requests its models received")
        return
    for model, spec in want.items():
        bodies = seen(model)
        before = observer.requests_seen.get(model, 0)
        observer.requests_seen[model] = len(bodies)
        new = bodies[before:]
        if "count" in spec:
            judge(f"requests to {model}", spec["count"], len(bodies))
        if "increases_by" in spec:
            judge(f"requests to {model} since the previous check", spec["increases_by"], len(new))
        if "last" in spec:
            if bodies:
                _judge_fields(judge, f"last request to {model}:", spec["last"], bodies[-1])
            else:
                judge.fail(f"last request to {model}: {model} received no request")
        if "every" in spec:
            if not new:
                judge.fail(f"every request to {model}: {model} received no request since the previous check")
            for index, body in enumerate(new, start=before + 1):
                failed = len(judge.failures)
                _judge_fields(judge, f"request {index} to {model}:", spec["every"], body)
                if len(judge.failures) > failed:
                    break  # the first request that differs says enough
