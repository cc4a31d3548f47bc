"""A ``did`` analysis runs through the service like ``dte``: on the user-by-day panel, clustered by user."""

from __future__ import annotations

from pathlib import Path

import pytest

from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.runtime import EmbeddedRuntime
from xpcompute.models import fit_table
from xpcompute.pipeline.tables import open_table
from xpcompute.spec import FitSpec
from xpcompute.storage import keys


def test_did_analysis_equals_fit_table_on_the_panel(tmp_path: Path) -> None:
    from xpcompute import synthetic
    from xpcompute.pipeline.stage1 import run_stage1

    config = synthetic.SyntheticConfig(users=3000, days=3, pre_days=2)
    uris = synthetic.write_parquet(synthetic.generate(config), str(tmp_path / "raw"))
    experiment = synthetic.experiment_spec(uris, config, experiment_id="autoplay", metrics=("sessions",),
                                           covariates=(), daily=True)
    settings = Settings(home=tmp_path / "home", dispatch="inline", slice_engine="arrow")
    with EmbeddedRuntime(settings) as rt:
        coord = rt.coordinator
        run_stage1(experiment, coord.store, daily=True)
        coord.register_experiment(experiment)
        analysis = coord.submit("autoplay", AnalysisSpec(metrics=("sessions",), models=("did",)))
        card = coord.results(analysis.analysis_id)
        assert card.complete and not card.failures, card.failures
        panel = open_table(keys.user_day_table("autoplay"), coord.store).read()
    did = [r for r in card.records if r.model == "did"]
    spec = FitSpec(metric="sessions", treatment="cell", model="did", time="day", cluster="user_id",
                   control=experiment.control)
    expected = {(r.cell, r.time): r for r in fit_table(panel, spec).records}
    # 2 cells x (days 1, 2 and their average)
    assert {(r.cell, r.time) for r in did} == set(expected) and len(did) == 2 * 3
    for r in did:
        want = expected[(r.cell, r.time)]
        assert r.effect == pytest.approx(want.effect, rel=1e-9) and r.se == pytest.approx(want.se, rel=1e-9)


def test_reference_period_of_a_request(tmp_path: Path) -> None:
    """A request's reference_period reaches the did fits; one that is not a day of the window, or without did, is
    refused before anything runs."""
    from xpcompute import synthetic
    from xpcompute.errors import InputError
    from xpcompute.pipeline.stage1 import run_stage1

    config = synthetic.SyntheticConfig(users=2000, days=3, pre_days=2)
    uris = synthetic.write_parquet(synthetic.generate(config), str(tmp_path / "raw"))
    experiment = synthetic.experiment_spec(uris, config, experiment_id="autoplay", metrics=("sessions",),
                                           covariates=(), daily=True)
    settings = Settings(home=tmp_path / "home", dispatch="inline", slice_engine="arrow")
    with EmbeddedRuntime(settings) as rt:
        coord = rt.coordinator
        run_stage1(experiment, coord.store, daily=True)
        coord.register_experiment(experiment)
        with pytest.raises(InputError, match="reference_period '3' is not a period of experiment 'autoplay'; its "
                                             "days of the window are 0, 1, 2"):
            coord.submit("autoplay", AnalysisSpec(metrics=("sessions",), models=("did",), reference_period="3"))
        with pytest.raises(InputError, match="reference_period only applies to model 'did'"):
            coord.submit("autoplay", AnalysisSpec(metrics=("sessions",), models=("ttest",), reference_period="1"))
        analysis = coord.submit("autoplay", AnalysisSpec(metrics=("sessions",), models=("did",), reference_period="2"))
        card = coord.results(analysis.analysis_id)
        assert card.complete and not card.failures, card.failures
        panel = open_table(keys.user_day_table("autoplay"), coord.store).read()
    spec = FitSpec(metric="sessions", treatment="cell", model="did", time="day", cluster="user_id",
                   control=experiment.control, reference_period="2")
    expected = {(r.cell, r.time, r.segment): r for r in fit_table(panel, spec).records}
    did = [r for r in card.records if r.model == "did"]
    assert {(r.cell, r.time, r.segment) for r in did} == set(expected)
    assert {r.time for r in did} == {"0", "1", None}  # day 2 is the reference; days 0, 1 are pre-periods
    for r in did:
        want = expected[(r.cell, r.time, r.segment)]
        assert r.effect == pytest.approx(want.effect, rel=1e-9) and r.statistic == pytest.approx(want.statistic, rel=1e-9)
