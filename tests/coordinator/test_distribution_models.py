"""Rank, quantile and dynamic-effect models through the service: n-tile and panel slices next to the moments.

A registered synthetic experiment (stage 1 with the user-by-day table) is
analysed over the coordinator: ``quantile`` (declared by
playback_start_latency), ``mannwhitney`` and ``dte`` (requested) run as fit
jobs on the slice job's second compressed tables, and every record equals
``fit_table`` on the same slice rows with the fit job's own ``FitSpec``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.jobs import JobKind, JobState
from xpcompute.coordinator.runtime import EmbeddedRuntime
from xpcompute.coordinator.scorecard import Scorecard
from xpcompute.coordinator.table_jobs import run_slice
from xpcompute.coordinator.worker import run_fit, run_job
from xpcompute.errors import InputError, NotFoundError
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.pipeline.tables import open_table
from xpcompute.records import ResultRecord
from xpcompute.spec import FitSpec
from xpcompute.storage import keys

METRICS = ("streaming_hours", "playback_start_latency")
SLICES = (SliceFilter(), SliceFilter.where(country="US"))


@dataclass
class Setup:
    rt: EmbeddedRuntime
    settings: Settings
    declared: str  # analysis with the catalog's declared models (quantile for playback_start_latency)
    requested: str  # analysis with models ("ols", "mannwhitney", "dte")
    raw_uris: dict[str, str]
    config: Any


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    from xpcompute import synthetic
    from xpcompute.pipeline.stage1 import run_stage1

    tmp = tmp_path_factory.mktemp("distribution")
    config = synthetic.SyntheticConfig(users=4000, days=3, pre_days=2)
    uris = synthetic.write_parquet(synthetic.generate(config), str(tmp / "raw"))
    experiment = synthetic.experiment_spec(uris, config, experiment_id="autoplay", metrics=METRICS, daily=True)
    settings = Settings(home=tmp / "home", dispatch="inline", slice_engine="arrow")
    with EmbeddedRuntime(settings) as rt:
        run_stage1(experiment, rt.coordinator.store, daily=True)
        rt.coordinator.register_experiment(experiment)
        declared = rt.coordinator.submit("autoplay", AnalysisSpec(metrics=METRICS, slices=SLICES))
        requested = rt.coordinator.submit(
            "autoplay", AnalysisSpec(metrics=METRICS, slices=SLICES, models=("ols", "mannwhitney", "dte"))
        )
        yield Setup(rt, settings, declared.analysis_id, requested.analysis_id, dict(uris), config)


def _card(setup: Setup, analysis_id: str) -> Scorecard:
    card = setup.rt.coordinator.results(analysis_id)
    assert card.complete and not card.failures, card.failures
    return card


def _rows(setup: Setup, table_key: str, slice_filter: SliceFilter) -> pa.Table:
    table = open_table(table_key, setup.rt.coordinator.store).read()
    return table if slice_filter.is_everyone else table.filter(slice_filter.to_arrow_mask(table))


def _ident(r: ResultRecord) -> tuple[object, ...]:
    return (r.metric, r.model, r.cell, r.segment, r.time, r.quantile)


def test_scorecard_has_quantile_mannwhitney_and_dte_records(setup: Setup) -> None:
    declared = _card(setup, setup.declared)
    quantiles = [r for r in declared.records if r.model == "quantile"]
    assert quantiles and all(r.metric == "playback_start_latency" and r.quantile is not None for r in quantiles)
    assert {r.quantile for r in quantiles} == {0.5, 0.9}
    assert {r.slice for r in quantiles} == {s.label() for s in SLICES}
    assert {r.model for r in declared.records} >= {"quantile", "ttest", "ols"}

    requested = _card(setup, setup.requested)
    by_model = {m: [r for r in requested.records if r.model == m] for m in ("ols", "mannwhitney", "dte")}
    assert all(by_model.values()), {m: len(v) for m, v in by_model.items()}
    assert {r.metric for r in by_model["mannwhitney"]} == set(METRICS)
    dte = by_model["dte"]
    assert {r.time for r in dte} == {"0", "1", "2", None}  # one record per day, plus the overall (time None)
    assert {(r.slice, r.metric) for r in dte} == {(s.label(), m) for s in SLICES for m in METRICS}
    assert all(r.p_value_adjusted is not None for r in requested.records)


def _assert_records_equal_fit_table(
    setup: Setup, analysis_id: str, experiment_id: str, slices: tuple[SliceFilter, ...]
) -> set[str]:
    """Every fit job's records equal ``fit_table`` on the slice's rows with the job's own spec; returns the models."""
    from xpcompute.models import fit_table

    coordinator = setup.rt.coordinator
    checked: set[str] = set()
    card = _card(setup, analysis_id)
    fits = [j for j in coordinator.state.list_jobs(analysis_id) if j.kind == JobKind.FIT]
    for job in fits:
        assert job.state == JobState.SUCCEEDED
        spec = FitSpec.model_validate(job.spec)
        slice_filter = next(s for s in slices if s.slice_id == job.slice_id)
        if spec.model in ("quantile", "mannwhitney"):
            assert spec.compress.kind == "ntile" and spec.compress.buckets == 1000
        if spec.model == "dte":
            assert (spec.time, spec.cluster) == ("day", "user_id")
        source = keys.user_day_table(experiment_id) if spec.model == "dte" else keys.analysis_table(experiment_id)
        expected = fit_table(_rows(setup, source, slice_filter), spec).records
        got = {_ident(r): r for r in card.records
               if r.slice == job.slice_label and r.metric == spec.metric and r.model == spec.model}
        assert len(got) == len(expected) > 0
        for want in expected:
            have = got[_ident(want)]
            assert have.effect == pytest.approx(want.effect, rel=1e-9, abs=1e-12)
            for field in ("se", "ci_low", "ci_high", "p_value", "mean_cell", "mean_control"):
                a, b = getattr(have, field), getattr(want, field)
                assert (a is None) == (b is None), field
                if a is not None:
                    assert a == pytest.approx(b, rel=1e-9, abs=1e-12), (spec.model, field)
            assert (have.n_cell, have.n_control) == (want.n_cell, want.n_control)
        checked.add(spec.model)
    return checked


