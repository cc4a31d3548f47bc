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
from dataclasses import dataclass
from html import escape
from typing import Any, Literal

from fastapi.responses import HTMLResponse
from plotly.offline import get_plotlyjs

from xpcompute.coordinator.jobs import PRIORITY_LIVE, Analysis, Job, JobKind, JobState, Progress
from xpcompute.coordinator.scorecard import Scorecard
from xpcompute.coordinator.service import Coordinator
from xpcompute.errors import XPError
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.viz.report import (
    CSS,
    figure_blocks,
    figure_html,
    render_cards,
    render_failures,
    render_header,
    render_howto,
    render_notes,
    render_spec,
    render_srm,
    render_table,
    srm_views,
)
from xpcompute.viz.scorecard import scorecard_rows

Part = Literal["page", "live"]

#: Seconds between polls while the analysis runs (the script slows to ``IDLE_POLL_S`` once it has finished).
POLL_S = 1.0
IDLE_POLL_S = 5.0

PAGE_CSS = """
main { max-width:1480px; padding:20px 20px 40px; }
th, td { padding:6px 7px; }
.livebar { display:flex; justify-content:space-between; gap:12px; color:var(--muted); font-size:12.5px;
           margin:0 4px 8px; }
.livebar .dot { display:inline-block; width:8px; height:8px; border-radius:50%; background:#adb5bd;
                margin-right:6px; vertical-align:middle; }
.livebar.running .dot { background:#4dabf7; animation: pulse 1s ease-in-out infinite alternate; }
.livebar.done .dot { background:#40c057; }
.livebar.lost .dot { background:#fa5252; }
@keyframes pulse { from { opacity:.35; } to { opacity:1; } }
p.intro { color:#495057; margin:12px 0 0; max-width:980px; }
.slices { display:flex; flex-wrap:wrap; gap:8px; margin-top:12px; }
.slices .chip { font:inherit; font-size:13px; cursor:pointer; }
.slices .chip .state { font-weight:400; color:var(--muted); margin-left:4px; }
.slices .chip.live { border-style:dashed; }
.slices .chip.selected { outline:2px solid var(--accent); outline-offset:1px; }
.slices .label { color:var(--muted); font-size:12.5px; align-self:center; }
form.slice-form { display:flex; flex-wrap:wrap; align-items:flex-end; gap:10px 14px; margin-top:6px; }
form.slice-form label { display:flex; flex-direction:column; font-size:12px; font-weight:600; color:var(--muted);
                        text-transform:uppercase; letter-spacing:.04em; gap:3px; }
form.slice-form label.check { flex-direction:row; align-items:center; gap:6px; text-transform:none;
                              letter-spacing:0; font-size:13.5px; color:var(--ink); font-weight:400;
                              padding-bottom:7px; }
form.slice-form input[type=text] { font:inherit; font-size:14px; padding:6px 9px; border:1px solid #ced4da;
                                   border-radius:6px; min-width:190px; color:var(--ink); }
form.slice-form input[type=text]:focus { outline:2px solid #a5d8ff; border-color:var(--accent); }
form.slice-form button { font:inherit; font-weight:600; background:var(--accent); color:#fff; border:0;
                         border-radius:6px; padding:7px 16px; cursor:pointer; }
form.slice-form button:disabled { background:#74c0fc; cursor:progress; }
.hint { color:var(--muted); font-size:12.5px; margin-top:8px; }
.hint code, p code, li code { background:var(--soft); border:1px solid var(--line); border-radius:4px;
                              padding:0 4px; font-size:12.5px; }
#slice-message:empty { display:none; }
#slice-message { margin:12px 0 0; }
"""

