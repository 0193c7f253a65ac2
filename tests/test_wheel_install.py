"""From where users are: the built wheel, installed without extras in a fresh virtualenv, used outside the checkout.

Installing the package registers the pytest plugin for every pytest run in that environment, so the
first checks are that an unrelated project's tests and ``pytest --help`` behave exactly as before.
Then a team verifies the reference config and its own two-line config with ``fragrance-ai verify``,
with the tools it needs installed by the package's own ``install-tools``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.network, pytest.mark.timeout(1200)]  # pip fetches the dependencies from the package index


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _clean_copy(dest: Path) -> Path:
    """The files git would commit (tracked, or new and not ignored), copied: what a release builds from."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, check=True
    )
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target, follow_symlinks=False)
    return dest


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """(the venv's bin folder, a project folder outside the checkout, the environment a user's shell has)."""
    root = tmp_path_factory.mktemp("user")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "FRAGRANCE_AI_CONFIG", "PYTEST_ADDOPTS")}
    env["FRAGRANCE_AI_TOOLS_DIR"] = str(root / "tools")  # what install-tools fills; never the checkout's .tools
    dist = root / "dist"
    source = _clean_copy(root / "source")  # setuptools' build/ folder in the checkout may hold stale modules
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)], root, env)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(dist.glob("fragrance_ai-*.whl"))
    venv.create(root / "venv", with_pip=True)
    bin_dir = root / "venv" / "bin"
    installed = run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)], root, env, timeout=900)
    assert installed.returncode == 0, installed.stderr[-3000:]
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    project = root / "project"
    project.mkdir()
    return bin_dir, project, env


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
    probe = "import sys, pytest_guards.plugin; print(sorted(m for m in ('toxiproxy', 'requests', 'uvicorn') if m in sys.modules))"
    light = run([str(bin_dir / "python"), "-c", probe], project, env)
    assert light.stdout.strip() == "[]", light.stdout + light.stderr


def walkthrough() -> str:
    """The README's team walkthrough: the bash block after its ``walkthrough`` marker."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- walkthrough: [^>]*-->\n```bash\n(.*?)```", readme, re.S)
    assert match, "README has no walkthrough block"
    return match.group(1)


def test_the_readme_walkthrough_from_install_to_a_verdict_on_a_team_config(user: tuple[Path, Path, dict[str, str]]) -> None:
    bin_dir, project, env = user
    if shutil.which("go") is None:
        if env.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("CI=true: Go is needed to build toxiproxy-server (fragrance-ai install-tools)")
        pytest.skip("no Go on PATH: fragrance-ai install-tools cannot build toxiproxy-server here")
    done = run(["bash", "-c", "set -euo pipefail\n" + walkthrough()], project, env, timeout=1200)
    out = done.stdout
    assert done.returncode == 0, out[-5000:] + done.stderr[-3000:]
    assert (Path(env["FRAGRANCE_AI_TOOLS_DIR"]) / "toxiproxy-server").is_file()
    assert out.count("✓ SAFE TO PROMOTE TO PRODUCTION") == 2, "the reference and the team config"
    assert "  PASS  cb-net-reset-peer-opens-qwen-breaker" in out, "the network scenarios ran"
    assert "SKIP" not in out
    shipped = run([str(bin_dir / "fragrance-ai"), "scenarios", "list", "--item", "cache"], project, env)
    assert "site-packages/pytest_guards/checklist/cache/" in shipped.stdout, "the shipped checklist, not a checkout's"
    assert "  PASS  team-qwen-timeouts-open-its-breaker" in out, "the team's scenario ran and counted"
    assert "max_retries: 4" in out
    assert "team.yaml:2" in out, "check-config names where the value came from"
    report = json.loads((project / "verdict.json").read_text(encoding="utf-8"))
    assert report["safe"] is True
    assert any(s["id"] == "team-qwen-timeouts-open-its-breaker" and s["outcome"] == "passed" for s in report["scenarios"])
