"""The programs the harness drives but does not ship (toxiproxy-server, promtool): where they are, how to get them.

``fragrance-ai install-tools`` runs the install scripts shipped beside this module into a per-user
directory (``$FRAGRANCE_AI_TOOLS_DIR``, else ``$XDG_CACHE_HOME/fragrance-ai/bin``, else
``~/.cache/fragrance-ai/bin``), which :func:`find_tool` searches after a project's ``.tools/bin`` and
before ``PATH``. Every "not found" message in the harness names :data:`INSTALL_COMMAND`.

What this module must not do: install anything on import or system-wide (the scripts write only into
the directory they are given), or import anything else from pytest_guards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final, TextIO

__all__ = ["INSTALL_COMMAND", "TOOLS", "find_tool", "install_command", "install_tools", "user_tools_dir"]

#: each tool, and the script that installs it
TOOLS: Final = {
    "toxiproxy-server": "install_toxiproxy.sh",
    "promtool": "install_promtool.sh",
    "redis-server": "install_redis.sh",
}
INSTALL_COMMAND: Final = "fragrance-ai install-tools"
_SCRIPTS: Final = Path(__file__).resolve().parent
_INSTALL_TIMEOUT_S: Final = 900.0


def install_command(tool: str) -> str:
    """The command that installs ``tool``, as a skip message should print it."""
    return f"{INSTALL_COMMAND} {tool}"


def user_tools_dir(environ: dict[str, str] | None = None) -> Path:
    """Where ``install-tools`` puts programs by default, and where the harness looks for them."""
    env = os.environ if environ is None else environ
    if env.get("FRAGRANCE_AI_TOOLS_DIR"):
        return Path(env["FRAGRANCE_AI_TOOLS_DIR"])
    cache = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return cache / "fragrance-ai" / "bin"


def find_tool(name: str, roots: Iterable[Path] = (), *, path: str | None = None) -> Path | None:
    """``<root>/.tools/bin/<name>`` for the first root that has it, else the user tools dir, else ``PATH``."""
    for directory in [*(Path(root) / ".tools" / "bin" for root in roots), user_tools_dir()]:
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name, path=path)
    return Path(found) if found else None


def install_tools(names: Sequence[str], dest: Path, out: TextIO, err: TextIO) -> int:
    """Run each tool's install script into ``dest``; 0 when all are there, else 1 (each failure said on ``err``)."""
    unknown = [n for n in names if n not in TOOLS]
    if unknown:
        print(f"install-tools: unknown tool {', '.join(unknown)}; known: {', '.join(TOOLS)}", file=err)
        return 2
    bash = shutil.which("bash")
    if bash is None:
        print("install-tools: the install scripts need bash, which is not on PATH", file=err)
        return 1
    dest.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names or list(TOOLS):
        script = _SCRIPTS / TOOLS[name]
        env = {**os.environ, "TOOLS_BIN": str(dest.resolve())}
        try:
            # the script's own output goes to the user's terminal: it says what it found or installed
            done = subprocess.run([bash, str(script)], env=env, check=False, timeout=_INSTALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"install-tools: {name}: gave up after {_INSTALL_TIMEOUT_S:.0f} s", file=err)
            failed.append(name)
            continue
        if done.returncode != 0:
            failed.append(name)
    if failed:
        print(f"install-tools: not installed: {', '.join(failed)} (see above)", file=err)
        return 1
    print(f"install-tools: {', '.join(names or list(TOOLS))} in {dest}", file=out)
    return 0
