"""The HTML scorecard the API serves at ``GET /analyses/{id}/scorecard``.

The page is assembled from the same building blocks as the offline report
(``xpcompute.viz.report``): header, cards, scorecard table and figures, so a
number on the page is the number in the report, the terminal and
``GET /analyses/{id}/results``. What the page adds is what only a served page
can do:

* it follows a running analysis: a small inline script polls
  ``GET /analyses/{id}`` every second and, when the state or the job counts
  change, swaps in the two live parts of the page (``?part=live`` returns just
  those), so results fill in slice by slice without the reader reloading;
* it shows each slice's progress (slice compressed, fits done);
* it has a form that requests a live slice (``POST /analyses/{id}/slices``)
  and shows the API's answer inline, errors included.

Everything is inline (CSS, plotly.js once, the script): the page works where
nothing outside the server can be reached. URLs in the script are derived from
the page's own path, so the page also works behind a path prefix (an API
Gateway stage).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi.responses import HTMLResponse
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from xpcompute.coordinator.jobs import PRIORITY_LIVE, Analysis, Job, JobKind, JobState, Progress
from xpcompute.coordinator.scorecard import Scorecard
from xpcompute.coordinator.service import Coordinator
from xpcompute.errors import XPError
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.runner import role_infos
from xpcompute.segments.view import render_segments
from xpcompute.templates import asset, render
from xpcompute.viz.headline import MetricInfo, headlines
from xpcompute.viz.report import (
    CSS,
    figure_blocks,
    figure_html,
    render_cards,
    render_decision,
    render_failures,
    render_header,
    render_headlines,
    render_nav,
    render_scorecard_section,
    render_spec_section,
    render_srm,
    srm_views,
)
from xpcompute.viz.scorecard import scorecard_rows

Part = Literal["page", "live"]

#: Seconds between polls while the analysis runs (the script slows to ``IDLE_POLL_S`` once it has finished).
POLL_S = 1.0
IDLE_POLL_S = 5.0

PAGE_CSS = "\n" + asset("page/page.css")
"""What the page adds to the report's CSS (``templates/page/page.css``)."""

#: The page's behaviour: poll, swap the live parts, submit the slice form. Configuration comes from the
#: ``page-config`` JSON block, so this text is constant (no values are interpolated into code).
PAGE_JS = "\n" + asset("page/page.js")
"""The page's script (``templates/page/page.js``): polls, swaps the live parts, posts the slice form."""


@dataclass(frozen=True)
class DimensionChoice:
    """A dimension the form offers (from the registered experiment), with what the API accepts for it."""

    name: str
    dtype: str
    values: tuple[str, ...] | None
    description: str


@dataclass(frozen=True)
class SliceProgress:
    """One slice as the page lists it: its compression job and how many of its fits are done."""

    label: str
    state: JobState
    fits_total: int
    fits_done: int
    fits_failed: int
    live: bool


@dataclass(frozen=True)
class PageData:
    """Everything the page shows, read from the coordinator once per request."""

    analysis: Analysis
    progress: Progress
    slices: list[SliceProgress]
    card: Scorecard
    dimensions: list[DimensionChoice]
    higher_is_better: dict[str, bool]
    description: str
    #: display metadata per metric, tagged with decision roles and ordered goals, guardrails, the rest
    infos: dict[str, MetricInfo] = field(default_factory=dict)


def gather(coordinator: Coordinator, analysis_id: str) -> PageData:
    """Read the analysis, its jobs and its (possibly partial) scorecard. Raises ``NotFoundError`` for an unknown id."""
    from xpcompute.metrics import higher_is_better

    analysis = coordinator.state.get_analysis(analysis_id)
    jobs = coordinator.state.list_jobs(analysis_id)
    card = coordinator.results(analysis_id)
    experiment = coordinator.experiment_of(analysis)
    dims = [experiment.dimension(name) for name in experiment.dimensions] if experiment is not None else []
    dimensions = [DimensionChoice(d.name, d.dtype, d.values, d.description) for d in dims]
    higher = experiment.higher_is_better() if experiment is not None else higher_is_better(
        analysis.request.get("metrics", ()))
    return PageData(
        analysis=analysis, progress=Progress.of(jobs), slices=slice_progress(jobs, requested_slice_ids(analysis)),
        card=card, dimensions=dimensions, higher_is_better=higher,
        description=experiment.description if experiment is not None else "", infos=role_infos(card, experiment),
    )


