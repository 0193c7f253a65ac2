"""The HTML report: one self-contained page from a :class:`~pytest_guards.scenarios.Verdict`.

The verdict and the four checklist items on top, then every scenario (title, outcome, file:line, the
failing expectations as the terminal prints them, its timeline chart); a failing scenario opens
expanded. Style and script are package data (``page.css``, ``page.js``), inlined and pinned by a
Content-Security-Policy hash, so the page opens from disk and fetches nothing.

What this module must not do: put text from a scenario file, a config or a service into the page
unescaped, or decide anything the verdict did not (it renders ``Verdict.to_json()``, the JSON report).
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any, Final

from pytest_guards.report._chart import render_chart
from pytest_guards.scenarios import CHECKLIST_ITEMS, ITEM_TITLES, Verdict

__all__ = ["render_html", "write_html"]

_OUTCOMES: Final = ("failed", "skipped", "passed")
_BADGE: Final = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}
_CARD_IDS: Final = 3  # failing ids named on an item's card (the reasons above name them all)


@cache
def _asset(name: str) -> str:
    return resources.files("pytest_guards.report").joinpath(name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _header(report: dict[str, Any]) -> str:
    safe = bool(report["safe"])
    where = f"target: {report['target']}" + (f" · config: {report['config']}" if report["config"] else "")
    reasons = "".join(f"<li>{escape(r)}</li>" for r in report["reasons"])
    cards = []
    for item, counts in report["items"].items():
        ok = counts["passed"] and not counts["failing"]
        detail = f"{counts['passed']} passed, {counts['failed']} failed"
        if counts["skipped"]:
            detail += f", {counts['skipped']} skipped"
        failing = ", ".join(counts["failing"][:_CARD_IDS]) or ("no scenario verified it" if not counts["passed"] else "")
        if len(counts["failing"]) > _CARD_IDS:
            failing += f" and {len(counts['failing']) - _CARD_IDS} more"
        cards.append(
            f'<li class="item {"ok" if ok else "bad"}" data-item="{escape(item)}">'
            f'<span class="mark">{"✓" if ok else "✗"}</span> <b>{escape(ITEM_TITLES.get(item, item))}</b>'
            f"<span>{detail}</span>" + (f'<span class="failing">{escape(failing)}</span>' if failing else "") + "</li>"
        )
    return (
        f'<header class="verdict {"safe" if safe else "unsafe"}">'
        f'<h1 id="verdict">{"✓" if safe else "✗"} {escape(report["verdict"])}</h1>'
        f'<p class="where">{escape(where)}</p>'
        + (f'<ul class="reasons">{reasons}</ul>' if reasons else "")
        + f'<ul class="items">{"".join(cards)}</ul></header>'
    )


def _filters(report: dict[str, Any]) -> str:
    scenarios = report["scenarios"]
    options = ['<option value="all">all items</option>']
    for item in CHECKLIST_ITEMS:
        if item in report["items"]:
            options.append(f'<option value="{item}">{escape(ITEM_TITLES[item])}</option>')
    if any(s["checklist"] is None for s in scenarios):
        options.append('<option value="-">invalid files</option>')
    boxes = []
    for outcome in _OUTCOMES:
        count = sum(s["outcome"] == outcome for s in scenarios)
        boxes.append(
            f'<label><input type="checkbox" name="outcome" value="{outcome}" checked> {outcome} ({count})</label>'
        )
    return (
        '<form id="filters" class="filters"><label>item <select name="checklist">' + "".join(options) + "</select></label>"
        + "".join(boxes)
        + f'<span class="shown"><span id="shown">{len(scenarios)}</span> of {len(scenarios)} shown</span>'
        '<button type="button" id="expand">expand all</button><button type="button" id="collapse">collapse all</button>'
        "</form>"
    )


def _summary_line(timeline: dict[str, Any]) -> str:
    """Calls, cache and health at the end of the run, in one line under the chart."""
    last = timeline["points"][-1]
    bits = []
    if last.get("calls"):
        bits.append("calls " + ", ".join(f"{escape(m)} {n}" for m, n in last["calls"].items()))
    cache = last.get("cache")
    if isinstance(cache, dict):
        rate = cache.get("hit_rate") or 0.0
        bits.append(f"cache size {escape(str(cache.get('size')))}, hit rate {rate:.0%}")
    if last.get("health"):
        bits.append("health " + ", ".join(f"{escape(m)} {escape(str(s))}" for m, s in last["health"].items()))
    clock = "virtual" if timeline.get("clock") == "virtual" else "real"
    bits.append(f"{len(timeline['points'])} steps, {last['t']:g} {clock} s")
    return '<p class="end">at the end: ' + " · ".join(bits) + "</p>"


def _scenario(result: dict[str, Any]) -> str:
    outcome = result["outcome"]
    item = result["checklist"] or "-"
    where = f"{result['file']}:{result['line']}"
    short = f"{Path(result['file']).parent.name}/{Path(result['file']).name}:{result['line']}"
    body = []
    if result["message"]:
        body.append(f'<pre class="{"failure" if outcome == "failed" else "message"}">{escape(result["message"])}</pre>')
    timeline = result.get("timeline")
    if timeline and timeline.get("points"):
        body.append(f'<figure class="timeline">{render_chart(timeline)}{_summary_line(timeline)}</figure>')
    elif outcome != "skipped":
        body.append('<p class="end">no timeline: the scenario did not get to run its steps</p>')
    seconds = result["virtual_seconds"]
    return (
        f'<details class="scenario {outcome}" data-item="{escape(item)}" data-outcome="{outcome}" '
        f'id="s-{escape(result["id"])}"{" open" if outcome == "failed" else ""}>'
        f'<summary><span class="badge {outcome}">{_BADGE[outcome]}</span> <b class="sid">{escape(result["id"])}</b> '
        f'<span class="title">{escape(result["title"])}</span> <span class="tag">{escape(item)}</span> '
        f'<span class="file" title="{escape(where)}">{escape(short)}</span> <span class="secs">{seconds:.1f} s</span>'
        f"</summary>{''.join(body)}</details>"
    )


def _order(result: dict[str, Any]) -> tuple[int, int, str]:
    item = result["checklist"]
    rank = CHECKLIST_ITEMS.index(item) if item in CHECKLIST_ITEMS else -1
    return _OUTCOMES.index(result["outcome"]), rank, result["id"]


def render_html(verdict: Verdict) -> str:
    """The whole page as one string."""
    report = verdict.to_json()
    css, js = _asset("page.css"), _asset("page.js")
    csp = f"default-src 'none'; style-src {_sha256(css)}; script-src {_sha256(js)}; img-src data:"
    scenarios = "".join(_scenario(r) for r in sorted(report["scenarios"], key=_order))
    legend = _asset("legend.html")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{escape(report['verdict'])} · guards checklist</title><style>{css}</style></head><body>"
        + _header(report)
        + _filters(report)
        + legend
        + f'<main id="scenarios">{scenarios}</main>'
        + f"<script>{js}</script></body></html>\n"
    )


def write_html(verdict: Verdict, path: Path) -> None:
    """Write :func:`render_html` to ``path`` (its folder is made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(verdict), encoding="utf-8")
