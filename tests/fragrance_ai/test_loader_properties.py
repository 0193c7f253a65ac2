"""Property tests: the config and scenario loaders on mutated files give a valid object or errors with a line.

Hypothesis mutates the shipped reference config and a shipped scenario byte by byte (control
characters, NEL and other Unicode line breaks, bytes that are not UTF-8, YAML punctuation), with a
bounded number of derandomized examples. The documented outcome: a ``Config`` / ``Scenario``, or
``ConfigError`` / ``ScenarioFileError`` whose every problem names a line in the file; ``check-config``
exits 0, 1 or 2 and never raises. Nothing else may escape.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fragrance_ai.cli import main
from fragrance_ai.config_loader import ConfigError, ConfigIssue, default_config_path, load_config
from pytest_guards.scenarios import CHECKLIST_DIR, Problem, ScenarioFileError, load_scenario

CONFIG = default_config_path().read_bytes()
SCENARIO = (CHECKLIST_DIR / "cache" / "single_flight.scenario.yaml").read_bytes()
#: what a mutation inserts: the characters the loaders used to trip on, and YAML's own punctuation
NASTY = [b"\x00", b"\x01", b"\x1b", b"\x7f", b"\xc2\x85", b"\xe2\x80\xa8", b"\xe2\x80\xa9", b"\xff", b"\xc3", b"\r",
         b"\n", b"\t", b":", b"- ", b"[", b"{", b"&a ", b"*a", b"!!int ", b"!!binary ", b"2001-02-30", b"'", b'"', b"#",
         b"? ", b"<<: ", b"%YAML 1.1\n", b"---\n", b"\xef\xbb\xbf"]
PROPERTY = settings(max_examples=150, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        piece = draw(st.sampled_from(NASTY) | st.binary(min_size=1, max_size=3))
        op = draw(st.sampled_from(["insert", "replace", "delete"]))
        if op == "insert":
            data[at:at] = piece
        elif op == "replace":
            data[at : at + len(piece)] = piece
        else:
            del data[at : at + draw(st.integers(1, 40))]
    return bytes(data)


def _config_issues(path: Path) -> list[ConfigIssue]:
    """The issues of the file at ``path`` ([] when it is valid); any other exception escapes."""
    try:
        load_config(path)
    except ConfigError as exc:
        return exc.issues or [ConfigIssue(str(path), None, "", "a ConfigError without issues")]
    return []


def _scenario_problems(path: Path) -> list[Problem]:
    try:
        load_scenario(path, environ={})
    except ScenarioFileError as exc:
        return exc.problems or [Problem(str(path), None, None, "", "a ScenarioFileError without problems")]
    return []


def _lines(data: bytes) -> int:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1


@PROPERTY
@given(data=mutated(CONFIG))
def test_a_mutated_config_loads_or_every_error_names_a_line(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = Path(tmp_path_factory.mktemp("config")) / "team.yaml"
    path.write_bytes(data)
    for issue in _config_issues(path):
        assert issue.line is not None, str(issue)
        assert 1 <= issue.line <= _lines(data), str(issue)
        assert str(issue).startswith(f"{path}:{issue.line}: ")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check-config", str(path)])
    assert code in (0, 1, 2)
    assert "Traceback" not in err.getvalue()


@PROPERTY
@given(data=mutated(SCENARIO))
def test_a_mutated_scenario_loads_or_every_problem_names_a_line(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = Path(tmp_path_factory.mktemp("scenario")) / "mutated.scenario.yaml"
    path.write_bytes(data)
    for problem in _scenario_problems(path):
        assert problem.line is not None, str(problem)
        assert 1 <= problem.line <= _lines(data), str(problem)


def test_the_documented_nul_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's reproduction, as written: one error naming x.yaml:2, exit 2."""
    path = tmp_path / "x.yaml"
    path.write_bytes(b"cache:\n  max_size: 10\x00\n")
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"1 error(s) in {path}:\n")
    assert err.count(f"{path}:2: ") == 1


def test_unicode_line_breaks_do_not_shift_lines(tmp_path: Path) -> None:
    path = tmp_path / "team.yaml"
    path.write_bytes('health_check:\n  prompt: "a\u0085b\u2028c\u2029d"\n  timeout: -1\n'.encode())
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [i.line for i in caught.value.issues] == [3]  # PyYAML alone counts NEL, LS and PS: line 6
