"""Load and strictly validate ``llm_ensemble.yaml``: the one source of every guard's settings.

``get_config()`` finds the file (explicit path, ``$FRAGRANCE_AI_CONFIG``, ``./configs/llm_ensemble.yaml``,
the reference shipped in the package), parses it keeping line numbers, merges it onto the reference (the
rule: :mod:`fragrance_ai.config_merge`) and returns an immutable :class:`Config`. Every problem is
collected and raised at once as :class:`ConfigError`, each naming file, line and key path. What a file
may hold is defined in :mod:`fragrance_ai.config_schema` (re-exported here);
:func:`load_config_with_sources` says where each value came from; :func:`config_warnings` flags settings
that make a guard ineffective.

This module sits at the bottom of the package: it must not import any guard or the service.
"""
from __future__ import annotations

import copy
import functools
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from fragrance_ai.config_merge import ValueSource, leaves, merge_onto_reference, stale_reference_modes, value_sources
from fragrance_ai.config_rules import Spec, is_http_url, kind
from fragrance_ai.config_schema import (
    BACKENDS,
    BREAKER_SECTION_SPEC,
    BREAKER_SPEC,
    CACHE_SPEC,
    HEALTH_SPEC,
    JSON_GUARD_SPEC,
    MODE_CONTROLLER_SPEC,
    MODE_SPEC,
    MODEL_NAME,
    MODEL_SPEC,
    MODES,
    SECTIONS,
    SERVICE_SPEC,
    STATE_SPEC,
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
    ServiceConfig,
    StateConfig,
    deep_merge,
    memory_only_issues,
)
from fragrance_ai.config_warnings import ConfigWarning, config_warnings
from fragrance_ai.constants import LOOPBACK_HOST
from fragrance_ai.yaml_positions import KeyPath, decode_yaml, format_path, load_yaml_with_positions

__all__ = [
    "BACKENDS",
    "MODES",
    "BreakerSettings",
    "CacheConfig",
    "CircuitBreakerConfig",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "ConfigWarning",
    "HealthCheckConfig",
    "JSONGuardConfig",
    "LLMConfig",
    "ModeConfig",
    "ModeControllerConfig",
    "ModelConfig",
    "ServiceConfig",
    "ValueSource",
    "build_config",
    "config_warnings",
    "deep_merge",
    "default_config_path",
    "find_config_path",
    "get_config",
    "load_config",
    "load_config_text",
    "load_config_with_sources",
]

ENV_VAR: Final = "FRAGRANCE_AI_CONFIG"


# ------------------------------------------------------------------------------- finding and loading


def default_config_path() -> Path:
    """The reference configuration shipped inside the package: the default of every key."""
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
    """Load one file merged onto the reference; raises :class:`ConfigError` naming file, line and key of every problem."""
    return load_config_with_sources(path)[0]


def load_config_with_sources(path: str | os.PathLike[str]) -> tuple[Config, dict[str, ValueSource]]:
    """Like :func:`load_config`, plus where each effective setting came from.

    The keys are the dotted paths of :meth:`Config.to_dict` leaves (``circuit_breaker.models.qwen.timeout``,
    ``modes.fast.models``); a per-model breaker setting a file does not override has the source of the
    section's value it inherits.
    """
    source = str(path)
    try:
        text, problem = decode_yaml(Path(path).read_bytes())
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(source, None, "", "file not found")]) from None
    except OSError as exc:
        raise ConfigError([ConfigIssue(source, None, "", f"cannot read: {exc}")]) from None
    if problem is not None:
        raise ConfigError([ConfigIssue(source, problem.line, "", problem.message)])
    return _load_text(text, source)


def load_config_text(text: str, source: str = "<string>") -> Config:
    """Validate config ``text`` merged onto the reference; ``source`` names it in errors."""
    return _load_text(text, source)[0]


def _load_text(text: str, source: str) -> tuple[Config, dict[str, ValueSource]]:
    data, lines, issues = _parse_yaml(text, source)
    return _build(data, lines, source, issues)


def _parse_yaml(
    text: str, source: str
) -> tuple[dict[str, Any], dict[KeyPath, int], list[ConfigIssue]]:
    """Parse YAML safely, keeping the line of every key; duplicate keys are issues, not overwrites."""
    data, positions, problems = load_yaml_with_positions(text)
    issues = [ConfigIssue(source, p.line, format_path(p.path), p.message) for p in problems]
    if data is None and issues:
        raise ConfigError(issues)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(source, 1, "", "the top level must be a mapping of sections")])
    return data, {path: pos.line for path, pos in positions.items()}, issues


# ---------------------------------------------------------------------------------- the reference


@dataclass(frozen=True, slots=True)
class _Reference:
    source: str
    data: Mapping[str, Any]
    lines: Mapping[KeyPath, int]


