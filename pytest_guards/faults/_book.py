"""Bookkeeping shared by both fake-LLM transports: scripts, call logs and unmatched requests, per model.

:class:`ScriptBook` is thread-safe (the real server answers from its own thread); its lock guards
bookkeeping only, and transports wait and answer outside it. :class:`ScriptedModels` is the scripting
API (``set``, ``calls``, ``check``...) that ``FaultyLLM`` and ``FakeLLMServer`` both expose.

What this module must not do: wait, sleep or hold its lock across anything but bookkeeping.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from pytest_guards.faults._behaviours import BehaviourError, Script, ScriptCursor, UnmatchedRequestError
from pytest_guards.faults._format import parse_behaviours
from pytest_guards.faults._render import Outcome, OutcomeKind, render

__all__ = ["CallRecord", "ScriptBook", "ScriptedModels", "call_record", "json_body"]

#: request fields a call log shows (what a scenario may assert the model received)
_REQUEST_FIELDS: Final = ("model", "messages", "temperature", "top_p", "max_tokens", "stream")


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call a fake model received: its 0-based ``index``, the parsed request body (None when not JSON),
    the behaviour it was scripted to get, and the outcome (``status`` None when no response was sent)."""

    index: int
    model: str
    request: Any
    behaviour: str
    outcome: OutcomeKind
    status: int | None


class ScriptBook:
    """Thread-safe scripts, call logs and unmatched requests of a set of fake models (shared by both transports).

    The lock guards bookkeeping only; transports wait and answer outside it.
    """

    def __init__(self, models: Iterable[str], *, label: str) -> None:
        self.models: tuple[str, ...] = tuple(dict.fromkeys(models))
        if not self.models:
            raise ValueError(f"{label}: expected at least one model name, found none")
        for model in self.models:
            if not isinstance(model, str) or not model:
                raise ValueError(f"{label}: expected model names as non-empty strings, found {model!r}")
        self.label = label
        self._lock = threading.Lock()
        self._scripts: dict[str, Script] = {m: Script() for m in self.models}
        self._cursors: dict[str, ScriptCursor] = {m: Script().cursor() for m in self.models}
        self._calls: dict[str, list[CallRecord]] = {m: [] for m in self.models}
        self._unmatched: list[str] = []

    def _known(self, model: str) -> None:
        if model not in self._scripts:
            raise ValueError(f"{self.label}: unknown model {model!r}; configured models: {', '.join(self.models)}")

    def set(self, model: str, *steps: object) -> None:
        """Replace ``model``'s script with ``steps`` and restart its call index.

        ``steps`` are behaviours, flaky steps, a Script or plain data.
        """
        self._known(model)
        if not steps:
            raise BehaviourError(f"{self.label}.set({model!r}): expected at least one behaviour, found none")
        where = f"{self.label}.set({model!r})"
        script = parse_behaviours(steps[0] if len(steps) == 1 else list(steps), where)
        cursor = script.cursor()
        with self._lock:
            self._scripts[model] = script
            self._cursors[model] = cursor
            self._calls[model] = []

    def script(self, model: str) -> Script:
        """The script ``model`` runs."""
        self._known(model)
        return self._scripts[model]

    def reset(self) -> None:
        """Every model back to ``valid()`` forever; call logs and unmatched requests cleared."""
        with self._lock:
            for model in self.models:
                self._scripts[model] = Script()
                self._cursors[model] = Script().cursor()
                self._calls[model] = []
            self._unmatched.clear()

    def take_call(self, model: str, request: object) -> tuple[int, Outcome]:
        """Advance ``model``'s script for one arriving call; log it and return its index and outcome.

        Rendering is pure and takes microseconds, so it happens under the lock: the log then always
        matches the order in which calls took their behaviours.
        """
        with self._lock:
            calls = self._calls[model]
            index = len(calls)
            behaviour = self._cursors[model].next()
            outcome = render(behaviour, index, model, request=request)
            calls.append(CallRecord(index, model, request, behaviour.kind, outcome.kind, outcome.status))
        return index, outcome

    def calls(self, model: str) -> list[CallRecord]:
        """The calls ``model`` received since its script was last set (a copy)."""
        self._known(model)
        with self._lock:
            return list(self._calls[model])

    def call_count(self, model: str) -> int:
        """How many calls ``model`` received since its script was last set."""
        self._known(model)
        with self._lock:
            return len(self._calls[model])

    def record_unmatched(self, description: str) -> None:
        """Note a request that no configured model answers (``"POST http://..."``)."""
        with self._lock:
            self._unmatched.append(description)

    @property
    def unmatched(self) -> list[str]:
        """Requests that matched no configured model, as ``"METHOD URL"`` (a copy)."""
        with self._lock:
            return list(self._unmatched)

    def check(self) -> None:
        """Raise :class:`UnmatchedRequestError` naming every request that matched no configured model."""
        unmatched = self.unmatched
        if not unmatched:
            return
        noun = "request" if len(unmatched) == 1 else "requests"
        lines = "\n  ".join(unmatched)
        separator = " " if len(unmatched) == 1 else "\n  "
        raise UnmatchedRequestError(
            f"{self.label}: {len(unmatched)} {noun} matched no configured model:{separator}{lines}\n"
            f"(configured models: {', '.join(self.models)})"
        )


def json_body(content: bytes) -> object:
    """A request's body as the call log records it: the parsed JSON, or None when it is not JSON."""
    try:
        return json.loads(content)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError: not a JSON body
        return None


class ScriptedModels:
    """The scripting and inspection API of a fake LLM (``set``, ``calls``, ``check``...), kept in one ScriptBook.

    Shared by both transports (``FaultyLLM``, ``FakeLLMServer``), so the two read alike; a subclass
    says in :meth:`_where` whether and where it is running, for its ``repr``.
    """

    def __init__(self, models: Iterable[str], *, label: str) -> None:
        self._book = ScriptBook(models, label=label)
        self.models: tuple[str, ...] = self._book.models

    def set(self, model: str, *steps: object) -> None:
        """Replace ``model``'s script (behaviours, ``flaky`` steps, a ``Script`` or plain data) and restart its call index."""
        self._book.set(model, *steps)

    def reset(self) -> None:
        """Every model back to ``valid()`` forever; call logs and unmatched requests cleared."""
        self._book.reset()

    def calls(self, model: str) -> list[CallRecord]:
        """The calls ``model`` received since its script was last set."""
        return self._book.calls(model)

    def call_count(self, model: str) -> int:
        """How many calls ``model`` received since its script was last set."""
        return self._book.call_count(model)

    @property
    def unmatched(self) -> list[str]:
        """Requests that matched no configured model, as ``"METHOD URL"``."""
        return self._book.unmatched

    def check(self) -> None:
        """Raise :class:`UnmatchedRequestError` naming every request that matched no configured model."""
        self._book.check()

    def _where(self) -> str:
        """Where the fake is, for ``repr``: ``"stopped"``, ``"started"``, ``"127.0.0.1:8000"``..."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(models={list(self.models)!r}, {self._where()})"


def call_record(call: CallRecord) -> dict[str, Any]:
    """One call as the control plane shows it (index, behaviour, outcome, status, the request's main fields)."""
    request = call.request if isinstance(call.request, dict) else {}
    return {
        "index": call.index,
        "behaviour": call.behaviour,
        "outcome": call.outcome,
        "status": call.status,
        "request": {key: request[key] for key in _REQUEST_FIELDS if key in request},
    }
