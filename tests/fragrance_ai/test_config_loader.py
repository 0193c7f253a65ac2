from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from fragrance_ai import cli
from fragrance_ai.config_loader import (
    ConfigError,
    default_config_path,
    get_config,
    load_config,
    load_config_text,
)

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def issues_of(path: Path) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    for issue in info.value.issues:
        assert issue.file == str(path)
    return [(i.line, i.key, i.message) for i in info.value.issues]


def test_default_config_has_the_checklist_values() -> None:
    config = load_config(default_config_path())
    assert config.llm.json_guard_enabled is True
    assert config.llm.max_retries == 3
    assert config.llm.backoff_base == 1.0
    assert config.llm.jitter == 0.5
    assert config.llm.fallback_enabled is True
    assert config.json_guard.strict_schema is True
    cb = config.circuit_breaker
    assert (cb.enabled, cb.auto_downshift) == (True, True)
    assert (cb.failure_threshold, cb.success_threshold, cb.timeout, cb.half_open_requests) == (0.5, 5, 60, 3)
    assert cb.for_model("qwen").failure_threshold == 0.4
    assert cb.for_model("mistral").failure_threshold == 0.5
    assert cb.for_model("llama").failure_threshold == 0.5
    assert cb.for_model("qwen").timeout == 60  # overrides change only what they name
    assert (config.cache.max_size, config.cache.ttl_seconds, config.cache.cleanup_interval) == (1000, 600, 60)
    assert config.cache.eviction_policy == "lru"
    assert config.model_names == ("qwen", "mistral", "llama")
    assert config.modes["creative"].models == ("qwen", "mistral", "llama")
    assert config.mode_controller.initial_mode == "creative"
    assert config.health_check.timeout == 10


def test_repo_config_is_the_packaged_default() -> None:
    repo_copy = REPO / "configs" / "llm_ensemble.yaml"
    assert repo_copy.is_symlink()  # one source: ./configs/ lookups read the packaged reference
    assert repo_copy.resolve() == default_config_path()


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = write(tmp_path, "cache: {max_size: 11}\n", "explicit.yaml")
    env = write(tmp_path, "cache: {max_size: 22}\n", "env.yaml")
    (tmp_path / "configs").mkdir()
    write(tmp_path, "cache: {max_size: 33}\n", "configs/llm_ensemble.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FRAGRANCE_AI_CONFIG", str(env))
    assert get_config(explicit).cache.max_size == 11
    assert get_config().cache.max_size == 22
    monkeypatch.delenv("FRAGRANCE_AI_CONFIG")
    assert get_config().cache.max_size == 33
    (tmp_path / "configs" / "llm_ensemble.yaml").unlink()
    assert get_config().source == str(default_config_path())


def test_missing_keys_take_the_reference_values(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "cache: {ttl_seconds: 30}\n"))
    assert config.cache.ttl_seconds == 30
    assert config.cache.max_size == 1000
    assert config.model_names == ("qwen", "mistral", "llama")
    assert config.modes["fast"].models == ("llama", "mistral")  # the reference's, not every model


