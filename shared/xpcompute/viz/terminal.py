"""The scorecard in a terminal (rich): the same rows and markers as the HTML report.

A person running the demo or ``xpcompute fit`` should read the same verdicts
in the terminal as on the page, so both render :func:`scorecard_rows`.

:func:`render_scorecard` is the headline scorecard (one estimate per metric and
cell, see ``viz/headline.py``) in the metric's units. It is laid out for the
terminal it is printed in: a number is never cut or folded. When the columns'
minimum widths do not fit, whole columns are dropped in :data:`DROP_ORDER`
(means first, since the effect and its interval carry the answer), and the
footer says which; below that, each headline is printed as a short block of
lines. :func:`headlines_to_csv` and :func:`headlines_to_json` write the same
rows for ``--format csv|json``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from xpcompute.records import ResultRecord
from xpcompute.viz._common import clean, first_seen, slice_label
from xpcompute.viz.headline import Headline, headline_dict
from xpcompute.viz.scorecard import (
    CORRECTION_NAMES,
    MARKERS,
    VERDICT_LABELS,
    ScorecardRow,
    Verdict,
    format_effect,
    format_interval,
    format_p,
    format_percent,
    scorecard_rows,
)

#: rich styles of the verdicts (terminal colours, matching the page's green/red/blue/grey).
VERDICT_STYLES: dict[Verdict, str] = {
    "good": "bold green",
    "bad": "bold red",
    "up": "bold blue",
    "down": "bold blue",
    "flat": "dim",
    "none": "dim",
}


def legend(rows: Sequence[ScorecardRow]) -> Text:
    """The markers that occur, in words, plus which p-value decided."""
    text = Text()
    present = first_seen(r.verdict for r in rows)
    for verdict in ("good", "bad", "up", "down", "flat", "none"):
        if verdict in present:
            text.append(f"{MARKERS[verdict]} ", style=VERDICT_STYLES[verdict])
            text.append(f"{VERDICT_LABELS[verdict]}   ")
    corrections = first_seen(r.correction for r in rows if r.correction)
    if corrections:
        names = ", ".join(CORRECTION_NAMES.get(c, c) for c in corrections)
        text.append(f"\np adj: p-value after {names}")
    else:
        text.append("\np adj: no correction applied; the raw p-value decides")
    return text


def scorecard_tables(
    records: Sequence[ResultRecord], higher_is_better: Mapping[str, bool] | None = None
) -> list[Table]:
    """One rich table per slice (slices in first-seen order), for callers that lay out their own screen.

    Kept narrow enough for an 80-column terminal: the model is shown under
    the metric's name, and the cell alone names the comparison (the control is
    in the table's title).
    """
    rows = scorecard_rows(records, higher_is_better)
    with_detail = any(r.detail for r in rows)
    tables: list[Table] = []
    for sl in first_seen(r.slice for r in rows):
        chosen = [r for r in rows if r.slice == sl]
        alphas = {r.alpha for r in chosen}
        ci_head = f"{(1 - alphas.pop()) * 100:g}% CI" if len(alphas) == 1 else "CI"
        controls = ", ".join(first_seen(r.control for r in chosen))
        table = Table(title=f"Slice: {slice_label(sl)}  (cells vs {controls})", title_justify="left",
                      title_style="bold", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("Metric", no_wrap=True, overflow="ellipsis", max_width=20)
        table.add_column("Cell", no_wrap=True)
        table.add_column("Effect", justify="right", no_wrap=True)
        table.add_column(ci_head, justify="right", no_wrap=True)
        table.add_column("Lift", justify="right", no_wrap=True)
        table.add_column("p adj", justify="right", no_wrap=True)
        table.add_column("", justify="center", no_wrap=True, min_width=1)
        models = {m: len({r.model for r in chosen if r.metric == m}) for m in {r.metric for r in chosen}}
        previous: tuple[str, str] | None = None
        for r in chosen:
            style = VERDICT_STYLES[r.verdict]
            name = Text(overflow="ellipsis")
            if (r.metric, r.model) != previous:
                name.append(r.metric, style="bold")
                if models[r.metric] > 1:
                    name.append(f" {r.model}", style="dim")
            cells: list[str | Text] = [name, f"{r.cell} {r.detail}" if with_detail and r.detail else r.cell]
            cells += [
                format_effect(r.effect, 3),
                format_interval(r.ci, digits=3),
                Text(format_percent(r.relative), style=style if r.verdict not in ("flat", "none") else ""),
                format_p(r.decision_p),
                Text(r.marker, style=style),
            ]
            table.add_row(*cells)
            previous = (r.metric, r.model)
        tables.append(table)
    return tables


def print_scorecard(
    records: Sequence[ResultRecord],
    console: Console | None = None,
    higher_is_better: Mapping[str, bool] | None = None,
) -> None:
    """Print the scorecard: a table per slice with effect, CI, lift, adjusted p and a marker, then a legend."""
    console = console or Console()
    if not records:
        console.print("[dim]No results: no fit has produced a record.[/dim]")
        return
    for table in scorecard_tables(records, higher_is_better):
        console.print(table)
    console.print(legend(scorecard_rows(records, higher_is_better)))


# -- the headline scorecard ---------------------------------------------------------------------

ColumnKey = Literal["metric", "cell", "mean_control", "mean_cell", "effect", "ci", "relative", "p", "marker"]

#: Columns that go first when the terminal is too narrow, in that order. The metric, cell, effect,
#: p-value and marker always stay: without them a row no longer answers "did it move, and is it real?".
DROP_ORDER: tuple[ColumnKey, ...] = ("mean_control", "mean_cell", "relative", "ci")

#: Columns that give up width first when the natural widths do not fit: number columns only wrap their header,
#: then the metric's name and the interval wrap at spaces, then a cell's name.
SHRINK_ORDER: tuple[ColumnKey, ...] = ("mean_control", "mean_cell", "relative", "effect", "p", "metric", "ci", "cell")

#: Columns that hold numbers: a number never wraps (an interval only after its comma), so it is printed whole
#: or its column is dropped.
NUMBER_COLUMNS: frozenset[ColumnKey] = frozenset({"mean_control", "mean_cell", "effect", "ci", "relative", "p"})

COLUMN_NAMES: dict[ColumnKey, str] = {
    "metric": "metric",
    "cell": "cell",
    "mean_control": "control mean",
    "mean_cell": "treatment mean",
    "effect": "effect",
    "ci": "CI",
    "relative": "relative",
    "p": "p",
    "marker": "",
}

#: Width the table takes between two columns: one space of padding and the (blank) divider.
_GAP = 2
#: Indent of a headline's lines when the terminal is too narrow for even the kept columns (see ``_stacked``).
_STACK_INDENT = "  "


@dataclass(frozen=True)
class _Row:
    """One headline's cells as plain text (styles are added when the table is built)."""

    headline: Headline
    cells: dict[ColumnKey, str]