#: The page's behaviour: poll, swap the live parts, submit the slice form. Configuration comes from the
#: ``page-config`` JSON block, so this text is constant (no values are interpolated into code).
PAGE_JS = r"""
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("page-config").textContent);
  const base = window.location.pathname.replace(/\/scorecard\/?$/, "");
  const bar = document.getElementById("live-indicator");
  const barText = document.getElementById("live-text");
  const form = document.getElementById("slice-form");
  const message = document.getElementById("slice-message");
  const hint = document.getElementById("dimension-hint");
  const dims = {};
  config.dimensions.forEach(function (d) { dims[d.name] = d; });
  let signature = document.getElementById("live-top").dataset.signature;
  let state = document.getElementById("live-top").dataset.state;
  let waitingFor = null;
  let filter = null;
  let timer = null;
  let busy = false;

  function signatureOf(s) {
    const p = s.progress;
    return [s.state, p.total, p.succeeded, p.failed, p.running].join("|");
  }

  function say(kind, html) {
    message.className = kind === "error" ? "alert" : kind === "ok" ? "alert ok" : "alert warn";
    message.innerHTML = html;
  }

  function text(value) {
    const span = document.createElement("span");
    span.textContent = value;
    return span.innerHTML;
  }

  function setBar(kind, words) {
    bar.className = "livebar " + kind;
    barText.textContent = words + " · checked " + new Date().toLocaleTimeString();
  }

  function schedule(seconds) {
    if (timer !== null) { clearTimeout(timer); }
    timer = setTimeout(poll, seconds * 1000);
  }

  function activate(container) {
    container.querySelectorAll("script").forEach(function (old) {
      const fresh = document.createElement("script");
      fresh.text = old.textContent;
      old.replaceWith(fresh);
    });
  }

  function rowsOf(label) {
    return Array.from(document.querySelectorAll("#live-results tr.row[data-metric]"))
      .filter(function (tr) { return tr.dataset.slice === label; });
  }

  function applyFilter() {
    document.querySelectorAll("#live-results tr.row[data-metric]").forEach(function (tr) {
      tr.hidden = filter !== null && tr.dataset.slice !== filter;
    });
    document.querySelectorAll("#live-top .slices .chip").forEach(function (chip) {
      chip.classList.toggle("selected", chip.dataset.slice === filter);
    });
    const old = document.getElementById("filter-note");
    if (old) { old.remove(); }
    const lead = document.querySelector("#scorecard .lead");
    if (filter !== null && lead) {
      const note = document.createElement("div");
      note.id = "filter-note";
      note.className = "alert warn";
      note.innerHTML = "Showing only the slice <b>" + text(filter) + "</b>. " +
        '<a href="#" data-clear-filter>Show every slice</a>';
      lead.after(note);
    }
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-clear-filter]")) {
      event.preventDefault();
      filter = null;
      applyFilter();
      return;
    }
    const chip = event.target.closest(".slices .chip");
    if (!chip) { return; }
    filter = filter === chip.dataset.slice ? null : chip.dataset.slice;
    applyFilter();
  });

  function checkWaiting() {
    if (waitingFor === null) { return; }
    const rows = rowsOf(waitingFor);
    if (rows.length > 0 && state === "RUNNING") {
      // fits land one by one: say how far it is, and announce the slice once its jobs are all done
      say("pending", "Slice <b>" + text(waitingFor) + "</b>: " + rows.length + " row" +
        (rows.length === 1 ? "" : "s") + " so far, more are landing.");
      return;
    }
    if (rows.length > 0) {
      say("ok", "Slice <b>" + text(waitingFor) + "</b> is in the scorecard: " + rows.length +
        " row" + (rows.length === 1 ? "" : "s") + " (highlighted below).");
      rows.forEach(function (tr) { tr.classList.add("new-slice"); tr.style.background = "#e7f5ff"; });
      waitingFor = null;
    }
  }

  async function refresh() {
    const response = await fetch(window.location.pathname + "?part=live", {cache: "no-store"});
    if (!response.ok) { throw new Error("the page answered " + response.status); }
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    if (window.Plotly) {
      document.querySelectorAll("#live-results .js-plotly-plot").forEach(function (el) { window.Plotly.purge(el); });
    }
    ["live-top", "live-results"].forEach(function (id) {
      const fresh = doc.getElementById(id);
      const current = document.getElementById(id);
      if (fresh && current) {
        current.replaceWith(fresh);
        activate(fresh);
      }
    });
    signature = document.getElementById("live-top").dataset.signature;
    state = document.getElementById("live-top").dataset.state;
    applyFilter();
    checkWaiting();
  }

  async function poll() {
    if (busy) { schedule(config.poll_s); return; }
    busy = true;
    let next = config.poll_s;
    try {
      const response = await fetch(base, {headers: {Accept: "application/json"}, cache: "no-store"});
      const body = await response.json().catch(function () { return {}; });
      if (!response.ok) {
        setBar("lost", "cannot read the analysis (" + response.status + ": " + (body.message || response.statusText) + ")");
        next = config.idle_poll_s;
      } else {
        if (signatureOf(body) !== signature) { await refresh(); }
        const running = body.state === "RUNNING";
        const p = body.progress;
        setBar(running ? "running" : "done", running
          ? "live: " + (p.succeeded + p.failed) + " of " + p.total + " jobs finished, updating as results land"
          : "analysis " + body.state.toLowerCase() + "; add a slice below to compute more");
        next = running || waitingFor !== null ? config.poll_s : config.idle_poll_s;
      }
    } catch (err) {
      setBar("lost", "lost contact with the API (" + err.message + "); retrying");
      next = config.idle_poll_s;
    } finally {
      busy = false;
      schedule(next);
    }
  }

  function typed(dimension, value) {
    const d = dims[dimension];
    if (d && d.dtype === "bigint" && /^-?\d+$/.test(value)) { return parseInt(value, 10); }
    if (d && d.dtype === "boolean" && /^(true|false)$/i.test(value)) { return value.toLowerCase() === "true"; }
    return value;
  }

  function showHint() {
    const d = dims[form.elements.dimension.value.trim()];
    if (!d) {
      hint.innerHTML = config.dimensions.length
        ? "Dimensions you can slice by: " + config.dimensions.map(function (x) { return "<code>" + text(x.name) + "</code>"; }).join(", ") + "."
        : "Type a column of the analysis table.";
      return;
    }
    hint.innerHTML = "<b>" + text(d.name) + "</b>" + (d.description ? ": " + text(d.description) : "") +
      (d.values ? " Values: " + d.values.map(function (v) { return "<code>" + text(v) + "</code>"; }).join(" ") + "." : "") +
      " Several values separated by commas make one slice of users with any of them.";
  }

  form.elements.dimension.addEventListener("input", showHint);
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const dimension = form.elements.dimension.value.trim();
    const values = form.elements.values.value.split(",").map(function (v) { return v.trim(); })
      .filter(function (v) { return v.length > 0; }).map(function (v) { return typed(dimension, v); });
    const body = {all_of: [{column: dimension, values: values, negate: form.elements.negate.checked}]};
    const name = form.elements.name.value.trim();
    if (name) { body.name = name; }
    const button = form.querySelector("button");
    button.disabled = true;
    say("pending", "Requesting the slice…");
    try {
      const response = await fetch(base + "/slices", {
        method: "POST", headers: {"Content-Type": "application/json", Accept: "application/json"},
        body: JSON.stringify(body),
      });
      const answer = await response.json().catch(function () { return {}; });
      if (!response.ok) {
        say("error", "<b>The API refused this slice (" + response.status + ")</b>: " +
          text(answer.message || response.statusText));
        return;
      }
      waitingFor = answer.label;
      say("pending", "Slice <b>" + text(answer.label) + "</b> requested: it is being compressed and fitted; " +
        "its rows appear in the scorecard below as soon as they are ready.");
      checkWaiting();
      schedule(0);
    } catch (err) {
      say("error", "<b>Could not reach the API</b>: " + text(err.message));
    } finally {
      button.disabled = false;
    }
  });

  showHint();
  setBar(state === "RUNNING" ? "running" : "done", state === "RUNNING"
    ? "live: updating as results land" : "analysis " + state.toLowerCase() + "; add a slice below to compute more");
  schedule(state === "RUNNING" ? config.poll_s : config.idle_poll_s);
})();
"""


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
        description=experiment.description if experiment is not None else "",
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
        live = " live" if s.live else ""
        title = "requested live" if s.live else "pre-computed"
        chips.append(f'<button type="button" class="chip {tone}{live}" title="{title}; click to show only its rows" '
                     f'data-slice="{escape(s.label)}"><b>{escape(s.label)}</b>'
                     f'<span class="state">{escape(state)}</span></button>')
    if not chips:
        return ""
    return (f'<div class="slices" aria-label="slices"><span class="label">Slices (click one to filter the table):'
            f'</span>{"".join(chips)}</div>')


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
    notes = "".join(f"<li>{escape(str(n))}</li>" for n in summary.get("notes") or ())
    return (f'<p class="intro inference"><b>Inference:</b> {escape(str(summary.get("description", "")))}. '
            f"Intervals and p-values in the table are the sequential ones.{escape(tail)}</p>"
            + (f'<ul class="muted">{notes}</ul>' if notes else ""))


