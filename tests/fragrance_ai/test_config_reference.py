"""The reference config as the default of every key: the merge rule, provenance, warnings, and no drift."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from fragrance_ai import cli
from fragrance_ai.config_loader import (
    BreakerSettings,
    CacheConfig,
    CircuitBreakerConfig,
    Config,
    ConfigError,
    HealthCheckConfig,
    JSONGuardConfig,
    ModeControllerConfig,
    ModelConfig,
    config_warnings,
    default_config_path,
    load_config,
    load_config_text,
    load_config_with_sources,
)

TEAM_MODELS = """\
llm:
  models:
    a: {model_id: model-a}
    b: {model_id: model-b}
"""


def write(tmp_path: Path, text: str, name: str = "team.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def reference() -> Config:
    return load_config(default_config_path())


def without_source(config: Config) -> dict[str, Any]:
    data = config.to_dict()
    del data["source"]
    return data


# ------------------------------------------------------------------------------------ the merge rule


def test_a_two_line_file_is_the_reference_with_one_key_changed(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "json_guard:\n  max_retries: 4\n"))
    expected = without_source(reference())
    expected["json_guard"]["max_retries"] = 4
    assert without_source(config) == expected


def test_left_out_modes_and_breaker_overrides_keep_the_reference(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "circuit_breaker:\n  models:\n    mistral: {timeout: 7}\n"))
    assert config.circuit_breaker.for_model("qwen").failure_threshold == 0.4
    assert config.circuit_breaker.for_model("mistral").timeout == 7
    assert config.circuit_breaker.for_model("mistral").failure_threshold == 0.5
    assert [config.modes[m].models for m in ("creative", "balanced", "fast")] == [
        ("qwen", "mistral", "llama"),
        ("mistral", "llama", "qwen"),
        ("llama", "mistral"),
    ]
    assert config.modes["fast"].temperature == 0.3


def test_mappings_merge_key_by_key_lists_replace_and_null_keeps_the_reference(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "modes:\n  fast:\n    models: [qwen]\ncache:\njson_guard: {}\n"))
    assert config.modes["fast"].models == ("qwen",)  # the list replaces
    assert config.modes["fast"].max_tokens == 256  # the rest of the mode is the reference's
    assert config.cache == reference().cache
    assert config.json_guard == reference().json_guard


def test_own_models_replace_the_reference_models(tmp_path: Path) -> None:
    modes = "modes:\n  creative: {models: [a, b]}\n  balanced: {models: [b, a]}\n  fast: {models: [b]}\n"
    config = load_config(write(tmp_path, TEAM_MODELS + modes))
    assert config.model_names == ("a", "b")
    assert tuple(config.circuit_breaker.models) == ("a", "b")  # the reference's qwen/mistral/llama entries are dropped
    assert config.circuit_breaker.for_model("a") == reference().circuit_breaker.defaults
    assert config.modes["creative"].temperature == 0.9  # sampling still from the reference
    assert config.llm.models["a"].timeout == ModelConfig("a").timeout


def test_own_models_keep_overrides_of_the_reference_models_they_define(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "llm:\n  models:\n    qwen: {}\n    mistral: {}\n    llama: {}\n    extra: {}\n"))
    assert config.circuit_breaker.for_model("qwen").failure_threshold == 0.4
    assert config.modes == reference().modes  # every reference mode names defined models: no error


def test_own_models_without_modes_is_one_error(tmp_path: Path) -> None:
    path = write(tmp_path, TEAM_MODELS)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(i) for i in info.value.issues] == [
        f"{path}: modes: the reference modes use qwen, mistral, llama; your llm.models defines a, b: "
        "write modes: for your models"
    ]


def test_own_models_with_some_modes_names_the_reference_ones(tmp_path: Path) -> None:
    path = write(tmp_path, TEAM_MODELS + "modes:\n  fast: {models: [b]}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [issue] = info.value.issues
    assert (issue.file, issue.line, issue.key) == (str(path), 5, "modes")
    assert issue.message == (
        "the reference modes creative, balanced use qwen, mistral, llama; your llm.models defines a, b: "
        "write models: for creative, balanced"
    )


def test_a_reference_value_is_not_blamed_on_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "cache:\n  max_size: 5\ncircuit_breaker:\n  window_size: 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [issue] = info.value.issues
    assert (issue.file, issue.line, issue.key) == (str(path), 3, "circuit_breaker.minimum_calls")
    assert issue.message.endswith("(the reference's value: this file does not set it)")
    # the same mistake written in the file is the file's
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "circuit_breaker:\n  window_size: 5\n  minimum_calls: 6\n", "own.yaml"))
    [issue] = info.value.issues
    assert (issue.line, issue.key) == (3, "circuit_breaker.minimum_calls")
    assert "reference" not in issue.message


def test_text_and_overrides_merge_onto_the_reference() -> None:
    config = load_config_text("cache: {max_size: 5}\n", "inline.yaml")
    assert config.circuit_breaker.for_model("qwen").failure_threshold == 0.4
    own = load_config_text(TEAM_MODELS + "modes:\n  creative: {models: [a]}\n  balanced: {models: [b]}\n  fast: {models: [b]}\n")
    changed = own.with_overrides({"llm": {"models": {"a": {"timeout": 2}}}})
    assert changed.model_names == ("a", "b")  # overrides deep-merge onto the effective config, as before
    assert changed.llm.models["a"].timeout == 2


# ---------------------------------------------------------------------------------------- provenance


def test_sources_name_the_file_line_or_the_reference(tmp_path: Path) -> None:
    path = write(tmp_path, "json_guard:\n  max_retries: 4\ncircuit_breaker:\n  timeout: 9\n")
    config, sources = load_config_with_sources(path)
    assert set(sources) == set(_leaf_keys(without_source(config)))
    assert (sources["json_guard.max_retries"].kind, sources["json_guard.max_retries"].line) == ("file", 2)
    assert str(sources["json_guard.max_retries"]) == "from team.yaml:2"
    assert str(sources["json_guard.jitter"]) == "reference"
    assert sources["circuit_breaker.models.qwen.failure_threshold"].file == str(default_config_path())
    # a per-model setting not overridden anywhere has the source of the section value it inherits
    assert str(sources["circuit_breaker.models.mistral.timeout"]) == "from team.yaml:4"
    assert str(sources["circuit_breaker.models.qwen.minimum_calls"]) == "reference"


def test_sources_of_own_models(tmp_path: Path) -> None:
    path = write(tmp_path, TEAM_MODELS + "modes:\n  creative: {models: [a]}\n  balanced: {models: [b]}\n  fast: {models: [b]}\n")
    _, sources = load_config_with_sources(path)
    assert str(sources["llm.models.a.model_id"]) == "from team.yaml:3"
    assert str(sources["llm.models.a.timeout"]) == "default"  # a ModelConfig default for the file's own model
    assert str(sources["modes.fast.models"]) == "from team.yaml:8"
    assert str(sources["modes.fast.temperature"]) == "reference"


def _leaf_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        out += _leaf_keys(value, path) if isinstance(value, dict) and value else [path]
    return out


def test_check_config_prints_sources_as_valid_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "json_guard:\n  max_retries: 4\n")
    assert cli.main(["check-config", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "  max_retries: 4  # from team.yaml:2\n" in captured.out
    assert "      failure_threshold: 0.4  # reference\n" in captured.out
    assert yaml.safe_load(captured.out) == load_config(path).to_dict()


# ------------------------------------------------------------------------------------------ warnings


def test_the_reference_has_no_warnings() -> None:
    assert config_warnings(reference()) == []


@pytest.mark.parametrize(
    ("team", "key", "needle"),
    [
        (
            "modes:\n  balanced: {models: [qwen, mistral, llama], temperature: 0.9, top_p: 0.95, max_tokens: 512}\n",
            "modes.balanced",
            "a downshift to balanced changes nothing",
        ),
        (
            "modes:\n  balanced: {models: [llama]}\n  fast: {models: [llama]}\n",
            "modes.fast.models",
            "balanced and fast both use only llama",
        ),
        ("circuit_breaker:\n  auto_downshift: false\n", "circuit_breaker.auto_downshift", "never moves"),
        ("cache:\n  ttl_seconds: 604800\n", "cache.ttl_seconds", "never expire"),
    ],
)
def test_each_warning_fires(team: str, key: str, needle: str) -> None:
    [warning] = config_warnings(load_config_text(team))
    assert warning.key == key
    assert needle in warning.message
    assert str(warning).startswith(f"{key}: ")


@pytest.mark.parametrize(
    "team",
    [
        # same models and order, different sampling: the downshift still changes something
        "modes:\n  balanced: {models: [qwen, mistral, llama], temperature: 0.2}\n",
        # a lone model followed by a different lone model, or by a longer list
        "modes:\n  balanced: {models: [llama]}\n  fast: {models: [mistral]}\n",
        "modes:\n  balanced: {models: [llama]}\n  fast: {models: [llama, mistral]}\n",
        # no breakers at all: auto_downshift has nothing to react to
        "circuit_breaker:\n  enabled: false\n  auto_downshift: false\n",
        # a long TTL on a disabled cache, or a TTL just under a day
        "cache:\n  enabled: false\n  ttl_seconds: 604800\n",
        "cache:\n  ttl_seconds: 86399\n",
    ],
)
def test_warnings_do_not_fire(team: str) -> None:
    assert config_warnings(load_config_text(team)) == []


def test_check_config_warns_on_stderr_and_strict_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "circuit_breaker:\n  auto_downshift: false\n")
    assert cli.main(["check-config", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: circuit_breaker.auto_downshift: false while breakers are enabled")
    assert "auto_downshift: false  # from team.yaml:2" in captured.out
    assert cli.main(["check-config", "--strict", str(path)]) == 1
    assert cli.main(["check-config", "--strict", str(default_config_path())]) == 0


def test_check_config_errors_still_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, TEAM_MODELS)
    assert cli.main(["check-config", "--strict", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{path}: modes: the reference modes use qwen, mistral, llama" in captured.err


# ------------------------------------------------------------------------------------------ no drift


def drift(config: Config) -> list[str]:
    """Every key whose dataclass default differs from ``config`` (the reference), as ``key: code X, file Y``."""
    pairs: list[tuple[str, object, object]] = [
        ("circuit_breaker.enabled", CircuitBreakerConfig().enabled, config.circuit_breaker.enabled),
        ("circuit_breaker.auto_downshift", CircuitBreakerConfig().auto_downshift, config.circuit_breaker.auto_downshift),
    ]
    sections: list[tuple[str, Any, Any]] = [
        ("json_guard", JSONGuardConfig(), config.json_guard),
        ("cache", CacheConfig(), config.cache),
        ("health_check", HealthCheckConfig(), config.health_check),
        ("mode_controller", ModeControllerConfig(), config.mode_controller),
        ("circuit_breaker", BreakerSettings(), config.circuit_breaker.defaults),
    ]
    for prefix, code, file in sections:
        pairs += [(f"{prefix}.{name}", getattr(code, name), getattr(file, name)) for name in code.__slots__]
    # a model a team file defines takes the ModelConfig defaults: they must be what every reference model says
    for model in config.llm.models.values():
        code_model = ModelConfig(model.name, model_id=model.model_id)
        pairs += [
            (f"llm.models.{model.name}.{name}", getattr(code_model, name), getattr(model, name))
            for name in code_model.__slots__
        ]
    return [f"{key}: code {a!r}, reference {b!r}" for key, a, b in pairs if a != b]


def test_dataclass_defaults_match_the_reference() -> None:
    assert drift(reference()) == [], "defaults in fragrance_ai/config_schema.py differ from the reference file"


def test_drift_names_each_differing_key() -> None:
    changed = load_config_text("cache: {max_size: 5}\njson_guard: {max_retries: 4}\n")
    assert drift(changed) == ["json_guard.max_retries: code 3, reference 4", "cache.max_size: code 1000, reference 5"]


def test_a_streaming_chunk_timeout_not_under_timeout_warns() -> None:
    [warning] = config_warnings(reference().with_overrides({"llm": {"models": {"qwen": {"stream": True, "chunk_timeout": 30}}}}))
    assert warning.key == "llm.models.qwen.chunk_timeout"
    assert "only noticed when the whole answer times out" in warning.message
    # chunk_timeout only matters when the model streams, and a shorter one is what it is for
    assert config_warnings(reference().with_overrides({"llm": {"models": {"qwen": {"chunk_timeout": 60}}}})) == []
    assert config_warnings(reference().with_overrides({"llm": {"models": {"qwen": {"stream": True, "chunk_timeout": 5}}}})) == []


def test_stream_settings_are_checked_like_every_key() -> None:
    with pytest.raises(ConfigError) as caught:
        reference().with_overrides({"llm": {"models": {"qwen": {"stream": "yes", "chunk_timeout": 0}}}})
    assert [issue.key for issue in caught.value.issues] == ["llm.models.qwen.stream", "llm.models.qwen.chunk_timeout"]


def test_check_config_prints_the_stream_settings_and_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "json_guard:\n  max_retries: 4\n")
    assert cli.main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "      stream: false  # reference\n" in out
    assert "      chunk_timeout: 10  # reference\n" in out
    warned = write(tmp_path, "llm:\n  models:\n    qwen: {backend: simulated, stream: true, chunk_timeout: 45}\n"
                   "    mistral: {}\n    llama: {}\n")
    assert cli.main(["check-config", "--strict", str(warned)]) == 1
    captured = capsys.readouterr()
    assert "      stream: true  # from team.yaml:3\n" in captured.out
    assert "warning: llm.models.qwen.chunk_timeout: 45s is not shorter than timeout (30s)" in captured.err
