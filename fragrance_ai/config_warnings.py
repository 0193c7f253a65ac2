"""Settings that are valid but make a guard ineffective: each warning names the key and says why in one line.

Pure rules over a loaded :class:`~fragrance_ai.config_schema.Config`; ``fragrance-ai check-config`` prints
them and ``--strict`` fails on them. Like the schema, this module sits at the bottom of the package: it
must not import any guard or the service, read files, or touch the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Final

from fragrance_ai.config_schema import Config, ModeConfig
from fragrance_ai.constants import MODES

__all__ = ["LONG_TTL_SECONDS", "ConfigWarning", "config_warnings"]

#: a cache TTL at or above this (one day) outlives any incident: expiry and cleanup never matter in practice
LONG_TTL_SECONDS: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class ConfigWarning:
    """One setting that defeats a guard: its key path and why, in one line."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def config_warnings(config: Config) -> list[ConfigWarning]:
    """Every warning for ``config``, in the order of the keys they name."""
    return [*_model_warnings(config), *_mode_warnings(config), *_breaker_warnings(config), *_cache_warnings(config)]


def _model_warnings(config: Config) -> list[ConfigWarning]:
    """A streaming model's chunk_timeout must be shorter than its timeout, or it never fires first."""
    return [
        ConfigWarning(
            f"llm.models.{name}.chunk_timeout",
            f"{m.chunk_timeout:g}s is not shorter than timeout ({m.timeout:g}s): a stall between stream chunks "
            "is only noticed when the whole answer times out",
        )
        for name, m in config.llm.models.items()
        if m.stream and m.chunk_timeout >= m.timeout
    ]


def _same(a: ModeConfig, b: ModeConfig) -> bool:
    return (a.models, a.temperature, a.top_p, a.max_tokens) == (b.models, b.temperature, b.top_p, b.max_tokens)


def _mode_warnings(config: Config) -> list[ConfigWarning]:
    """A downshift from one mode to the next must change something, and must leave a failing lone model."""
    out: list[ConfigWarning] = []
    for upper, lower in pairwise(MODES):
        a, b = config.modes[upper], config.modes[lower]
        if _same(a, b):
            out.append(ConfigWarning(
                f"modes.{lower}",
                f"same models in the same order and the same sampling as {upper}: a downshift to {lower} changes nothing",
            ))
        elif len(a.models) == 1 and b.models == a.models:
            out.append(ConfigWarning(
                f"modes.{lower}.models",
                f"{upper} and {lower} both use only {a.models[0]}: when its breaker opens, the downshift lands on it again",
            ))
    return out


def _breaker_warnings(config: Config) -> list[ConfigWarning]:
    cb = config.circuit_breaker
    if cb.enabled and not cb.auto_downshift:
        return [ConfigWarning(
            "circuit_breaker.auto_downshift",
            "false while breakers are enabled: an open breaker never moves the service to a steadier mode",
        )]
    return []


def _cache_warnings(config: Config) -> list[ConfigWarning]:
    cache = config.cache
    if cache.enabled and cache.ttl_seconds >= LONG_TTL_SECONDS:
        return [ConfigWarning(
            "cache.ttl_seconds",
            f"{cache.ttl_seconds:g} s (a day or more): entries never expire in practice, so the cleanup every "
            f"{cache.cleanup_interval:g} s removes nothing and a bad brief is served until evicted by size",
        )]
    return []
