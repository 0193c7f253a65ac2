"""Load and strictly validate ``llm_ensemble.yaml``: the one source of every guard's settings.

``get_config()`` finds the file (explicit path, ``$FRAGRANCE_AI_CONFIG``, ``./configs/llm_ensemble.yaml``,
the default shipped in the package), parses it keeping line numbers, and returns an immutable
:class:`Config`. Every problem (unknown key, wrong type, out-of-range value, a mode naming an unknown
model) is collected and raised at once as :class:`ConfigError`, each naming file, line and key path.

This module sits at the bottom of the package: it must not import any guard or the service.
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from fragrance_ai.constants import DEFAULT_MODE, LOOPBACK_HOST, MODES
from fragrance_ai.yaml_positions import KeyPath, format_path, load_yaml_with_positions

__all__ = [
    "MODES",
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
    "default_config_path",
    "find_config_path",
    "get_config",
    "load_config",
    "load_config_text",
]

ENV_VAR: Final = "FRAGRANCE_AI_CONFIG"
BACKENDS: Final = ("simulated", "openai")
_MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}\Z")



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


@dataclass(frozen=True, slots=True)
class ModeConfig:
    """A service mode: the models tried in order and their sampling parameters."""

    name: str
    models: tuple[str, ...]
    temperature: float = 0.7
    top_p: float = 0.9
    max_tokens: int = 512


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


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """The effective settings of one model's circuit breaker."""

    failure_threshold: float = 0.5
    success_threshold: int = 5
    timeout: float = 60.0
    half_open_requests: int = 3
    window_size: int = 20
    minimum_calls: int = 10


@dataclass(frozen=True, slots=True)
class CircuitBreakerConfig:
    enabled: bool = True
    auto_downshift: bool = True
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
    #: the file's data as parsed (before defaults), for deep-merging overrides onto it
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(self.llm.models)

    def with_overrides(self, overrides: Mapping[str, Any], source: str | None = None) -> Config:
        """A new config: ``overrides`` deep-merged onto this file's data, validated again."""
        merged = deep_merge(copy.deepcopy(dict(self.raw)), overrides)
        return _build(merged, {}, source or f"{self.source} (with overrides)")

    def to_dict(self) -> dict[str, Any]:
        """The effective settings as plain data (no secrets: API keys are referenced by env var name)."""
        return {
            "source": self.source,
            "llm": {
                "models": {
                    n: {
                        "backend": m.backend,
                        "model_id": m.model_id,
                        "base_url": m.base_url,
                        "api_key_env": m.api_key_env,
                        "timeout": m.timeout,
                        "connect_timeout": m.connect_timeout,
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
                **_asdict(self.circuit_breaker.defaults),
                "models": {n: _asdict(s) for n, s in self.circuit_breaker.models.items()},
            },
            "cache": _asdict(self.cache),
            "health_check": _asdict(self.health_check),
        }


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


# ------------------------------------------------------------------------------- finding and loading


def default_config_path() -> Path:
    """The default configuration shipped inside the package."""
    return Path(__file__).resolve().parent / "configs" / "llm_ensemble.yaml"


def find_config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The file ``get_config`` would read: explicit path, ``$FRAGRANCE_AI_CONFIG``, ./configs, package default."""
    if path is not None:
        return Path(path)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    local = Path("configs") / "llm_ensemble.yaml"
    if local.is_file():
        return local
    return default_config_path()


def get_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Find, load and validate the configuration (see :func:`find_config_path` for the search order)."""
    return load_config(find_config_path(path))


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load and validate one file; raises :class:`ConfigError` naming file, line and key of every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(source, None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(source, None, "", f"cannot read: {exc}")]) from None
    return load_config_text(text, source)


def load_config_text(text: str, source: str = "<string>") -> Config:
    """Validate config ``text``; ``source`` names it in errors."""
    data, lines, issues = _parse_yaml(text, source)
    return _build(data, lines, source, issues)


def _parse_yaml(
    text: str, source: str
) -> tuple[dict[str, Any], dict[KeyPath, int], list[ConfigIssue]]:
    """Parse YAML safely, keeping the line of every key; duplicate keys are issues, not overwrites."""
    data, positions, problems = load_yaml_with_positions(text)
    issues = [
        ConfigIssue(source, p.position.line if p.position else None, format_path(p.path), p.message)
        for p in problems
    ]
    if data is None and issues:
        raise ConfigError(issues)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(source, 1, "", "the top level must be a mapping of sections")])
    return data, {path: pos.line for path, pos in positions.items()}, issues


# ------------------------------------------------------------------------------------- validation


