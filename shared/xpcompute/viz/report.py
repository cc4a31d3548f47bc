"""One self-contained HTML report from result records: header, scorecard table, figures.

Self-contained means one file that opens offline, mailed or archived years
later: plotly.js is embedded inline exactly once (in ``<head>``), every figure
div only calls ``Plotly.newPlot``, the CSS is inline and uses system fonts, and
nothing is loaded from a network. The page is meant for someone who has never
seen the project, so it explains how to read itself next to each part.

What goes in is only what the rest of the system already produces: the
records (``ResultRecord``), optional per-cell summaries (``CellSummary``), and a
``meta`` mapping with whatever the caller knows about the analysis (see
:func:`render_report`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from markupsafe import Markup
from plotly.offline import get_plotlyjs
from pydantic import BaseModel

from xpcompute.records import CellSummary, ResultRecord
from xpcompute.templates import asset, render
from xpcompute.viz._common import clean, finite, first_seen, slice_label
from xpcompute.viz.figures import (
    cate_by_segment,
    cell_means,
    dynamic_effects,
    effect_heatmap,
    effects_forest,
    quantile_effects,
)
from xpcompute.viz.headline import Headline, MetricInfo, headlines
from xpcompute.viz.scorecard import (
    CORRECTION_NAMES,
    MARKERS,
    MODEL_NAMES,
    VERDICT_COLORS,
    VERDICT_LABELS,
    ScorecardRow,
    Verdict,
    format_count,
    format_effect,
    format_interval,
    format_number,
    format_p,
    format_percent,
    model_name,
    scorecard_rows,
)

KNOWN_META = {
    "analysis_id", "experiment_id", "experiment", "status", "state", "complete", "correction", "progress", "srm",
    "failures", "spec", "created_at", "finished_at", "refresh_seconds", "version", "decision", "decision_note",
    "inference", "records",
}

CSS = "\n" + asset("report/report.css")
"""The report's stylesheet (``templates/report/report.css``), inline in every report and page."""

#: CSS classes of the recommendations in the decision block
RECOMMENDATION_TONES: dict[str, str] = {"ship": "ship", "don't ship": "no-ship", "keep running": "keep"}

#: The role groups of the headline section, in reading order: (role, title, lead)
ROLE_GROUPS: tuple[tuple[str, str, str], ...] = (
    ("goal", "Goal metrics", "the change is meant to move these; a significant improvement is needed to ship"),
    ("guardrail", "Guardrails", "must not get worse by more than their margin (one-sided non-inferiority)"),
    ("rest", "Other metrics", "secondary and diagnostic: shown, not decisive"),
)


@dataclass(frozen=True)
class SRMView:
    """One sample-ratio check as the page shows it (from an ``SRMResult``, a ``SliceSRM`` or a dict)."""

    slice: str | None
    chi2: float | None
    p_value: float | None
    mismatch: bool
    observed: dict[str, float]
    expected: dict[str, float]


@dataclass(frozen=True)
class FigureBlock:
    """A figure section: heading, a sentence on why to look at it, and the figure."""

    key: str
    heading: str
    lead: str
    figure: go.Figure


def as_mapping(value: Any) -> dict[str, Any]:
    """A dataclass, pydantic model, mapping or plain object as a dict, so ``meta`` can hold any of them."""
    if value is None:
        return {}
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, Mapping):
        return dict(value)
    return {k: v for k, v in getattr(value, "__dict__", {}).items() if not k.startswith("_")}


def srm_views(value: Any) -> list[SRMView]:
    """Every SRM check in ``meta['srm']``: one result or a list of them (one per slice)."""
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else [value]
    out: list[SRMView] = []
    for item in items:
        d = as_mapping(item)
        if not d:
            continue
        p = clean(d.get("p_value"))
        mismatch = d.get("mismatch")
        out.append(SRMView(
            slice=d.get("slice"),
            chi2=clean(d.get("chi2")),
            p_value=p,
            mismatch=bool(mismatch) if mismatch is not None else (p is not None and p < 0.001),
            observed={str(k): float(v) for k, v in (d.get("observed") or {}).items()},
            expected={str(k): float(v) for k, v in (d.get("expected") or {}).items()},
        ))
    return out


