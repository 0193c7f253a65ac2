"""From where users are: the built wheel, installed without extras in a fresh virtualenv, used outside the checkout.

Installing the package registers the pytest plugin for every pytest run in that environment, so the
first checks are that an unrelated project's tests and ``pytest --help`` behave exactly as before.
Then a team verifies the reference config and its own two-line config with ``fragrance-ai verify``,
with the tools it needs installed by the package's own ``install-tools``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.network  # pip fetches the dependencies from the package index


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, dict[str, str]]]:
    """(the venv's bin folder, a project folder outside the checkout, the environment a user's shell has)."""
    root = tmp_path_factory.mktemp("user")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "FRAGRANCE_AI_CONFIG", "PYTEST_ADDOPTS")}
    env["FRAGRANCE_AI_TOOLS_DIR"] = str(root / "tools")  # what install-tools fills; never the checkout's .tools
    dist = root / "dist"
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)], root, env)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(dist.glob("fragrance_ai-*.whl"))
    venv.create(root / "venv", with_pip=True)
    bin_dir = root / "venv" / "bin"
    installed = run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)], root, env, timeout=900)
    assert installed.returncode == 0, installed.stderr[-3000:]
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    project = root / "project"
    project.mkdir()
    yield bin_dir, project, env


def test_the_installed_plugin_leaves_an_unrelated_project_alone(user: tuple[Path, Path, dict[str, str]]) -> None:
    bin_dir, project, env = user
    (project / "test_unrelated.py").write_text("def test_sum() -> None:\n    assert sum([1, 2]) == 3\n", encoding="utf-8")
    helped = run([str(bin_dir / "pytest"), "--help"], project, env)
    assert helped.returncode == 0, helped.stdout[-2000:] + helped.stderr[-2000:]
    assert "--guards-config" in helped.stdout
    tested = run([str(bin_dir / "pytest"), "-q", "-p", "no:cacheprovider"], project, env)
    assert tested.returncode == 0, tested.stdout[-2000:] + tested.stderr[-2000:]
    assert "1 passed" in tested.stdout
    assert "guards" not in tested.stdout.lower(), "no verdict, no checklist in someone else's test run"
    light = run([str(bin_dir / "python"), "-c", "import sys, pytest_guards.plugin; print(sorted(m for m in ('toxiproxy', 'requests', 'uvicorn') if m in sys.modules))"], project, env)
    assert light.stdout.strip() == "[]", light.stdout + light.stderr


def test_install_tools_then_verify_the_reference_and_a_two_line_team_config(user: tuple[Path, Path, dict[str, str]]) -> None:
    bin_dir, project, env = user
    cli = str(bin_dir / "fragrance-ai")
    if shutil.which("go") is None:
        if env.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("CI=true: Go is needed to build toxiproxy-server (fragrance-ai install-tools)")
        pytest.skip("no Go on PATH: fragrance-ai install-tools cannot build toxiproxy-server here")
    tools = run([cli, "install-tools", "toxiproxy-server"], project, env, timeout=900)
    assert tools.returncode == 0, tools.stdout[-2000:] + tools.stderr[-2000:]
    assert (Path(env["FRAGRANCE_AI_TOOLS_DIR"]) / "toxiproxy-server").is_file()

    listed = run([cli, "scenarios", "list"], project, env)
    assert listed.returncode == 0, listed.stdout[-2000:]
    assert "site-packages" in listed.stdout and "/pytest_guards/checklist/" in listed.stdout

    reference = run([cli, "verify"], project, env)
    assert reference.returncode == 0, reference.stdout[-4000:] + reference.stderr[-2000:]
    assert "✓ SAFE TO PROMOTE TO PRODUCTION" in reference.stdout
    assert "  PASS  cb-net-reset-peer-opens-qwen-breaker" in reference.stdout, "the network scenarios ran"
    assert "SKIP" not in reference.stdout

    (project / "team.yaml").write_text("json_guard:\n  max_retries: 4\n", encoding="utf-8")
    team = run([cli, "verify", "--config", "team.yaml", "--report", "out.json", "--", "-m", "not toxiproxy"], project, env)
    assert team.returncode == 0, team.stdout[-4000:] + team.stderr[-2000:]
    assert "✓ SAFE TO PROMOTE TO PRODUCTION" in team.stdout
    assert (project / "out.json").is_file()