def test_records_equal_fit_table_on_the_same_slice_rows(setup: Setup) -> None:
    checked: set[str] = set()
    for analysis_id in (setup.declared, setup.requested):
        checked |= _assert_records_equal_fit_table(setup, analysis_id, "autoplay", SLICES)
    assert checked >= {"quantile", "mannwhitney", "dte", "ols", "ttest"}


def test_cube_engine_equals_fits_on_the_rows_with_null_dimensions(setup: Setup, tmp_path: Path) -> None:
    """The cube engine: moments and the n-tile tables of discrete metrics come from cubes, continuous metrics
    from the slice's rows, and all equal ``fit_table`` on the rows. Users missing from the users table have
    null dimensions; the cubes keep them (the C++ group-by alone would drop null keys)."""
    import pyarrow.parquet as pq

    from xpcompute import synthetic
    from xpcompute.pipeline.slices import Condition
    from xpcompute.pipeline.stage1 import run_stage1

    coordinator = setup.rt.coordinator
    uris = dict(setup.raw_uris)
    users = pq.read_table(uris["users"])
    uris["users"] = str(tmp_path / "users.parquet")
    pq.write_table(users.slice(0, users.num_rows - 300), uris["users"])
    metrics = ("sessions", "active_days", "playback_start_latency")
    experiment = synthetic.experiment_spec(uris, setup.config, experiment_id="cubes", metrics=metrics, daily=False)
    run_stage1(experiment, coordinator.store, daily=False)
    coordinator.register_experiment(experiment)
    table = open_table(keys.analysis_table("cubes"), coordinator.store).read()
    assert table.column("country").null_count > 0
    not_tv = SliceFilter(all_of=(Condition(column="device", values=("tv",), negate=True),))
    slices = (SliceFilter(), SliceFilter.where(country="US"), not_tv)
    analysis = coordinator.submit(
        "cubes", AnalysisSpec(metrics=metrics, slices=slices, models=("ttest", "mannwhitney", "quantile"), engine="cube")
    )
    assert _assert_records_equal_fit_table(setup, analysis.analysis_id, "cubes", slices) == {
        "ttest", "mannwhitney", "quantile"
    }
    everyone = [r for r in _card(setup, analysis.analysis_id).records
                if r.slice == SliceFilter().label() and r.model == "ttest" and r.metric == "sessions"]
    assert sum(r.n_cell for r in everyone) + everyone[0].n_control == table.num_rows
    cubes = [k for k in coordinator.store.list(keys.analysis_prefix(analysis.analysis_id) + "cubes")
             if k.endswith(".parquet")]
    # the moments cube, the distribution cubes of sessions and active_days, and segment discovery's cube
    # (keyed by the MD5 half of the unit, written at finalize; XPCOMPUTE_SEGMENTS=false leaves it out)
    assert len(cubes) == 4
    tables = [j.output.get("artifacts", {}) for j in coordinator.state.list_jobs(analysis.analysis_id)
              if j.kind == JobKind.SLICE]
    assert all(len(t) == 3 for t in tables)


def test_second_delivery_writes_no_second_result(setup: Setup) -> None:
    coordinator = setup.rt.coordinator
    store = coordinator.store
    prefix = keys.analysis_prefix(setup.requested)
    before = {k: store.get_bytes(k) for k in store.list(prefix)}
    assert any(k.endswith(".distribution.parquet") for k in before)
    assert any(k.endswith(".panel.parquet") for k in before)
    jobs = coordinator.state.list_jobs(setup.requested)
    dte = next(j for j in jobs if j.model == "dte")
    mw = next(j for j in jobs if j.model == "mannwhitney")
    slice_job = next(j for j in jobs if j.kind == JobKind.SLICE)
    # a duplicated message: the job is done, so it is not claimed again
    assert run_job(coordinator, setup.settings, dte.job_id, "dup").status == "skipped"
    # a worker that ran it anyway (lost lease): same keys, put-if-absent keeps the first objects
    assert run_fit(coordinator, dte)["input"] == "panel"
    assert run_fit(coordinator, mw)["input"] == "distribution"
    run_slice(coordinator, setup.settings, slice_job)
    after = {k: store.get_bytes(k) for k in store.list(prefix)}
    assert after.keys() == before.keys()
    assert after == before


