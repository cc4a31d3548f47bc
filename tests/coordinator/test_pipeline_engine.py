"""A registered experiment through the pipeline's DuckDB stage 2 gives the same scorecard as the Arrow route.

Synthetic raw tables -> stage 1 (DuckDB) -> the coordinator with the
experiment registered: catalog metrics bring their declared models and CUPED
covariates, slice filters are checked against the declared dimensions.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.runtime import EmbeddedRuntime
from xpcompute.errors import UnsafeIdentifierError
from xpcompute.pipeline.slices import SliceFilter


def test_duckdb_stage2_and_arrow_agree_for_a_registered_experiment(tmp_path: Path) -> None:
    from xpcompute import synthetic
    from xpcompute.pipeline.stage1 import run_stage1

    config = synthetic.SyntheticConfig(users=4000, days=3, pre_days=2)
    uris = synthetic.write_parquet(synthetic.generate(config), str(tmp_path / "raw"))
    experiment = synthetic.experiment_spec(uris, config, experiment_id="autoplay",
                                           metrics=("streaming_hours", "sessions", "is_streamer"), daily=False)
    cards = {}
    for engine in ("duckdb", "arrow"):
        settings = Settings(home=tmp_path / engine, dispatch="inline", slice_engine=engine)  # type: ignore[arg-type]
        with EmbeddedRuntime(settings) as rt:
            run_stage1(experiment, rt.coordinator.store, daily=False)
            rt.coordinator.register_experiment(experiment)
            spec = AnalysisSpec(metrics=("streaming_hours", "sessions", "is_streamer"),
                                slices=(SliceFilter(), SliceFilter.where(country="US"),
                                        SliceFilter.either(device=["tv", "web"])))
            analysis = rt.coordinator.submit("autoplay", spec)
            cards[engine] = rt.coordinator.results(analysis.analysis_id)
            with pytest.raises(UnsafeIdentifierError, match="not a declared dimension"):
                rt.coordinator.request_slice(analysis.analysis_id, SliceFilter.where(user_id=1))
    duck, arrow = cards["duckdb"], cards["arrow"]
    assert duck.complete and not duck.failures, duck.failures
    assert len(duck.records) == len(arrow.records) > 0
    assert {r.model for r in duck.records} >= {"ols"}  # declared models with CUPED covariates
    for a, b in zip(duck.records, arrow.records, strict=True):
        assert (a.slice, a.metric, a.model, a.cell) == (b.slice, b.metric, b.model, b.cell)
        assert a.effect == pytest.approx(b.effect, rel=1e-9, abs=1e-12)
        assert a.p_value == pytest.approx(b.p_value, rel=1e-6, abs=1e-12)
