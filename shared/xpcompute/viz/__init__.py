"""XP Viz: scorecards and Plotly figures from result records (and per-cell summaries) only.

The layer reads nothing but ``ResultRecord`` and ``CellSummary``, so whatever
shows a result (a notebook, the HTML report, the API page, the terminal) draws
the very numbers the API returns.

* figures: :func:`effects_forest`, :func:`quantile_effects`,
  :func:`dynamic_effects`, :func:`cate_by_segment`, :func:`cell_means`;
* the scorecard: :func:`scorecard_rows` (``ScorecardRow``), shared by
  :func:`render_report` / :func:`write_report` (one self-contained HTML file)
  and :func:`print_scorecard` (rich, in a terminal);
* the headline scorecard: :func:`headlines` (one ``Headline`` per metric and
  cell, CUPED when declared, in the metric's units, ``MetricInfo``) and
  :func:`render_scorecard` (rich, sized to the terminal, numbers never cut),
  :func:`headlines_to_csv` / :func:`headlines_to_json` for ``--format``.
"""

from xpcompute.viz.figures import (
    cate_by_segment,
    cell_means,
    dynamic_effects,
    effects_forest,
    quantile_effects,
)
from xpcompute.viz.headline import Headline, MetricInfo, decimals_for, fixed, headlines, metric_infos
from xpcompute.viz.report import render_report, write_report
from xpcompute.viz.scorecard import ScorecardRow, decision_p, scorecard_rows, verdict_of
from xpcompute.viz.terminal import (
    headlines_to_csv,
    headlines_to_json,
    print_scorecard,
    render_scorecard,
    scorecard_tables,
    scorecard_text,
)

__all__ = [
    "Headline",
    "MetricInfo",
    "ScorecardRow",
    "cate_by_segment",
    "cell_means",
    "decimals_for",
    "decision_p",
    "dynamic_effects",
    "effects_forest",
    "fixed",
    "headlines",
    "headlines_to_csv",
    "headlines_to_json",
    "metric_infos",
    "print_scorecard",
    "quantile_effects",
    "render_report",
    "render_scorecard",
    "scorecard_rows",
    "scorecard_tables",
    "scorecard_text",
    "verdict_of",
    "write_report",
]
