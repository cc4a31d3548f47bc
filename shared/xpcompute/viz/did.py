"""The difference-in-differences event-study figure, from ``ResultRecord``s only.

A ``did`` fit (``models/did.py``) stores one record per treated cell and
non-reference period (``time`` = the period label, ``effect`` = the
group-by-period coefficient relative to the reference period, with its
clustered interval) and, when there are periods before the reference, one
pre-trend record (``segment == "pre-trend"``: the joint Wald test that every
pre-period coefficient is zero), and per cell the average effect after the
reference (``time`` and ``segment`` None), drawn dashed over those periods. ``event_study`` draws, per metric, slice and
cell, the effect against event time with its confidence band; the reference
period is the point fixed at zero (it is not a record: its effect is zero by
definition, so the figure adds it, marked as the reference). Periods that are
integers (a quasi-experiment's event times, day indexes) sit on a numeric
axis, others (dates) in their natural order. The pre-trend test's statistic,
degrees of freedom and p-value are in each panel's title; a dotted line
separates the pre-periods from the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from xpcompute.records import ResultRecord
from xpcompute.viz._common import cell_colors, clean, slice_label
from xpcompute.viz.figures import (
    Panel,
    band_trace,
    ci_label,
    column,
    empty_figure,
    error_arrays,
    estimate,
    finish,
    group,
    hover_text,
    subplot_grid,
)

PRE_TREND = "pre-trend"  # models.did.PRE_TREND (not imported: the figure needs no model code)
MODEL = "did"

__all__ = ["did_block", "did_records", "event_study", "pre_trend_text", "reference_of"]


def did_records(records: Sequence[ResultRecord]) -> list[ResultRecord]:
    """The records of ``did`` fits (per-period effects and pre-trend tests)."""
    return [r for r in records if r.model == MODEL]


def reference_of(record: ResultRecord) -> str | None:
    """The reference period a did record is relative to, read from its note (``... reference period '-1'; ...``)."""
    for note in record.notes:
        _, sep, tail = note.partition("reference period ")
        if sep and tail.startswith("'"):
            return tail[1:].split("'", 1)[0]
    return None


def _as_number(label: str) -> float | None:
    try:
        return float(int(label))
    except ValueError:
        return None


def _order(label: str, numeric: bool) -> tuple[float, str]:
    """The panel's own order of periods: by value (integers as numbers; dates and text as text, ISO dates in order)."""
    return (_as_number(label) or 0.0, "") if numeric else (0.0, label)


def pre_trend_text(record: ResultRecord | None) -> str:
    """``pre-trend test chi2(3) = 1.23, p = 0.75`` (or that there are no pre-periods to test)."""
    if record is None or record.statistic is None or record.p_value is None:
        return "no pre-periods before the reference: no pre-trend test"
    df = f"({record.df:g})" if record.df is not None else ""
    return f"pre-trend test chi2{df} = {record.statistic:.3g}, p = {record.p_value:.3g}"


