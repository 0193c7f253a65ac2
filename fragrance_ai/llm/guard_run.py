"""One guarded request and what it ends with: the attempt run a caller drives, its verdicts, results and errors.

A :class:`GuardRun` (from :meth:`JSONHardGuard.start <fragrance_ai.llm.guards.JSONHardGuard.start>`) judges
each answer with its guard and says, as a plain :class:`Verdict`, whether to stop or to wait and re-ask.
The caller owns the loop (like tenacity's ``for attempt in Retrying(...)``), so it can stop early, say
when its model call failed, by closing the run: no exception travels through the guard.

It must not sleep by itself (:meth:`GuardRun.sleep`/:meth:`GuardRun.asleep` use the guard's injected
functions), call the model, or log a fallback above WARNING.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal

from fragrance_ai.constants import Reason
from fragrance_ai.llm.json_extract import Rejection, clip
from fragrance_ai.llm.retry import RetryState
from fragrance_ai.llm.strict_json import CompiledSchema

if TYPE_CHECKING:
    from fragrance_ai.llm.guards import JSONHardGuard

__all__ = [
    "DEFAULT_FALLBACK",
    "MISSING",
    "OFFLOAD_CHARS",
    "AttemptError",
    "GuardResult",
    "GuardRun",
    "GuardSnapshot",
    "JSONGuardError",
    "StopReason",
    "Verdict",
    "default_fallback",
    "feedback_for",
]

#: Answers longer than this (characters) are judged in a worker thread by :meth:`GuardRun.ajudge`: a
#: megabyte takes milliseconds to parse, and the event loop must not stall its other requests meanwhile;
#: below it, judging costs less than the hop to a thread.
OFFLOAD_CHARS: Final = 32_768

# log lines keep the guard's logger name: operators filter on fragrance_ai.llm.guards
logger = logging.getLogger("fragrance_ai.llm.guards")

#: Why the guard stopped: it accepted an answer, had no way to re-ask, ran out of re-asks, or of time.
StopReason = Literal["accepted", "no_regenerate", "max_retries", "deadline"]

DEFAULT_FALLBACK: Final[dict[str, Any]] = {
    "description": "향수 생성 중 오류가 발생했습니다. 다시 시도해주세요.",
    "notes": ["floral", "fresh"],
    "families": ["floral"],
    "intensity": 50,
    "longevity": "medium",
    "error": True,
}


def default_fallback() -> dict[str, Any]:
    """A fresh copy of the checklist's default fallback brief (``error: True``)."""
    return copy.deepcopy(DEFAULT_FALLBACK)


class _Missing:
    """Type of :data:`MISSING`: "no fallback given", distinct from any dict."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


# --------------------------------------------------------------------------------------------------
# Results and errors


@dataclass(frozen=True, slots=True)
class AttemptError:
    """Why attempt number ``attempt`` (1 = the first answer) was rejected."""

    attempt: int
    reason: Reason
    message: str
    #: for ``schema_violation``: one line per error (``$.notes[0]: 5 is not of type 'string'``),
    #: at most ``max_reported_errors`` of them, then ``and N more``
    details: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GuardResult:
    """What the guard returned and how it got there."""

    #: The accepted answer, or a deep copy of the fallback. The schema is the authority on its shape:
    #: with a schema that admits non-objects this can be a list or scalar despite the annotation.
    value: dict[str, Any]
    source: Literal["model", "fallback"]
    #: answers asked for and judged: the first one plus one per re-ask (a re-ask whose
    #: ``regenerate`` raised still counts)
    attempts: int
    errors: tuple[AttemptError, ...]
    stop_reason: StopReason = "accepted"

    @property
    def retries(self) -> int:
        """Re-asks made (``attempts - 1``)."""
        return self.attempts - 1


class JSONGuardError(ValueError):
    """Every attempt was rejected and fallbacks are disabled; ``errors`` holds each attempt's reason."""

    def __init__(self, attempts: int, errors: tuple[AttemptError, ...], stop_reason: StopReason) -> None:
        self.attempts = attempts
        self.errors = errors
        self.stop_reason = stop_reason
        lines = "; ".join(f"attempt {e.attempt} {e.reason}: {clip(e.message)}" for e in errors)
        super().__init__(
            f"LLM output rejected after {attempts} attempt(s) (stopped: {stop_reason}) and fallback "
            f"is disabled: {lines}"
        )


