"""``fragrance-ai install-tools``: where the harness's programs go, and the shipped install scripts run from the package."""

from __future__ import annotations

import io
import shutil
import stat
from pathlib import Path

import pytest

from pytest_guards.cli import main
from pytest_guards.tools import INSTALL_COMMAND, TOOLS, find_tool, install_command, install_tools, user_tools_dir


def test_the_user_tools_dir_follows_the_environment(tmp_path: Path) -> None:
    assert user_tools_dir({"FRAGRANCE_AI_TOOLS_DIR": str(tmp_path)}) == tmp_path
    assert user_tools_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "fragrance-ai" / "bin"
    assert user_tools_dir({}) == Path.home() / ".cache" / "fragrance-ai" / "bin"
    assert install_command("promtool") == f"{INSTALL_COMMAND} promtool"


def test_an_unknown_tool_is_a_usage_mistake(tmp_path: Path) -> None:
    err = io.StringIO()
    assert install_tools(["toxiproxy"], tmp_path, io.StringIO(), err) == 2
    assert "unknown tool toxiproxy; known: toxiproxy-server, promtool, redis-server" in err.getvalue()


def executable(path: Path, script: str = "exit 0\n") -> Path:
    path.write_text("#!/bin/sh\n" + script, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_shipped_script_runs_from_the_package_and_keeps_what_is_there(tmp_path: Path) -> None:
    # a toxiproxy-server put there by hand is reused, not rebuilt: the script's idempotent path, no Go needed
    executable(tmp_path / "toxiproxy-server")
    out = io.StringIO()
    assert install_tools(["toxiproxy-server"], tmp_path, out, io.StringIO()) == 0
    assert f"install-tools: toxiproxy-server in {tmp_path}" in out.getvalue()


def test_a_failing_script_is_reported_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a PATH with the shell tools the script uses but no promtool, apt-get or dpkg-deb: it must fail, saying so
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("bash", "mkdir", "rm", "tr", "grep", "paste"):
        found = shutil.which(tool)
        assert found is not None, tool
        (bare / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bare))
    err = io.StringIO()
    assert install_tools(["promtool"], tmp_path / "dest", io.StringIO(), err) == 1
    assert "install-tools: not installed: promtool (see above)" in err.getvalue()


def test_find_tool_looks_in_the_user_tools_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAGRANCE_AI_TOOLS_DIR", str(tmp_path))
    assert find_tool("promtool", path=str(tmp_path / "nothing")) is None
    installed = executable(tmp_path / "promtool")
    assert find_tool("promtool", path=str(tmp_path / "nothing")) == installed


def test_install_tools_is_a_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    executable(tmp_path / "toxiproxy-server")
    assert main(["install-tools", "toxiproxy-server", "--dir", str(tmp_path)]) == 0
    assert set(TOOLS) == {"toxiproxy-server", "promtool", "redis-server"}
    assert "install-tools: toxiproxy-server in" in capsys.readouterr().out