def render_live(data: PageData, between: str = "") -> str:
    """The two parts the script swaps in: ``#live-top`` (status, slices, counts) and ``#live-results`` (table, figures).

    ``between`` goes between them and is never swapped (the page puts the slice form there, so a
    refresh cannot wipe what the reader is typing).
    """
    card = data.card
    meta = meta_of(data)
    records = card.records
    rows = scorecard_rows(records, data.higher_is_better)
    srm = srm_views(meta.get("srm"))
    blocks = figure_blocks(records, None, data.higher_is_better)
    title = f"Experiment {data.analysis.experiment_id}: scorecard"
    intro = (
        "Each treatment cell compared with control, for every metric and slice of users in this analysis. "
        + (f"{escape(data.description)} " if data.description else "")
        + ("The page updates by itself while jobs run; results are partial until every slice is done."
           if data.analysis.state.value == "RUNNING" else "")
    )
    top = [
        render_header(title, meta, rows, srm),
        f'<p class="intro">{intro}</p>',
        render_inference(meta.get("inference")),
        render_slices(data.slices),
        render_cards(rows, srm) if rows else "",
        render_failures(meta.get("failures")),
        render_srm(srm) if any(s.mismatch for s in srm) else "",
    ]
    nav = " · ".join(f'<a href="#{b.key}">{escape(b.heading)}</a>' for b in blocks)
    results = [
        '<section id="scorecard"><h2>Scorecard</h2>'
        '<p class="lead">Each row compares one treatment cell with control for one metric in one slice of users. '
        "Read the Result column first, then the interval to see how large the effect could be.</p>",
        render_howto(rows, card.correction) if rows else "",
        render_table(rows),
        render_notes(records),
        "</section>",
        f'<p class="muted" style="margin:4px 4px 0">Figures: {nav}</p>' if nav else "",
        *(figure_html(b) for b in blocks),
        render_srm(srm) if srm and not any(s.mismatch for s in srm) else "",
        f"<section>{render_spec(card.spec)}</section>" if card.spec else "",
    ]
    sig = escape(signature(data))
    return (
        f'<div id="live-top" data-signature="{sig}" data-state="{data.analysis.state.value}">'
        + "\n".join(p for p in top if p)
        + "</div>\n"
        + between
        + '<div id="live-results">'
        + "\n".join(p for p in results if p)
        + "</div>"
    )


