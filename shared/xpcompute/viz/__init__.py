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

from importlib import import_module
from typing import Any

#: where each public name lives: resolved on first use, so that ``xpcompute.viz.headline`` (which the
#: coordinator's decision reads) does not pull plotly and the report into a process that draws nothing
_WHERE: dict[str, str] = {
    "cate_by_segment": "figures", "cell_means": "figures", "dynamic_effects": "figures", "effect_heatmap": "figures",
    "effects_forest": "figures", "quantile_effects": "figures",
    "Headline": "headline", "MetricInfo": "headline", "decimals_for": "headline", "fixed": "headline",
    "headlines": "headline", "metric_infos": "headline", "with_roles": "headline",
    "render_report": "report", "write_report": "report",
    "ScorecardRow": "scorecard", "decision_p": "scorecard", "scorecard_rows": "scorecard", "verdict_of": "scorecard",
    "headlines_to_csv": "terminal", "headlines_to_json": "terminal", "print_scorecard": "terminal",
    "render_scorecard": "terminal", "scorecard_tables": "terminal", "scorecard_text": "terminal",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(import_module(f"xpcompute.viz.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'xpcompute.viz' has no attribute {name!r}")


__all__ = [
    "Headline",
    "MetricInfo",
    "ScorecardRow",
    "cate_by_segment",
    "cell_means",
    "decimals_for",
    "decision_p",
    "dynamic_effects",
    "effect_heatmap",
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
    "with_roles",
    "write_report",
]
