"""Load and strictly validate ``llm_ensemble.yaml``: the one source of every guard's settings.

``get_config()`` finds the file (explicit path, ``$FRAGRANCE_AI_CONFIG``, ``./configs/llm_ensemble.yaml``,
the default shipped in the package), parses it keeping line numbers, and returns an immutable
:class:`Config`. Every problem (unknown key, wrong type, out-of-range value, a mode naming an unknown
model) is collected and raised at once as :class:`ConfigError`, each naming file, line and key path.
What a file may hold, with every default, is defined in :mod:`fragrance_ai.config_schema` (re-exported here).

This module sits at the bottom of the package: it must not import any guard or the service.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from fragrance_ai.config_schema import (
    BACKENDS,
    BREAKER_SECTION_SPEC,
    BREAKER_SPEC,
    CACHE_SPEC,
    DEFAULT_MODELS,
    HEALTH_SPEC,
    JSON_GUARD_SPEC,
    MODE_CONTROLLER_SPEC,
    MODE_SPEC,
    MODEL_NAME,
    MODEL_SPEC,
    MODES,
    SECTIONS,
    BreakerSectionDefaults,
    BreakerSettings,
    CacheConfig,
    CircuitBreakerConfig,
    Config,
    ConfigError,
    ConfigIssue,
    HealthCheckConfig,
    JSONGuardConfig,
    LLMConfig,
    ModeConfig,
    ModeControllerConfig,
    ModelConfig,
    Spec,
    deep_merge,
    kind,
)
from fragrance_ai.constants import LOOPBACK_HOST
from fragrance_ai.yaml_positions import KeyPath, format_path, load_yaml_with_positions

__all__ = [
    "BACKENDS",
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
    "build_config",
    "deep_merge",
    "default_config_path",
    "find_config_path",
    "get_config",
    "load_config",
    "load_config_text",
]

ENV_VAR: Final = "FRAGRANCE_AI_CONFIG"


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
    return build_config(data, lines, source, issues)


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
            self.error((*path, key), f"expected a mapping, found {kind(value)}")
            return {}
        return value

    def unknown(self, data: Mapping[str, Any], path: KeyPath, allowed: Iterator[str] | tuple[str, ...]) -> None:
        allowed = tuple(allowed)
        for key in data:
            if key not in allowed:
                self.error((*path, str(key)), f"unknown key (allowed: {', '.join(allowed)})")

    def fields(self, data: Mapping[str, Any], path: KeyPath, spec: Mapping[str, Spec], base: Any) -> dict[str, Any]:
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


def build_config(
    data: Mapping[str, Any],
    lines: Mapping[KeyPath, int],
    source: str,
    issues: list[ConfigIssue] | None = None,
) -> Config:
    """Validate parsed config ``data`` (``lines`` maps key paths to line numbers); raise every issue at once."""
    c = _Checker(source, lines)
    c.issues.extend(issues or ())
    c.unknown(data, (), SECTIONS)
    models = _build_models(c, c.section(data, (), "llm"))
    modes = _build_modes(c, c.section(data, (), "modes"), models)
    mode_controller = ModeControllerConfig(
        **c.fields(c.section(data, (), "mode_controller"), ("mode_controller",), MODE_CONTROLLER_SPEC, ModeControllerConfig())
    )
    jg = JSONGuardConfig(**c.fields(c.section(data, (), "json_guard"), ("json_guard",), JSON_GUARD_SPEC, JSONGuardConfig()))
    circuit_breaker = _build_breakers(c, c.section(data, (), "circuit_breaker"), models)
    cache = CacheConfig(**c.fields(c.section(data, (), "cache"), ("cache",), CACHE_SPEC, CacheConfig()))
    health = HealthCheckConfig(
        **c.fields(c.section(data, (), "health_check"), ("health_check",), HEALTH_SPEC, HealthCheckConfig())
    )
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


def _build_models(c: _Checker, llm: Mapping[str, Any]) -> dict[str, ModelConfig]:
    """``llm.models``: the shipped three when absent."""
    c.unknown(llm, ("llm",), ("models",))
    raw_models = llm.get("models")
    if raw_models is None:
        return {n: ModelConfig(n, model_id=mid) for n, mid in DEFAULT_MODELS.items()}
    if not isinstance(raw_models, dict) or not raw_models:
        c.error(("llm", "models"), f"expected a non-empty mapping of model name to settings, found {kind(raw_models)}")
        return {}
    models: dict[str, ModelConfig] = {}
    for name, spec in raw_models.items():
        model = _build_model(c, name, spec)
        if model is not None:
            models[name] = model
    return models


def _build_model(c: _Checker, name: object, spec: Any) -> ModelConfig | None:
    path: KeyPath = ("llm", "models", str(name))
    if not isinstance(name, str) or not MODEL_NAME.match(name):
        c.error(path, "a model name must be lower-case letters, digits, '_', '.', '-' (at most 63)")
        return None
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        c.error(path, f"expected a mapping, found {kind(spec)}")
        return None
    values = c.fields(spec, path, MODEL_SPEC, ModelConfig(name, model_id=name))
    if values["backend"] == "openai" and not values["base_url"]:
        c.error((*path, "base_url"), f"required when backend is openai (e.g. http://{LOOPBACK_HOST}:8000/v1)")
    elif values["base_url"] and not _http_url(values["base_url"]):
        c.error((*path, "base_url"), f"must be an http:// or https:// URL, found {values['base_url']!r}")
    return ModelConfig(name=name, **values)


def _build_modes(c: _Checker, modes_raw: Mapping[str, Any], models: Mapping[str, ModelConfig]) -> dict[str, ModeConfig]:
    """``modes``: every mode, each trying every configured model unless it lists its own."""
    c.unknown(modes_raw, ("modes",), MODES)
    names = tuple(models)
    modes: dict[str, ModeConfig] = {}
    for mode in MODES:
        path: KeyPath = ("modes", mode)
        spec = modes_raw.get(mode)
        if spec is None:
            modes[mode] = ModeConfig(mode, models=names)
            continue
        if not isinstance(spec, dict):
            c.error(path, f"expected a mapping, found {kind(spec)}")
            modes[mode] = ModeConfig(mode, models=names)
            continue
        values = c.fields({k: v for k, v in spec.items() if k != "models"}, path, MODE_SPEC, ModeConfig(mode, ()))
        mode_models = _mode_models(c, path, spec["models"], models) if "models" in spec else names
        modes[mode] = ModeConfig(mode, models=mode_models, **values)
    return modes


def _mode_models(c: _Checker, path: KeyPath, listed: Any, models: Mapping[str, ModelConfig]) -> tuple[str, ...]:
    """A mode's ``models`` list, each a configured model, none twice (every model when it is invalid)."""
    names = tuple(models)
    if not isinstance(listed, list) or not listed:
        c.error((*path, "models"), f"expected a non-empty list of model names, found {kind(listed)}")
        return names
    ok = True
    for i, m in enumerate(listed):
        if not isinstance(m, str) or m not in models:
            if models:
                c.error((*path, "models", i), f"unknown model {m!r} (configured: {', '.join(names)})")
            ok = False
        elif listed.index(m) != i:
            c.error((*path, "models", i), f"model {m!r} is listed twice")
            ok = False
    return tuple(listed) if ok else names


