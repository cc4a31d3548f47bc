"""``xpcompute run``: raw tables to a scorecard in one call, on the embedded default.

It is what a new user runs first on their own data, and what the demo runs on
the synthetic data: validate the spec against the sources, register it with
the coordinator (a new version when it changed), submit an analysis of every
metric over the spec's pre-computed slices (the coordinator runs stage 1 as
the analysis's first job when the table is missing or stale), follow the
progress, then print the headline scorecard and write the report. Every step
is the same library call the HTTP API makes, so ``xpcompute results`` and
``GET /analyses/{id}/results`` show the same analysis afterwards.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.scorecard import Scorecard
from xpcompute.coordinator.service import Coordinator
from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline.slices import SliceFilter

if TYPE_CHECKING:
    from xpcompute.viz.headline import MetricInfo


@dataclass(frozen=True)
class RunResult:
    """What one run produced: the scorecard, where its files went, and how long it took."""

    scorecard: Scorecard
    experiment: ExperimentSpec
    home: Path
    report: Path | None
    json_path: Path | None
    data_through: date | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.scorecard.complete and not self.scorecard.failures


def follow(coordinator: Coordinator, analysis_id: str, console: Console, label: str = "stage 1 + slices + fits") -> None:
    """A progress bar until the analysis leaves RUNNING (the embedded runtime does the work meanwhile)."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console,
                  transient=not console.is_terminal) as bar:
        task = bar.add_task(label, total=None, detail="")
        while True:
            status = coordinator.status(analysis_id, with_records=False)
            p = status.progress
            bar.update(task, total=p.total, completed=p.succeeded + p.failed,
                       detail=f"running {p.running}, failed {p.failed}")
            if status.analysis.state.value != "RUNNING":
                return
            time.sleep(0.2)


def run_experiment(
    experiment: ExperimentSpec,
    *,
    home: Path = Path(".xpcompute"),
    slices: Sequence[SliceFilter] | None = None,
    workers: int | None = None,
    console: Console | None = None,
    report: Path | None = None,
    json_path: Path | None = None,
    refresh: bool = False,
    title: str | None = None,
) -> RunResult:
    """Validate, register, analyse on the local pool, print the scorecard, write the report and JSON."""
    from xpcompute.coordinator.runtime import EmbeddedRuntime
    from xpcompute.pipeline.stage1 import data_through, validate_sources

    console = console or Console()
    started = time.perf_counter()
    with console.status("checking the sources against the spec"):
        validate_sources(experiment)
        through = data_through(experiment)
    settings = Settings.from_env().model_copy(update={"home": home, "dispatch": "local",
                                                      "workers": workers or Settings().workers})
    with EmbeddedRuntime(settings) as runtime:
        coordinator = runtime.coordinator
        coordinator.register_experiment(experiment)
        spec = AnalysisSpec(metrics=tuple(experiment.metrics), slices=tuple(slices or experiment.precompute),
                            refresh=refresh)
        analysis = coordinator.submit(experiment.id, spec)
        follow(coordinator, analysis.analysis_id, console)
        card = coordinator.results(analysis.analysis_id)

    show_scorecard(card, experiment, console, through, title=title)
    report_path = None
    if report is not None:
        report_path = write_html(card, experiment, report, title or f"xpcompute: {experiment.id}")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(card.to_json_dict(), indent=2, sort_keys=True, default=str))
    return RunResult(card, experiment, home, report_path, json_path, through, time.perf_counter() - started)


def show_scorecard(card: Scorecard, experiment: ExperimentSpec | None, console: Console,
                   through: date | None = None, title: str | None = None) -> None:
    """The scorecard in the terminal, built around the decision: the recommendation per cell and its reasons, then
    the headline estimates (CUPED when declared, units applied, sized to the width) of the goals, the guardrails
    with their margins, and the rest."""
    from xpcompute.viz import headlines, render_scorecard

    infos = role_infos(card, experiment)
    window = (experiment.window.start, experiment.window.end) if experiment is not None else None
    render_scorecard(headlines(card.records, infos), console=console,
                     title=title or f"Scorecard: {card.experiment_id}", window=window, data_through=through,
                     correction=card.correction, inference=card.inference, decision=card.decision,
                     decision_note=card.decision_note)
    if card.srm_note:  # a quasi-experiment: why there is no sample-ratio check
        console.print(f"[yellow]sample ratio:[/] {card.srm_note}")
    if card.segments:
        console.print(segments_summary(card.segments, card.analysis_id))
    for failure in card.failures:
        console.print(f"[red]failed:[/] {escape(failure.describe())}")


#: segments the terminal lists under the scorecard; ``xpcompute segments ID`` shows every one
TERMINAL_SEGMENTS = 5


def segments_summary(section: Mapping[str, Any], analysis_id: str) -> str:
    """A few lines on segment discovery under the terminal scorecard: how many tests and discoveries, and the
    discovered segments (honest-tree effect, interval, BH-adjusted p), so a reader sees where the effect differs."""
    from xpcompute.segments.view import segment_views

    view = segment_views(section)
    found = [s for s in view["segments"] if s["discovered"]]
    varies = [t for t in view["tests"] if t["discovered"]]
    lines = [f"Segment discovery: {view['tested']} tests, BH at {view['fdr']}: {view['discoveries']} discoveries"
             + (f"; the effect varies by {', '.join(sorted({t['dimension'] for t in varies}))}" if varies else "")]
    for s in found[:TERMINAL_SEGMENTS]:
        lines.append(f"  {s['metric']} / {s['cell']} in {s['label']}: {s['effect']} {s['interval']} against "
                     f"{s['rest']} elsewhere (adj. p {s['p_adjusted']})")
    if len(found) > TERMINAL_SEGMENTS or view["tests"]:
        lines.append(f"  all of them: xpcompute segments {analysis_id}")
    return "\n".join(lines)


def write_html(card: Scorecard, experiment: ExperimentSpec | None, path: Path, title: str) -> Path:
    """The self-contained HTML report of a scorecard."""
    from xpcompute.viz import write_report

    higher = experiment.higher_is_better() if experiment is not None else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_report(path, card.records, title=title, meta=card.to_json_dict(), higher_is_better=higher,
                 infos=role_infos(card, experiment))
    return path


def role_infos(card: Scorecard, experiment: ExperimentSpec | None) -> dict[str, MetricInfo]:
    """Display metadata per metric (CUPED covariates, units) tagged with its decision role and ordered goals,
    guardrails, the rest: the order the terminal, the report and the page show metrics in."""
    from xpcompute.decision import infos_for, roles_for
    from xpcompute.viz.headline import with_roles

    metrics = sorted({r.metric for r in card.records})
    infos = infos_for(metrics, experiment)
    with contextlib.suppress(ValueError):  # bad roles: the decision note says why; shown without them
        infos = with_roles(infos, roles_for(metrics, experiment, card.spec.get("roles")))
    return infos


__all__ = ["RunResult", "follow", "role_infos", "run_experiment", "show_scorecard", "write_html"]