def requested_slice_ids(analysis: Analysis) -> list[str]:
    """Slice ids of the pre-computed slices, in the order the analysis request lists them."""
    return [SliceFilter.model_validate(s).slice_id for s in analysis.request.get("slices", ())]


def slice_progress(jobs: Sequence[Job], requested: Sequence[str] = ()) -> list[SliceProgress]:
    """Per slice: the slice job's state and its fit jobs' counts.

    Pre-computed slices come in the order the request listed them (``requested``: their slice ids), live ones
    after them in the order they were asked for, so a new slice joins the end of the list.
    """
    fits: dict[str, list[Job]] = {}
    for job in jobs:
        if job.kind == JobKind.FIT:
            fits.setdefault(job.slice_id, []).append(job)
    rank = {sid: i for i, sid in enumerate(requested)}

    def order(job: Job) -> tuple[int, float, int, str]:
        return (job.priority, job.created_at, rank.get(job.slice_id, len(rank)), job.slice_label)

    out = []
    for job in sorted((j for j in jobs if j.kind == JobKind.SLICE), key=order):
        children = fits.get(job.slice_id, [])
        out.append(SliceProgress(
            label=job.slice_label, state=job.state, fits_total=len(children),
            fits_done=sum(c.state == JobState.SUCCEEDED for c in children),
            fits_failed=sum(c.state == JobState.FAILED for c in children),
            live=job.priority >= PRIORITY_LIVE,
        ))
    return out


def signature(data: PageData) -> str:
    """What the script compares to decide whether to re-fetch the live parts (same fields as ``GET /analyses/{id}``)."""
    p = data.progress
    return f"{data.analysis.state.value}|{p.total}|{p.succeeded}|{p.failed}|{p.running}"


def render_slices(slices: Sequence[SliceProgress]) -> str:
    """One chip per slice: queued, compressing, fitting n/m, done, failed (a live slice has a dashed border)."""
    chips = []
    for s in slices:
        if s.state == JobState.FAILED:
            tone, state = "bad", "slice failed"
        elif s.state != JobState.SUCCEEDED:
            tone, state = "warn", "compressing" if s.state == JobState.RUNNING else "queued"
        elif s.fits_done + s.fits_failed < s.fits_total:
            tone, state = "warn", f"fitting {s.fits_done + s.fits_failed}/{s.fits_total}"
        elif s.fits_failed:
            tone, state = "bad", f"{s.fits_failed} of {s.fits_total} fits failed"
        else:
            tone, state = "ok", f"✓ {s.fits_total} fit{'s' * (s.fits_total != 1)}"
        chips.append({"tone": tone, "state": state, "label": s.label, "live": s.live})
    return render("page/slices.html.j2", chips=chips) if chips else ""


def meta_of(data: PageData) -> dict[str, Any]:
    """The report's ``meta`` for this analysis, with the live state and progress (fresher than the scorecard's)."""
    meta = {k: v for k, v in data.card.to_json_dict().items() if k not in ("records", "version")}
    meta["state"] = data.analysis.state.value
    meta["progress"] = data.progress.__dict__
    meta["complete"] = data.analysis.state.value != "RUNNING"
    return meta


def render_inference(summary: Mapping[str, Any] | None) -> str:
    """Which inference decided: 'look k of K (group-sequential, ...): boundary ...; crossed for ...' and what else the
    records carry (posteriors, shrinkage); nothing for a fixed-horizon analysis."""
    if not summary or summary.get("method", "fixed_horizon") == "fixed_horizon":
        return ""
    extra = [name for flag, name in ((summary.get("bayesian"), "Bayesian posteriors"),
                                     (summary.get("shrinkage"), "empirical-Bayes shrinkage")) if flag]
    tail = f" Records also carry {' and '.join(extra)} (JSON results)." if extra else ""
    return render("page/inference.html.j2", description=str(summary.get("description", "")), tail=tail,
                  notes=[str(n) for n in summary.get("notes") or ()])


