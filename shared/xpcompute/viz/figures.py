"""Plotly figures built from result records (and per-cell summaries), nothing else.

Why only records: a figure drawn from the same ``ResultRecord`` the API
returns and the scorecard lists cannot disagree with them, and it can be
redrawn anywhere the records are (a notebook, the HTML report, the API page)
without touching data or models.

Every function returns a plain ``plotly.graph_objects.Figure`` with no custom
JavaScript, so ``fig.show()`` works in a notebook and ``fig.to_html`` works in a
page. Missing numbers (``None``/NaN effects, intervals or p-values) are left
out of a figure rather than drawn as zero; a figure with nothing to draw says
so in its middle instead of raising.

Conventions shared by all figures:

* one panel (subplot) per metric, model and slice (and per cell where effects
  are sorted per cell), each with its own axis: metrics have different units;
* significance colours follow :mod:`xpcompute.viz.scorecard` (the adjusted
  p-value decides when present; green good, red bad, blue when no preferred
  direction is declared, grey not significant);
* each treatment cell keeps one colour across figures;
* every trace carries ``meta={"role": ..., ...}`` naming what it draws, which
  tests and callers can use to find a panel's points.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from html import escape
from statistics import NormalDist
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from xpcompute.records import CellSummary, ResultRecord
from xpcompute.viz._common import (
    cell_colors,
    clean,
    first_seen,
    is_overall,
    natural_key,
    quantile_label,
    rgba,
    slice_label,
)
from xpcompute.viz.scorecard import (
    MARKERS,
    VERDICT_COLORS,
    VERDICT_LABELS,
    Verdict,
    format_count,
    format_effect,
    format_interval,
    format_number,
    format_p,
    format_percent,
    interval,
    record_detail,
    verdict_of,
)

FONT = "-apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
ROW_PX = 30
PANEL_PAD_PX = 46
GAP_PX = 64
TOP_PX = 128
LEGEND_PX = 40
BOTTOM_PX = 56
MAX_COLS = 3
VERDICT_ORDER: tuple[Verdict, ...] = ("good", "bad", "up", "down", "flat", "none")


@dataclass(frozen=True)
class Estimate:
    """A record's effect on the chosen scale, with whatever interval it has."""

    record: ResultRecord
    effect: float
    low: float | None
    high: float | None


@dataclass
class Panel:
    """One subplot: a title, its records and how tall it needs to be."""

    title: str
    records: list[ResultRecord]
    rows: int


def estimate(record: ResultRecord, relative: bool) -> Estimate | None:
    """The absolute (``effect``, ``ci_*``) or relative (``relative_*``) estimate; ``None`` if not a number."""
    if relative:
        e, lo, hi = record.relative_effect, record.relative_ci_low, record.relative_ci_high
    else:
        e, lo, hi = record.effect, record.ci_low, record.ci_high
    value = clean(e)
    if value is None:
        return None
    return Estimate(record=record, effect=value, low=clean(lo), high=clean(hi))


def ci_label(records: Iterable[ResultRecord]) -> str:
    """``95% CI`` when every record uses the same alpha, else plain ``CI``."""
    alphas = {r.alpha for r in records}
    if len(alphas) == 1:
        level = (1 - alphas.pop()) * 100
        return f"{level:g}% CI"
    return "CI"


def error_arrays(points: Sequence[Estimate]) -> tuple[list[float | None], list[float | None]]:
    """Plotly's asymmetric error bars: ``high - effect`` above and ``effect - low`` below."""
    plus = [None if p.high is None else p.high - p.effect for p in points]
    minus = [None if p.low is None else p.effect - p.low for p in points]
    return plus, minus


def hover_text(record: ResultRecord, relative: bool) -> str:
    """What a reader sees on hover: the comparison, both scales, the interval and the p-values."""
    head = (f"<b>{escape(record.metric)}</b> · {escape(record.cell)} vs {escape(record.control)} · "
            f"{escape(slice_label(record.slice))}")
    detail = record_detail(record)
    if detail:
        head += f" · {escape(detail)}"
    ci = interval(record.ci_low, record.ci_high)
    rel_ci = interval(record.relative_ci_low, record.relative_ci_high)
    lines = [
        head,
        f"effect {format_effect(record.effect)} {format_interval(ci)}",
        f"relative {format_percent(record.relative_effect)} {format_interval(rel_ci, percent=True)}",
        f"p {format_p(record.p_value)} · p adj {format_p(record.p_value_adjusted)} · {record.model}",
    ]
    if relative:
        lines[1], lines[2] = lines[2], lines[1]
    return "<br>".join(lines)