def event_study(records: Sequence[ResultRecord]) -> go.Figure:
    """Effect by event time with confidence bands and the pre-trend test, one panel per metric, slice and cell."""
    did = did_records(records)
    effects = [r for r in did if r.segment is None and r.time is not None]
    title = "Difference in differences: effect by period"
    if not any(clean(r.effect) is not None for r in effects):
        return empty_figure("No difference-in-differences records (fit model did on a unit-by-period panel).", title)
    tests = {(r.metric, r.slice): r for r in did if r.segment == PRE_TREND}
    averages = {(r.metric, r.slice, r.cell): r for r in did if r.segment is None and r.time is None}
    panels_map = group(effects, lambda r: (r.metric, r.slice, r.cell))
    colors = cell_colors(effects)
    panels = []
    for (metric, slc, cell), recs in panels_map.items():
        test = tests.get((metric, slc))
        panels.append(Panel(title=f"{metric}  ·  {slice_label(slc)}  ·  {cell} vs {recs[0].control}  ·  "
                                  f"{pre_trend_text(test)}", records=recs, rows=4))
    fig = subplot_grid(column(panels))
    numeric = all(_as_number(str(r.time)) is not None for r in effects)
    for i, ((metric, slc, cell), recs) in enumerate(panels_map.items(), start=1):
        ref = reference_of(recs[0])
        rows = sorted(recs, key=lambda r: _order(str(r.time), numeric))
        ests = [e for r in rows if (e := estimate(r, False)) is not None]
        labels = [str(e.record.time) for e in ests]
        pre = [lbl for lbl in labels if ref is not None and _order(lbl, numeric) < _order(ref, numeric)]
        xs: list[Any] = [_as_number(lbl) for lbl in labels] if numeric else labels
        meta = {"metric": metric, "slice": slc, "cell": cell, "model": MODEL}
        color = colors.get(cell, "#1c7ed6")
        band = band_trace(xs, ests, color, cell, meta)
        if band is not None:
            fig.add_trace(band, row=i, col=1)
        plus, minus = error_arrays(ests)
        fig.add_trace(go.Scatter(
            x=xs, y=[e.effect for e in ests], mode="lines+markers", name=cell, legendgroup=cell,
            showlegend=i == 1 or cell not in {p.records[0].cell for p in panels[: i - 1]},
            line={"color": color, "width": 2},
            marker={"size": 8, "color": [("#ffffff" if lbl in pre else color) for lbl in labels],
                    "line": {"color": color, "width": 2}},
            error_y={"type": "data", "array": plus, "arrayminus": minus, "visible": False},
            hovertext=[hover_text(e.record, False) + ("<br>pre-period (placebo)" if lbl in pre else "")
                       for e, lbl in zip(ests, labels, strict=True)],
            hoverinfo="text", meta={"role": "effect", **meta},
        ), row=i, col=1)
        if ref is not None:
            ref_x: Any = _as_number(ref) if numeric else ref
            fig.add_trace(go.Scatter(
                x=[ref_x], y=[0.0], mode="markers", name="reference period", legendgroup="reference",
                showlegend=i == 1, marker={"symbol": "diamond", "size": 10, "color": "#495057"},
                hovertext=[f"reference period {ref}: effects are relative to it (0 by definition)"],
                hoverinfo="text", meta={"role": "reference", **meta},
            ), row=i, col=1)
            if numeric and ref_x is not None:
                fig.add_vline(x=ref_x + 0.5, row=i, col=1, line={"color": "#adb5bd", "width": 1, "dash": "dot"})
        average = averages.get((metric, slc, cell))
        after = [x for x, lbl in zip(xs, labels, strict=True)
                 if ref is not None and _order(lbl, numeric) > _order(ref, numeric)]
        if average is not None and clean(average.effect) is not None and after:
            fig.add_trace(go.Scatter(
                x=[after[0], after[-1]], y=[average.effect] * 2, mode="lines", name="average after the reference",
                legendgroup="average", showlegend=i == 1, line={"color": color, "width": 1.5, "dash": "dash"},
                hovertext=[hover_text(average, False)] * 2, hoverinfo="text", meta={"role": "average", **meta},
            ), row=i, col=1)
        fig.add_hline(y=0, row=i, col=1, line={"color": "#495057", "width": 1})
        fig.update_xaxes(title_text="period relative to the change" if numeric else "period", row=i, col=1,
                         dtick=1 if numeric else None)
    return finish(fig, title, f"Points = effect in each period relative to the reference period (diamond, 0); "
                               f"band = {ci_label(effects)} clustered by unit; hollow points are pre-periods "
                               "(placebos, about 0 under parallel trends); dashed = average effect after the "
                               "reference.")


def did_block(records: Sequence[ResultRecord]) -> Any:
    """The report's and the page's section for did records (a ``viz.report.FigureBlock``)."""
    from xpcompute.viz.report import FigureBlock

    return FigureBlock(
        "did", "Difference in differences: effect by period",
        "The treated group's change against the comparison group's, period by period, relative to the reference "
        "period. Before the change the points are placebos: under parallel trends they sit near zero, and the "
        "pre-trend test in each panel's title checks them jointly (a small p-value means the groups were already "
        "drifting apart, and the effects after the change are suspect).",
        event_study(records),
    )