def test_dte_without_user_day_table_is_refused_up_front(setup: Setup) -> None:
    from xpcompute import synthetic
    from xpcompute.pipeline.stage1 import run_stage1

    coordinator = setup.rt.coordinator
    experiment = synthetic.experiment_spec(setup.raw_uris, setup.config, experiment_id="noday", metrics=METRICS,
                                           daily=False)
    run_stage1(experiment, coordinator.store, daily=False)
    coordinator.register_experiment(experiment)
    with pytest.raises(InputError, match=r"daily: true") as info:
        coordinator.submit("noday", AnalysisSpec(metrics=("streaming_hours",), models=("ols", "dte")),
                           analysis_id="noday-dte")
    assert 400 <= info.value.status < 500
    assert "user-by-day" in str(info.value)
    with pytest.raises(NotFoundError):  # nothing was created
        coordinator.state.get_analysis("noday-dte")
    # without dte the same experiment analyses fine, quantile and mannwhitney included
    analysis = coordinator.submit("noday", AnalysisSpec(metrics=METRICS, models=("mannwhitney", "quantile")))
    card = _card(setup, analysis.analysis_id)
    assert {r.model for r in card.records} == {"mannwhitney", "quantile"}


def test_ntile_buckets_is_validated() -> None:
    with pytest.raises(ValueError, match="ntile_buckets must be at least 2"):
        AnalysisSpec(metrics=("m",), ntile_buckets=1)
    assert AnalysisSpec(metrics=("m",)).ntile_buckets == 1000


def test_a_metric_without_a_distribution_fails_only_its_rank_fits(tmp_path: Path) -> None:
    """An ad-hoc table (no experiment): a metric with no value in a slice fails its rank fit there, nothing else."""
    import numpy as np
    from service_helpers import analysis_table, publish

    table = analysis_table(n=2000)
    empty_in_us = np.where(np.asarray(table.column("country").to_pylist()) == "US", np.nan, 1.0)
    table = table.append_column("flagged", pa.array(empty_in_us * np.asarray(table.column("hours"))))
    settings = Settings(home=tmp_path, dispatch="inline", slice_engine="arrow")
    with EmbeddedRuntime(settings) as rt:
        publish(rt.coordinator.store, "adhoc", table)
        spec = AnalysisSpec(metrics=("hours", "flagged"), models=("ttest", "mannwhitney"), slices=SLICES,
                            ntile_buckets=50)
        analysis = rt.coordinator.submit("adhoc", spec)
        card = rt.coordinator.results(analysis.analysis_id)
        jobs = {j.job_id: j for j in rt.coordinator.state.list_jobs(analysis.analysis_id)}
    failed = [j for j in jobs.values() if j.state == JobState.FAILED]
    us = SliceFilter.where(country="US")
    # the slice job succeeds; only the fits of the metric with no value in the US slice fail (ttest on its moments)
    assert sorted((j.slice_id, j.metric, j.model, j.kind.value) for j in failed) == [
        (us.slice_id, "flagged", "mannwhitney", "fit"), (us.slice_id, "flagged", "ttest", "fit"),
    ]
    rank = next(j for j in failed if j.model == "mannwhitney")
    assert "distribution table of metric 'flagged'" in (rank.last_error or "")
    assert rank.attempts == 1  # a data problem: not retried
    assert {(r.slice, r.metric, r.model) for r in card.records} >= {
        (us.label(), "hours", "mannwhitney"), (SliceFilter().label(), "flagged", "mannwhitney"),
    }
    mw = [r for r in card.records if r.model == "mannwhitney" and r.metric == "hours"]
    assert all(r.p_value is not None for r in mw)


def test_slices_computed_while_another_job_builds_the_cube_equal_the_rows(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a cube is claimed by another job, slice jobs go straight to the table: moments through the
    experiment's SQL stage 2 (DuckDB), distributions from the rows; the records are the same."""
    from xpcompute.coordinator import slicing
    from xpcompute.pipeline.engines.duckdb_engine import DuckDBEngine

    monkeypatch.setattr(slicing, "_cube", lambda *args: None)  # every cube is being built elsewhere
    queries: list[str] = []
    fetch = DuckDBEngine.fetch
    monkeypatch.setattr(DuckDBEngine, "fetch", lambda self, sql: queries.append(sql) or fetch(self, sql))
    analysis = setup.rt.coordinator.submit(
        "autoplay", AnalysisSpec(metrics=METRICS, slices=SLICES, models=("ttest", "mannwhitney", "quantile"), engine="cube")
    )
    assert _assert_records_equal_fit_table(setup, analysis.analysis_id, "autoplay", SLICES) == {
        "ttest", "mannwhitney", "quantile"
    }
    assert len(queries) == 2 * len(SLICES)  # per slice: the moments, and the rows of the distribution metrics
    assert not setup.rt.coordinator.store.list(keys.analysis_prefix(analysis.analysis_id) + "cubes")
