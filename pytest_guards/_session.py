"""The config under test for one pytest session, loaded once, when first needed.

An explicitly chosen config (``--guards-config`` or the ini setting) is loaded at start-up, so a bad
one stops the session with its errors. Otherwise it is found the usual way (``$FRAGRANCE_AI_CONFIG``,
``./configs/llm_ensemble.yaml``, the packaged default) only when a guards fixture or a scenario needs
it: the plugin is installed for every pytest run in the environment, and an unrelated project's
``configs/llm_ensemble.yaml`` must not break that project's tests.
"""

from __future__ import annotations

from pathlib import Path

from fragrance_ai.config_loader import Config, ConfigError, load_config

__all__ = ["SessionConfig"]


class SessionConfig:
    """``get()`` the validated config (``ConfigError`` if it is invalid; the same one every time)."""

    def __init__(self, path: Path, explicit: bool) -> None:
        self.path = path
        self.explicit = explicit
        self._config: Config | None = None
        self._error: ConfigError | None = None

    def get(self) -> Config:
        if self._config is None:
            if self._error is None:
                try:
                    self._config = load_config(self.path)
                except ConfigError as exc:
                    self._error = exc
            if self._error is not None:
                raise self._error
        assert self._config is not None
        return self._config

    def describe_error(self, exc: ConfigError) -> str:
        lines = "\n".join(f"  {issue}" for issue in exc.issues)
        return f"guards config {self.path} is invalid ({len(exc.issues)} error(s)):\n{lines}"