def test_unknown_key_names_path_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        cache:
          max_size: 10
          max_sise: 20
        """,
    )
    [(line, key, message)] = issues_of(path)
    assert (line, key) == (3, "cache.max_sise")
    assert "unknown key" in message
    assert "max_size" in message


def test_unknown_section(tmp_path: Path) -> None:
    [(line, key, _)] = issues_of(write(tmp_path, "json_gaurd: {enabled: true}\n"))
    assert (line, key) == (1, "json_gaurd")


@pytest.mark.parametrize(
    ("yaml_text", "key", "needle"),
    [
        ("json_guard:\n  max_retries: -1\n", "json_guard.max_retries", ">= 0"),
        ("json_guard:\n  max_retries: three\n", "json_guard.max_retries", "expected an integer"),
        ("json_guard:\n  enabled: 'yes'\n", "json_guard.enabled", "true or false"),
        ("json_guard:\n  max_retries: true\n", "json_guard.max_retries", "expected an integer"),
        ("circuit_breaker:\n  failure_threshold: 0\n", "circuit_breaker.failure_threshold", "(0, 1]"),
        ("circuit_breaker:\n  failure_threshold: 1.2\n", "circuit_breaker.failure_threshold", "(0, 1]"),
        (
            "circuit_breaker:\n  models:\n    qwen: {failure_threshold: 2}\n",
            "circuit_breaker.models.qwen.failure_threshold",
            "(0, 1]",
        ),
        ("cache:\n  ttl_seconds: 0\n", "cache.ttl_seconds", "> 0"),
        ("cache:\n  ttl_seconds: -5\n", "cache.ttl_seconds", "> 0"),
        ("cache:\n  max_size: 0\n", "cache.max_size", ">= 1"),
        ("cache:\n  eviction_policy: fifo\n", "cache.eviction_policy", "one of lru"),
        ("health_check:\n  timeout: .nan\n", "health_check.timeout", "finite"),
    ],
)
def test_wrong_type_or_range(tmp_path: Path, yaml_text: str, key: str, needle: str) -> None:
    issues = issues_of(write(tmp_path, yaml_text))
    assert [(k, needle in m) for _, k, m in issues] == [(key, True)], issues
    assert issues[0][0] == yaml_text.count("\n")  # the offending value's line


def test_mode_naming_an_unknown_model(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        modes:
          creative:
            models:
              - qwen
              - gpt4
        """,
    )
    [(line, key, message)] = issues_of(path)
    assert (line, key) == (5, "modes.creative.models[1]")
    assert "unknown model 'gpt4'" in message
    assert "qwen, mistral, llama" in message


def test_breaker_override_for_unknown_model(tmp_path: Path) -> None:
    [(line, key, message)] = issues_of(write(tmp_path, "circuit_breaker:\n  models:\n    gpt: {timeout: 3}\n"))
    assert (line, key) == (3, "circuit_breaker.models.gpt")
    assert "unknown model" in message


ONLY_QWEN_MODES = "modes:\n  creative: {models: [qwen]}\n  balanced: {models: [qwen]}\n  fast: {models: [qwen]}\n"


def test_openai_backend_needs_base_url(tmp_path: Path) -> None:
    [(_, key, _)] = issues_of(write(tmp_path, "llm:\n  models:\n    qwen: {backend: openai}\n" + ONLY_QWEN_MODES))
    assert key == "llm.models.qwen.base_url"


def test_minimum_calls_above_window(tmp_path: Path) -> None:
    [(_, key, message)] = issues_of(write(tmp_path, "circuit_breaker:\n  window_size: 5\n  minimum_calls: 6\n"))
    assert key == "circuit_breaker.minimum_calls"
    assert "window_size" in message


def test_max_timeout_below_timeout(tmp_path: Path) -> None:
    [(_, key, message)] = issues_of(write(tmp_path, "circuit_breaker:\n  timeout: 120\n  max_timeout: 90\n"))
    assert key == "circuit_breaker.max_timeout"
    assert message == "must be >= timeout (120), found 90: it caps the open period"


def test_breaker_settings_of_issue_14_default_and_choices(tmp_path: Path) -> None:
    cb = load_config(default_config_path()).circuit_breaker.for_model("qwen")
    assert (cb.half_open_policy, cb.window_size, cb.timeout_multiplier, cb.max_timeout) == ("failure_rate", 100, 1, 600)
    [(_, key, message)] = issues_of(write(tmp_path, "circuit_breaker:\n  half_open_policy: sometimes\n"))
    assert key == "circuit_breaker.half_open_policy"
    assert "failure_rate" in message
    assert "consecutive" in message


@pytest.mark.parametrize("where", ["circuit_breaker:\n  timeout_multiplier: 2\n",
                                   "circuit_breaker:\n  models:\n    qwen: {timeout_multiplier: 2}\n"])
def test_a_growing_open_period_is_memory_only(tmp_path: Path, where: str) -> None:
    text = "state:\n  backend: redis\n" + where
    [(_, key, message)] = issues_of(write(tmp_path, text))
    assert key.endswith("timeout_multiplier")
    assert message.startswith("a growing open period is memory-only")
    assert load_config(write(tmp_path, where, "memory.yaml")).circuit_breaker.for_model("qwen").timeout_multiplier == 2