def _build_breakers(c: _Checker, cb_raw: Mapping[str, Any], models: Mapping[str, ModelConfig]) -> CircuitBreakerConfig:
    """``circuit_breaker``: the section's settings, then each model's overrides on top."""
    cb_values = c.fields(
        {k: v for k, v in cb_raw.items() if k != "models"},
        ("circuit_breaker",),
        BREAKER_SECTION_SPEC,
        BreakerSectionDefaults(),
    )
    defaults = BreakerSettings(**{k: cb_values[k] for k in BREAKER_SPEC})
    _check_window(c, ("circuit_breaker",), defaults)
    per_model: dict[str, BreakerSettings] = dict.fromkeys(models, defaults)
    overrides = cb_raw.get("models")
    if overrides is not None and not isinstance(overrides, dict):
        c.error(("circuit_breaker", "models"), f"expected a mapping of model name to overrides, found {kind(overrides)}")
    elif overrides is not None:
        for name, spec in overrides.items():
            settings = _breaker_override(c, name, spec, models, defaults)
            if settings is not None:
                per_model[name] = settings
    return CircuitBreakerConfig(
        enabled=cb_values["enabled"],
        auto_downshift=cb_values["auto_downshift"],
        defaults=defaults,
        models=MappingProxyType(per_model),
    )


def _breaker_override(
    c: _Checker, name: Any, spec: Any, models: Mapping[str, ModelConfig], defaults: BreakerSettings
) -> BreakerSettings | None:
    path: KeyPath = ("circuit_breaker", "models", str(name))
    if name not in models:
        if models:
            c.error(path, f"override for unknown model {name!r} (configured: {', '.join(models)})")
        return None
    if spec is None:
        return None
    if not isinstance(spec, dict):
        c.error(path, f"expected a mapping, found {kind(spec)}")
        return None
    settings = BreakerSettings(**c.fields(spec, path, BREAKER_SPEC, defaults))
    _check_window(c, path, settings)
    return settings


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