def _metric_lines(h: Headline) -> list[str]:
    """The metric's name, then its unit and a CUPED tag, then its decision role (goal, guardrail with its margin):
    short lines instead of one long one."""
    # a quantile headline says which quantile (and, for event-level ones, that it is over events)
    q = "" if h.record.quantile is None else f"p{round(h.record.quantile * 100, 10):g}" + (
        " of events" if h.model == "event_quantile" else "")
    second = " · ".join(part for part in (h.info.unit, q, "CUPED" if h.adjusted else "") if part)
    lines = [h.metric, second] if second else [h.metric]
    return [*lines, h.info.role_tag] if h.info.role_tag else lines


#: rich styles of the recommendations
RECOMMENDATION_STYLES: dict[str, str] = {"ship": "bold green", "don't ship": "bold red", "keep running": "bold yellow"}


def decision_text(decision: Sequence[Mapping[str, Any]], note: str | None = None) -> Text:
    """The decision block that opens the scorecard: per treatment cell its recommendation and the reasons."""
    text = Text()
    if not decision:
        if note:
            text.append(f"Decision: {note}\n", style="dim")
        return text
    rule = decision[0].get("rule", "")
    text.append(f"Decision ({str(rule).replace('_', '-')} rule, vs {decision[0].get('control', '')})\n", style="bold")
    width = max(len(str(d.get("cell", ""))) for d in decision)
    for d in decision:
        rec = str(d.get("recommendation", ""))
        text.append(f"  {str(d.get('cell', '')).ljust(width)}  ")
        text.append(rec.upper(), style=RECOMMENDATION_STYLES.get(rec, "bold"))
        reasons = [str(r) for r in d.get("reasons") or ()]
        text.append(f": {reasons[0]}\n" if reasons else "\n")
        for reason in reasons[1:]:
            text.append(f"  {' ' * width}  · {reason}\n")
        for warning in d.get("warnings") or ():
            text.append(f"  {' ' * width}  ! {warning}\n", style="dim")
    return text