class _Checker:
    """Collects issues while reading typed values out of the raw data."""

    def __init__(self, source: str, lines: Mapping[KeyPath, int]) -> None:
        self.source = source
        self.lines = lines
        self.issues: list[ConfigIssue] = []

    def line(self, path: KeyPath) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def error(self, path: KeyPath, message: str) -> None:
        self.issues.append(ConfigIssue(self.source, self.line(path), format_path(path), message))

    def section(self, data: Mapping[str, Any], path: KeyPath, key: str) -> dict[str, Any]:
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error((*path, key), f"expected a mapping, found {_kind(value)}")
            return {}
        return value

    def unknown(self, data: Mapping[str, Any], path: KeyPath, allowed: Iterator[str] | tuple[str, ...]) -> None:
        allowed = tuple(allowed)
        for key in data:
            if key not in allowed:
                self.error((*path, str(key)), f"unknown key (allowed: {', '.join(allowed)})")

    def fields(self, data: Mapping[str, Any], path: KeyPath, spec: Mapping[str, _Spec], base: Any) -> dict[str, Any]:
        """Read every field of ``spec`` from ``data``, defaulting to ``base``'s attribute."""
        self.unknown(data, path, tuple(spec))
        out: dict[str, Any] = {}
        for name, rule in spec.items():
            default = getattr(base, name)
            if name not in data:
                out[name] = default
                continue
            value, problem = rule(data[name])
            if problem is not None:
                self.error((*path, name), problem)
                out[name] = default
            else:
                out[name] = value
        return out


_Spec = Callable[[Any], tuple[Any, str | None]]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _bool() -> _Spec:
    def rule(v: Any) -> tuple[Any, str | None]:
        return (v, None) if isinstance(v, bool) else (None, f"expected true or false, found {_kind(v)}")

    return rule


def _int(lo: int | None = None, hi: int | None = None) -> _Spec:
    def rule(v: Any) -> tuple[Any, str | None]:
        if isinstance(v, bool) or not isinstance(v, int):
            return None, f"expected an integer, found {_kind(v)}"
        if lo is not None and v < lo:
            return None, f"must be >= {lo}, found {v}"
        if hi is not None and v > hi:
            return None, f"must be <= {hi}, found {v}"
        return v, None

    return rule


def _num(
    *, gt: float | None = None, ge: float | None = None, le: float | None = None, desc: str | None = None
) -> _Spec:
    def rule(v: Any) -> tuple[Any, str | None]:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None, f"expected a number, found {_kind(v)}"
        try:
            f = float(v)
        except OverflowError:
            return None, f"must be a finite number, found an integer of {len(str(v))} digits"
        bad = (
            math.isnan(f)
            or math.isinf(f)
            or (gt is not None and f <= gt)
            or (ge is not None and f < ge)
            or (le is not None and f > le)
        )
        if bad:
            if desc:
                want = desc
            else:
                parts = []
                if gt is not None:
                    parts.append(f"> {gt:g}")
                if ge is not None:
                    parts.append(f">= {ge:g}")
                if le is not None:
                    parts.append(f"<= {le:g}")
                want = "a finite number " + " and ".join(parts) if parts else "a finite number"
            return None, f"must be {want}, found {v!r}"
        return v, None  # keep ints as ints: "timeout: 60" prints as 60s, not 60.0s

    return rule


def _str(*, choices: tuple[str, ...] | None = None, nullable: bool = False, nonempty: bool = True) -> _Spec:
    def rule(v: Any) -> tuple[Any, str | None]:
        if v is None and nullable:
            return None, None
        if not isinstance(v, str):
            return None, f"expected a string, found {_kind(v)}"
        if choices is not None and v not in choices:
            return None, f"must be one of {', '.join(choices)}; found {v!r}"
        if nonempty and not v.strip():
            return None, "must not be empty"
        return v, None

    return rule


