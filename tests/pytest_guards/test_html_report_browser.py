"""The HTML report in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

``fragrance-ai verify --html`` on the reference config with one failing team scenario, and on a
weakened config: no console errors, the verdict and the failing expectations (as the terminal printed
them) are visible, and a breaker scenario's open band is drawn where its recorded timeline says the
breaker opened. Each run saves a full-page screenshot under the test's tmp dir and prints its path.
Without chromium the test skips naming the command; under ``CI=true`` it fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_guards.network import in_ci
from pytest_guards.report import WIDTH, column_x
from pytest_guards.scenarios import CHECKLIST_DIR, Step, load_scenario

REPO = Path(__file__).resolve().parents[2]
WEAK = REPO / "tests" / "pytest_guards" / "weak_configs"
BREAKER_SCENARIO = CHECKLIST_DIR / "circuit_breaker" / "qwen_opens_and_downshifts.scenario.yaml"
INSTALL = "apt-get install -y chromium (make tools does it)"

FAILING = textwrap.dedent("""\
    id: team-mode-stays-creative
    title: "a <b>team</b> scenario that is wrong on purpose: <script>alert('x')</script> & friends"
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
      - expect:
          mode: creative
          breaker: {qwen: closed}
    """)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if in_ci():
            pytest.fail(f"CI=true: the browser test must run, not skip; install chromium: {INSTALL}", pytrace=False)
        pytest.skip(f"chromium is not installed: {INSTALL}")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path)
        yield launched
        launched.close()


def verify(tmp: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]:
    html, report = tmp / "report.html", tmp / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "FRAGRANCE_AI_CONFIG"}
    result = subprocess.run(
        [sys.executable, "-m", "fragrance_ai.cli", "verify", "--item", "circuit_breaker", *args,
         "--report", str(report), "--html", str(html), "--", "-m", "not toxiproxy"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert html.is_file(), result.stdout[-3000:] + result.stderr[-3000:]
    return result, json.loads(report.read_text(encoding="utf-8")), html


def terminal_failures(stdout: str) -> dict[str, list[str]]:
    """Each failing scenario's lines as ``verify`` printed them under its FAIL line."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith("  FAIL  "):
            current = found.setdefault(line.split()[1], [])
        elif current is not None and line.startswith("        "):
            current.append(line[8:])
        else:
            current = None
    return found


def where_it_says_open(steps: tuple[Step, ...]) -> int | None:
    """The line of the first ``expect`` that says qwen's breaker is open."""
    for step in steps:
        if step.kind == "expect" and step.value.get("breaker", {}).get("qwen") == "open":
            return step.line
        line = where_it_says_open(step.steps)
        if line is not None:
            return line
    return None


def open_page(browser: Any, html: Path, shot: Path) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: errors.append(f"a dialog opened: {dialog.message}"))
    page.on("request", lambda request: None if request.url.startswith("file:") else errors.append(f"fetched {request.url}"))
    page.goto(html.as_uri())
    page.wait_for_load_state("load")
    return page, errors


def check_failures_visible(page: Any, report: dict[str, Any], stdout: str) -> list[str]:
    failing = [s["id"] for s in report["scenarios"] if s["outcome"] == "failed"]
    printed = terminal_failures(stdout)
    assert sorted(printed) == sorted(failing), stdout[-3000:]
    for sid in failing:
        details = page.locator(f"details[id='s-{sid}']")
        assert details.get_attribute("open") is not None, f"{sid} fails but its section is collapsed"
        shown = details.locator("pre.failure")
        assert shown.is_visible()
        text = shown.inner_text()
        for line in printed[sid]:
            assert line in text, f"{sid}: the terminal printed {line!r}; the page shows:\n{text}"
    return failing


