"""``xpcompute demo``: a whole analysis on the embedded default, end to end, with progress.

Generates a synthetic streaming experiment with known true effects and writes
its experiment YAML, then does exactly what ``xpcompute run`` does with a
team's own YAML: validate, register, stage 1 as the analysis's first job,
slices and fits on the local pool with progress, the headline scorecard and
the HTML report. Everything it does is a public library call a notebook can
make too.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from xpcompute.coordinator.scorecard import Scorecard
from xpcompute.experiment import ExperimentSpec
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
    """Generate the raw tables and their experiment YAML, then ``xpcompute run`` it (``runner.run_experiment``)."""
    import yaml

    from xpcompute import synthetic
    from xpcompute.runner import run_experiment

    console = console or Console()
    started = time.perf_counter()
    if fresh and home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)

    with console.status(f"generating a synthetic experiment with {users:,} users (true effects built in)"):
        config = synthetic.SyntheticConfig(users=users)
        uris = synthetic.write_parquet(synthetic.generate(config), str(home / "raw"))
        experiment = synthetic.experiment_spec(uris, config, experiment_id="autoplay", daily=False)
        experiment = experiment.model_copy(update={"precompute": DEMO_SLICES})
        spec_path = home / "autoplay.yaml"
        spec_path.write_text(yaml.safe_dump(experiment.model_dump(mode="json", exclude_defaults=True), sort_keys=False))
    console.print(f"[green]✓[/] raw tables under {home / 'raw'} and their spec {spec_path} "
                  f"({time.perf_counter() - started:.1f} s); now the same as: xpcompute run {spec_path}")
    result = run_experiment(ExperimentSpec.from_yaml(spec_path), home=home, workers=workers, console=console,
                            report=home / "report.html", title="xpcompute demo: autoplay experiment")
    return DemoResult(scorecard=result.scorecard, report=result.report or home / "report.html", home=home,
                      seconds=time.perf_counter() - started)