def render_live(data: PageData, between: str = "") -> str:
    """The two parts the script swaps in: ``#live-top`` (status, the decision, slices, counts) and ``#live-results``
    (headline estimates by role, the heat map, the full table, figures).

    ``between`` goes between them and is never swapped (the page puts the slice form there, so a
    refresh cannot wipe what the reader is typing).
    """
    card = data.card
    meta = meta_of(data)
    records = card.records
    rows = scorecard_rows(records, data.higher_is_better)
    srm = srm_views(meta.get("srm"))
    heads = headlines(records, data.infos)
    blocks = figure_blocks(records, None, data.higher_is_better, heads)
    title = f"Experiment {data.analysis.experiment_id}: scorecard"
    top = [
        render_header(title, meta, rows, srm),
        render("page/intro.html.j2", description=data.description, running=data.analysis.state.value == "RUNNING"),
        render_decision(card.decision, card.decision_note),
        render_inference(meta.get("inference")),
        render_slices(data.slices),
        render_cards(rows, srm, heads) if rows else "",
        render_failures(meta.get("failures")),
        render("report/srm_note.html.j2", note=meta.get("srm_note")) if meta.get("srm_note") else "",
        render_srm(srm) if any(s.mismatch for s in srm) else "",
    ]
    results = [
        render_headlines(heads),
        render_scorecard_section(rows, records, card.correction, supporting=bool(heads)),
        render_nav(blocks),
        *(figure_html(b) for b in blocks),
        render_srm(srm) if srm and not any(s.mismatch for s in srm) else "",
        render_segments(card.segments, live=True),  # segment discovery (templates/report/segments.html.j2)
        render_spec_section(card.spec),
    ]
    return render("page/live.html.j2", signature=signature(data), state=data.analysis.state.value,
                  top=[Markup(p) for p in top if p], between=Markup(between),
                  results=[Markup(p) for p in results if p])


def render_form(data: PageData) -> str:
    """The live-slice form: a dimension (suggested from the experiment), values, exclude, an optional name."""
    first = data.dimensions[0] if data.dimensions else None
    example = (first.values[0] if first is not None and first.values else "US")
    return render("page/form.html.j2", dimensions=data.dimensions, placeholder=first.name if first else "country",
                  example=str(example))


def render_reuse(analysis_id: str) -> str:
    """Where the same numbers are available outside this page (JSON, notebook, report)."""
    return render("page/reuse.html.j2", aid=analysis_id)


def config_json(data: PageData) -> str:
    """The script's configuration, safe inside a ``<script>`` element (no ``</`` can close it)."""
    config = {
        "analysis_id": data.analysis.analysis_id,
        "poll_s": POLL_S,
        "idle_poll_s": IDLE_POLL_S,
        "dimensions": [
            {"name": d.name, "dtype": d.dtype, "values": list(d.values) if d.values else None,
             "description": d.description}
            for d in data.dimensions
        ],
    }
    return json.dumps(config).replace("</", "<\\/")


def document(title: str, body: str, *, head: str = "") -> str:
    """A complete page with the report's CSS and this page's additions (``body``/``head`` are rendered HTML)."""
    return render("page/document.html.j2", title=title, css=Markup(CSS + PAGE_CSS), head=Markup(head),
                  body=Markup(body))


def render_page(data: PageData) -> str:
    """The whole page: plotly.js once in ``<head>``, the live parts, the form, and the script."""
    aid = data.analysis.analysis_id
    body = render("page/body.html.j2", live=Markup(render_live(data, between=render_form(data))),
                  reuse=Markup(render_reuse(aid)), config=Markup(config_json(data)), script=Markup(PAGE_JS))
    head = render("plotly.html.j2", js=Markup(get_plotlyjs()))
    return document(f"Scorecard · {data.analysis.experiment_id} · {aid}", body, head=head)


def render_error(analysis_id: str, status: int, message: str) -> str:
    """The page for an analysis that cannot be shown: what was asked, why not, and where ids come from."""
    head = "Analysis not found" if status == 404 else "This scorecard cannot be shown"
    return document(head, render("page/error.html.j2", head=head, analysis_id=analysis_id, message=message))


def scorecard_response(coordinator: Coordinator, analysis_id: str, part: Part = "page") -> HTMLResponse:
    """The whole page, or only its live parts (what the page's script fetches); an HTML error page otherwise."""
    headers: Mapping[str, str] = {"Cache-Control": "no-store"}
    try:
        data = gather(coordinator, analysis_id)
    except XPError as exc:
        return HTMLResponse(render_error(analysis_id, exc.status, str(exc)), status_code=exc.status, headers=headers)
    html = render_live(data) if part == "live" else render_page(data)
    return HTMLResponse(html, headers=headers)