def check_open_band(page: Any, report: dict[str, Any]) -> None:
    """qwen's open band starts at the column where the recording first has it open and covers the expect that says so."""
    scenario = load_scenario(BREAKER_SCENARIO)
    result = next(s for s in report["scenarios"] if s["id"] == scenario.id)
    assert result["outcome"] == "passed"
    points = result["timeline"]["points"]
    said = where_it_says_open(scenario.steps)
    at = next(i for i, p in enumerate(points) if p["step"] == "expect" and p["line"] == said)
    assert points[at]["breakers"]["qwen"] == "open", "the recording disagrees with the scenario's own expectation"
    opened = next(i for i, p in enumerate(points) if p["breakers"]["qwen"] == "open")
    assert opened <= at

    section = page.locator(f"details[id='s-{scenario.id}']")
    section.locator("summary").click()
    svg = section.locator("svg.chart")
    band = svg.locator(f"rect.b[data-m='qwen'][data-s='open'][data-i='{opened}']")
    assert band.count() == 1
    assert band.is_visible()
    assert int(band.get_attribute("data-i")) <= at <= int(band.get_attribute("data-j"))
    chart, box = svg.bounding_box(), band.bounding_box()
    scale = chart["width"] / WIDTH
    count = len(points)
    assert abs(box["x"] - (chart["x"] + column_x(opened, count) * scale)) < 1.0
    assert box["x"] <= chart["x"] + column_x(at, count) * scale
    assert box["x"] + box["width"] >= chart["x"] + column_x(at + 1, count) * scale - 1.0
    label = svg.locator("text.lbl", has_text="qwen").first.bounding_box()
    assert box["y"] <= label["y"] + label["height"] / 2 <= box["y"] + box["height"], "the band is not in qwen's row"


def test_a_run_with_one_failing_scenario_reads_right_in_chromium(browser: Any, tmp_path: Path) -> None:
    team = tmp_path / "team"
    team.mkdir()
    (team / "wrong.scenario.yaml").write_text(FAILING, encoding="utf-8")
    result, report, html = verify(tmp_path, "--scenarios", str(team))
    assert result.returncode == 1, result.stdout[-3000:]
    page, errors = open_page(browser, html, tmp_path / "report.png")

    assert page.locator("#verdict").is_visible()
    assert page.locator("#verdict").inner_text() == "✗ DO NOT PROMOTE"
    assert check_failures_visible(page, report, result.stdout) == ["team-mode-stays-creative"]
    title = page.locator("details[id='s-team-mode-stays-creative'] .title").inner_text()
    assert "<script>alert('x')</script> & friends" in title, "scenario text is shown as text, not run as markup"
    check_open_band(page, report)

    page.locator("select[name=checklist]").select_option("circuit_breaker")
    page.locator("input[name=outcome][value=passed]").uncheck()
    assert page.locator("#shown").inner_text() == "1"
    assert page.locator("details.scenario:visible").count() == 1
    page.locator("input[name=outcome][value=passed]").check()

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 0
    assert not errors, errors


@pytest.mark.parametrize("config", ["reference", "breaker_off.yaml"])
def test_reference_and_weakened_configs_give_pages_the_browser_accepts(browser: Any, tmp_path: Path, config: str) -> None:
    args = () if config == "reference" else ("--config", str(WEAK / config))
    result, report, html = verify(tmp_path, *args)
    assert result.returncode == (0 if config == "reference" else 1), result.stdout[-3000:]
    # the whole suite (~80 scenarios) must stay under 1 MB: this item's share, scaled to 100 scenarios
    assert html.stat().st_size / len(report["scenarios"]) * 100 < 1_000_000
    page, errors = open_page(browser, html, tmp_path / "report.png")
    word = "SAFE TO PROMOTE" if config == "reference" else "DO NOT PROMOTE"
    assert word in page.locator("#verdict").inner_text()
    failing = check_failures_visible(page, report, result.stdout)
    if config == "reference":
        assert not failing
        check_open_band(page, report)
    else:
        assert "cb-qwen-500s-open-breaker-and-downshift" in failing
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert not errors, errors