@functools.cache
def _reference() -> _Reference:
    """The packaged reference, parsed once and checked on its own (its errors name the reference file)."""
    source = str(default_config_path())
    try:
        text = default_config_path().read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(source, None, "", f"cannot read the reference config: {exc}")]) from None
    data, lines, issues = _parse_yaml(text, source)
    origin = dict.fromkeys(leaves(data), True)
    _validate(data, lines, origin, source, issues)
    return _Reference(source, MappingProxyType(data), MappingProxyType(lines))


def _reference_modes_issue(
    merged: dict[str, Any], data: Mapping[str, Any], origin: Mapping[KeyPath, bool], c: _Checker
) -> None:
    """One error when the file's own models leave reference modes naming models it does not define."""
    found = stale_reference_modes(merged, data, origin)
    if found is None:
        return
    message, stale = found
    c.issues.append(ConfigIssue(c.source, c.lines.get(("modes",)), "modes", message))
    modes = merged["modes"]
    for mode in stale:  # already reported: no second error per model name
        del modes[mode]["models"]


def _sources(
    config: Config, origin: Mapping[KeyPath, bool], lines: Mapping[KeyPath, int], source: str
) -> dict[str, ValueSource]:
    """The source of every leaf of ``config.to_dict()`` (but ``source``)."""
    ref = _reference()
    data = config.to_dict()
    del data["source"]
    return value_sources(data, origin, lines, source, ref.source, ref.lines)


# ------------------------------------------------------------------------------------- validation


class _Checker:
    """Collects issues while reading typed values out of the merged data."""

    def __init__(self, source: str, lines: Mapping[KeyPath, int], origin: Mapping[KeyPath, bool]) -> None:
        self.source = source
        self.lines = lines
        self.origin = origin
        self.issues: list[ConfigIssue] = []

    def line(self, path: KeyPath) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def error(self, path: KeyPath, message: str) -> None:
        if self._from_reference(path):
            message += " (the reference's value: this file does not set it)"
        self.issues.append(ConfigIssue(self.source, self.line(path), format_path(path), message))

    def _from_reference(self, path: KeyPath) -> bool:
        """Whether the value at ``path`` came wholly from the reference (never blame the file for it)."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.origin:
                return not self.origin[path[:end]]
        under = [team for leaf, team in self.origin.items() if leaf[: len(path)] == path]
        return bool(under) and not any(under)

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

    def fields(
        self, data: Mapping[str, Any], path: KeyPath, spec: Mapping[str, Spec], defaults: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Read every field of ``spec`` from ``data``, falling back to ``defaults`` (None when it has none)."""
        self.unknown(data, path, tuple(spec))
        out: dict[str, Any] = {}
        for name, rule in spec.items():
            default = defaults.get(name)
            if name not in data:
                if name not in defaults:  # merged data has every reference key: only a broken reference
                    self.error((*path, name), "missing")
                out[name] = default
                continue
            value, problem = rule(data[name])
            if problem is not None:
                self.error((*path, name), problem)
                out[name] = default
            else:
                out[name] = value
        return out


def _defaults(obj: Any) -> dict[str, Any]:
    """A settings dataclass's fields as a mapping (the fallback for a key the merged data lacks)."""
    return {name: getattr(obj, name) for name in obj.__slots__}


#: fallbacks only matter for a value already reported as invalid: merged data has every reference key
_BREAKER_SECTION_DEFAULTS: Final = {
    **_defaults(BreakerSettings()),
    "enabled": CircuitBreakerConfig().enabled,
    **{k: getattr(CircuitBreakerConfig(), k) for k in ("auto_downshift", "panic_enabled", "panic_interval")},
}


def build_config(
    data: Mapping[str, Any],
    lines: Mapping[KeyPath, int],
    source: str,
    issues: list[ConfigIssue] | None = None,
) -> Config:
    """Validate ``data`` merged onto the reference (``lines`` maps its key paths to line numbers); raise every issue at once."""
    return _build(data, lines, source, issues)[0]


def _build(
    data: Mapping[str, Any],
    lines: Mapping[KeyPath, int],
    source: str,
    issues: list[ConfigIssue] | None = None,
) -> tuple[Config, dict[str, ValueSource]]:
    merged, origin = merge_onto_reference(data, _reference().data)
    config = _validate(merged, lines, origin, source, issues, own=data)
    return config, _sources(config, origin, lines, source)