def _rows(chosen: Sequence[Headline]) -> list[_Row]:
    """Rows of a slice's table; a metric's name and unit go down its first rows (one line each)."""
    rows: list[_Row] = []
    labels: list[str] = []
    for i, h in enumerate(chosen):
        if i == 0 or chosen[i - 1].metric != h.metric:
            size = next((j for j, g in enumerate(chosen[i:]) if g.metric != h.metric), len(chosen) - i)
            lines = _metric_lines(h)
            # one line per row; a metric with fewer rows than lines keeps the rest in its last row
            labels = [*lines[:size - 1], "\n".join(lines[size - 1:])] if size < len(lines) else lines
            labels += [""] * (size - len(labels))
        label = labels.pop(0)
        shown = h.shown()
        rows.append(_Row(h, {
            "metric": label,
            "cell": h.cell,
            "mean_control": shown.mean_control,
            "mean_cell": shown.mean_cell,
            "effect": shown.effect,
            "ci": shown.ci,
            "relative": shown.relative,
            "p": shown.p,
            "marker": h.marker,
        }))
    return rows


def _headers(chosen: Sequence[Headline]) -> dict[ColumnKey, str]:
    """Column headers; the CI header names its level and the p header says whether it is adjusted."""
    heads = dict(COLUMN_NAMES)
    alphas = {h.record.alpha for h in chosen}
    if len(alphas) == 1:
        heads["ci"] = f"{(1 - alphas.pop()) * 100:g}% CI"
    if any(clean(h.record.p_value_adjusted) is not None for h in chosen):
        heads["p"] = "p adj"
    return heads


def _pieces(key: ColumnKey, text: str) -> list[str]:
    """The parts of a cell that must stay on one line: a whole number, or one word of a name or interval."""
    if key in NUMBER_COLUMNS and key != "ci":
        return [text]
    return text.split() or [""]


def _widths(key: ColumnKey, header: str, rows: Sequence[_Row]) -> tuple[int, int]:
    """(narrowest, natural) content width of a column: narrowest keeps every number and word whole."""
    header_words = header.split() or [""]
    pieces = [p for r in rows for p in _pieces(key, r.cells[key])]
    lines = [line for r in rows for line in r.cells[key].splitlines()] or [""]
    narrowest = max(len(w) for w in [*header_words, *pieces])
    natural = max(narrowest, len(header), *(len(line) for line in lines))
    return narrowest, natural


def _total(widths: Mapping[ColumnKey, int]) -> int:
    return sum(widths.values()) + _GAP * (len(widths) - 1)


def fit_columns(chosen: Sequence[Headline], width: int) -> tuple[dict[ColumnKey, int], list[ColumnKey]]:
    """Content width of each kept column within ``width``, and the columns dropped (in :data:`DROP_ORDER`).

    Columns start at their natural width and give up width in
    :data:`SHRINK_ORDER` down to their narrowest (headers wrap first, then
    names and intervals); only when that is not enough is a column dropped. The widths are then fixed on the table, so rich never
    squeezes a column below what its numbers need.
    """
    rows = _rows(chosen)
    heads = _headers(chosen)
    ranges = {k: _widths(k, heads[k], rows) for k in COLUMN_NAMES}
    keys: list[ColumnKey] = list(COLUMN_NAMES)
    dropped: list[ColumnKey] = []
    for candidate in DROP_ORDER:
        if _total({k: ranges[k][0] for k in keys}) <= width:
            break
        keys.remove(candidate)
        dropped.append(candidate)
    widths = {k: ranges[k][1] for k in keys}
    for key in SHRINK_ORDER:
        if key in widths and _total(widths) > width:
            widths[key] -= min(_total(widths) - width, widths[key] - ranges[key][0])
    return widths, dropped