def test_duplicate_keys_are_errors_not_overwrites(tmp_path: Path) -> None:
    [(line, key, message)] = issues_of(write(tmp_path, "cache:\n  max_size: 10\n  max_size: 11\n"))
    assert (line, key, message) == (3, "cache.max_size", "duplicate key")


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        json_guard:
          max_retries: -1
        cache:
          ttl_seconds: 0
          colour: red
        """,
    )
    assert [(line, key) for line, key, _ in issues_of(path)] == [
        (2, "json_guard.max_retries"),
        (4, "cache.ttl_seconds"),
        (5, "cache.colour"),
    ]


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    [(line, key, message)] = issues_of(write(tmp_path, "cache:\n  max_size: [1\njson_guard: {}\n"))
    assert line is not None
    assert key == ""
    assert message.startswith("invalid YAML")


def test_non_mapping_top_level_and_missing_file(tmp_path: Path) -> None:
    [(_, _, message)] = issues_of(write(tmp_path, "- a\n- b\n"))
    assert "mapping of sections" in message
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_error_text_names_file_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "cache:\n  ttl_seconds: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:2: cache.ttl_seconds: must be a finite number > 0, found 0"


def test_with_overrides_deep_merges_and_revalidates() -> None:
    base = load_config_text("cache:\n  max_size: 50\n", "base.yaml")
    merged = base.with_overrides({"cache": {"ttl_seconds": 5}, "circuit_breaker": {"models": {"qwen": {"timeout": 2}}}})
    assert (merged.cache.max_size, merged.cache.ttl_seconds) == (50, 5)
    assert merged.circuit_breaker.for_model("qwen").timeout == 2
    assert base.cache.ttl_seconds == 600  # the original is untouched
    with pytest.raises(ConfigError, match=re.escape("cache.ttl_seconds")):
        base.with_overrides({"cache": {"ttl_seconds": 0}})


def test_check_config_cli_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", str(default_config_path())]) == 0
    out = capsys.readouterr().out
    assert "failure_threshold: 0.4" in out
    assert "ttl_seconds: 600" in out


def test_check_config_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "json_guard:\n  max_retries: -1\ncache:\n  ttl_seconds: 0\n")
    assert cli.main(["check-config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "2 error(s)" in captured.err
    assert f"{path}:2: json_guard.max_retries" in captured.err
    assert f"{path}:4: cache.ttl_seconds" in captured.err
    assert "Traceback" not in captured.err


def test_base_url_must_be_http(tmp_path: Path) -> None:
    [(line, key, message)] = issues_of(
        write(tmp_path, "llm:\n  models:\n    qwen: {backend: openai, base_url: 'ftp://x/v1'}\n" + ONLY_QWEN_MODES)
    )
    assert (line, key) == (3, "llm.models.qwen.base_url")
    assert "http://" in message


def test_slow_call_settings_default_off_null_is_off_and_redis_refuses_them(tmp_path: Path) -> None:
    cb = load_config(default_config_path()).circuit_breaker.for_model("qwen")
    assert (cb.slow_call_duration, cb.slow_call_rate_threshold) == (0, 1)
    off = load_config(write(tmp_path, "circuit_breaker:\n  slow_call_duration: ~\n", "null.yaml"))
    assert off.circuit_breaker.for_model("qwen").slow_call_duration == 0
    [(_, key, message)] = issues_of(write(tmp_path, "circuit_breaker:\n  slow_call_rate_threshold: 1.5\n"))
    assert (key, message) == ("circuit_breaker.slow_call_rate_threshold", "must be in (0, 1], found 1.5")
    text = "state:\n  backend: redis\ncircuit_breaker:\n  models:\n    qwen: {slow_call_duration: 10}\n"
    [(_, key, message)] = issues_of(write(tmp_path, text, "redis.yaml"))
    assert key == "circuit_breaker.models.qwen.slow_call_duration"
    assert message.startswith("slow calls are judged by the memory backend only")


def test_max_retry_after_defaults_off_and_redis_refuses_it(tmp_path: Path) -> None:
    assert load_config(default_config_path()).circuit_breaker.for_model("qwen").max_retry_after == 0
    [(_, key, message)] = issues_of(write(tmp_path, "state:\n  backend: redis\ncircuit_breaker:\n  max_retry_after: 300\n"))
    assert key == "circuit_breaker.max_retry_after"
    assert message.startswith("a 429's Retry-After opens the memory backend's breaker only")
