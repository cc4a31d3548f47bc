"""The replay's HTML report: summary, changed decisions, two Plotly figures and the per-experiment table.

Views only: the numbers come from ``Replay`` (``meta.replay``); the page is ``templates/meta/replay.html.j2``.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from markupsafe import Markup

from xpcompute.templates import asset, render

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from xpcompute.meta.replay import Replay


def _pct(value: float | None, digits: int = 2) -> str:
    return "" if value is None or not math.isfinite(value) else f"{100 * value:+.{digits}f}%"


def _num(value: float | None, fmt: str = "{:.3g}") -> str:
    return "" if value is None or not math.isfinite(value) else fmt.format(value)


def _relative(numbers: dict[str, Any] | None) -> tuple[float | None, float | None]:
    if numbers is None:
        return None, None
    if numbers.get("relative_effect") is not None:
        return numbers["relative_effect"], numbers.get("relative_se")
    return None, None


def effects_figure(result: Replay) -> go.Figure:
    """Old against new relative effect per experiment and cell, with 95% error bars; changed decisions stand out."""
    import plotly.graph_objects as go

    rows = result.rows()
    fig = go.Figure()
    for changed, name, color in ((False, "same decision", "#4c78a8"), (True, "decision changes", "#e45756")):
        picked = [r for r in rows if bool(r["decision_changed"]) == changed]
        xs, ys, ex, ey, text = [], [], [], [], []
        for r in picked:
            (x, sx), (y, sy) = _relative(r["old"]), _relative(r["new"])
            if x is None or y is None:
                continue
            xs.append(100 * x)
            ys.append(100 * y)
            ex.append(196 * (sx or 0.0))
            ey.append(196 * (sy or 0.0))
            text.append(f"{r['experiment_id']} / {r['cell']}: {r['old_decision']} -> {r['new_decision']}")
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=name, text=text, hoverinfo="text+x+y",
                                     marker={"color": color, "size": 8},
                                     error_x={"type": "data", "array": ex, "thickness": 1, "width": 0},
                                     error_y={"type": "data", "array": ey, "thickness": 1, "width": 0}))
    values = [v for t in fig.data for v in (*t.x, *t.y)]
    if values:
        low, high = min(values), max(values)
        fig.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="new = old",
                                 line={"dash": "dot", "color": "#888"}))
    fig.update_layout(xaxis_title=f"{result.baseline} (archived), relative effect %",
                      yaxis_title=f"{result.metric} (new definition), relative effect %", height=480,
                      margin={"l": 60, "r": 20, "t": 20, "b": 50})
    return fig


def se_figure(result: Replay) -> go.Figure:
    """The new SE over the old one (relative scale) per experiment and cell: below 1 means more sensitive."""
    import plotly.graph_objects as go

    labels, ratios = [], []
    for r in result.rows():
        (_, so), (_, sn) = _relative(r["old"]), _relative(r["new"])
        if so and sn:
            labels.append(f"{r['experiment_id']} / {r['cell']}")
            ratios.append(sn / so)
    fig = go.Figure(go.Bar(x=labels, y=ratios, marker={"color": "#72b7b2"}))
    fig.add_hline(y=1.0, line={"dash": "dot", "color": "#888"})
    fig.update_layout(yaxis_title="SE new / SE old", height=360, margin={"l": 60, "r": 20, "t": 20, "b": 120})
    return fig


def _figure(key: str, heading: str, lead: str, fig: go.Figure) -> Markup:
    div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{key}", default_width="100%",
                      config={"displaylogo": False, "responsive": True})
    return Markup(render("report/figure.html.j2", key=key, heading=heading, lead=lead, div=Markup(div)))


def summary_rows(summary: dict[str, Any]) -> list[dict[str, str]]:
    alpha = summary.get("alpha", 0.05)
    return [
        {"label": "correlation of effects", "value": _num(summary.get("effect_correlation"), "{:.3f}"),
         "note": "Pearson correlation of the relative effects, old against new"},
        {"label": "correlation of z-scores", "value": _num(summary.get("z_correlation"), "{:.3f}"),
         "note": "do the two definitions find the same experiments convincing?"},
        {"label": "sign agreement", "value": _num(summary.get("sign_agreement"), "{:.1%}"),
         "note": "share of experiments and cells where both effects have the same sign"},
        {"label": "significant, old", "value": _num(summary.get("share_significant_old"), "{:.1%}"),
         "note": f"share with p < {alpha:g} (unadjusted) under the archived definition"},
        {"label": "significant, new", "value": _num(summary.get("share_significant_new"), "{:.1%}"),
         "note": f"share with p < {alpha:g} under the new definition (sensitivity)"},
        {"label": "SE ratio (median)", "value": _num(summary.get("se_ratio_median"), "{:.3f}"),
         "note": "new SE / old SE on the relative scale; below 1: the new definition is more precise"},
        {"label": "SE ratio (geometric mean)", "value": _num(summary.get("se_ratio_geometric_mean"), "{:.3f}"),
         "note": ""},
        {"label": "decisions changed", "value": str(summary.get("decisions_changed", 0)),
         "note": "experiment cells whose ship decision differs with the new definition"},
    ]


def render_replay(result: Replay, title: str | None = None) -> str:
    """The self-contained HTML report of a replay."""
    from plotly.offline import get_plotlyjs

    summary = result.summary()
    rows = []
    for r in result.rows():
        (oe, os_), (ne, ns) = _relative(r["old"]), _relative(r["new"])
        rows.append({
            "experiment_id": r["experiment_id"], "cell": r["cell"], "route": r["route"],
            "old_effect": _pct(oe), "old_se": _pct(os_).lstrip("+"), "old_p": _num((r["old"] or {}).get("p_value")),
            "new_effect": _pct(ne), "new_se": _pct(ns).lstrip("+"), "new_p": _num((r["new"] or {}).get("p_value")),
            "decision": r["old_decision"] if not r["decision_changed"] else f"{r['old_decision']} -> {r['new_decision']}",
            "changed": r["decision_changed"],
        })
    figures = [
        _figure("effects", "Old against new effect",
                "Each point is one experiment's treatment cell; bars are 95% intervals. Points off the diagonal "
                "moved; red ones would have been decided differently.", effects_figure(result)),
        _figure("se", "Precision", "The new definition's SE relative to the archived one, per experiment and cell.",
                se_figure(result)),
    ]
    routes = sorted({e.route for e in result.experiments})
    chips = [("metric", result.metric), ("baseline", result.baseline), ("experiments", str(len(result.experiments))),
             ("stage 1 from", ", ".join(routes)), ("seconds", f"{result.seconds:.1f}")]
    definition = result.definition if isinstance(result.definition, str) else \
        yaml.safe_dump(result.definition, sort_keys=False).strip()
    return render(
        "meta/replay.html.j2", title=title or f"Replay of {result.metric} over {len(result.experiments)} experiments",
        lead=f"How the archived experiments would have read with the new definition of {result.metric} in place "
             f"of {result.baseline}.",
        css=Markup(asset("report/report.css")), plotly_js=Markup(render("plotly.html.j2", js=Markup(get_plotlyjs()))),
        chips=chips, summary=summary_rows(summary), changes=result.decision_changes(),
        n_experiments=len(result.experiments), figures=figures, rows=rows, skipped=sorted(result.skipped.items()),
        definition=definition, generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_replay_report(result: Replay, path: str | Path, title: str | None = None) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_replay(result, title), encoding="utf-8")
    return out


__all__ = ["effects_figure", "render_replay", "se_figure", "summary_rows", "write_replay_report"]