def _validate(
    data: dict[str, Any],
    lines: Mapping[KeyPath, int],
    origin: Mapping[KeyPath, bool],
    source: str,
    issues: list[ConfigIssue] | None = None,
    own: Mapping[str, Any] | None = None,
) -> Config:
    """Check merged ``data`` (``own``: the file's data, before the merge); raise every issue at once."""
    c = _Checker(source, lines, origin)
    c.issues.extend(issues or ())
    _reference_modes_issue(data, data if own is None else own, origin, c)
    c.unknown(data, (), SECTIONS)
    models = _build_models(c, c.section(data, (), "llm"))
    modes = _build_modes(c, c.section(data, (), "modes"), models)
    mode_controller = ModeControllerConfig(
        **c.fields(c.section(data, (), "mode_controller"), ("mode_controller",), MODE_CONTROLLER_SPEC,
                   _defaults(ModeControllerConfig()))
    )
    jg = JSONGuardConfig(
        **c.fields(c.section(data, (), "json_guard"), ("json_guard",), JSON_GUARD_SPEC, _defaults(JSONGuardConfig()))
    )
    circuit_breaker = _build_breakers(c, c.section(data, (), "circuit_breaker"), models)
    cache = CacheConfig(**c.fields(c.section(data, (), "cache"), ("cache",), CACHE_SPEC, _defaults(CacheConfig())))
    health = HealthCheckConfig(
        **c.fields(c.section(data, (), "health_check"), ("health_check",), HEALTH_SPEC, _defaults(HealthCheckConfig()))
    )
    service = ServiceConfig(**c.fields(c.section(data, (), "service"), ("service",), SERVICE_SPEC, _defaults(ServiceConfig())))
    if 0 < health.probe_interval < 0.05:
        c.error(("health_check", "probe_interval"), f"must be 0 (off) or at least 0.05 seconds, found {health.probe_interval!r}")
    state = StateConfig(**c.fields(c.section(data, (), "state"), ("state",), STATE_SPEC, _defaults(StateConfig())))
    if not state.url.startswith(("redis://", "rediss://", "unix://")):
        c.error(("state", "url"), f"must be a redis://, rediss:// or unix:// URL, found {state.url!r}")
    for path, message in memory_only_issues(circuit_breaker) if state.backend == "redis" else ():
        c.error(path, message)

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
        service=service,
        state=state,
        raw=MappingProxyType(copy.deepcopy(data)),
    )


def _build_models(c: _Checker, llm: Mapping[str, Any]) -> dict[str, ModelConfig]:
    """``llm.models``: every model, a setting it leaves out taking the :class:`ModelConfig` default."""
    c.unknown(llm, ("llm",), ("models",))
    raw_models = llm.get("models")
    if raw_models is None:
        return {}  # only when ``llm`` itself was invalid (reported): the reference always has models
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
    values = c.fields(spec, path, MODEL_SPEC, _defaults(ModelConfig(name, model_id=name)))
    if values["backend"] == "openai" and not values["base_url"]:
        c.error((*path, "base_url"), f"required when backend is openai (e.g. http://{LOOPBACK_HOST}:8000/v1)")
    elif values["base_url"] and not is_http_url(values["base_url"]):
        c.error((*path, "base_url"), f"must be an http:// or https:// URL, found {values['base_url']!r}")
    return ModelConfig(name=name, **values)


def _build_modes(c: _Checker, modes_raw: Mapping[str, Any], models: Mapping[str, ModelConfig]) -> dict[str, ModeConfig]:
    """``modes``: every mode (merged data has each one; a missing part follows an error already reported)."""
    c.unknown(modes_raw, ("modes",), MODES)
    names = tuple(models)
    modes: dict[str, ModeConfig] = {}
    for mode in MODES:
        path: KeyPath = ("modes", mode)
        spec = modes_raw.get(mode)
        if not isinstance(spec, dict):
            if modes_raw:  # else the section itself was reported
                c.error(path, f"expected a mapping, found {kind(spec)}")
            continue
        values = c.fields({k: v for k, v in spec.items() if k != "models"}, path, MODE_SPEC, {})
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
        _BREAKER_SECTION_DEFAULTS,
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
        panic_enabled=cb_values["panic_enabled"],
        panic_interval=cb_values["panic_interval"],
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
    settings = BreakerSettings(**c.fields(spec, path, BREAKER_SPEC, _defaults(defaults)))
    if {"window_size", "minimum_calls", "timeout", "max_timeout"} & set(spec):  # else the section's check covers it
        _check_window(c, path, settings)
    return settings


def _check_window(c: _Checker, path: KeyPath, s: BreakerSettings) -> None:
    if s.minimum_calls > s.window_size:
        c.error(
            (*path, "minimum_calls"),
            f"must be <= window_size ({s.window_size}), found {s.minimum_calls}: the rate could never be judged",
        )
    if s.max_timeout < s.timeout:
        c.error((*path, "max_timeout"), f"must be >= timeout ({s.timeout:g}), found {s.max_timeout:g}: it caps the open period")
