"""The production request path: cache -> the mode's models through their breakers -> JSON guard -> fallback.

:class:`LLMEnsemble` is handed its shared state (backends, breaker manager, cache, guard); it never
builds a second breaker manager or mode controller. It caches only answers a model gave and the
guard validated, never a fallback (the cache's single flight hands a fallback to every waiter without
storing it). It owns each model's re-ask loop, so a failed call ends that model's turn as a plain
return. It must not know about HTTP or FastAPI.

It counts the briefs it serves by source in ``briefs_total`` (plain ints under a small lock; the
metrics collector reads :meth:`LLMEnsemble.briefs_snapshot` at scrape time): it never calls
prometheus_client.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fragrance_ai.cache.lru_cache import Loaded, LRUCacheWithTTL
from fragrance_ai.clock import AsyncTimeoutFn
from fragrance_ai.config_loader import Config
from fragrance_ai.constants import (
    BRIEF_SOURCES,
    CIRCUIT_OPEN,
    CLIENT_ERROR,
    MODEL_ERROR_REASONS,
    SKIPPED_OPEN,
    TOKEN_PURPOSES,
    Purpose,
    Source,
)
from fragrance_ai.llm.backends import CompletionRequest, CompletionResponse, LLMBackend
from fragrance_ai.llm.circuit_breaker import CircuitBreaker, LLMCircuitBreakerManager
from fragrance_ai.llm.failures import failure_reason
from fragrance_ai.llm.guards import GuardResult, JSONHardGuard
from fragrance_ai.llm.panic import PanicRule
from fragrance_ai.llm.retry_budget import RetryBudget

__all__ = [
    "BRIEF_SOURCES",
    "SYSTEM_PROMPT",
    "BriefResult",
    "LLMEnsemble",
    "ModelAttempt",
    "NoModelAvailableError",
    "Source",
]

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are a perfumer writing fragrance briefs. Answer with ONE JSON object and nothing else, with keys: "
    '"description" (string), "notes" (list of note names), "families" (list, from: floral, fresh, citrus, '
    "woody, amber, green, aquatic, fruity, gourmand, spicy, aromatic, chypre, fougere, leather, powdery, "
    'musky), "intensity" (integer 0-100), "longevity" ("short", "medium" or "long").'
)



@dataclass(frozen=True, slots=True)
class ModelAttempt:
    """What happened when one model was tried for a brief (codes only: no exception text)."""

    model: str
    outcome: str  # ok | skipped_open | circuit_open | timeout | connection_error | http_error | invalid_response | error
    answers: int = 0


@dataclass(frozen=True, slots=True)
class BriefResult:
    """A brief and where it came from."""

    brief: dict[str, Any]
    source: Source
    model: str | None
    mode: str
    attempts: int  # answers judged by the guard, over every model tried
    tried: tuple[ModelAttempt, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "brief": self.brief,
            "source": self.source,
            "model": self.model,
            "mode": self.mode,
            "attempts": self.attempts,
            "models_tried": [{"model": a.model, "outcome": a.outcome} for a in self.tried],
        }


class NoModelAvailableError(RuntimeError):
    """Every model failed and the fallback is disabled."""

    def __init__(self, mode: str, tried: tuple[ModelAttempt, ...]) -> None:
        self.mode = mode
        self.tried = tried
        summary = ", ".join(f"{a.model}: {a.outcome}" for a in tried) or "no model configured"
        super().__init__(f"no model produced a valid brief in mode {mode!r} ({summary})")


class LLMEnsemble:
    """Generates fragrance briefs from the current mode's models, behind every guard.

    ``briefs_total`` counts the briefs :meth:`generate_brief` returned, by source (``cache``, ``model``,
    ``fallback``; every key present from construction): exactly one per returned :class:`BriefResult`,
    so each waiter of a single flight counts once, with the source it got. A call that raises (unknown
    mode, :class:`NoModelAvailableError` when the fallback is disabled, cancellation) served no brief and
    counts nothing: a 503 is not a brief. Increments take ``_briefs_lock`` (held for one ``+= 1``, never
    across an await), so counts are exact across threads and event loops; read them through
    :meth:`briefs_snapshot`.
    """

    def __init__(
        self,
        config: Config,
        *,
        backends: Mapping[str, LLMBackend],
        breakers: LLMCircuitBreakerManager,
        guard: JSONHardGuard,
        schema: Mapping[str, Any],
        cache: LRUCacheWithTTL[str, BriefResult] | None = None,
        atimeout: AsyncTimeoutFn = asyncio.timeout,
        retry_budget: RetryBudget | None = None,
        panic: PanicRule | None = None,
    ) -> None:
        missing = [m for m in config.model_names if m not in backends]
        if missing:
            raise ValueError(f"no backend for configured model(s): {', '.join(missing)}")
        self.config = config
        self.backends = dict(backends)
        self.breakers = breakers
        self.guard = guard
        self.schema = guard.compile(schema)
        self.cache = cache
        self._atimeout = atimeout
        #: caps re-asks as a share of first attempts (None: every rejected answer may be re-asked)
        self.retry_budget = retry_budget
        #: lets a bounded trickle of trial calls past open breakers when every model of the mode is open
        self.panic = panic
        self._briefs_lock = threading.Lock()
        self.briefs_total: dict[str, int] = dict.fromkeys(BRIEF_SOURCES, 0)
        #: tokens (prompt + completion, as each answer's ``usage`` reports them) by (model, purpose)
        self.tokens_total: dict[tuple[str, str], int] = {
            (model, purpose): 0 for model in config.model_names for purpose in TOKEN_PURPOSES
        }
        #: failed model calls (admitted by the breaker) by (model, reason): ``llm_model_errors_total``
        self.model_errors_total: dict[tuple[str, str], int] = {
            (model, reason): 0 for model in config.model_names for reason in MODEL_ERROR_REASONS
        }

    @property
    def mode_controller(self) -> Any:
        return self.breakers.mode_controller

    def request_for(self, prompt: str, mode: str) -> CompletionRequest:
        params = self.config.modes[mode]
        return CompletionRequest.from_prompt(
            prompt,
            system=SYSTEM_PROMPT,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
        )

    # ------------------------------------------------------------------------ health-check path

    async def generate_single(self, prompt: str, model: str, timeout: float | None = None) -> dict[str, Any]:
        """One answer from one model, parsed and schema-checked once: no breaker, no re-ask, no fallback.

        The health checker uses it to see a model as it is. Raises ``BackendError`` for transport
        faults, ``JSONGuardError`` for an invalid answer, ``TimeoutError`` past ``timeout``.
        """
        backend = self.backends.get(model)
        if backend is None:
            raise KeyError(f"unknown model {model!r}")
        request = self.request_for(prompt, self.config.mode_controller.initial_mode)
        limit = timeout if timeout is not None else self.config.llm.models[model].timeout
        async with self._atimeout(limit):
            response = await backend.complete(request)
        self.count_tokens(model, "health", response)
        result = await self.guard.aguard(response.text, self.schema, use_fallback=False)
        return result.value

    # ------------------------------------------------------------------------- production path

    def cache_key(self, prompt: str, mode: str) -> str:
        return f"{mode}\x00{' '.join(prompt.split())}"

    def count_tokens(self, model: str, purpose: Purpose, response: CompletionResponse) -> None:
        """Add one answer's reported usage to ``tokens_total`` (an answer without usage adds nothing)."""
        tokens = (response.prompt_tokens or 0) + (response.completion_tokens or 0)
        with self._briefs_lock:
            key = (model, purpose)
            self.tokens_total[key] = self.tokens_total.get(key, 0) + tokens

    def tokens_snapshot(self) -> dict[tuple[str, str], int]:
        """A consistent copy of ``tokens_total`` (for the metrics collector, at scrape time)."""
        with self._briefs_lock:
            return dict(self.tokens_total)

    def model_errors_snapshot(self) -> dict[tuple[str, str], int]:
        """A consistent copy of ``model_errors_total`` (for the metrics collector, at scrape time)."""
        with self._briefs_lock:
            return dict(self.model_errors_total)

    def briefs_snapshot(self) -> dict[str, int]:
        """A consistent copy of ``briefs_total`` (for the metrics collector, at scrape time)."""
        with self._briefs_lock:
            return dict(self.briefs_total)

    async def generate_brief(self, prompt: str, mode: str | None = None) -> BriefResult:
        """A brief for ``prompt`` from the cache, the first healthy model of the mode, or the fallback."""
        # counted here, once, whichever of _brief's return paths produced it; a raise counts nothing
        result = await self._brief(prompt, mode)
        with self._briefs_lock:
            self.briefs_total[result.source] += 1
        return result

    async def _brief(self, prompt: str, mode: str | None) -> BriefResult:
        """:meth:`generate_brief` without the counting."""
        current = self.breakers.current_mode()  # upshifts first when it can, as the health check does
        mode = mode or current
        if mode not in self.config.modes:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(self.config.modes)}")
        if self.cache is None:
            return await self._from_models(prompt, mode)

        # Single flight: concurrent misses on one prompt share one pass over the models. Every caller
        # gets the loaded result; the cache keeps it only when a model gave it (never a fallback).
        async def load() -> Loaded[BriefResult]:
            result = await self._from_models(prompt, mode)
            return Loaded(result, store=result.source == "model" and result.model is not None)

        fetched = await self.cache.aget_or_load(self.cache_key(prompt, mode), load)
        shared = fetched.value
        if fetched.origin == "loaded":
            if shared.source != "model":
                return shared  # a fallback: only this caller holds it
            # the cache holds the result itself: the caller gets its own copy of the brief to change
            return dataclasses.replace(shared, brief=copy.deepcopy(shared.brief))
        if shared.source != "model":
            # a waiter: every model failed for the leader too; its own fallback copy, counted
            return BriefResult(self.guard.fallback(self.schema), "fallback", None, mode, 0, shared.tried)
        return BriefResult(copy.deepcopy(shared.brief), "cache", shared.model, mode, 0)

    async def _from_models(self, prompt: str, mode: str) -> BriefResult:
        """The mode's models in order, skipping open breakers; the fallback when none answers."""
        tried: list[ModelAttempt] = []
        answers = 0
        request = self.request_for(prompt, mode)
        for model in self.config.modes[mode].models:
            if not self.breakers.is_available(model):
                tried.append(ModelAttempt(model, SKIPPED_OPEN))
                continue
            outcome, result, judged = await self._try_model(model, request)
            answers += judged
            tried.append(ModelAttempt(model, outcome, judged))
            if result is not None:
                return BriefResult(result.value, "model", model, mode, answers, tuple(tried))

        if self.panic is not None and tried and all(a.outcome == SKIPPED_OPEN for a in tried):
            trial = self.panic.pick(mode, self.config.modes[mode].models, self.breakers.breakers)
            if trial is not None:
                outcome, result, judged = await self._panic_trial(self.panic, trial, request)
                answers += judged
                tried.append(ModelAttempt(trial, outcome, judged))
                if result is not None:
                    return BriefResult(result.value, "model", trial, mode, answers, tuple(tried))

        if not self.config.json_guard.fallback_enabled:
            raise NoModelAvailableError(mode, tuple(tried))
        return BriefResult(self.guard.fallback(self.schema), "fallback", None, mode, answers, tuple(tried))

    async def _try_model(self, model: str, request: CompletionRequest) -> tuple[str, GuardResult | None, int]:
        """Ask one model (through its breaker) and guard its answer, re-asking with the reason on rejection.

        Returns ``(outcome, result or None, answers judged)``. This method owns the re-ask loop (a
        :class:`~fragrance_ai.llm.guard_run.GuardRun`), so any failure of the call itself (transport,
        timeout, open breaker, a backend bug) ends this model's turn at once, as a plain return, even
        during a re-ask: backing off and re-asking a server that just failed only delays the next model.
        A re-ask the retry budget denies ends the turn too (``invalid_response``), without the backoff.
        """
        breaker = self.breakers.breakers[model]
        budget = self.retry_budget
        if budget is not None:
            budget.record_attempt()
        outcome, text = await self._call(model, breaker, request, "brief")
        if text is None:
            return outcome, None, 0
        answers, conversation = 1, request
        with self.guard.start(self.schema, can_reask=True, use_fallback=False) as run:
            verdict = await run.ajudge(text)
            while not verdict.done:
                if budget is not None and not budget.try_reask():
                    return "invalid_response", None, answers  # the budget is spent: next model, no re-ask
                await run.asleep(verdict.delay)
                # the re-ask carries the rejected answer and why it was rejected
                conversation = conversation.with_feedback(text, run.begin_reask())
                outcome, reply = await self._call(model, breaker, conversation, "reask")
                if reply is None:
                    return outcome, None, answers
                answers, text = answers + 1, reply
                verdict = await run.ajudge(text)
            if verdict.result is None:
                return "invalid_response", None, answers
            return "ok", verdict.result, verdict.result.attempts

    async def _panic_trial(
        self, panic: PanicRule, model: str, request: CompletionRequest
    ) -> tuple[str, GuardResult | None, int]:
        """One call past ``model``'s open breaker and one judgement of its answer (see :mod:`.panic`)."""
        limit = self.config.llm.models[model].timeout
        try:
            async with self._atimeout(limit):
                response = await self.backends[model].complete(request)
        except AssertionError:
            raise  # a test double's complaint must reach the test
        except Exception as exc:
            panic.record(model, ok=False)
            outcome = failure_reason(exc)
            if outcome == "error":
                logger.error("panic trial to %s failed unexpectedly; serving the fallback", model, exc_info=exc)
            return outcome, None, 0
        self.count_tokens(model, "brief", response)
        with self.guard.start(self.schema, can_reask=False, use_fallback=False) as run:
            verdict = await run.ajudge(response.text)
        if verdict.result is None:
            panic.record(model, ok=False)
            return "invalid_response", None, 1
        panic.record(model, ok=True)
        breaker = self.breakers.breakers[model]
        if panic.release_on_success and breaker.forced is None:
            breaker.force(None)  # the model answered: closed with an empty window, traffic resumes now
        return "ok", verdict.result, 1

    async def _call(
        self, model: str, breaker: CircuitBreaker, request: CompletionRequest, purpose: Purpose
    ) -> tuple[str, str | None]:
        """One call through the breaker: ``("ok", text)``, or ``(outcome code, None)`` when it failed."""
        backend = self.backends[model]
        limit = self.config.llm.models[model].timeout

        async def ask(req: CompletionRequest) -> str:
            async with self._atimeout(limit):
                response = await backend.complete(req)
            self.count_tokens(model, purpose, response)
            return response.text

        try:
            return "ok", await breaker.acall(ask, request)
        except AssertionError:
            raise  # a test double's complaint (respx: unmatched request) must reach the test
        except Exception as exc:
            outcome = failure_reason(exc)
            if outcome == "error":
                logger.error("model %s failed unexpectedly; trying the next model", model, exc_info=exc)
            elif outcome == CLIENT_ERROR:  # the text is the status line and the model name only, never the body
                logger.error("model %s refused the request (%s): a client error no retry fixes; check its "
                             "model id, API key and parameters; trying the next model", model, exc)
            if outcome != CIRCUIT_OPEN:
                with self._briefs_lock:
                    key = (model, outcome)
                    self.model_errors_total[key] = self.model_errors_total.get(key, 0) + 1
            return outcome, None
