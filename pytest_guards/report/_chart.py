"""One scenario's timeline as an inline SVG chart: breaker bands per model, the mode as a step line, briefs as marks.

One column per recorded point (the state after each step), so steps at the same virtual second stay
apart; the axis labels give the time. Colours come from the page's CSS classes (dark and light themes).

What this module must not do: put anything from a scenario or a service into the SVG unescaped, or
draw a mark per point where a run of equal points is one shape (the whole suite's page stays < 1 MB).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from html import escape
from typing import Any, Final

__all__ = ["PLOT_LEFT", "PLOT_WIDTH", "WIDTH", "column_x", "render_chart"]

#: the chart's width in SVG user units (its ``viewBox``); the plot starts after the row labels
WIDTH: Final = 760.0
PLOT_LEFT: Final = 76.0
PLOT_WIDTH: Final = WIDTH - PLOT_LEFT - 6.0

_ROW: Final = 17.0  # one model: its breaker band and, under it, a health strip
_BAND: Final = 11.0
_MODES: Final = ("creative", "balanced", "fast")
_MODE_STEP: Final = 9.0
_SOURCES: Final = ("model", "cache", "fallback")
_MARK_STEP: Final = 7.0
_MIN_TICK_GAP: Final = 46.0


def column_x(index: int, count: int) -> float:
    """Where column ``index`` of ``count`` starts, in user units (the browser test compares against it)."""
    return PLOT_LEFT + index * PLOT_WIDTH / max(count, 1)


def _n(value: float) -> str:
    """A coordinate, short: ``12.5``, ``40``."""
    return f"{value:.1f}".removesuffix(".0")


def _runs(values: Sequence[Any]) -> Iterator[tuple[int, int, Any]]:
    """``(first, last, value)`` for each run of equal values."""
    start = 0
    for index in range(1, len(values) + 1):
        if index == len(values) or values[index] != values[start]:
            yield start, index - 1, values[start]
            start = index


def _seconds(t: float) -> str:
    if t >= 100 or t == int(t):
        return f"{t:.0f}s"
    return f"{t:.1f}s" if t >= 1 else f"{t * 1000:.0f}ms"


def _bands(points: Sequence[dict[str, Any]], models: Sequence[str], top: float, count: int) -> list[str]:
    out = []
    for row, model in enumerate(models):
        y = top + row * _ROW
        label = escape(model)
        out.append(f'<text class="lbl" x="{_n(PLOT_LEFT - 4)}" y="{_n(y + _BAND - 2)}">{label}</text>')
        states = [p.get("breakers", {}).get(model, "unknown") for p in points]
        for first, last, state in _runs(states):
            x, end = column_x(first, count), column_x(last + 1, count)
            span = f"t={_seconds(points[first]['t'])}–{_seconds(points[last]['t'])}"
            out.append(
                f'<rect class="b {escape(str(state))}" data-m="{label}" data-s="{escape(str(state))}" '
                f'data-i="{first}" data-j="{last}" x="{_n(x)}" y="{_n(y)}" width="{_n(end - x)}" height="{_n(_BAND)}">'
                f"<title>{label} {escape(str(state))}, steps {first}–{last} ({span})</title></rect>"
            )
        health = [p.get("health", {}).get(model) for p in points]
        for first, last, status in _runs(health):
            if status is None:
                continue
            x, end = column_x(first, count), column_x(last + 1, count)
            out.append(
                f'<rect class="h {escape(str(status))}" x="{_n(x)}" y="{_n(y + _BAND + 1)}" width="{_n(end - x)}" '
                f'height="3"><title>{label} {escape(str(status))}</title></rect>'
            )
    return out


def _mode_line(points: Sequence[dict[str, Any]], top: float, count: int) -> list[str]:
    out = [
        f'<text class="lbl sm" x="{_n(PLOT_LEFT - 4)}" y="{_n(top + i * _MODE_STEP + 3)}">{mode}</text>'
        for i, mode in enumerate(_MODES)
    ]
    levels = [_MODES.index(p["mode"]) if p.get("mode") in _MODES else None for p in points]
    path: list[str] = []
    for first, last, level in _runs(levels):
        if level is None:
            continue
        y = _n(top + level * _MODE_STEP)
        x0, x1 = _n(column_x(first, count)), _n(column_x(last + 1, count))
        path.append(f"{'L' if path else 'M'}{x0} {y}H{x1}")
    if path:
        out.append(f'<path class="mode" d="{"".join(path)}"><title>mode</title></path>')
    return out


def _brief_marks(points: Sequence[dict[str, Any]], top: float, count: int) -> list[str]:
    width = PLOT_WIDTH / max(count, 1)
    by_source: dict[str, list[str]] = {}
    for index, point in enumerate(points):
        brief = point.get("brief")
        if not brief:
            continue
        source = str(brief.get("source"))
        row = _SOURCES.index(source) if source in _SOURCES else len(_SOURCES) - 1
        x = column_x(index, count) + width / 2
        by_source.setdefault(source, []).append(f"M{_n(x)} {_n(top + row * _MARK_STEP)}h0")
    out = [
        f'<text class="lbl sm" x="{_n(PLOT_LEFT - 4)}" y="{_n(top + i * _MARK_STEP + 3)}">{source}</text>'
        for i, source in enumerate(_SOURCES)
    ]
    for source, marks in by_source.items():
        stroke = _n(max(2.0, min(6.0, width)))
        out.append(
            f'<path class="brief {escape(source)}" stroke-width="{stroke}" d="{"".join(marks)}">'
            f"<title>{len(marks)} brief(s) from {escape(source)}</title></path>"
        )
    return out


def _axis(points: Sequence[dict[str, Any]], top: float, bottom: float, count: int) -> list[str]:
    grid, labels = [], []
    last_x, last_t = -_MIN_TICK_GAP, None
    for index, point in enumerate(points):
        x = column_x(index, count)
        if point["t"] == last_t or x - last_x < _MIN_TICK_GAP:
            continue
        last_x, last_t = x, point["t"]
        grid.append(f"M{_n(x)} {_n(top)}V{_n(bottom)}")
        labels.append(f'<text class="tick" x="{_n(x)}" y="{_n(bottom + 10)}">{_seconds(point["t"])}</text>')
    return [f'<path class="grid" d="{"".join(grid)}"/>', *labels]


def render_chart(timeline: dict[str, Any]) -> str:
    """The SVG for ``Timeline.to_dict()`` output ('' when nothing was recorded)."""
    points: list[dict[str, Any]] = timeline.get("points") or []
    if not points:
        return ""
    models = list(timeline.get("models") or [])
    count = len(points)
    top = 4.0
    parts = _bands(points, models, top, count)
    mode_top = top + len(models) * _ROW + 6
    parts += _mode_line(points, mode_top, count)
    marks_top = mode_top + len(_MODES) * _MODE_STEP + 6
    has_briefs = any(p.get("brief") for p in points)
    if has_briefs:
        parts += _brief_marks(points, marks_top, count)
    bottom = marks_top + (len(_SOURCES) * _MARK_STEP if has_briefs else 0)
    parts = _axis(points, top - 2, bottom, count) + parts
    height = bottom + 14
    clock = "virtual" if timeline.get("clock") == "virtual" else "real"
    return (
        f'<svg class="chart" viewBox="0 0 {_n(WIDTH)} {_n(height)}" data-points="{count}" role="img" '
        f'aria-label="timeline, {count} steps on {clock} time">{"".join(parts)}</svg>'
    )
