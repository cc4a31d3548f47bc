"""Shared set-up of the UI tests: a small synthetic experiment published by stage 1 into a store.

Both the notebook test and the browser test need a finished analysis of a
registered experiment (catalog metrics with their declared models and CUPED
covariates, several slices); building it the way ``xpcompute demo`` does keeps
them honest about what a user sees.
"""

from __future__ import annotations

import os
from pathlib import Path

from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.service import Coordinator
from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline.slices import SliceFilter

EXPERIMENT_ID = "autoplay"
#: the goal (streaming_hours) and a guardrail (retained) of the demo's roles, and two other metrics
METRICS = ("streaming_hours", "retained", "sessions", "is_streamer")
SLICES = (SliceFilter(), SliceFilter.where(country="US"), SliceFilter.either(device=["tv", "web"]))


def publish_experiment(coordinator: Coordinator, raw_dir: Path, users: int | None = None) -> ExperimentSpec:
    """Synthetic raw tables -> stage 1 into the coordinator's store; the experiment is registered."""
    from xpcompute import synthetic
    from xpcompute.pipeline.stage1 import run_stage1

    # XPCOMPUTE_UI_USERS: a larger experiment for the README's screenshot (XPCOMPUTE_UPDATE_SCREENSHOT=1)
    users = users if users is not None else int(os.environ.get("XPCOMPUTE_UI_USERS", "4000"))
    config = synthetic.SyntheticConfig(users=users, days=3, pre_days=2)
    uris = synthetic.write_parquet(synthetic.generate(config), str(raw_dir))
    experiment: ExperimentSpec = synthetic.experiment_spec(uris, config, experiment_id=EXPERIMENT_ID,
                                                           metrics=(*METRICS, "rebuffer_rate"), daily=False)
    run_stage1(experiment, coordinator.store, daily=False)
    coordinator.register_experiment(experiment)
    return experiment


def analysis_spec(**changes: object) -> AnalysisSpec:
    """The analysis both tests run: the catalog's declared models over three pre-computed slices."""
    return AnalysisSpec.model_validate({"metrics": METRICS, "slices": SLICES, **changes})
