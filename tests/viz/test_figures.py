"""The figures draw exactly what the records say: one point per record, error bars equal to the intervals.

Records come from real fits (``viz_data.build_analysis``); points are matched
back to records by their coordinates, so a figure that drops, duplicates or
misplaces an estimate fails here.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
import pytest
from viz_data import Analysis, make_panel

from xpcompute.models import fit_table
from xpcompute.records import ResultRecord
from xpcompute.spec import FitSpec
from xpcompute.viz import (
    cate_by_segment,
    cell_means,
    dynamic_effects,
    effects_forest,
    quantile_effects,
    scorecard_rows,
    verdict_of,
)
from xpcompute.viz._common import natural_key, quantile_label

ALL_FIGURES = (effects_forest, quantile_effects, dynamic_effects, cate_by_segment, cell_means)


def traces(fig: go.Figure, role: str) -> list[Any]:
    return [t for t in fig.data if isinstance(t.meta, dict) and t.meta.get("role") == role]


def headline(records: list[ResultRecord]) -> list[ResultRecord]:
    return [r for r in records if r.segment is None and r.time is None and r.quantile is None]


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize("relative", [False, True])
def test_forest_has_one_point_per_headline_record_with_its_interval(analysis: Analysis, relative: bool) -> None:
    fig = effects_forest(analysis.records, relative=relative)
    heads = headline(analysis.records)
    points = []
    for t in traces(fig, "effect"):
        for k, x in enumerate(t.x):
            points.append((t.meta["metric"], t.meta["model"], t.meta["verdict"], x, t.error_x.array[k],
                           t.error_x.arrayminus[k]))
    assert len(points) == len(heads)
    for r in heads:
        e, lo, hi = ((r.relative_effect, r.relative_ci_low, r.relative_ci_high) if relative
                     else (r.effect, r.ci_low, r.ci_high))
        match = [p for p in points if p[0] == r.metric and p[1] == r.model and p[3] == e]
        assert len(match) == 1, r
        _, _, verdict, _, plus, minus = match[0]
        assert e is not None and lo is not None and hi is not None
        assert close(plus, hi - e) and close(minus, e - lo)
        assert verdict == verdict_of(r)
    # every panel has a vertical zero line, and relative axes are in percent
    assert sum(1 for s in fig.layout.shapes if s.x0 == 0 and s.x1 == 0) == len({(r.metric, r.model) for r in heads})
    if relative:
        axes = [v for k, v in fig.layout.to_plotly_json().items() if k.startswith("xaxis")]
        assert axes and all(ax.get("tickformat") == ".1%" for ax in axes)


def test_forest_colours_follow_adjusted_p_and_direction(analysis: Analysis) -> None:
    r = next(r for r in headline(analysis.records) if r.metric == "hours" and r.cell == "b")
    raw_only = r.model_copy(update={"p_value": 0.001, "p_value_adjusted": None})
    adjusted_away = r.model_copy(update={"p_value": 0.001, "p_value_adjusted": 0.2, "cell": "c"})
    fig = effects_forest([raw_only, adjusted_away])
    verdicts = {t.meta["verdict"]: list(t.y) for t in traces(fig, "effect")}
    assert verdicts == {"up": ["b vs control"], "flat": ["c vs control"]}
    hib = effects_forest([raw_only], higher_is_better={"hours": False})
    assert [t.meta["verdict"] for t in traces(hib, "effect")] == ["bad"]
    assert traces(hib, "effect")[0].marker.color == "#c92a2a"


def test_quantile_effects_per_cell_in_quantile_order_with_band(analysis: Analysis) -> None:
    fig = quantile_effects(analysis.records)
    qrecs = [r for r in analysis.records if r.quantile is not None]
    lines = traces(fig, "qte")
    assert {t.meta["cell"] for t in lines} == {"a", "b"}
    for t in lines:
        recs = sorted((r for r in qrecs if r.cell == t.meta["cell"]), key=lambda r: r.quantile or 0)
        assert list(t.x) == [quantile_label(r.quantile or 0) for r in recs] == ["p10", "p25", "p50", "p75", "p90"]
        assert list(t.y) == [r.effect for r in recs]
        band = next(b for b in traces(fig, "band") if b.meta["cell"] == t.meta["cell"])
        assert list(band.y) == [r.ci_high for r in recs] + [r.ci_low for r in recs][::-1]
        assert band.fill == "toself"


def test_dynamic_effects_in_natural_period_order_with_overall_line() -> None:
    panel = make_panel(n_users=300, n_periods=12)
    records = fit_table(panel, FitSpec(metric="watch_hours", treatment="cell", model="dte", time="day",
                                       cluster="user")).records
    fig = dynamic_effects(records)
    for t in traces(fig, "dte"):
        per = sorted((r for r in records if r.cell == t.meta["cell"] and r.time is not None),
                     key=lambda r: natural_key(r.time))
        assert list(t.x) == [str(p) for p in range(12)]  # "10" after "9", not after "1"
        assert list(t.y) == [r.effect for r in per]
        overall = next(r for r in records if r.cell == t.meta["cell"] and r.time is None)
        ref = next(o for o in traces(fig, "overall") if o.meta["cell"] == t.meta["cell"])
        assert list(ref.y) == [overall.effect, overall.effect]
    assert len(traces(fig, "band")) == 2


def test_cate_markers_equal_segments_sorted_with_overall_reference(analysis: Analysis) -> None:
    fig = cate_by_segment(analysis.records)
    seg = [r for r in analysis.records if r.segment is not None]
    for cell in ("a", "b"):
        mine = [t for t in traces(fig, "cate") if t.meta["cell"] == cell]
        n_points = sum(len(t.x) for t in mine)
        segments = [r for r in seg if r.cell == cell]
        assert n_points == len(segments) == 4
        pts = sorted((x, y) for t in mine for x, y in zip(t.x, t.y, strict=True))
        by_segment = {r.segment: r for r in segments}
        for x, y in pts:
            assert x == by_segment[y].effect
        for t in mine:
            for k, x in enumerate(t.x):
                r = by_segment[t.y[k]]
                assert close(t.error_x.array[k], (r.ci_high or 0) - x)
        # segments sorted by effect: the y-axis category order is ascending in effect
        axis_order = [y for _, y in pts]
        layout = fig.layout.to_plotly_json()
        axis_name = "yaxis" if mine[0].yaxis == "y" else "yaxis" + mine[0].yaxis[1:]
        assert list(layout[axis_name]["categoryarray"]) == axis_order
        overall = next(r for r in analysis.records if r.model == "cate" and r.segment is None and r.cell == cell)
        assert any(s.x0 == overall.effect and s.line.dash == "dash" for s in fig.layout.shapes)


def test_cell_means_from_records_and_from_summaries(analysis: Analysis) -> None:
    plain = cell_means(analysis.records)
    means = traces(plain, "mean")
    ttest = next(r for r in analysis.records if r.model == "ttest" and r.slice == "all users" and r.cell == "a")
    hours = next(t for t in means if t.meta["metric"] == "hours" and t.meta["slice"] == "all users")
    assert list(hours.x) == ["control", "a", "b"]
    assert hours.y[0] == ttest.mean_control and hours.y[1] == ttest.mean_cell
    assert all(v is None for v in hours.error_y.array)
    assert not traces(plain, "quantiles")

    rich = cell_means(analysis.records, analysis.summaries)
    hours = next(t for t in traces(rich, "mean") if t.meta["metric"] == "hours" and t.meta["slice"] == "all users")
    s = next(s for s in analysis.summaries if s.metric == "hours" and s.slice == "all users" and s.cell == "a")
    z = NormalDist().inv_cdf(0.975)
    assert close(hours.error_y.array[1], z * math.sqrt((s.variance or 0) / s.count))
    dist = traces(rich, "quantiles")
    assert [t.meta["metric"] for t in dist] == ["revenue"]
    assert len(dist[0].x) == 3 * 5


def test_empty_and_unusual_values_do_not_crash(analysis: Analysis) -> None:
    for make in ALL_FIGURES:
        fig = make([])
        assert isinstance(fig, go.Figure) and not fig.data
        assert "No " in fig.layout.annotations[0].text
    odd = []
    for r in analysis.records:
        if r.cell == "a":
            odd.append(r.model_copy(update={"p_value": None, "p_value_adjusted": float("nan")}))
        elif r.metric == "hours":
            odd.append(r.model_copy(update={"effect": float("nan"), "relative_effect": None}))
        else:
            odd.append(r.model_copy(update={"ci_low": None, "relative_ci_high": float("inf")}))
    for make in ALL_FIGURES:
        fig = make(odd)
        pio.to_json(fig, validate=True)
    forest = effects_forest(odd)
    assert {t.meta["verdict"] for t in traces(forest, "effect")} >= {"none"}
    hours_points = [y for t in traces(forest, "effect") if t.meta["metric"] == "hours" for y in t.y]
    assert sorted(hours_points) == ["all users · a", "device=ios · a", "device=tv · a"]  # NaN effects left out
    no_low = [t for t in traces(forest, "effect") if t.meta["metric"] == "converted" and t.meta["verdict"] != "none"]
    assert no_low and all(v is None for t in no_low for v in t.error_x.arrayminus)
    rows = scorecard_rows(odd)
    assert any(r.verdict == "none" and r.marker == "–" for r in rows)


def test_figures_render_as_plain_plotly(analysis: Analysis) -> None:
    """What ``fig.show()`` in a notebook does: serialise to the standard plotly JSON, no custom JS anywhere."""
    for make in ALL_FIGURES:
        fig = make(analysis.records)
        spec = fig.to_plotly_json()
        assert spec["data"] and "updatemenus" not in spec["layout"]
        html = pio.to_html(fig, include_plotlyjs=False, full_html=False)
        assert html.count("Plotly.newPlot") == 1
