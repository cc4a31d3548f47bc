"""The scorecard in a terminal (rich): the same rows and markers as the HTML report.

A person running the demo or ``xpcompute fit`` should read the same verdicts
in the terminal as on the page, so both render :func:`scorecard_rows`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from xpcompute.records import ResultRecord
from xpcompute.viz._common import first_seen, slice_label
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