def format_time(value: Any) -> str:
    """Epoch seconds as UTC, anything else as text."""
    if isinstance(value, int | float) and finite(float(value)) and value > 0:
        return dt.datetime.fromtimestamp(float(value), tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def chip(label: str, value: Any, tone: str = "") -> dict[str, str]:
    """One labelled chip of the header (rendered by ``report/header.html.j2``)."""
    return {"label": label, "value": str(value), "tone": tone}


def status_tone(status: str) -> str:
    s = status.upper()
    if s in ("SUCCEEDED", "DONE", "COMPLETE", "COMPLETED", "FINISHED"):
        return "ok"
    if s in ("FAILED", "ERROR", "CANCELLED"):
        return "bad"
    return "warn"


def render_header(title: str, meta: Mapping[str, Any], rows: Sequence[ScorecardRow], srm: Sequence[SRMView]) -> str:
    """Title, what analysis this is, its state and progress, and the SRM verdict in one line of chips."""
    chips: list[dict[str, str]] = []
    if meta.get("analysis_id") is not None:
        chips.append(chip("Analysis", meta["analysis_id"]))
    experiment = meta.get("experiment_id", meta.get("experiment"))
    if experiment is not None:
        chips.append(chip("Experiment", experiment))
    status = meta.get("status", meta.get("state"))
    if status is not None:
        chips.append(chip("Status", status, status_tone(str(status))))
    corrections = first_seen(r.correction for r in rows if r.correction)
    correction = meta.get("correction") or (corrections[0] if len(corrections) == 1 else None)
    if correction:
        chips.append(chip("Correction", CORRECTION_NAMES.get(str(correction), str(correction))))
    if srm:
        bad = [s for s in srm if s.mismatch]
        if bad:
            where = ", ".join(slice_label(s.slice) for s in bad)
            chips.append(chip("Sample ratio", f"MISMATCH ({where})", "bad"))
        else:
            worst = min((s.p_value for s in srm if s.p_value is not None), default=None)
            chips.append(chip("Sample ratio", f"OK (min p = {format_p(worst)})", "ok"))
    for key in ("created_at", "finished_at"):
        if meta.get(key):
            chips.append(chip(key.replace("_", " ").capitalize(), format_time(meta[key])))
    for key, value in meta.items():
        if key not in KNOWN_META and isinstance(value, str | int | float | bool) and value is not None:
            chips.append(chip(str(key).replace("_", " ").capitalize(), value))
    progress = progress_view(as_mapping(meta.get("progress")), meta.get("complete"))
    return render("report/header.html.j2", title=title, chips=chips, progress=progress)


def progress_view(progress: Mapping[str, Any], complete: Any) -> dict[str, Any] | None:
    """A bar of jobs succeeded / failed / running out of the total, when the caller passes progress."""
    total = int(progress.get("total") or 0)
    if total <= 0:
        return None
    parts = [("succeeded", "#40c057"), ("failed", "#fa5252"), ("running", "#4dabf7")]
    spans = [(100 * int(progress.get(k) or 0) / total, c) for k, c in parts]
    done = int(progress.get("succeeded") or 0) + int(progress.get("failed") or 0)
    text = f"{done} of {total} jobs finished"
    if progress.get("failed"):
        text += f" · {int(progress['failed'])} failed"
    if progress.get("running"):
        text += f" · {int(progress['running'])} running"
    if complete is False:
        text += " · results below are partial and fill in as slices complete"
    return {"spans": spans, "text": text}


def render_cards(rows: Sequence[ScorecardRow], srm: Sequence[SRMView], heads: Sequence[Headline] = ()) -> str:
    """At-a-glance counts: how many comparisons, how many moved, which way.

    With ``heads`` only the headline estimates count (one per metric, slice and cell): two models of one
    metric are not two discoveries, and a segment or a period is not a separate comparison."""
    if heads:
        chosen = {(h.slice, h.metric, h.cell, h.model) for h in heads}
        rows = [r for r in rows if (r.slice, r.metric, r.cell, r.model) in chosen and not r.detail]
    count: dict[str, int] = {}
    for r in rows:
        count[r.verdict] = count.get(r.verdict, 0) + 1
    metrics = len({r.metric for r in rows})
    slices = len({r.slice for r in rows})
    cards = [
        (str(len(rows)), f"{'headline ' if heads else ''}comparisons · {metrics} metric{'s' * (metrics != 1)} · {slices} "
                         f"slice{'s' * (slices != 1)}", "var(--ink)"),
    ]
    good = count.get("good", 0) + count.get("up", 0)
    bad = count.get("bad", 0) + count.get("down", 0)
    if count.get("good") or count.get("bad"):
        cards.append((str(count.get("good", 0)), "significant, good ✓", VERDICT_COLORS["good"]))
        cards.append((str(count.get("bad", 0)), "significant, bad ✗", VERDICT_COLORS["bad"]))
        if count.get("up") or count.get("down"):
            cards.append((str(count.get("up", 0) + count.get("down", 0)), "significant, no preferred direction",
                          VERDICT_COLORS["up"]))
    else:
        cards.append((str(good), "significant increases ▲", VERDICT_COLORS["up"]))
        cards.append((str(bad), "significant decreases ▼", VERDICT_COLORS["down"]))
    cards.append((str(count.get("flat", 0)), "not significant ·", VERDICT_COLORS["flat"]))
    if count.get("none"):
        cards.append((str(count["none"]), "without a p-value –", VERDICT_COLORS["none"]))
    if srm:
        n_bad = sum(s.mismatch for s in srm)
        cards.append(("mismatch" if n_bad else "OK", f"sample ratio check ({len(srm)} slice{'s' * (len(srm) != 1)})",
                      VERDICT_COLORS["bad"] if n_bad else VERDICT_COLORS["good"]))
    return render("report/cards.html.j2", cards=cards)


def render_srm(srm: Sequence[SRMView]) -> str:
    """The sample-ratio check per slice: a mismatch means assignment or logging is broken."""
    if not srm:
        return ""
    rows = [{
        "slice": slice_label(s.slice), "mismatch": s.mismatch, "chi2": format_number(s.chi2), "p": format_p(s.p_value),
        "observed": ", ".join(f"{k} {format_count(v)}" for k, v in s.observed.items()),
        "expected": ", ".join(f"{k} {format_count(v)}" for k, v in s.expected.items()),
    } for s in srm]
    return render("report/srm.html.j2", rows=rows, bad=[slice_label(s.slice) for s in srm if s.mismatch])


def render_failures(failures: Any) -> str:
    """Failed jobs and their reasons: nothing may be silently missing from a scorecard."""
    items = [as_mapping(f) for f in (failures or [])]
    items = [f for f in items if f]
    if not items:
        return ""
    pairs = []
    for f in items:
        what = " · ".join(str(x) for x in (f.get("metric"), f.get("model"), f.get("slice")) if x)
        pairs.append((what or str(f.get("job_id", "job")), str(f.get("error", ""))))
    return render("report/failures.html.j2", items=pairs)


def render_howto(rows: Sequence[ScorecardRow], correction: str | None) -> str:
    """The five terms a newcomer needs to read the table, next to the table."""
    quantiles = any(re.match(r"p\d", r.detail) for r in rows)
    alphas = {r.alpha for r in rows} or {0.05}
    alpha = alphas.pop() if len(alphas) == 1 else None
    level = f"{(1 - alpha) * 100:g}%" if alpha is not None else "1 − α"
    return render("report/howto.html.j2", quantiles=quantiles, level=level,
                  correction=CORRECTION_NAMES.get(correction or "", correction or ""),
                  alpha=alpha if alpha is not None else "α")


def verdict_badge(verdict: Verdict) -> str:
    return render("report/badge.html.j2", color=VERDICT_COLORS[verdict], marker=MARKERS[verdict],
                  label=VERDICT_LABELS[verdict])


def render_table(rows: Sequence[ScorecardRow]) -> str:
    """The scorecard: a block per metric, a row per slice and treatment cell."""
    if not rows:
        return render("report/table.html.j2", groups=[])
    with_detail = any(r.detail for r in rows)
    alphas = {r.alpha for r in rows}
    ci_head = f"{(1 - alphas.pop()) * 100:g}% CI" if len(alphas) == 1 else "CI"
    grouped: dict[tuple[str, str], list[ScorecardRow]] = {}
    for r in rows:
        grouped.setdefault((r.metric, r.model), []).append(r)
    groups = []
    for (metric, model), group in grouped.items():
        views = []
        previous_slice: object = object()
        for r in group:
            views.append({
                "metric": r.metric, "slice": slice_label(r.slice), "cell": r.cell, "control": r.control,
                "verdict": r.verdict, "color": VERDICT_COLORS[r.verdict], "detail": r.detail,
                "slice_cell": slice_label(r.slice) if r.slice != previous_slice else "",
                "users": f"{format_count(r.n_cell)} / {format_count(r.n_control)}",
                "mean_control": format_number(r.mean_control), "mean_cell": format_number(r.mean_cell),
                "effect": format_effect(r.effect), "ci": format_interval(r.ci), "lift": format_percent(r.relative),
                "lift_ci": format_interval(r.relative_ci, percent=True), "p": format_p(r.p),
                "p_adjusted": format_p(r.p_adjusted), "badge": Markup(verdict_badge(r.verdict)),
            })
            previous_slice = r.slice
        groups.append({"metric": metric, "model": model_name(model), "rows": views})
    present = first_seen(r.verdict for r in rows)
    legend = [{"color": VERDICT_COLORS[v], "marker": MARKERS[v], "label": VERDICT_LABELS[v]}
              for v in ("good", "bad", "up", "down", "flat", "none") if v in present]
    return render("report/table.html.j2", groups=groups, with_detail=with_detail, ci_head=ci_head,
                  ncol=12 if with_detail else 11, legend=legend)


def figure_blocks(
    records: Sequence[ResultRecord],
    summaries: Sequence[CellSummary] | None,
    higher_is_better: Mapping[str, bool] | None,
    headline_estimates: Sequence[Headline] = (),
) -> list[FigureBlock]:
    """The figures that have records behind them, in reading order: the heat map of ``headline_estimates``
    (when given), the headline comparisons, then breakdowns."""
    blocks: list[FigureBlock] = []
    if headline_estimates:
        blocks.append(FigureBlock(
            "heatmap", "Effects by metric and slice",
            "The whole analysis on one screen: each metric's headline effect relative to control, in every slice "
            "and cell; green is significantly better, red significantly worse, grey not significant.",
            effect_heatmap(headline_estimates),
        ))
    heads = [r for r in records if r.segment is None and r.time is None and r.quantile is None]
    if any(finite(r.effect) for r in heads):
        relative = all(finite(r.relative_effect) for r in heads if finite(r.effect))
        blocks.append(FigureBlock(
            "effects", "Effects with confidence intervals",
            "Every headline comparison at once, "
            + ("relative to the control mean so metrics in different units can sit side by side. "
               if relative else "in each metric's own units. ")
            + "A bar that does not cross the vertical zero line is a detectable effect.",
            effects_forest(records, relative=relative, higher_is_better=higher_is_better),
        ))
    did = [r for r in records if r.model == "did"]
    if did:  # its per-period and pre-trend records get their own figure (viz/did.py), not the dte and cate ones
        from xpcompute.viz.did import did_block

        blocks.append(did_block(did))
        records = [r for r in records if r.model != "did"]
    if any(r.segment is not None and r.time is None and r.quantile is None for r in records):
        blocks.append(FigureBlock(
            "cate", "Effect by segment (CATE)",
            "Whether the treatment works differently for different kinds of users. Segments far from the shaded "
            "overall band are where the effect differs; overlapping intervals mean no evidence of a difference.",
            cate_by_segment(records, higher_is_better=higher_is_better),
        ))
    if any(r.time is not None and r.segment is None and r.quantile is None for r in records):
        blocks.append(FigureBlock(
            "dte", "Effect over time (DTE)",
            "The effect in each period since the start. A rising curve suggests users learn the change, a "
            "fading one suggests a novelty effect; the dashed line is the average over all periods.",
            dynamic_effects(records, higher_is_better=higher_is_better),
        ))
    if any(r.quantile is not None and r.segment is None and r.time is None for r in records):
        blocks.append(FigureBlock(
            "qte", "Quantile treatment effects",
            "How the whole distribution moved, not just the mean: the difference between the cell's and "
            "control's quantiles. An effect only at high quantiles means the change acts on heavy users.",
            quantile_effects(records, higher_is_better=higher_is_better),
        ))
    has_means = any(finite(r.mean_cell) for r in heads) or any(
        s.segment is None and s.time is None for s in summaries or ())
    if has_means:
        blocks.append(FigureBlock(
            "means", "Cell means",
            "The raw level of each metric in every cell, control included, to put the effects in proportion"
            + (" (with intervals and quantiles from the per-cell summaries)." if summaries else "."),
            cell_means(records, summaries),
        ))
    return blocks


def figure_html(block: FigureBlock) -> str:
    """A figure div that draws itself with the page's single inline plotly.js (no script of its own to load)."""
    height = int(block.figure.layout.height or 450)
    div = block.figure.to_html(
        full_html=False, include_plotlyjs=False, div_id=f"figure-{block.key}", default_width="100%",
        default_height=f"{height}px", config={"displaylogo": False, "responsive": True},
    )
    return render("report/figure.html.j2", key=block.key, heading=block.heading, lead=block.lead, div=Markup(div))


def render_notes(records: Sequence[ResultRecord]) -> str:
    """What the fits reported (rows dropped, estimand definitions), once per note with where it applies."""
    where: dict[str, list[str]] = {}
    for r in records:
        for note in r.notes:
            label = f"{r.metric} · {r.model}"
            lst = where.setdefault(note, [])
            if label not in lst:
                lst.append(label)
    if not where:
        return ""
    return render("report/notes.html.j2", notes=list(where.items()))


def render_spec(spec: Any) -> str:
    """The request that produced the analysis, folded away: it is for reproducing, not for reading."""
    if not spec:
        return ""
    text = json.dumps(spec if isinstance(spec, Mapping | list) else as_mapping(spec), indent=2, sort_keys=True,
                      default=str)
    return render("report/spec.html.j2", text=text)


def render_scorecard_section(rows: Sequence[ScorecardRow], records: Sequence[ResultRecord], correction: str | None,
                             *, supporting: bool = False) -> str:
    """The full table of every record (how to read it, the table, the fits' notes). ``supporting``: the headline
    estimates are shown above it, so its other rows are said to be supporting ones."""
    return render("report/scorecard.html.j2", heading="All results" if supporting else "Scorecard",
                  supporting=supporting, howto=Markup(render_howto(rows, correction) if rows else ""),
                  table=Markup(render_table(rows)), notes=Markup(render_notes(records)))


def render_nav(blocks: Sequence[FigureBlock]) -> str:
    """Links to the figures, empty without any."""
    return render("report/nav.html.j2", blocks=blocks) if blocks else ""


def render_spec_section(spec: Any) -> str:
    """The folded analysis specification in its own section, empty without one."""
    return render("report/spec_section.html.j2", spec=Markup(render_spec(spec))) if spec else ""


def render_decision(decision: Sequence[Mapping[str, Any]] | None, note: str | None = None) -> str:
    """The decision block (per cell: recommendation, reasons, the tests behind it); empty without either."""
    if not decision and not note:
        return ""
    return render("decision.html.j2", decision=list(decision or ()), note=note, tones=RECOMMENDATION_TONES)


def headline_view(h: Headline) -> dict[str, Any]:
    """One headline row as text for the template (numbers formatted once, by ``Headline.shown``)."""
    shown = h.shown()
    supporting = first_seen(MODEL_NAMES.get(d.model, d.model) for d in h.details
                            if d.segment is None and d.time is None and d.quantile is None)
    return {
        "metric": h.metric, "unit": h.info.unit, "margin": h.info.margin if h.info.role == "guardrail" else "",
        "slice": slice_label(h.slice), "cell": h.cell, "estimator": h.estimator, "supporting": ", ".join(supporting),
        "mean_control": shown.mean_control, "mean_cell": shown.mean_cell, "effect": shown.effect, "ci": shown.ci,
        "relative": shown.relative, "p": shown.p, "marker": MARKERS[h.verdict], "label": VERDICT_LABELS[h.verdict],
        "color": VERDICT_COLORS[h.verdict], "verdict": h.verdict,
    }


def render_headlines(heads: Sequence[Headline]) -> str:
    """The headline estimates grouped goals, guardrails (with margins), the rest; one group when no roles exist."""
    if not heads:
        return ""
    has_roles = any(h.info.role in ("goal", "guardrail") for h in heads)
    groups = []
    for role, title, lead in ROLE_GROUPS if has_roles else (("rest", "Metrics", ""),):
        rows = [headline_view(h) for h in heads
                if (h.info.role == role) or (role == "rest" and h.info.role not in ("goal", "guardrail"))]
        if rows:
            groups.append({"role": role, "title": title, "lead": lead, "rows": rows})
    significant = sum(1 for h in heads if h.verdict not in ("flat", "none"))
    return render("report/headlines.html.j2", groups=groups, significant=significant, total=len(heads))


def render_report(
    records: Sequence[ResultRecord],
    *,
    title: str,
    summaries: Sequence[CellSummary] | None = None,
    meta: Mapping[str, Any] | None = None,
    higher_is_better: Mapping[str, bool] | None = None,
    infos: Mapping[str, MetricInfo] | None = None,
) -> str:
    """The whole report as one HTML string that opens offline.

    ``meta`` keys that are understood (all optional): ``analysis_id``,
    ``experiment_id`` (or ``experiment``), ``status`` (or ``state``),
    ``correction`` (``bh``/``holm``/``none``; taken from the records if
    absent), ``progress`` (``total``, ``succeeded``, ``failed``, ``running``,
    as a mapping or the coordinator's ``Progress``), ``complete`` (``False``
    marks the results as partial), ``srm`` (one ``SRMResult``/``SliceSRM``/dict
    or a list of them), ``failures`` (a list of ``Failure``/dicts with
    ``metric``, ``model``, ``slice``, ``error``), ``spec`` (the request, shown
    folded), ``created_at``/``finished_at`` (epoch seconds) and
    ``refresh_seconds`` (reload the page every N seconds, for a page served
    while the analysis runs), ``decision``/``decision_note`` (the scorecard's ship decision, shown first).
    Other scalar keys are shown as labelled chips. ``infos`` (``MetricInfo`` per metric, with roles from
    ``headline.with_roles``) order the headline estimates goals, guardrails, the rest, and pick CUPED headlines.
    """
    from xpcompute.segments.view import render_segments

    meta = dict(meta or {})
    rows = scorecard_rows(records, higher_is_better)
    srm = srm_views(meta.get("srm"))
    heads = headlines(records, infos)
    blocks = figure_blocks(records, summaries, higher_is_better, heads)
    corrections = first_seen(r.correction for r in records if r.correction)
    correction = meta.get("correction") or (corrections[0] if len(corrections) == 1 else None)
    refresh = meta.get("refresh_seconds")
    plotly_js = render("plotly.html.j2", js=Markup(get_plotlyjs())) if blocks else ""
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        render_header(title, meta, rows, srm),
        render_decision(meta.get("decision"), meta.get("decision_note")),
        render_headlines(heads),
        render_cards(rows, srm, heads) if rows else "",
        render_failures(meta.get("failures")),
        render("report/srm_note.html.j2", note=meta.get("srm_note")) if meta.get("srm_note") else "",
        render_srm(srm) if any(s.mismatch for s in srm) else "",
        render_scorecard_section(rows, records, correction, supporting=bool(heads)),
        render_nav(blocks),
        *(figure_html(b) for b in blocks),
        render_srm(srm) if srm and not any(s.mismatch for s in srm) else "",
        render_segments(meta.get("segments")),  # segment discovery (templates/report/segments.html.j2)
        render_spec_section(meta.get("spec")),
    ]
    return render("report/document.html.j2", title=title, css=Markup(CSS), plotly_js=Markup(plotly_js),
                  refresh=int(refresh) if isinstance(refresh, int | float) and refresh > 0 else None,
                  parts=[Markup(p) for p in parts if p], generated=generated)


def write_report(
    path: str | Path,
    records: Sequence[ResultRecord],
    *,
    title: str,
    summaries: Sequence[CellSummary] | None = None,
    meta: Mapping[str, Any] | None = None,
    higher_is_better: Mapping[str, bool] | None = None,
    infos: Mapping[str, MetricInfo] | None = None,
) -> Path:
    """Render the report and write it (UTF-8), creating parent folders; returns the path written."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        render_report(records, title=title, summaries=summaries, meta=meta, higher_is_better=higher_is_better,
                      infos=infos),
        encoding="utf-8",
    )
    return out