def empty_figure(message: str, title: str | None = None) -> go.Figure:
    """A figure that says why it is empty (no records of this kind) instead of a blank canvas."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font={"size": 14, "color": "#868e96"})
    fig.update_layout(
        template="plotly_white", height=220, font={"family": FONT}, title={"text": title or ""},
        xaxis={"visible": False}, yaxis={"visible": False}, margin={"l": 40, "r": 40, "t": 60, "b": 40},
    )
    return fig


def subplot_grid(layout: Sequence[Sequence[Panel | None]]) -> go.Figure:
    """Panels on a grid (a list of rows, ``None`` for an empty slot) with left-aligned titles.

    A row is as tall as its tallest panel needs, so a metric with two cells
    is not drawn as tall as one with twelve; empty slots get no axes at all.
    """
    ncols = max(len(row) for row in layout)
    grid = [list(row) + [None] * (ncols - len(row)) for row in layout]
    heights = [max((p.rows for p in row if p is not None), default=1) * ROW_PX + PANEL_PAD_PX for row in grid]
    n = len(grid)
    plot_px = sum(heights) + GAP_PX * (n - 1)
    spacing = GAP_PX / plot_px if n > 1 else 0.0
    if n > 1:
        spacing = min(spacing, 1.0 / (n - 1) - 1e-6)
    fig = make_subplots(
        rows=n, cols=ncols, row_heights=heights, vertical_spacing=spacing,
        horizontal_spacing=0.08 if ncols > 1 else 0.02,
        specs=[[{} if p is not None else None for p in row] for row in grid],
    )
    for i, row in enumerate(grid, start=1):
        for j, panel in enumerate(row, start=1):
            if panel is None:
                continue
            fig.add_annotation(
                text=f"<b>{escape(panel.title)}</b>", row=i, col=j, xref="x domain", yref="y domain", x=0, y=1,
                xanchor="left", yanchor="bottom", yshift=8, showarrow=False, font={"size": 13, "color": "#212529"},
            )
    fig.update_layout(height=plot_px + TOP_PX + BOTTOM_PX)
    return fig


def column(panels: Sequence[Panel]) -> list[list[Panel | None]]:
    """One panel per row."""
    return [[p] for p in panels]


def finish(fig: go.Figure, title: str, subtitle: str = "", *, legend: bool = True) -> go.Figure:
    """The common look: white template, system font, title and legend above the panels.

    Without a legend the top margin shrinks by the legend's line, so the
    first panel sits right under the title.
    """
    top = TOP_PX if legend else TOP_PX - LEGEND_PX
    if not legend:
        fig.update_layout(height=float(fig.layout.height or 400) - LEGEND_PX)
    height = float(fig.layout.height or 400)
    text = f"{title}<br><span style='font-size:12px;color:#495057'>{subtitle}</span>" if subtitle else title
    fig.update_layout(
        template="plotly_white",
        font={"family": FONT, "size": 12, "color": "#343a40"},
        title={"text": text, "x": 0.01, "xanchor": "left", "y": 1 - 12 / height, "yanchor": "top",
               "font": {"size": 16}},
        legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 1 - 62 / height, "yanchor": "top",
                "yref": "container", "font": {"size": 12}},
        margin={"l": 20, "r": 30, "t": top, "b": BOTTOM_PX},
        hoverlabel={"align": "left"},
        showlegend=legend,
    )
    fig.update_xaxes(zeroline=False, automargin=True, showline=True, linecolor="#ced4da", gridcolor="#f1f3f5")
    fig.update_yaxes(zeroline=False, automargin=True, gridcolor="#f1f3f5")
    return fig


def panel_title(record: ResultRecord, *, with_cell: bool = False) -> str:
    """``metric · model · slice`` (and the comparison when a panel holds one cell)."""
    parts = [record.metric, record.model, slice_label(record.slice)]
    if with_cell:
        parts.append(f"{record.cell} vs {record.control}")
    return "  ·  ".join(parts)


def group(records: Iterable[ResultRecord], key: Any) -> dict[Any, list[ResultRecord]]:
    """Records by panel key, keys in first-seen order."""
    out: dict[Any, list[ResultRecord]] = {}
    for r in records:
        out.setdefault(key(r), []).append(r)
    return out


def add_verdict_traces(
    fig: go.Figure,
    points: Sequence[tuple[Estimate, str]],
    *,
    row: int,
    relative: bool,
    higher_is_better: Mapping[str, bool] | None,
    shown: set[str],
    role: str,
    meta: dict[str, Any],
) -> None:
    """Markers with horizontal error bars, one trace per significance verdict so the legend explains colours."""
    by_verdict: dict[Verdict, list[tuple[Estimate, str]]] = {}
    for point in points:
        by_verdict.setdefault(verdict_of(point[0].record, higher_is_better), []).append(point)
    for verdict in VERDICT_ORDER:
        chosen = by_verdict.get(verdict)
        if not chosen:
            continue
        ests = [e for e, _ in chosen]
        plus, minus = error_arrays(ests)
        color = VERDICT_COLORS[verdict]
        fig.add_trace(
            go.Scatter(
                x=[e.effect for e in ests],
                y=[label for _, label in chosen],
                mode="markers",
                name=f"{MARKERS[verdict]} {VERDICT_LABELS[verdict]}",
                legendgroup=verdict,
                showlegend=verdict not in shown,
                marker={"color": color, "size": 10,
                        "symbol": "circle-open" if verdict in ("flat", "none") else "circle",
                        "line": {"width": 2, "color": color}},
                error_x={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus,
                         "color": color, "thickness": 2, "width": 5},
                hovertext=[hover_text(e.record, relative) for e in ests],
                hovertemplate="%{hovertext}<extra></extra>",
                meta={"role": role, "verdict": verdict, **meta},
            ),
            row=row, col=1,
        )
        shown.add(verdict)


def effects_forest(
    records: Sequence[ResultRecord],
    *,
    relative: bool = False,
    higher_is_better: Mapping[str, bool] | None = None,
) -> go.Figure:
    """Headline effect and CI of every treatment cell, per metric (one panel each) and per slice (one row each).

    Only overall effects are drawn (no per-segment, per-period or quantile
    records; they have their own figures). ``relative=True`` plots
    ``relative_effect`` and its interval (axes in percent), which puts metrics
    of different units on a comparable footing; the default plots the absolute
    effect in the metric's own units. Point colour is the significance verdict
    (``p_value_adjusted`` when present, else ``p_value``, against the record's
    alpha); ``higher_is_better`` turns "up/down" into "good/bad".
    """
    heads = [r for r in records if is_overall(r) and r.quantile is None]
    scale = "Relative effect (cell ÷ control − 1)" if relative else "Absolute effect (cell − control)"
    usable = [(r, est) for r in heads if (est := estimate(r, relative)) is not None]
    if not usable:
        return empty_figure("No overall effects to plot in these records.", scale)
    multi_slice = len({r.slice for r, _ in usable}) > 1
    panels_map = group((r for r, _ in usable), lambda r: (r.metric, r.model))
    panels = []
    for (metric, model), recs in panels_map.items():
        title = f"{metric}  ·  {model}"
        panels.append(Panel(title=title, records=recs, rows=len(recs)))
    fig = subplot_grid(column(panels))
    shown: set[str] = set()
    for i, panel in enumerate(panels, start=1):
        slices = first_seen(r.slice for r in panel.records)
        ordered = sorted(panel.records, key=lambda r: (slices.index(r.slice), natural_key(r.cell)))
        labels = [
            f"{slice_label(r.slice)} · {r.cell}" if multi_slice else f"{r.cell} vs {r.control}" for r in ordered
        ]
        points = [(est, lab) for r, lab in zip(ordered, labels, strict=True) if (est := estimate(r, relative))]
        add_verdict_traces(
            fig, points, row=i, relative=relative, higher_is_better=higher_is_better, shown=shown,
            role="effect", meta={"metric": panel.records[0].metric, "model": panel.records[0].model},
        )
        fig.add_vline(x=0, row=i, col=1, line={"color": "#495057", "width": 1})
        fig.update_yaxes(type="category", categoryorder="array", categoryarray=labels, autorange="reversed",
                         row=i, col=1)
        if relative:
            fig.update_xaxes(tickformat=".1%", row=i, col=1)
    sub = (f"Dot = estimate, bar = {ci_label(heads)}. The bar crossing 0 means no detectable difference. "
           "Colour = significance after multiple-testing correction.")
    return finish(fig, scale, sub)


def band_trace(
    xs: Sequence[str], ests: Sequence[Estimate], color: str, name: str, meta: dict[str, Any]
) -> go.Scatter | None:
    """A closed polygon between the interval bounds (``fill='toself'``): one trace per band."""
    pts = [(x, e) for x, e in zip(xs, ests, strict=True) if e.low is not None and e.high is not None]
    if not pts:
        return None
    upper = [e.high for _, e in pts]
    lower = [e.low for _, e in pts]
    bx = [x for x, _ in pts]
    return go.Scatter(
        x=bx + bx[::-1], y=upper + lower[::-1], fill="toself", fillcolor=rgba(color, 0.16),
        line={"width": 0, "color": rgba(color, 0.0)}, hoverinfo="skip", showlegend=False,
        legendgroup=name, name=f"{name} CI", meta={"role": "band", **meta},
    )


def line_panels(
    records: Sequence[ResultRecord],
    *,
    x_of: Any,
    x_sort: Any,
    relative: bool,
    higher_is_better: Mapping[str, bool] | None,
    role: str,
    title: str,
    subtitle: str,
    empty: str,
    x_title: str,
    overall: Sequence[ResultRecord] = (),
) -> go.Figure:
    """Effect curves per cell with CI bands, one panel per metric/model/slice (quantile and dynamic plots)."""
    usable = [r for r in records if estimate(r, relative) is not None]
    if not usable:
        return empty_figure(empty, title)
    colors = cell_colors(usable)
    panels_map = group(usable, lambda r: (r.metric, r.model, r.slice))
    panels = [Panel(title=panel_title(recs[0]), records=recs, rows=8) for recs in panels_map.values()]
    fig = subplot_grid(column(panels))
    shown: set[str] = set()
    for i, panel in enumerate(panels, start=1):
        xs_all = sorted({x_sort(r) for r in panel.records}, key=lambda t: t[0])
        order = [label for _, label in xs_all]
        first = panel.records[0]
        for cell, recs in group(panel.records, lambda r: r.cell).items():
            recs = sorted(recs, key=lambda r: x_sort(r)[0])
            ests = [e for r in recs if (e := estimate(r, relative)) is not None]
            xs = [x_of(e.record) for e in ests]
            color = colors[cell]
            name = f"{cell} vs {recs[0].control}"
            meta = {"metric": first.metric, "model": first.model, "slice": first.slice, "cell": cell}
            band = band_trace(xs, ests, color, name, meta)
            if band is not None:
                fig.add_trace(band, row=i, col=1)
            sig = [verdict_of(e.record, higher_is_better) not in ("flat", "none") for e in ests]
            fig.add_trace(
                go.Scatter(
                    x=xs, y=[e.effect for e in ests], mode="lines+markers", name=name, legendgroup=name,
                    showlegend=name not in shown, line={"color": color, "width": 2},
                    marker={"color": [color if s else "white" for s in sig], "size": 9,
                            "line": {"color": color, "width": 2}},
                    hovertext=[hover_text(e.record, relative) for e in ests],
                    hovertemplate="%{hovertext}<extra></extra>",
                    meta={"role": role, **meta},
                ),
                row=i, col=1,
            )
            shown.add(name)
            ref = [o for o in overall if (o.metric, o.model, o.slice, o.cell) == (first.metric, first.model,
                                                                                 first.slice, cell)]
            ref_est = estimate(ref[0], relative) if ref else None
            if ref_est is not None and order:
                fig.add_trace(
                    go.Scatter(
                        x=[order[0], order[-1]], y=[ref_est.effect, ref_est.effect], mode="lines",
                        name=f"{name}: overall", legendgroup=name, showlegend=False,
                        line={"color": color, "width": 1.5, "dash": "dash"},
                        hovertext=[hover_text(ref[0], relative)] * 2, hovertemplate="%{hovertext}<extra></extra>",
                        meta={"role": "overall", **meta},
                    ),
                    row=i, col=1,
                )
        fig.add_hline(y=0, row=i, col=1, line={"color": "#495057", "width": 1})
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=order, title_text=x_title,
                         title_standoff=4, row=i, col=1)
        if relative:
            fig.update_yaxes(tickformat=".1%", row=i, col=1)
    return finish(fig, title, subtitle)


def quantile_effects(
    records: Sequence[ResultRecord],
    *,
    relative: bool = False,
    higher_is_better: Mapping[str, bool] | None = None,
) -> go.Figure:
    """Quantile treatment effects ``q_p(cell) - q_p(control)`` across quantiles, with the CI as a band.

    One panel per metric and slice, one line per treatment cell. A filled
    marker is a significant quantile effect, an open one is not. The shape
    tells what a mean hides: an effect only in the upper tail (heavy users) or
    one that shifts the whole distribution.
    """
    qrecs = [r for r in records if r.quantile is not None and r.segment is None and r.time is None]
    label = "relative" if relative else "absolute"
    return line_panels(
        qrecs,
        x_of=lambda r: quantile_label(r.quantile),
        x_sort=lambda r: (r.quantile, quantile_label(r.quantile)),
        relative=relative, higher_is_better=higher_is_better, role="qte",
        title=f"Quantile treatment effects ({label})",
        subtitle=(f"Line = difference between the cell's and control's quantile; band = {ci_label(qrecs)} "
                  "(Poisson bootstrap). Filled dot = significant after correction."),
        empty="No quantile effects in these records (fit the quantile model).",
        x_title="quantile of the metric",
    )


def dynamic_effects(
    records: Sequence[ResultRecord],
    *,
    relative: bool = False,
    higher_is_better: Mapping[str, bool] | None = None,
) -> go.Figure:
    """Dynamic treatment effects per period with CI bands; the dashed line is the overall (all-period) effect.

    Periods are ordered naturally (period 2 before period 10, dates in date
    order). A curve that grows or fades over time says whether an effect is
    novelty or learning, which a single average cannot.
    """
    trecs = [r for r in records if r.time is not None and r.segment is None and r.quantile is None]
    overall = [r for r in records if r.time is None and r.segment is None and r.quantile is None
               and (r.metric, r.model, r.slice) in {(t.metric, t.model, t.slice) for t in trecs}]
    label = "relative" if relative else "absolute"
    return line_panels(
        trecs,
        x_of=lambda r: str(r.time),
        x_sort=lambda r: (natural_key(r.time), str(r.time)),
        relative=relative, higher_is_better=higher_is_better, role="dte",
        title=f"Effect over time ({label})",
        subtitle=(f"Line = effect in each period; band = {ci_label(trecs)} (clustered by user); dashed = effect "
                  "over all periods. Filled dot = significant after correction."),
        empty="No per-period effects in these records (fit the dte model with a time column).",
        x_title="period",
        overall=overall,
    )


def cate_by_segment(
    records: Sequence[ResultRecord],
    *,
    relative: bool = False,
    higher_is_better: Mapping[str, bool] | None = None,
) -> go.Figure:
    """Conditional average treatment effect per segment, sorted by effect, against the overall effect.

    One panel per metric, slice and treatment cell (sorting is per cell, so
    cells get their own panel). Segments are sorted so the largest effect is
    on top; the dashed line and the shaded band are the overall effect and
    its CI, the solid line is zero. A segment far from the band is where the
    treatment works differently.
    """
    seg = [r for r in records if r.segment is not None and r.time is None and r.quantile is None]
    title = f"Effect by segment ({'relative' if relative else 'absolute'})"
    usable = [r for r in seg if estimate(r, relative) is not None]
    if not usable:
        return empty_figure("No per-segment effects in these records (fit the cate model with a segment).", title)
    overall = {
        (r.metric, r.model, r.slice, r.cell): r
        for r in records if is_overall(r) and r.quantile is None
    }
    panels_map = group(usable, lambda r: (r.metric, r.model, r.slice, r.cell))
    panels = [Panel(title=panel_title(recs[0], with_cell=True), records=recs, rows=len(recs))
              for recs in panels_map.values()]
    fig = subplot_grid(column(panels))
    shown: set[str] = set()
    for i, (key, panel) in enumerate(zip(panels_map, panels, strict=True), start=1):
        ests = sorted((e for r in panel.records if (e := estimate(r, relative)) is not None),
                      key=lambda e: e.effect)
        points = [(e, str(e.record.segment)) for e in ests]
        first = panel.records[0]
        add_verdict_traces(
            fig, points, row=i, relative=relative, higher_is_better=higher_is_better, shown=shown, role="cate",
            meta={"metric": first.metric, "model": first.model, "slice": first.slice, "cell": first.cell},
        )
        fig.add_vline(x=0, row=i, col=1, line={"color": "#495057", "width": 1})
        ref = overall.get(key)
        ref_est = estimate(ref, relative) if ref is not None else None
        if ref_est is not None:
            if ref_est.low is not None and ref_est.high is not None:
                fig.add_vrect(x0=ref_est.low, x1=ref_est.high, row=i, col=1, fillcolor="#4dabf7", opacity=0.14,
                              line_width=0, layer="below")
            shown_value = format_percent(ref_est.effect) if relative else format_effect(ref_est.effect)
            fig.add_vline(
                x=ref_est.effect, row=i, col=1, line={"color": "#1971c2", "width": 1.5, "dash": "dash"},
                annotation_text=f"overall {shown_value}", annotation_position="top",
                annotation_font={"size": 11, "color": "#1971c2"},
            )
        fig.update_yaxes(type="category", categoryorder="array", categoryarray=[lab for _, lab in points],
                         row=i, col=1)
        if relative:
            fig.update_xaxes(tickformat=".1%", row=i, col=1)
    sub = (f"Dot = effect within the segment, bar = {ci_label(usable)}; dashed line and shaded band = overall "
           "effect and its CI; solid line = 0. Colour = significance after multiple-testing correction.")
    return finish(fig, title, sub)


@dataclass(frozen=True)
class CellMean:
    """One cell's mean in one metric and slice, with the interval and quantiles when summaries give them."""

    cell: str
    mean: float
    count: float | None
    low: float | None = None
    high: float | None = None
    sd: float | None = None
    quantiles: tuple[tuple[str, float], ...] = ()