def _table(chosen: Sequence[Headline], widths: Mapping[ColumnKey, int], title: str) -> Table:
    rows = _rows(chosen)
    heads = _headers(chosen)
    table = Table(title=title, title_justify="left", title_style="bold", header_style="bold",
                  box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1, 0, 0))
    for key, size in widths.items():
        number = key in NUMBER_COLUMNS
        table.add_column(
            Text(heads[key], no_wrap=False),  # a header may wrap ("treatment" / "mean"); its numbers may not
            justify="right" if number else ("center" if key == "marker" else "left"),
            overflow="fold",
            width=size,
        )
    for row in rows:
        style = VERDICT_STYLES[row.headline.verdict]
        cells: list[Text] = []
        for key in widths:
            text = row.cells[key]
            if key == "metric":
                name, _, rest = text.partition("\n")
                first_line = row.headline.metric == name
                cells.append(Text.assemble((name, "bold" if first_line else "dim"),
                                           ("\n" + rest if rest else "", "dim"), overflow="fold"))
            elif key in ("marker", "relative") and row.headline.verdict not in ("flat", "none"):
                cells.append(Text(text, style=style, no_wrap=True))
            else:
                cells.append(Text(text, overflow="fold", no_wrap=key in NUMBER_COLUMNS and key != "ci"))
        table.add_row(*cells)
    return table


def _stacked(chosen: Sequence[Headline], title: str, heads: Mapping[ColumnKey, str]) -> Text:
    """Each headline as a few short lines, for terminals too narrow for even the kept columns."""
    text = Text(overflow="fold")
    text.append(title + "\n", style="bold")
    for row in _rows(chosen):
        h = row.headline
        text.append(f"{h.info.label} · {h.cell}", style="bold")
        text.append(f" {h.marker}\n", style=VERDICT_STYLES[h.verdict])
        for key in ("effect", "ci", "relative", "p"):
            text.append(f"{_STACK_INDENT}{heads[key]} {row.cells[key]}\n")
    return text


def _cuts(chosen: Sequence[Headline]) -> list[str]:
    """One line per CUPED metric: which covariates, and how much they cut the standard error."""
    lines: list[str] = []
    for metric in first_seen(h.metric for h in chosen if h.adjusted):
        mine = [h for h in chosen if h.metric == metric and h.adjusted]
        covs = ", ".join(first_seen(c for h in mine for c in h.covariates))
        cuts = sorted(r for h in mine if (r := clean(h.se_reduction)) is not None)
        if not cuts:
            lines.append(f"{metric}: CUPED on {covs} (no unadjusted fit to compare its SE with)")
            continue
        lo, hi = round(cuts[0] * 100), round(cuts[-1] * 100)
        if lo >= 0:
            amount = f"{lo}%" if lo == hi else f"{lo}–{hi}%"
            lines.append(f"{metric}: CUPED on {covs} cuts SE by {amount}")
        elif hi <= 0:
            amount = f"{-hi}%" if lo == hi else f"{-hi}–{-lo}%"
            lines.append(f"{metric}: CUPED on {covs} raises SE by {amount}")
        else:
            lines.append(f"{metric}: CUPED on {covs} changes SE by {lo:+d}% to {hi:+d}%")
    return lines


def scorecard_footer(
    chosen: Sequence[Headline],
    *,
    window: tuple[date, date] | None = None,
    data_through: date | None = None,
    correction: str | None = None,
    dropped: Sequence[ColumnKey] = (),
    width: int | None = None,
    inference: Mapping[str, Any] | None = None,
) -> Text:
    """What a reader needs to trust the table: the window, how fresh the data is, which inference decided (look k
    of K, boundary, crossings), the p-value rule, CUPED, legend."""
    text = Text()
    if window is not None:
        start, end = window
        text.append(f"Window {start.isoformat()} – {end.isoformat()} ({(end - start).days + 1} days)")
    else:
        text.append("Window not given")
    text.append(f"; data through {data_through.isoformat()}.\n" if data_through else "; data date not given.\n")
    for line in inference_lines(chosen, inference):
        text.append(line + "\n")
    corrections = [correction] if correction else first_seen(h.record.correction for h in chosen if h.record.correction)
    adjusted = any(clean(h.record.p_value_adjusted) is not None for h in chosen)
    alphas = first_seen(h.record.alpha for h in chosen)
    level = f"{alphas[0]:g}" if len(alphas) == 1 else "each row's alpha"
    if corrections and corrections != ["none"] and adjusted:
        names = ", ".join(CORRECTION_NAMES.get(c, c) for c in corrections)
        text.append(f"p adj: after {names}; ✓ ✗ ▲ ▼ mark p adj < {level}.\n")
    else:
        text.append(f"p: raw, no multiple-comparison correction; ✓ ✗ ▲ ▼ mark p < {level}.\n")
    if any(h.info.in_points for h in chosen):
        text.append("pp: percentage points (12.00% -> 14.00% is +2.00 pp); relative effects are in %.\n")
    for line in _cuts(chosen):
        text.append(line + ".\n")
    present = first_seen(h.verdict for h in chosen)
    for verdict in ("good", "bad", "up", "down", "flat", "none"):
        if verdict in present:
            text.append(f"{MARKERS[verdict]} ", style=VERDICT_STYLES[verdict])
            text.append(f"{VERDICT_LABELS[verdict]}  ")
    if dropped:
        names = ", ".join(COLUMN_NAMES[k] for k in dropped)
        at = f" at {width} columns" if width else ""
        text.append(f"\nNot shown{at}: {names} (use a wider terminal, or --format csv or json).")
    return text


