"""What ``llm_ensemble.yaml`` may hold: every setting as a typed, immutable dataclass, and the rule each
value must pass.

The default of every setting is the shipped reference file (``fragrance_ai/configs/llm_ensemble.yaml``):
the loader merges each file onto it. The dataclass defaults below are what the guards' constructors
use when built without a config; ``tests/fragrance_ai/test_config_reference.py`` fails, naming each key,
when they differ from the reference. A mode has no code defaults at all (it always comes from a file).

:mod:`fragrance_ai.config_loader` reads a file against this definition. This module sits at the bottom of
the package: it must not import any guard or the service, read files, or touch the environment.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from fragrance_ai.config_rules import Spec, bool_rule, int_rule, num_rule, str_rule
from fragrance_ai.config_state import ON_REDIS_ERROR, STATE_BACKENDS, StateConfig
from fragrance_ai.constants import DEFAULT_MODE, MODES

__all__ = [
    "BACKENDS",
    "HALF_OPEN_POLICIES",
    "MODES",
    "SECTIONS",
    "STATE_BACKENDS",
    "BreakerSettings",
    "CacheConfig",
    "CircuitBreakerConfig",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "HealthCheckConfig",
    "JSONGuardConfig",
    "LLMConfig",
    "ModeConfig",
    "ModeControllerConfig",
    "ModelConfig",
    "ServiceConfig",
    "StateConfig",
    "deep_merge",
    "memory_only_issues",
    "redact_url",
]

BACKENDS: Final = ("simulated", "openai")
#: how a half-open breaker judges its trial calls (``circuit_breaker.half_open_policy``)
HALF_OPEN_POLICIES: Final = ("failure_rate", "consecutive")
MODEL_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}\Z")


# --------------------------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config file: where it is and what is wrong."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(ValueError):
    """A config file is invalid; ``issues`` lists every problem found, each with file, line and key."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


