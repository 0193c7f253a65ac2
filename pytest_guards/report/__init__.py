"""The HTML report of a verification run: one self-contained page with each scenario's timeline chart.

``fragrance-ai verify --html FILE`` and pytest's ``--guards-html PATH`` write it (the plugin calls
:func:`write_html` at the end of the session); :func:`column_x` and the chart's geometry are public so
a browser test can check where a band is drawn. This package reads ``scenarios`` (the verdict and its
timelines) and nothing above it.
"""

from __future__ import annotations

from pytest_guards.report._chart import PLOT_LEFT, PLOT_WIDTH, WIDTH, column_x, render_chart
from pytest_guards.report._html import render_html, write_html

__all__ = ["PLOT_LEFT", "PLOT_WIDTH", "WIDTH", "column_x", "render_chart", "render_html", "write_html"]
