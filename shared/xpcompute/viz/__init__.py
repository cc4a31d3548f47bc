"""XP Viz: scorecards and Plotly figures from result records (and per-cell summaries) only.

The layer reads nothing but ``ResultRecord`` and ``CellSummary``, so whatever
shows a result (a notebook, the HTML report, the API page, the terminal) draws
the very numbers the API returns.

* figures: :func:`effects_forest`, :func:`quantile_effects`,
  :func:`dynamic_effects`, :func:`cate_by_segment`, :func:`cell_means`;
* the scorecard: :func:`scorecard_rows` (``ScorecardRow``), shared by
  :func:`render_report` / :func:`write_report` (one self-contained HTML file)
  and :func:`print_scorecard` (rich, in a terminal).
"""

from xpcompute.viz.figures import (
    cate_by_segment,
    cell_means,
    dynamic_effects,
    effects_forest,
    quantile_effects,
)
from xpcompute.viz.report import render_report, write_report
from xpcompute.viz.scorecard import ScorecardRow, decision_p, scorecard_rows, verdict_of
from xpcompute.viz.terminal import print_scorecard, scorecard_tables

__all__ = [
    "ScorecardRow",
    "cate_by_segment",
    "cell_means",
    "decision_p",
    "dynamic_effects",
    "effects_forest",
    "print_scorecard",
    "quantile_effects",
    "render_report",
    "scorecard_rows",
    "scorecard_tables",
    "verdict_of",
    "write_report",
]
