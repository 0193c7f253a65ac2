#!/usr/bin/env python3
"""Make the README's screenshot (docs/html-report.png) from a real ``fragrance-ai verify --html`` run.

The reference config with the in-process checklist and one team scenario that is wrong on purpose (it
expects qwen's breaker to stay closed), so the page shows a failure, expanded, above the passing
scenarios. Needs Debian's chromium (``apt-get install -y chromium``) and the ``playwright`` package.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "html-report.png"

WRONG = """\
id: team-qwen-breaker-stays-closed
title: "a team scenario that is wrong: qwen answering HTTP 500 for minimum_calls briefs keeps its breaker closed"
checklist: circuit_breaker
given:
  mode: creative
  llm:
    qwen: {http_error: 500}
steps:
  - repeat:
      times: "${config:circuit_breaker.minimum_calls}"
      steps:
        - brief: {prompt: "a citrus scent", distinct: true}
  - advance: 30
  - expect:
      breaker: {qwen: closed}
      mode: creative
"""


def main() -> int:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is not installed: apt-get install -y chromium", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        team = Path(tmp) / "team"
        team.mkdir()
        (team / "wrong.scenario.yaml").write_text(WRONG, encoding="utf-8")
        html = Path(tmp) / "report.html"
        subprocess.run(
            [sys.executable, "-m", "fragrance_ai.cli", "verify", "--scenarios", str(team), "--html", str(html),
             "--", "-m", "not toxiproxy"],
            cwd=ROOT, check=False, capture_output=True,
        )
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium)
            page = browser.new_page(viewport={"width": 1100, "height": 1000}, device_scale_factor=1)
            page.goto(html.as_uri())
            page.screenshot(path=str(OUT), full_page=False)
            browser.close()
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
