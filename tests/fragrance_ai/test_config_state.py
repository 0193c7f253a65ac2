"""The ``state:`` section: memory by default, redis validated with file, line and key like every other section."""

from __future__ import annotations

import pytest

from fragrance_ai.config_loader import ConfigError, default_config_path, load_config, load_config_text
from fragrance_ai.config_state import StateConfig


def test_the_reference_keeps_state_in_memory_with_the_code_defaults() -> None:
    assert load_config(default_config_path()).state == StateConfig()
    assert StateConfig().backend == "memory"


def test_a_redis_backend_is_read_with_its_settings() -> None:
    config = load_config_text(
        "state:\n  backend: redis\n  url: redis://cache:6380/2\n  key_prefix: fleet-a\n  on_redis_error: raise\n"
    )
    assert (config.state.backend, config.state.url, config.state.key_prefix) == ("redis", "redis://cache:6380/2", "fleet-a")
    assert config.state.on_redis_error == "raise"
    assert config.to_dict()["state"]["backend"] == "redis"


def test_a_password_in_the_url_is_redacted_in_views_shown_outside() -> None:
    config = load_config_text("state:\n  backend: redis\n  url: redis://:s3cret@cache:6379/0\n")
    assert config.to_dict(redact=True)["state"]["url"] == "redis://***@cache:6379/0"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("state:\n  backend: etcd\n", "team.yaml:2: state.backend: must be one of memory, redis; found 'etcd'"),
        ("state:\n  url: http://cache:6379\n", "team.yaml:2: state.url: must be a redis://, rediss:// or unix:// URL"),
        ("state:\n  on_redis_error: ignore\n", "team.yaml:2: state.on_redis_error: must be one of local, raise"),
        ("state:\n  retry_interval: 0\n", "team.yaml:2: state.retry_interval: must be a finite number > 0"),
        ("state:\n  replicas: 2\n", "team.yaml:2: state.replicas: unknown key"),
    ],
)
def test_a_bad_state_setting_names_file_line_and_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "team.yaml")
    assert expected in str(info.value)