def render_form(data: PageData) -> str:
    """The live-slice form: a dimension (suggested from the experiment), values, exclude, an optional name."""
    options = "".join(
        f'<option value="{escape(d.name)}">{escape(d.description or d.dtype)}</option>' for d in data.dimensions
    )
    first = data.dimensions[0] if data.dimensions else None
    example = (first.values[0] if first is not None and first.values else "US")
    return (
        '<section id="add-slice"><h2>Add a slice</h2>'
        '<p class="lead">Ask for the same metrics and models on a group of users that was not pre-computed. '
        "The slice is compressed from the analysis table and fitted in the background; its rows join the "
        "scorecard (and the multiple-testing correction) as soon as they are ready.</p>"
        '<form id="slice-form" class="slice-form" autocomplete="off">'
        '<label>Dimension<input type="text" name="dimension" list="dimension-list" required '
        f'placeholder="{escape(first.name if first else "country")}"></label>'
        f'<datalist id="dimension-list">{options}</datalist>'
        '<label>Value(s)<input type="text" name="values" required '
        f'placeholder="{escape(str(example))}"></label>'
        '<label class="check"><input type="checkbox" name="negate"> everyone except these values</label>'
        '<label>Name (optional)<input type="text" name="name" placeholder="label in the table"></label>'
        "<button type=\"submit\">Compute slice</button></form>"
        '<div class="hint" id="dimension-hint"></div>'
        '<div id="slice-message" role="status" aria-live="polite"></div></section>'
    )