# --------------------------------------------------------------------------------------- the settings


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One LLM: which backend serves it and how to reach it (no secrets: only the env var's name)."""

    name: str
    backend: str = "simulated"
    model_id: str = ""
    base_url: str | None = None
    api_key_env: str | None = None
    timeout: float = 30.0
    connect_timeout: float = 5.0
    #: ask for an SSE stream (``stream: true`` in the request); then ``chunk_timeout`` bounds each gap between chunks
    stream: bool = False
    chunk_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class ModeConfig:
    """A service mode: the models tried in order and their sampling parameters."""

    name: str
    models: tuple[str, ...]
    temperature: float
    top_p: float
    max_tokens: int


@dataclass(frozen=True, slots=True)
class ModeControllerConfig:
    initial_mode: str = DEFAULT_MODE
    upshift_quiet_period: float = 300.0


@dataclass(frozen=True, slots=True)
class JSONGuardConfig:
    enabled: bool = True
    max_retries: int = 3
    backoff_base: float = 1.0
    jitter: float = 0.5
    backoff_max: float = 8.0
    deadline: float = 30.0
    fallback_enabled: bool = True
    strict_schema: bool = True
    max_input_bytes: int = 1_000_000
    max_depth: int = 64
    max_reported_errors: int = 5
    #: re-asks across the service capped at ratio * first attempts + min_per_second * window (per replica)
    retry_budget_enabled: bool = True
    retry_budget_ratio: float = 0.2
    retry_budget_min_per_second: float = 3.0
    retry_budget_window: float = 10.0


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """The effective settings of one model's circuit breaker."""

    failure_threshold: float = 0.5
    success_threshold: int = 5
    timeout: float = 60.0
    half_open_requests: int = 3
    window_size: int = 100
    minimum_calls: int = 10
    #: how a half-open breaker judges its trial calls: ``failure_rate`` (the failure rate of the trials so
    #: far against ``failure_threshold``; closes after ``success_threshold`` trials) or ``consecutive``
    #: (the checklist: any failure reopens, ``success_threshold`` successes close)
    half_open_policy: str = "failure_rate"
    #: each consecutive opening lasts this many times the last (1: always ``timeout``, the checklist)
    timeout_multiplier: float = 1.0
    #: the longest an opening lasts; a close that holds this long starts the count of openings over
    max_timeout: float = 600.0
    #: seconds above which a successful call is slow (resilience4j's slowCallDurationThreshold); 0: off
    slow_call_duration: float = 0.0
    #: the breaker opens when the slow-call rate of its window is above this (slowCallRateThreshold)
    slow_call_rate_threshold: float = 1.0
    #: > 0: a 429 with Retry-After opens the breaker at once, for max(open period, min(Retry-After, this)); 0: off
    max_retry_after: float = 0.0


@dataclass(frozen=True, slots=True)
class CircuitBreakerConfig:
    enabled: bool = True
    auto_downshift: bool = True
    #: the panic rule (fragrance_ai.llm.panic): every model of the mode open -> one trial per interval
    panic_enabled: bool = False
    panic_interval: float = 5.0
    defaults: BreakerSettings = field(default_factory=BreakerSettings)
    #: effective settings per configured model, per-model overrides applied
    models: Mapping[str, BreakerSettings] = field(default_factory=dict)

    @property
    def failure_threshold(self) -> float:
        return self.defaults.failure_threshold

    @property
    def success_threshold(self) -> int:
        return self.defaults.success_threshold

    @property
    def timeout(self) -> float:
        return self.defaults.timeout

    @property
    def half_open_requests(self) -> int:
        return self.defaults.half_open_requests

    def for_model(self, model: str) -> BreakerSettings:
        """Effective settings for ``model`` (the section defaults for a model without overrides)."""
        return self.models.get(model, self.defaults)


def memory_only_issues(cb: CircuitBreakerConfig) -> list[tuple[tuple[str, ...], str]]:
    """Breaker settings the Redis backend does not implement (a growing open period, slow calls, Retry-After): the first.

    With ``state.backend: redis`` these are errors, not a silent difference between replicas.
    """
    found = [(("circuit_breaker",), cb.defaults), *((("circuit_breaker", "models", m), s) for m, s in cb.models.items())]
    why = "a growing open period is memory-only: with state.backend: redis every opening lasts timeout (set 1)"
    slow = "slow calls are judged by the memory backend only: the Redis breaker scripts do not count them (set 0)"
    retry = "a 429's Retry-After opens the memory backend's breaker only: the Redis scripts keep one timeout (set 0)"
    return [
        *(((*path, "timeout_multiplier"), why) for path, s in found if s.timeout_multiplier != 1),
        *(((*path, "slow_call_duration"), slow) for path, s in found if s.slow_call_duration),
        *(((*path, "max_retry_after"), retry) for path, s in found if s.max_retry_after),
    ][:1]


@dataclass(frozen=True, slots=True)
class CacheConfig:
    enabled: bool = True
    type: str = "lru_ttl"
    max_size: int = 1000
    ttl_seconds: float = 600.0
    cleanup_interval: float = 60.0
    eviction_policy: str = "lru"


@dataclass(frozen=True, slots=True)
class HealthCheckConfig:
    timeout: float = 10.0
    cache_seconds: float = 5.0
    prompt: str = "Generate a brief perfume description."
    #: seconds between background checks of every model (0: only when /health/llm is asked)
    probe_interval: float = 0.0


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """The HTTP edge of ``fragrance-ai serve`` / ``create_app``."""

    #: a request body longer than this is refused with 413 before it is read whole (a 4000-character
    #: prompt written as ``\uXXXX`` escapes of surrogate pairs is 48,000 bytes)
    max_body_bytes: int = 65_536


@dataclass(frozen=True, slots=True)
class LLMConfig:
    """``config.llm``: the models, plus the JSON guard switches under the names the checklist uses."""

    models: Mapping[str, ModelConfig]
    json_guard: JSONGuardConfig

    @property
    def json_guard_enabled(self) -> bool:
        return self.json_guard.enabled

    @property
    def max_retries(self) -> int:
        return self.json_guard.max_retries

    @property
    def backoff_base(self) -> float:
        return self.json_guard.backoff_base

    @property
    def jitter(self) -> float:
        return self.json_guard.jitter

    @property
    def fallback_enabled(self) -> bool:
        return self.json_guard.fallback_enabled

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(self.models)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration; immutable, safe to share."""

    source: str
    llm: LLMConfig
    json_guard: JSONGuardConfig
    circuit_breaker: CircuitBreakerConfig
    cache: CacheConfig
    modes: Mapping[str, ModeConfig]
    mode_controller: ModeControllerConfig
    health_check: HealthCheckConfig
    service: ServiceConfig = field(default_factory=ServiceConfig)
    state: StateConfig = field(default_factory=StateConfig)
    #: the effective data (the file merged onto the reference), for deep-merging overrides onto it
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(self.llm.models)

    def with_overrides(self, overrides: Mapping[str, Any], source: str | None = None) -> Config:
        """A new config: ``overrides`` deep-merged onto the effective data, validated again."""
        from fragrance_ai.config_loader import (
            build_config,  # the loader sits above this definition
        )

        merged = deep_merge(copy.deepcopy(dict(self.raw)), overrides)
        return build_config(merged, {}, source or f"{self.source} (with overrides)")

    def to_dict(self, *, redact: bool = False) -> dict[str, Any]:
        """The effective settings as plain data: the one serialisation of a config.

        API keys never appear (a model names the environment variable that holds its key). ``redact=True``
        also masks any ``user:password@`` in a ``base_url``, for views shown outside the process.
        """
        return {
            "source": self.source,
            "llm": {
                "models": {
                    n: {
                        "backend": m.backend,
                        "model_id": m.model_id,
                        "base_url": redact_url(m.base_url) if redact else m.base_url,
                        "api_key_env": m.api_key_env,
                        "timeout": m.timeout,
                        "connect_timeout": m.connect_timeout,
                        "stream": m.stream,
                        "chunk_timeout": m.chunk_timeout,
                    }
                    for n, m in self.llm.models.items()
                }
            },
            "modes": {
                n: {
                    "models": list(m.models),
                    "temperature": m.temperature,
                    "top_p": m.top_p,
                    "max_tokens": m.max_tokens,
                }
                for n, m in self.modes.items()
            },
            "mode_controller": _asdict(self.mode_controller),
            "json_guard": _asdict(self.json_guard),
            "circuit_breaker": {
                "enabled": self.circuit_breaker.enabled,
                "auto_downshift": self.circuit_breaker.auto_downshift,
                "panic_enabled": self.circuit_breaker.panic_enabled,
                "panic_interval": self.circuit_breaker.panic_interval,
                **_asdict(self.circuit_breaker.defaults),
                "models": {n: _asdict(s) for n, s in self.circuit_breaker.models.items()},
            },
            "cache": _asdict(self.cache),
            "health_check": _asdict(self.health_check),
            "service": _asdict(self.service),
            "state": {**_asdict(self.state), "url": redact_url(self.state.url) if redact else self.state.url},
        }


def redact_url(url: str | None) -> str | None:
    """``url`` with any credentials in it replaced by ``***`` (``http://***@host/v1``)."""
    if not url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def _asdict(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


def deep_merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``overrides`` into ``base`` in place: mappings merge key by key, anything else replaces."""
    for key, value in overrides.items():
        current = base.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            deep_merge(current, value)
        else:
            base[key] = copy.deepcopy(value)
    return base


# ------------------------------------------------------------------------- every key and its rule (config_rules)


MODEL_SPEC: Final[dict[str, Spec]] = {
    "backend": str_rule(choices=BACKENDS),
    "model_id": str_rule(),
    "base_url": str_rule(nullable=True),
    "api_key_env": str_rule(nullable=True),
    "timeout": num_rule(gt=0),
    "connect_timeout": num_rule(gt=0),
    "stream": bool_rule(),
    "chunk_timeout": num_rule(gt=0),
}
MODE_SPEC: Final[dict[str, Spec]] = {
    "temperature": num_rule(ge=0, le=2),
    "top_p": num_rule(gt=0, le=1),
    "max_tokens": int_rule(lo=1),
}
MODE_CONTROLLER_SPEC: Final[dict[str, Spec]] = {
    "initial_mode": str_rule(choices=MODES),
    "upshift_quiet_period": num_rule(gt=0),
}
JSON_GUARD_SPEC: Final[dict[str, Spec]] = {
    "enabled": bool_rule(),
    "max_retries": int_rule(lo=0, hi=20),
    "backoff_base": num_rule(ge=0),
    "jitter": num_rule(ge=0),
    "backoff_max": num_rule(ge=0),
    "deadline": num_rule(gt=0),
    "fallback_enabled": bool_rule(),
    "strict_schema": bool_rule(),
    "max_input_bytes": int_rule(lo=1),
    "max_depth": int_rule(lo=1, hi=512),  # deeper risks a RecursionError inside json/jsonschema (the guard refuses it too)
    "max_reported_errors": int_rule(lo=1),
    "retry_budget_enabled": bool_rule(),
    "retry_budget_ratio": num_rule(ge=0, le=10),
    "retry_budget_min_per_second": num_rule(ge=0),
    "retry_budget_window": num_rule(ge=1, le=3600),
}
BREAKER_SPEC: Final[dict[str, Spec]] = {
    "failure_threshold": num_rule(gt=0, le=1, desc="in (0, 1]"),
    "success_threshold": int_rule(lo=1),
    "timeout": num_rule(gt=0),
    "half_open_requests": int_rule(lo=1),
    "window_size": int_rule(lo=1, hi=10_000),
    "minimum_calls": int_rule(lo=1),
    "half_open_policy": str_rule(choices=HALF_OPEN_POLICIES),
    "timeout_multiplier": num_rule(ge=1, le=10),
    "max_timeout": num_rule(gt=0),
    "slow_call_duration": num_rule(ge=0, null_as=0),
    "slow_call_rate_threshold": num_rule(gt=0, le=1, desc="in (0, 1]"),
    "max_retry_after": num_rule(ge=0),
}
BREAKER_SECTION_SPEC: Final[dict[str, Spec]] = {
    "enabled": bool_rule(),
    "auto_downshift": bool_rule(),
    "panic_enabled": bool_rule(),
    "panic_interval": num_rule(ge=0.1, le=3600),
    **BREAKER_SPEC,
}
CACHE_SPEC: Final[dict[str, Spec]] = {
    "enabled": bool_rule(),
    "type": str_rule(choices=("lru_ttl",)),
    "max_size": int_rule(lo=1),
    "ttl_seconds": num_rule(gt=0),
    "cleanup_interval": num_rule(gt=0),
    "eviction_policy": str_rule(choices=("lru",)),
}
HEALTH_SPEC: Final[dict[str, Spec]] = {
    "timeout": num_rule(gt=0),
    "cache_seconds": num_rule(ge=0),
    "prompt": str_rule(),
    "probe_interval": num_rule(ge=0),  # 0 (off) or at least 0.05 s: checked below, so a typo cannot spin the loop
}
SERVICE_SPEC: Final[dict[str, Spec]] = {
    "max_body_bytes": int_rule(lo=1024, hi=16 * 1024 * 1024),
}
STATE_SPEC: Final[dict[str, Spec]] = {
    "backend": str_rule(choices=STATE_BACKENDS),
    "url": str_rule(),  # redis://, rediss:// or unix://: checked by the loader
    "url_env": str_rule(nullable=True),
    "key_prefix": str_rule(),
    "on_redis_error": str_rule(choices=ON_REDIS_ERROR),
    "retry_interval": num_rule(gt=0),
    "socket_timeout": num_rule(gt=0),
}
SECTIONS: Final = (
    "llm", "modes", "mode_controller", "json_guard", "circuit_breaker", "cache", "health_check", "service", "state",
)
