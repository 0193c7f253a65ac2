"""What the breaker manager reads from a config: the shapes of the settings, for typing only.

:class:`~fragrance_ai.llm.circuit_breaker.LLMCircuitBreakerManager` takes a real
:class:`~fragrance_ai.config_schema.Config` or anything with these attributes (tests pass plain
namespaces). Pure typing: this module must not import a guard or hold any logic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

__all__ = ["BreakerSettingsLike", "ConfigLike"]


class BreakerSettingsLike(Protocol):
    @property
    def failure_threshold(self) -> float: ...
    @property
    def success_threshold(self) -> int: ...
    @property
    def timeout(self) -> float: ...
    @property
    def half_open_requests(self) -> int: ...
    @property
    def window_size(self) -> int: ...
    @property
    def minimum_calls(self) -> int: ...
    @property
    def half_open_policy(self) -> str: ...
    @property
    def timeout_multiplier(self) -> float: ...
    @property
    def max_timeout(self) -> float: ...
    @property
    def slow_call_duration(self) -> float: ...
    @property
    def slow_call_rate_threshold(self) -> float: ...


class CircuitBreakerConfigLike(Protocol):
    @property
    def enabled(self) -> bool: ...
    @property
    def auto_downshift(self) -> bool: ...
    @property
    def models(self) -> Mapping[str, BreakerSettingsLike]: ...


class ModeControllerConfigLike(Protocol):
    @property
    def initial_mode(self) -> str: ...
    @property
    def upshift_quiet_period(self) -> float: ...


class ConfigLike(Protocol):
    @property
    def circuit_breaker(self) -> CircuitBreakerConfigLike: ...
    @property
    def mode_controller(self) -> ModeControllerConfigLike: ...