def summary_mean(s: CellSummary, alpha: float) -> CellMean:
    """Mean with a normal interval ``mean ± z·sqrt(var/n)`` from a summary's count and variance."""
    var = clean(s.variance)
    low = high = sd = None
    if var is not None and s.count > 1:
        half = NormalDist().inv_cdf(1 - alpha / 2) * (var / s.count) ** 0.5
        low, high, sd = s.mean - half, s.mean + half, var**0.5
    qs = sorted(((k, float(v)) for k, v in s.quantiles.items() if clean(v) is not None),
                key=lambda kv: natural_key(kv[0]))
    return CellMean(cell=s.cell, mean=s.mean, count=s.count, low=low, high=high, sd=sd, quantiles=tuple(qs))


def cell_means(records: Sequence[ResultRecord], summaries: Sequence[CellSummary] | None = None) -> go.Figure:
    """Each cell's mean per metric and slice, with its CI and quantiles when ``summaries`` are given.

    Records alone carry the observed means (``mean_cell``, ``mean_control``)
    but no per-cell uncertainty, so without summaries only the means are
    drawn. With ``CellSummary`` objects (``xpcompute.summary.cell_summaries``
    or a quantile model's ``summaries``) each mean gets a normal CI from its
    count and variance, and a second column shows the distribution's
    quantiles per cell. Only overall (not per-segment or per-period) values
    are drawn.
    """
    title = "Cell means"
    alpha_of: dict[str, float] = {}
    means: dict[tuple[str, str | None], dict[str, CellMean]] = {}
    for r in records:
        alpha_of.setdefault(r.metric, r.alpha)
        if not is_overall(r):
            continue
        cells = means.setdefault((r.metric, r.slice), {})
        mc, mt = clean(r.mean_control), clean(r.mean_cell)
        if mc is not None and r.control not in cells:
            cells[r.control] = CellMean(cell=r.control, mean=mc, count=r.n_control)
        if mt is not None and r.cell not in cells:
            cells[r.cell] = CellMean(cell=r.cell, mean=mt, count=r.n_cell)
    for s in summaries or ():
        if s.segment is not None or s.time is not None or clean(s.mean) is None:
            continue
        cells = means.setdefault((s.metric, s.slice), {})
        new = summary_mean(s, alpha_of.get(s.metric, 0.05))
        old = cells.get(s.cell)
        if old is not None and old.quantiles and not new.quantiles:
            new = replace(new, quantiles=old.quantiles)
        if old is not None and new.low is None and old.low is not None:
            new = replace(new, low=old.low, high=old.high, sd=old.sd)
        cells[s.cell] = new
    means = {k: v for k, v in means.items() if v}
    if not means:
        return empty_figure("No cell means in these records.", title)
    controls = {r.control for r in records}
    colors = cell_colors(records, extra_cells=[c for cells in means.values() for c in cells])
    metrics = first_seen(metric for metric, _ in means)
    slices = first_seen(sl for _, sl in means)
    ncols = min(len(slices), MAX_COLS)
    layout: list[list[Panel | None]] = []
    slots: list[tuple[str, str, str | None]] = []
    for metric in metrics:
        for kind in ("mean", "dist"):
            present = [sl for sl in slices if (metric, sl) in means
                       and (kind == "mean" or any(m.quantiles for m in means[(metric, sl)].values()))]
            for start in range(0, len(present), ncols):
                chunk = present[start:start + ncols]
                suffix = "" if kind == "mean" else "  ·  distribution (quantiles)"
                layout.append([Panel(title=f"{metric}  ·  {slice_label(sl)}{suffix}", records=[], rows=6)
                               for sl in chunk])
                slots += [(kind, metric, sl) for sl in chunk]
    fig = subplot_grid(layout)
    level = ci_label(records) if records else "95% CI"
    any_ci = False
    positions = [(i, j) for i, row in enumerate(layout, start=1) for j in range(1, len(row) + 1)]
    for (kind, metric, sl), (i, j) in zip(slots, positions, strict=True):
        cells = means[(metric, sl)]
        order = sorted(cells.values(), key=lambda m: (m.cell not in controls, natural_key(m.cell)))
        xs = [m.cell for m in order]
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=xs, row=i, col=j)
        if kind == "dist":
            qx = [m.cell for m in order for _ in m.quantiles]
            qt = [key for m in order for key, _ in m.quantiles]
            qy = [value for m in order for _, value in m.quantiles]
            span_x: list[str | None] = []
            span_y: list[float | None] = []
            for m in order:
                if m.quantiles:
                    values = [v for _, v in m.quantiles]
                    span_x += [m.cell, m.cell, None]
                    span_y += [min(values), max(values), None]
            fig.add_trace(
                go.Scatter(x=span_x, y=span_y, mode="lines", line={"color": "#ced4da", "width": 2},
                           hoverinfo="skip", showlegend=False, meta={"role": "range", "metric": metric, "slice": sl}),
                row=i, col=j,
            )
            fig.add_trace(
                go.Scatter(
                    x=qx, y=qy, mode="markers+text", text=qt, textposition="middle right", cliponaxis=False,
                    name="quantiles", showlegend=False, textfont={"size": 10, "color": "#495057"},
                    marker={"symbol": "line-ew-open", "size": 22, "line": {"width": 2},
                            "color": [colors.get(c, "#495057") for c in qx]},
                    hovertext=[f"{escape(metric)} · {escape(c)}: {k} = {format_number(v)}"
                               for c, k, v in zip(qx, qt, qy, strict=True)],
                    hovertemplate="%{hovertext}<extra></extra>",
                    meta={"role": "quantiles", "metric": metric, "slice": sl},
                ),
                row=i, col=j,
            )
            continue
        plus = [None if m.high is None else m.high - m.mean for m in order]
        minus = [None if m.low is None else m.mean - m.low for m in order]
        any_ci = any_ci or any(p is not None for p in plus)
        hover = [
            f"<b>{escape(metric)}</b> · {escape(m.cell)} · {escape(slice_label(sl))}<br>mean {format_number(m.mean)} "
            f"{format_interval(interval(m.low, m.high))}<br>n {format_count(m.count)}"
            + (f" · sd {format_number(m.sd)}" if m.sd is not None else "")
            for m in order
        ]
        fig.add_trace(
            go.Scatter(
                x=xs, y=[m.mean for m in order], mode="markers", name="mean", showlegend=False,
                marker={"color": [colors.get(c, "#495057") for c in xs], "size": 12, "symbol": "diamond"},
                error_y={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus,
                         "color": "#495057", "thickness": 2, "width": 8},
                hovertext=hover, hovertemplate="%{hovertext}<extra></extra>",
                meta={"role": "mean", "metric": metric, "slice": sl},
            ),
            row=i, col=j,
        )
    sub = (f"Diamond = observed mean of each cell; bar = {level} of the mean, where per-cell summaries give one."
           if any_ci
           else "Diamond = observed mean of each cell (pass summaries for intervals and quantiles).")
    return finish(fig, title, sub, legend=False)


