"""A synthetic archive of past experiments: raw sources, YAML specs, registered versions and finished analyses.

Meta-analysis (``xpcompute.meta``) replays a metric definition over completed
experiments, and the lossy-compression check compares n-tile with exact results
over them; both need an archive whose truth is known. ``write_archive`` draws
``n`` experiments with ``synthetic.generate`` (seeded, so the same arguments
give the same archive), each with its own size, duration and true effects,
every fourth of them null (A/A: no effect on any metric), and for each:

* writes its raw tables under ``{root}/raw/{id}/`` and its spec as ``{root}/specs/{id}.yaml``;
* registers the spec with a coordinator over ``{root}/home`` and runs one analysis of every metric
  (stage 1 as the analysis's first job, slices, fits, decision), the way ``xpcompute run`` does;
* records the planted effects in ``{root}/truth.json``.

``python -m xpcompute.synthetic_archive --root DIR [--experiments 50] [--users 20000]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml

from xpcompute import synthetic
from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec

#: What every archived experiment analyses (goal, a count, a guardrail ratio and a guardrail proportion).
ARCHIVE_METRICS: tuple[str, ...] = ("streaming_hours", "sessions", "rebuffer_rate", "retained")
ARCHIVE_COVARIATES: tuple[str, ...] = ("pre_streaming_hours", "pre_sessions")
CELLS: tuple[str, str] = ("control", "treatment")

# cycles the plans walk through, so sizes, durations and effects vary independently
_WATCH = (0.0, 0.03, 0.0, 0.08, 0.01, -0.03, 0.0, 0.05, 0.02, -0.01)
_SESSIONS = (0.0, 0.02, 0.0, 0.0, 0.01, -0.02, 0.0)
_REBUFFER = (0.0, 0.0, 0.0, 0.10, 0.0)
_CANCEL = (0.0, -0.05, 0.0, 0.0, 0.05, 0.0)
_SIZES = (1.0, 0.5, 2.0, 1.0, 1.5, 0.75)
_DAYS = (7, 5, 10, 14, 7, 3, 21)
#: every 4th experiment is null (A/A: no effect on anything); others may be null on some metrics by the cycles
NULL_EVERY = 4


@dataclass(frozen=True)
class ArchivePlan:
    """One archived experiment: id, size, dates and planted effects (relative, treatment versus control)."""

    experiment_id: str
    users: int
    days: int
    start: date
    seed: int
    watch_lift: float
    session_lift: float
    rebuffer_change: float
    cancel_change: float

    @property
    def null(self) -> bool:
        """A/A: no planted effect on anything."""
        return not any((self.watch_lift, self.session_lift, self.rebuffer_change, self.cancel_change))

    def config(self, pre_days: int) -> synthetic.SyntheticConfig:
        t = CELLS[1]
        effects = synthetic.TrueEffects(
            watch_lift={t: self.watch_lift}, session_lift={t: self.session_lift}, latency_change={t: 0.0},
            rebuffer_change={t: self.rebuffer_change}, cancel_change={t: self.cancel_change}, rental_lift={t: 0.0},
        )
        return synthetic.SyntheticConfig(users=self.users, seed=self.seed, start=self.start, days=self.days,
                                         pre_days=pre_days, cells=CELLS, control=CELLS[0], effects=effects)

    def to_json_dict(self) -> dict[str, Any]:
        return {"experiment_id": self.experiment_id, "users": self.users, "days": self.days,
                "start": self.start.isoformat(), "seed": self.seed, "null": self.null,
                "watch_lift": self.watch_lift, "session_lift": self.session_lift,
                "rebuffer_change": self.rebuffer_change, "cancel_change": self.cancel_change}


def plans(n: int = 50, users: int = 20_000, seed: int = 0, vary_size: bool = True) -> list[ArchivePlan]:
    """``n`` experiments of about ``users`` units each (x0.5 to x2 when ``vary_size``), 3 to 21 days long."""
    if n < 1 or users < 100:
        raise ValueError("an archive needs at least 1 experiment of at least 100 users")
    out = []
    for i in range(n):
        size = _SIZES[i % len(_SIZES)] if vary_size else 1.0
        live = 0.0 if i % NULL_EVERY == 0 else 1.0  # every NULL_EVERY-th experiment is an A/A test
        out.append(ArchivePlan(
            experiment_id=f"archive-{i:03d}", users=max(100, int(users * size)), days=_DAYS[i % len(_DAYS)],
            start=date(2025, 1, 6) + timedelta(days=7 * i), seed=seed * 100_003 + i,
            watch_lift=live * _WATCH[i % len(_WATCH)], session_lift=live * _SESSIONS[i % len(_SESSIONS)],
            rebuffer_change=live * _REBUFFER[i % len(_REBUFFER)], cancel_change=live * _CANCEL[i % len(_CANCEL)],
        ))
    return out


@dataclass(frozen=True)
class Archive:
    """Where an archive lives and what it holds: ``home`` is the store (``XPCOMPUTE_HOME``) of its analyses."""

    root: Path
    plans: tuple[ArchivePlan, ...]
    analyses: dict[str, str] = field(default_factory=dict)  # experiment id -> its archived analysis id
    seconds: float = 0.0

    @property
    def home(self) -> Path:
        return self.root / "home"

    def spec_path(self, experiment_id: str) -> Path:
        return self.root / "specs" / f"{experiment_id}.yaml"

    def settings(self, **changes: Any) -> Settings:
        return Settings(home=self.home, **changes)

    @property
    def experiment_ids(self) -> list[str]:
        return [p.experiment_id for p in self.plans]


def spec_document(plan: ArchivePlan, uris: dict[str, str], pre_days: int,
                  metrics: Sequence[str] = ARCHIVE_METRICS) -> dict[str, Any]:
    """The experiment YAML of one archived experiment (what a team would have written)."""
    cfg = plan.config(pre_days)
    return {
        "id": plan.experiment_id,
        "description": f"archived synthetic experiment ({'null' if plan.null else 'with planted effects'})",
        "cells": list(cfg.cells), "control": cfg.control,
        "window": {"start": cfg.start.isoformat(), "end": cfg.end.isoformat(), "pre_days": pre_days},
        "sources": {name: {"uri": uri} for name, uri in uris.items()},
        "dimensions": ["country", "device", "plan"],
        "covariates": [c for c in ARCHIVE_COVARIATES if c.removeprefix("pre_") in metrics],
        "metrics": list(metrics),
        "roles": synthetic.demo_roles(tuple(metrics)),
        "daily": False,
    }


def write_archive(
    root: str | Path,
    n: int = 50,
    users: int = 20_000,
    *,
    seed: int = 0,
    pre_days: int = 7,
    metrics: Sequence[str] = ARCHIVE_METRICS,
    dispatch: str = "inline",
    slice_engine: str | None = None,
    vary_size: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Archive:
    """Write (or complete) the archive under ``root``; experiments already analysed there are kept as they are."""
    from xpcompute.coordinator.runtime import EmbeddedRuntime
    from xpcompute.experiment import ExperimentSpec
    from xpcompute.meta.archive import latest_completed

    started = time.perf_counter()
    root = Path(root).resolve()
    chosen = plans(n, users, seed, vary_size)
    archive = Archive(root, tuple(chosen))
    (root / "specs").mkdir(parents=True, exist_ok=True)
    changes: dict[str, Any] = {"dispatch": dispatch}
    if slice_engine is not None:
        changes["slice_engine"] = slice_engine
    analyses: dict[str, str] = {}
    with EmbeddedRuntime(archive.settings(**changes)) as runtime:
        coord = runtime.coordinator
        for plan in chosen:
            done = coord.experiment_version(plan.experiment_id) is not None and \
                latest_completed(coord, plan.experiment_id) is not None
            if not done:
                data = synthetic.generate(plan.config(pre_days))
                uris = synthetic.write_parquet(data, str(root / "raw" / plan.experiment_id))
                document = spec_document(plan, uris, pre_days, metrics)
                archive.spec_path(plan.experiment_id).write_text(yaml.safe_dump(document, sort_keys=False))
                experiment = ExperimentSpec.from_yaml(archive.spec_path(plan.experiment_id))
                coord.register_experiment(experiment)
                analysis = coord.submit(plan.experiment_id, AnalysisSpec(metrics=tuple(experiment.metrics)))
                _wait(coord, analysis.analysis_id)
            latest = latest_completed(coord, plan.experiment_id)
            if latest is None:
                raise RuntimeError(f"archived experiment {plan.experiment_id} has no successful analysis; "
                                   f"see xpcompute results for its failures")
            analyses[plan.experiment_id] = latest.analysis_id
            if progress is not None:
                progress(f"{plan.experiment_id}: {plan.users:,} users, {plan.days} days -> {latest.analysis_id}")
    (root / "truth.json").write_text(json.dumps({"plans": [p.to_json_dict() for p in chosen],
                                                 "analyses": analyses}, indent=1))
    return Archive(root, tuple(chosen), analyses, time.perf_counter() - started)


def _wait(coord: Any, analysis_id: str, timeout_s: float = 3600.0) -> None:
    """Until the analysis leaves RUNNING (inline dispatch has finished it already)."""
    deadline = time.monotonic() + timeout_s
    while coord.state.get_analysis(analysis_id).state.value == "RUNNING":
        if time.monotonic() > deadline:
            raise TimeoutError(f"analysis {analysis_id} still running after {timeout_s:g} s")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--root", required=True, help="folder of the archive (raw/, specs/, home/, truth.json)")
    parser.add_argument("--experiments", type=int, default=50)
    parser.add_argument("--users", type=int, default=20_000, help="units of a median experiment")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--same-size", action="store_true", help="every experiment exactly --users units")
    parser.add_argument("--dispatch", choices=["inline", "local"], default="inline")
    args = parser.parse_args(argv)
    archive = write_archive(args.root, args.experiments, args.users, seed=args.seed, vary_size=not args.same_size,
                            dispatch=args.dispatch, progress=print)
    print(f"archive of {len(archive.plans)} experiments at {archive.root} in {archive.seconds:.1f} s; "
          f"XPCOMPUTE_HOME={archive.home}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