@dataclass(frozen=True, slots=True)
class GuardSnapshot:
    """A consistent copy of a guard's counters, taken under its lock."""

    requests_total: int
    parse_failures: dict[str, int]
    fallbacks_total: int
    retries_total: int
    retry_histogram: tuple[int, ...]
    deadline_stops_total: int
    rejections_total: int


def feedback_for(error: AttemptError) -> str:
    """The message sent to ``regenerate``: why the last answer was rejected and what to send instead."""
    if error.reason == "schema_violation":
        lines = "\n".join(f"- {line}" for line in error.details)
        problem = f"it does not match the required JSON schema:\n{lines}"
    else:
        problem = error.message
    return (
        f"Your previous answer was rejected: {problem}\n"
        "Reply again with only one JSON object that fixes this, and no other text."
    )


# --------------------------------------------------------------------------------------------------
# One guarded request, driven by its caller


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a :class:`GuardRun` says after judging an answer.

    ``done`` when it accepted the answer or gave up (``result`` holds the answer or the fallback; with
    fallback off, ``rejected`` holds the :class:`JSONGuardError` instead). Otherwise the caller waits
    ``delay`` seconds, calls :meth:`GuardRun.begin_reask` for the feedback, asks the model again and
    judges the new answer.
    """

    result: GuardResult | None = None
    rejected: JSONGuardError | None = None
    delay: float = 0.0

    @property
    def done(self) -> bool:
        return self.result is not None or self.rejected is not None

    def unwrap(self) -> GuardResult:
        """The result, or raise the :class:`JSONGuardError` the run ended with."""
        if self.rejected is not None:
            raise self.rejected
        if self.result is None:
            raise RuntimeError("the run is not over: re-ask and judge the next answer first")
        return self.result


class _Raised:
    """``regenerate`` raised ``error`` (judged instead of an answer)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class GuardRun:
    """One guarded request whose loop belongs to the caller (like tenacity's ``AttemptManager``).

    ``judge(answer)`` returns a :class:`Verdict`; while it is not ``done`` the caller sleeps
    ``verdict.delay`` (:meth:`sleep` / :meth:`asleep` use the guard's injected functions), takes the
    feedback from :meth:`begin_reask`, asks the model and judges the reply. A caller that stops early
    (its model call failed, or it was cancelled) just closes the run: use it as a context manager.
    The guard's counters are updated once, when the run ends or is closed.
    """

    __slots__ = (
        "_can_reask",
        "_closed",
        "_compiled",
        "_errors",
        "_fallback",
        "_feedback",
        "_guard",
        "_judged",
        "_reasks",
        "_start",
    )

    def __init__(
        self, guard: JSONHardGuard, compiled: CompiledSchema, fallback: dict[str, Any] | None, can_reask: bool
    ) -> None:
        self._guard = guard
        self._compiled = compiled
        self._fallback = fallback
        self._can_reask = can_reask
        self._start = guard._clock()
        self._errors: list[AttemptError] = []
        self._reasks = 0
        self._feedback = ""
        self._judged = 0
        self._closed = False

    @property
    def compiled(self) -> CompiledSchema:
        """The schema this run judges against."""
        return self._compiled

    def judged(self, answer: object, outcome: Any) -> Verdict:
        """:meth:`judge` for a first answer the caller judged already (``guard._judge``), not judged twice."""
        if self._closed or self._judged:
            raise RuntimeError("judged() takes the first answer of an open run")
        self._judged = 1
        return self._apply(answer, outcome)

    def finish_quietly(self) -> None:
        """Close the run without counting: the caller counts its outcome itself (the guard's accepted fast path)."""
        self._closed = True

    @property
    def attempts(self) -> int:
        """Answers asked for so far: the first one plus one per re-ask begun."""
        return self._reasks + 1

    def judge(self, answer: object) -> Verdict:
        """Judge the first answer, or the reply to the last re-ask."""
        return self._apply(answer, self._outcome(answer))

    async def ajudge(self, answer: object) -> Verdict:
        """Async twin of :meth:`judge`: an answer over ``OFFLOAD_CHARS`` is judged in a worker thread."""
        if isinstance(answer, str) and len(answer) > OFFLOAD_CHARS:
            # one worker thread per guard: the loop then competes for the GIL with one judge, not with many
            outcome = await asyncio.get_running_loop().run_in_executor(self._guard._offload(), self._outcome, answer)
            return self._apply(answer, outcome)
        return self._apply(answer, self._outcome(answer))

    def _outcome(self, answer: object) -> Any:
        """The parsed value or a :class:`Rejection` (pure: safe in a worker thread)."""
        if self._closed:
            raise RuntimeError("this guard run is over; start a new one")
        guard, compiled = self._guard, self._compiled
        first = self._judged == 0
        self._judged += 1
        return guard._judge(answer, compiled) if first else guard._judge_reply(answer, compiled)

    def _apply(self, answer: object, verdict: Any) -> Verdict:
        """Turn a judged outcome into the run's next step (on the caller's thread)."""
        if not isinstance(verdict, Rejection):
            result = GuardResult(verdict, "model", self._reasks + 1, tuple(self._errors))
            return self._end(Verdict(result), "model", "accepted")
        error = AttemptError(self._reasks + 1, verdict.reason, verdict.message, verdict.details)
        self._errors.append(error)
        self._guard._log_rejection(error, answer)
        if error.reason != "regenerate_error":  # the model never saw a failed re-ask's feedback
            self._feedback = feedback_for(error)
        return self._next(error)

    def begin_reask(self) -> str:
        """Count the re-ask the caller is about to make and return the feedback to send with it."""
        self._reasks += 1
        return self._feedback

    def sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds with the guard's injected ``sleep``."""
        if delay > 0:
            self._guard._sleep(delay)

    async def asleep(self, delay: float) -> None:
        """Async twin of :meth:`sleep` (the guard's injected ``asleep``)."""
        if delay > 0:
            await self._guard._asleep(delay)

    def close(self) -> None:
        """End the run where it is (idempotent); an unfinished run is counted as interrupted."""
        if not self._closed:
            self._closed = True
            self._guard._record(self._errors, self._reasks, "interrupted", "accepted")

    def __enter__(self) -> GuardRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _next(self, error: AttemptError) -> Verdict:
        """Re-ask (after a wait) or stop, as the guard's policies say."""
        guard = self._guard
        state = RetryState(self._reasks + 1)
        if not self._can_reask:
            return self._give_up("no_regenerate")
        if guard.stop(state):
            return self._give_up("max_retries")
        delay = guard.wait(state)
        if guard.deadline_stop(RetryState(state.attempt_number, guard._clock() - self._start + delay)):
            return self._give_up("deadline")
        return Verdict(delay=delay)

    def _give_up(self, stop: StopReason) -> Verdict:
        attempts, errors = self._reasks + 1, tuple(self._errors)
        if self._fallback is None:
            return self._end(Verdict(rejected=JSONGuardError(attempts, errors, stop)), "raised", stop)
        logger.warning(
            "JSON guard: %d attempt(s) rejected (stopped: %s, last: %s); using the fallback",
            attempts, stop, errors[-1].reason,
        )
        result = GuardResult(copy.deepcopy(self._fallback), "fallback", attempts, errors, stop)
        return self._end(Verdict(result), "fallback", stop)

    def _end(self, verdict: Verdict, outcome: str, stop: StopReason) -> Verdict:
        self._closed = True
        self._guard._record(self._errors, self._reasks, outcome, stop)
        return verdict