#: Heat-map codes of the verdicts (the z value each cell is coloured by) and their order in the colour scale.
_HEAT_CODES: dict[Verdict, int] = {"bad": 0, "down": 1, "flat": 2, "none": 3, "up": 4, "good": 5}


def effect_heatmap(headlines: Sequence[Any], *, title: str = "Effects by metric and slice") -> go.Figure:
    """The whole analysis on one screen: each metric's headline relative effect (text) in every slice (columns),
    one panel per treatment cell, each tile coloured by its verdict (green better, red worse, grey not
    significant). ``headlines`` are ``viz.headline.Headline``s; metrics keep their order (goals, guardrails,
    the rest when the infos carry roles), the first metric on top. A tile without a relative effect shows the
    absolute one."""
    if not headlines:
        return empty_figure("No headline estimates yet.", title)
    cells = first_seen(h.cell for h in headlines)
    slices = first_seen(h.slice for h in headlines)
    labels = {h.metric: (f"{h.metric} · {h.info.role_tag}" if h.info.role_tag else h.metric) for h in headlines}
    metrics = first_seen(h.metric for h in headlines)
    ys = [labels[m] for m in reversed(metrics)]
    xs = [slice_label(s) for s in slices]
    scale: list[list[float | str]] = []
    n = len(_HEAT_CODES) - 1
    for verdict, code in sorted(_HEAT_CODES.items(), key=lambda kv: kv[1]):
        scale += [[code / n, VERDICT_COLORS[verdict]], [min(code + 0.999, n) / n, VERDICT_COLORS[verdict]]]
    scale[-1][0] = 1.0
    fig = make_subplots(rows=1, cols=len(cells), shared_yaxes=True, horizontal_spacing=0.02,
                        subplot_titles=[f"{c} vs {headlines[0].control}" for c in cells])
    by_key = {(h.cell, h.slice, h.metric): h for h in headlines}
    for col, cell in enumerate(cells, start=1):
        z: list[list[float | None]] = []
        text: list[list[str]] = []
        hover: list[list[str]] = []
        for m in reversed(metrics):
            zrow: list[float | None] = []
            trow: list[str] = []
            hrow: list[str] = []
            for s in slices:
                h = by_key.get((cell, s, m))
                if h is None:
                    zrow.append(None)
                    trow.append("")
                    hrow.append("no estimate")
                    continue
                shown = h.shown()
                zrow.append(float(_HEAT_CODES[h.verdict]))
                trow.append(shown.relative if shown.relative != "—" else shown.effect)
                hrow.append(f"{escape(m)} · {escape(slice_label(s))} · {escape(cell)}<br>"
                            f"effect {escape(shown.effect)} {escape(shown.ci)}<br>relative {escape(shown.relative)}"
                            f" · p {escape(shown.p)} · {escape(VERDICT_LABELS[h.verdict])}")
            z.append(zrow)
            text.append(trow)
            hover.append(hrow)
        fig.add_trace(go.Heatmap(
            z=z, x=xs, y=ys, text=text, texttemplate="%{text}", hovertext=hover, hoverinfo="text",
            zmin=0, zmax=n, colorscale=scale, showscale=False, xgap=2, ygap=2, textfont={"color": "#fff", "size": 11},
        ), row=1, col=col)
    fig.update_layout(height=max(260, 26 * len(metrics) + 160), width=None)
    finish(fig, title, "relative effect of each metric's headline estimate; colour = verdict", legend=False)
    fig.update_xaxes(side="top", showline=False, tickangle=0)
    fig.update_yaxes(autorange=True, showline=False)
    return fig