def inference_lines(chosen: Sequence[Headline], inference: Mapping[str, Any] | None = None) -> list[str]:
    """The footer's inference lines: the scorecard's summary when given (``Scorecard.inference``), else what the
    headline records say (look, boundary, crossings); nothing for a fixed-horizon scorecard."""
    lines: list[str] = []
    records = [h.record for h in chosen]
    if inference is not None and inference.get("method", "fixed_horizon") != "fixed_horizon":
        lines.append(str(inference.get("description", "")) + ".")
    else:
        seq = [r for r in records if r.inference in ("always_valid", "group_sequential")]
        if seq:
            r0 = seq[0]
            where = f"look {r0.look} of {r0.planned_looks}" if r0.planned_looks else f"look {r0.look}"
            crossed = first_seen(r.metric for r in seq if r.boundary_crossed)
            if r0.inference == "group_sequential":
                bound = "—" if r0.boundary_z is None else f"{r0.boundary_z:.2f}"
                text = f"{where} (group-sequential): boundary |z| >= {bound}"
            else:
                text = f"{where}: always-valid intervals (confidence sequences)"
            text += f"; crossed for {', '.join(crossed)}." if crossed else "; no boundary crossed."
            lines.append(text)
    kinds = first_seen(r.inference for r in records if r.inference in ("always_valid", "group_sequential"))
    if kinds:
        what = "always-valid intervals and anytime p-values" if kinds == ["always_valid"] else \
            "repeated intervals and p on the boundary's scale (p <= alpha exactly when crossed)"
        lines.append(f"Sequential: the interval and p columns are {what}.")
    if any(r.posterior_mean is not None for r in records):
        lines.append("Bayesian posteriors (chance to beat control, expected loss) are in --format json/csv.")
    if any(r.shrunk_effect is not None for r in records):
        lines.append("Empirical-Bayes shrunken lifts (shrunk_effect) are in --format json/csv.")
    return lines


def render_scorecard(
    headlines: Sequence[Headline],
    *,
    width: int | None = None,
    console: Console | None = None,
    title: str = "Scorecard",
    window: tuple[date, date] | None = None,
    data_through: date | None = None,
    correction: str | None = None,
    inference: Mapping[str, Any] | None = None,
    decision: Sequence[Mapping[str, Any]] | None = None,
    decision_note: str | None = None,
) -> None:
    """Print the headline scorecard: the decision per cell (``Scorecard.decision``) first, then one table per
    slice sized to ``width`` (goals, guardrails with their margins, the rest: the order of the headlines'
    ``MetricInfo`` roles, see ``headline.with_roles``), then the footer.

    ``width`` defaults to the console's. Columns are dropped in
    :data:`DROP_ORDER` until their minimum widths fit; a number is never
    shortened. ``correction`` (``"bh"``, ``"holm"``, ``"none"``) names the
    multiple-comparison correction; by default the records' own is named.
    """
    console = console or Console()
    width = width or console.width
    if not headlines:
        console.print("[dim]No results: no fit has produced a record.[/dim]")
        return
    console.print(Text(title, style="bold"))
    if decision or decision_note:
        console.print(decision_text(decision or (), decision_note), width=width)
    all_dropped: list[ColumnKey] = []
    for sl in first_seen(h.slice for h in headlines):
        chosen = [h for h in headlines if h.slice == sl]
        controls = ", ".join(first_seen(h.control for h in chosen))
        slice_title = f"Slice: {slice_label(sl)} (cells vs {controls})"
        widths, dropped = fit_columns(chosen, width)
        all_dropped += [k for k in dropped if k not in all_dropped]
        if _total(widths) > width:
            console.print(_stacked(chosen, slice_title, _headers(chosen)), width=width)
        else:
            console.print(_table(chosen, widths, slice_title), width=width)
    order = [k for k in DROP_ORDER if k in all_dropped]
    console.print(scorecard_footer(headlines, window=window, data_through=data_through, correction=correction,
                                   dropped=order, width=width, inference=inference), width=width)