_MODEL_SPEC: Final[dict[str, _Spec]] = {
    "backend": _str(choices=BACKENDS),
    "model_id": _str(),
    "base_url": _str(nullable=True),
    "api_key_env": _str(nullable=True),
    "timeout": _num(gt=0),
    "connect_timeout": _num(gt=0),
}
_MODE_SPEC: Final[dict[str, _Spec]] = {
    "temperature": _num(ge=0, le=2),
    "top_p": _num(gt=0, le=1),
    "max_tokens": _int(lo=1),
}
_MODE_CONTROLLER_SPEC: Final[dict[str, _Spec]] = {
    "initial_mode": _str(choices=MODES),
    "upshift_quiet_period": _num(gt=0),
}
_JSON_GUARD_SPEC: Final[dict[str, _Spec]] = {
    "enabled": _bool(),
    "max_retries": _int(lo=0, hi=20),
    "backoff_base": _num(ge=0),
    "jitter": _num(ge=0),
    "backoff_max": _num(ge=0),
    "deadline": _num(gt=0),
    "fallback_enabled": _bool(),
    "strict_schema": _bool(),
    "max_input_bytes": _int(lo=1),
    "max_depth": _int(lo=1, hi=512),  # deeper risks a RecursionError inside json/jsonschema (the guard refuses it too)
    "max_reported_errors": _int(lo=1),
}
_BREAKER_SPEC: Final[dict[str, _Spec]] = {
    "failure_threshold": _num(gt=0, le=1, desc="in (0, 1]"),
    "success_threshold": _int(lo=1),
    "timeout": _num(gt=0),
    "half_open_requests": _int(lo=1),
    "window_size": _int(lo=1, hi=10_000),
    "minimum_calls": _int(lo=1),
}
_BREAKER_SECTION_SPEC: Final[dict[str, _Spec]] = {
    "enabled": _bool(),
    "auto_downshift": _bool(),
    **_BREAKER_SPEC,
}
_CACHE_SPEC: Final[dict[str, _Spec]] = {
    "enabled": _bool(),
    "type": _str(choices=("lru_ttl",)),
    "max_size": _int(lo=1),
    "ttl_seconds": _num(gt=0),
    "cleanup_interval": _num(gt=0),
    "eviction_policy": _str(choices=("lru",)),
}
_HEALTH_SPEC: Final[dict[str, _Spec]] = {
    "timeout": _num(gt=0),
    "cache_seconds": _num(ge=0),
    "prompt": _str(),
    "probe_interval": _num(ge=0),  # 0 (off) or at least 0.05 s: checked below, so a typo cannot spin the loop
}
_SECTIONS: Final = ("llm", "modes", "mode_controller", "json_guard", "circuit_breaker", "cache", "health_check")