def render_reuse(analysis_id: str) -> str:
    """Where the same numbers are available outside this page (JSON, notebook, report)."""
    aid = escape(analysis_id)
    return (
        "<section><h2>Use these results elsewhere</h2><ul>"
        f"<li>JSON: <code>GET /analyses/{aid}/results</code> (the scorecard) and <code>GET /analyses/{aid}</code> "
        "(status and progress).</li>"
        f"<li>Notebook: <code>xpcompute notebook {aid} --out analysis.ipynb</code> writes a notebook that re-fits "
        "every slice from its stored compressed statistics and checks the numbers against this scorecard.</li>"
        "</ul></section>"
    )


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
    """A complete page with the report's CSS and this page's additions."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{escape(title)}</title><style>{CSS}{PAGE_CSS}</style>{head}</head>"
        f"<body><main>{body}</main></body></html>"
    )


def render_page(data: PageData) -> str:
    """The whole page: plotly.js once in ``<head>``, the live parts, the form, and the script."""
    aid = data.analysis.analysis_id
    body = (
        '<div class="livebar" id="live-indicator"><span><span class="dot"></span><span id="live-text">'
        "live page</span></span><span>"
        '<a href="results">scorecard as JSON</a></span></div>'
        + render_live(data, between=render_form(data))
        + render_reuse(aid)
        + '<footer>Served by xpcompute · everything on this page is inline; it needs no network beyond this '
        "server.</footer>"
        + f'<script type="application/json" id="page-config">{config_json(data)}</script>'
        + f"<script>{PAGE_JS}</script>"
    )
    head = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    return document(f"Scorecard · {data.analysis.experiment_id} · {aid}", body, head=head)


def render_error(analysis_id: str, status: int, message: str) -> str:
    """The page for an analysis that cannot be shown: what was asked, why not, and where ids come from."""
    head = "Analysis not found" if status == 404 else "This scorecard cannot be shown"
    body = (
        f'<header class="top"><h1>{escape(head)}</h1>'
        f'<p class="intro">No scorecard for analysis <code>{escape(analysis_id)}</code>: {escape(message)}</p>'
        '<p class="intro">Analysis ids are returned by <code>POST /experiments/{experiment_id}/analyses</code> '
        "and printed by <code>xpcompute demo</code>; the page lives at "
        "<code>/analyses/{analysis_id}/scorecard</code>.</p></header>"
    )
    return document(head, body)


def scorecard_response(coordinator: Coordinator, analysis_id: str, part: Part = "page") -> HTMLResponse:
    """The whole page, or only its live parts (what the page's script fetches); an HTML error page otherwise."""
    headers: Mapping[str, str] = {"Cache-Control": "no-store"}
    try:
        data = gather(coordinator, analysis_id)
    except XPError as exc:
        return HTMLResponse(render_error(analysis_id, exc.status, str(exc)), status_code=exc.status, headers=headers)
    html = render_live(data) if part == "live" else render_page(data)
    return HTMLResponse(html, headers=headers)