def scorecard_text(headlines: Sequence[Headline], *, width: int = 80, **options: Any) -> str:
    """The rendered scorecard as plain text (no colours), for ``--format table`` piped to a file."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=False, highlight=False)
    render_scorecard(headlines, width=width, console=console, **options)
    return buffer.getvalue()


#: Columns of the CSV, in order: identifiers, the estimate, then the text the table shows.
CSV_FIELDS: tuple[str, ...] = (
    "slice", "metric", "unit", "kind", "cell", "control", "model", "estimator", "covariates", "se_reduction",
    "se_unadjusted", "n_control", "n_cell", "mean_control", "mean_cell", "effect", "se", "ci_low", "ci_high",
    "alpha", "relative_effect", "relative_ci_low", "relative_ci_high", "p_value", "p_value_adjusted", "correction",
    "inference", "sequential_ci_low", "sequential_ci_high", "sequential_p_value", "sequential_p_value_adjusted",
    "look", "boundary_crossed", "chance_to_beat_control", "shrunk_effect", "verdict", "effect_unit", "shown_mean_control", "shown_mean_cell", "shown_effect", "shown_ci",
    "shown_relative", "shown_p", "role", "margin", "margin_relative", "decision_test", "decision_outcome",
    "decision_level", "decision_bound", "recommendation",
)


def decision_fields(decision: Sequence[Mapping[str, Any]]) -> dict[tuple[str | None, str, str], dict[str, Any]]:
    """Per (slice, cell, metric): the metric's role and margin, and how the ship decision tested it.

    ``decision`` is the scorecard's ``decision`` (``CellDecision.to_json_dict`` per cell). Why: a reader of the
    CSV must see which rows decided the call and against which margin, without the JSON. The role and margin of
    a metric hold in every slice; the test, its outcome and the cell's recommendation only in the slice the
    decision read (keyed with slice ``"*"`` for the others).
    """
    out: dict[tuple[str | None, str, str], dict[str, Any]] = {}
    for cell in decision:
        for check in cell.get("checks", ()):
            role = {"role": check.get("role"), "margin": check.get("margin"),
                    "margin_relative": check.get("relative") if check.get("margin") is not None else None}
            out[("*", str(cell["cell"]), str(check["metric"]))] = role
            out[(cell.get("slice"), str(cell["cell"]), str(check["metric"]))] = {
                **role, "decision_test": check.get("test"), "decision_outcome": check.get("outcome"),
                "decision_level": check.get("level"), "decision_bound": check.get("bound"),
                "recommendation": cell.get("recommendation"),
            }
    return out


def headlines_to_json(headlines: Sequence[Headline],
                      decision: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """The headline rows as JSON-safe dicts: full-precision numbers plus the exact text the table prints,
    and (given the scorecard's ``decision``) each metric's role, margin and decision test (``decision_fields``)."""
    fields = decision_fields(decision)
    rows = []
    for h in headlines:
        row = headline_dict(h)
        row.update(fields.get((h.slice, h.cell, h.metric)) or fields.get(("*", h.cell, h.metric)) or {})
        rows.append(row)
    return rows


def headlines_to_csv(headlines: Sequence[Headline], decision: Sequence[Mapping[str, Any]] = ()) -> str:
    """The headline rows as CSV (full-precision numbers, empty when missing; covariates joined by ``;``),
    with the role, margin and decision columns when the scorecard's ``decision`` is given."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_FIELDS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in headlines_to_json(headlines, decision):
        flat = {k: ("" if v is None else ";".join(v) if isinstance(v, list) else repr(v) if isinstance(v, float)
                    else v) for k, v in row.items()}
        writer.writerow(flat)
    return buffer.getvalue()