def _build(
    data: Mapping[str, Any],
    lines: Mapping[KeyPath, int],
    source: str,
    issues: list[ConfigIssue] | None = None,
) -> Config:
    c = _Checker(source, lines)
    c.issues.extend(issues or ())
    c.unknown(data, (), _SECTIONS)

    # llm.models
    llm = c.section(data, (), "llm")
    c.unknown(llm, ("llm",), ("models",))
    models: dict[str, ModelConfig] = {}
    raw_models = llm.get("models")
    if raw_models is None:
        models = {n: ModelConfig(n, model_id=mid) for n, mid in _DEFAULT_MODELS.items()}
    elif not isinstance(raw_models, dict) or not raw_models:
        c.error(("llm", "models"), f"expected a non-empty mapping of model name to settings, found {_kind(raw_models)}")
    else:
        for name, spec in raw_models.items():
            path: KeyPath = ("llm", "models", str(name))
            if not isinstance(name, str) or not _MODEL_NAME.match(name):
                c.error(path, "a model name must be lower-case letters, digits, '_', '.', '-' (at most 63)")
                continue
            if spec is None:
                spec = {}
            if not isinstance(spec, dict):
                c.error(path, f"expected a mapping, found {_kind(spec)}")
                continue
            base = ModelConfig(name, model_id=name)
            values = c.fields(spec, path, _MODEL_SPEC, base)
            if values["backend"] == "openai" and not values["base_url"]:
                c.error((*path, "base_url"), f"required when backend is openai (e.g. http://{LOOPBACK_HOST}:8000/v1)")
            elif values["base_url"] and not _http_url(values["base_url"]):
                c.error((*path, "base_url"), f"must be an http:// or https:// URL, found {values['base_url']!r}")
            models[name] = ModelConfig(name=name, **values)
    names = tuple(models)

    # modes
    modes_raw = c.section(data, (), "modes")
    c.unknown(modes_raw, ("modes",), MODES)
    modes: dict[str, ModeConfig] = {}
    for mode in MODES:
        path = ("modes", mode)
        spec = modes_raw.get(mode)
        if spec is None:
            modes[mode] = ModeConfig(mode, models=names)
            continue
        if not isinstance(spec, dict):
            c.error(path, f"expected a mapping, found {_kind(spec)}")
            modes[mode] = ModeConfig(mode, models=names)
            continue
        values = c.fields({k: v for k, v in spec.items() if k != "models"}, path, _MODE_SPEC, ModeConfig(mode, ()))
        mode_models: tuple[str, ...] = names
        if "models" in spec:
            listed = spec["models"]
            if not isinstance(listed, list) or not listed:
                c.error((*path, "models"), f"expected a non-empty list of model names, found {_kind(listed)}")
            else:
                ok = True
                for i, m in enumerate(listed):
                    if not isinstance(m, str) or m not in models:
                        if models:
                            c.error((*path, "models", i), f"unknown model {m!r} (configured: {', '.join(names)})")
                        ok = False
                    elif listed.index(m) != i:
                        c.error((*path, "models", i), f"model {m!r} is listed twice")
                        ok = False
                if ok:
                    mode_models = tuple(listed)
        modes[mode] = ModeConfig(mode, models=mode_models, **values)

    mc = c.fields(c.section(data, (), "mode_controller"), ("mode_controller",), _MODE_CONTROLLER_SPEC, ModeControllerConfig())
    mode_controller = ModeControllerConfig(**mc)

    jg = JSONGuardConfig(**c.fields(c.section(data, (), "json_guard"), ("json_guard",), _JSON_GUARD_SPEC, JSONGuardConfig()))

    # circuit_breaker with per-model overrides
    cb_raw = c.section(data, (), "circuit_breaker")
    cb_values = c.fields(
        {k: v for k, v in cb_raw.items() if k != "models"},
        ("circuit_breaker",),
        _BREAKER_SECTION_SPEC,
        _BreakerSectionDefaults(),
    )
    defaults = BreakerSettings(**{k: cb_values[k] for k in _BREAKER_SPEC})
    _check_window(c, ("circuit_breaker",), defaults)
    per_model: dict[str, BreakerSettings] = {name: defaults for name in names}
    overrides = cb_raw.get("models")
    if overrides is not None:
        if not isinstance(overrides, dict):
            c.error(("circuit_breaker", "models"), f"expected a mapping of model name to overrides, found {_kind(overrides)}")
        else:
            for name, spec in overrides.items():
                path = ("circuit_breaker", "models", str(name))
                if name not in models:
                    if models:
                        c.error(path, f"override for unknown model {name!r} (configured: {', '.join(names)})")
                    continue
                if spec is None:
                    continue
                if not isinstance(spec, dict):
                    c.error(path, f"expected a mapping, found {_kind(spec)}")
                    continue
                settings = BreakerSettings(**c.fields(spec, path, _BREAKER_SPEC, defaults))
                _check_window(c, path, settings)
                per_model[name] = settings
    circuit_breaker = CircuitBreakerConfig(
        enabled=cb_values["enabled"],
        auto_downshift=cb_values["auto_downshift"],
        defaults=defaults,
        models=MappingProxyType(per_model),
    )

    cache = CacheConfig(**c.fields(c.section(data, (), "cache"), ("cache",), _CACHE_SPEC, CacheConfig()))
    health = HealthCheckConfig(**c.fields(c.section(data, (), "health_check"), ("health_check",), _HEALTH_SPEC, HealthCheckConfig()))
    if 0 < health.probe_interval < 0.05:
        c.error(("health_check", "probe_interval"), f"must be 0 (off) or at least 0.05 seconds, found {health.probe_interval!r}")

    if c.issues:
        raise ConfigError(sorted(c.issues, key=lambda i: i.line or 0))
    return Config(
        source=source,
        llm=LLMConfig(models=MappingProxyType(models), json_guard=jg),
        json_guard=jg,
        circuit_breaker=circuit_breaker,
        cache=cache,
        modes=MappingProxyType(modes),
        mode_controller=mode_controller,
        health_check=health,
        raw=MappingProxyType(copy.deepcopy(dict(data))),
    )


@dataclass(frozen=True, slots=True)
class _BreakerSectionDefaults:
    enabled: bool = True
    auto_downshift: bool = True
    failure_threshold: float = 0.5
    success_threshold: int = 5
    timeout: float = 60.0
    half_open_requests: int = 3
    window_size: int = 20
    minimum_calls: int = 10


def _http_url(text: str) -> bool:
    """An http(s) URL with a host and a valid port, as httpx will parse it."""
    import httpx  # only here: the loader must stay importable without the service's dependencies

    if not re.match(r"https?://[^/\s]+", text):
        return False
    try:
        url = httpx.URL(text)
    except Exception:  # noqa: BLE001 - httpx raises several types for a malformed URL
        return False
    return bool(url.host) and (url.port is None or 0 < url.port < 65536)


def _check_window(c: _Checker, path: KeyPath, s: BreakerSettings) -> None:
    if s.minimum_calls > s.window_size:
        c.error(
            (*path, "minimum_calls"),
            f"must be <= window_size ({s.window_size}), found {s.minimum_calls}: the rate could never be judged",
        )


_DEFAULT_MODELS: Final = {
    "qwen": "qwen2.5-7b-instruct",
    "mistral": "mistral-7b-instruct",
    "llama": "llama-3.1-8b-instruct",
}
