"""``xpcompute demo``: a whole analysis on the embedded default, end to end, with progress.

Generates a synthetic streaming experiment with known true effects, runs
stage 1 (DuckDB), registers the experiment with the coordinator, submits an
analysis of the metric catalog over several slices to the local function
pool, shows progress, then prints the scorecard and writes the HTML report.
Everything it does is a public library call a notebook can make too.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.runtime import EmbeddedRuntime
from xpcompute.coordinator.scorecard import Scorecard
from xpcompute.pipeline.slices import SliceFilter

#: Slices pre-computed when the demo's analysis is created.
DEMO_SLICES = (
    SliceFilter(),
    SliceFilter.where(country="US"),
    SliceFilter.where(device="tv"),
    SliceFilter.either(country=["BR", "MX"]),
    SliceFilter.where(country="US", device="ios"),
)


@dataclass(frozen=True)
class DemoResult:
    """Where the demo left its outputs, and what it found."""

    scorecard: Scorecard
    report: Path
    home: Path
    seconds: float


def run_demo(users: int = 1_000_000, home: Path = Path(".xpcompute/demo"), workers: int | None = None,
             console: Console | None = None, fresh: bool = True) -> DemoResult:
    """Generate, stage 1, analyse over the local pool, and write the report; returns the scorecard."""
    from xpcompute import synthetic
    from xpcompute.metrics import higher_is_better, metric_names
    from xpcompute.pipeline.stage1 import run_stage1
    from xpcompute.viz import print_scorecard, write_report

    console = console or Console()
    started = time.perf_counter()
    if fresh and home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    settings = Settings(home=home, dispatch="local", workers=workers or Settings().workers)

    with console.status(f"generating a synthetic experiment with {users:,} users (true effects built in)"):
        config = synthetic.SyntheticConfig(users=users)
        uris = synthetic.write_parquet(synthetic.generate(config), str(home / "raw"))
        experiment = synthetic.experiment_spec(uris, config, experiment_id="autoplay", daily=False)
    console.print(f"[green]✓[/] raw tables written under {home / 'raw'} ({time.perf_counter() - started:.1f} s)")

    with EmbeddedRuntime(settings) as runtime:
        coordinator = runtime.coordinator
        t0 = time.perf_counter()
        with console.status("stage 1: joining allocations x events x users into the analysis table (DuckDB)"):
            stage1 = run_stage1(experiment, coordinator.store, daily=False)
        console.print(f"[green]✓[/] stage 1: analysis table published ({time.perf_counter() - t0:.1f} s, "
                      f"{stage1.analysis.num_rows:,} users)")
        coordinator.register_experiment(experiment)
        spec = AnalysisSpec(metrics=tuple(metric_names()), slices=DEMO_SLICES, expected_shares=None)
        analysis = coordinator.submit("autoplay", spec)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("stage 2 + fits", total=None, detail="")
            while True:
                status = coordinator.status(analysis.analysis_id, with_records=False)
                p = status.progress
                bar.update(task, total=p.total, completed=p.succeeded + p.failed,
                           detail=f"running {p.running}, failed {p.failed}")
                if status.analysis.state.value != "RUNNING":
                    break
                time.sleep(0.2)
        card = coordinator.results(analysis.analysis_id)

    higher = higher_is_better(metric_names())
    print_scorecard(card.records, console=console, higher_is_better=higher)
    report = home / f"report-{card.analysis_id}.html"
    write_report(report, card.records, title="xpcompute demo: autoplay experiment", meta=card.to_json_dict(),
                 higher_is_better=higher)
    return DemoResult(scorecard=card, report=report, home=home, seconds=time.perf_counter() - started)
