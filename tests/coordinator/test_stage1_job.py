"""Stage 1 as a coordinator job: planned first when the analysis table is missing or stale, slices wait on it,
its failure reaches every dependant with the reason, and its table records the spec it was built from."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from service_helpers import raw_sources, spec_body

from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.jobs import AnalysisState, JobKind, JobState, stage1_job_id
from xpcompute.coordinator.runtime import build_coordinator
from xpcompute.coordinator.service import Coordinator, spec_hash
from xpcompute.coordinator.worker import run_job
from xpcompute.errors import ConflictError
from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.pipeline.tables import open_table
from xpcompute.storage import keys

US = SliceFilter.where(country="US")


def _setup(tmp_path: Path, users: int = 2000) -> tuple[Coordinator, Settings, dict[str, str], Any]:
    """A coordinator that runs nothing by itself (the test runs each job), and raw sources for one experiment."""
    uris, config = raw_sources(str(tmp_path / "raw"), users=users)
    settings = Settings(home=tmp_path / "home", dispatch="inline", slice_engine="arrow")
    return build_coordinator(settings, dispatcher=None), settings, uris, config


def _register(coord: Coordinator, uris: dict[str, str], config: Any, **overrides: Any) -> int:
    return coord.register_spec("autoplay", spec_body(uris, config, **overrides)).version


def _drain(coord: Coordinator, settings: Settings, analysis_id: str) -> list[str]:
    """Run the analysis's due jobs in priority order until none is left; returns the kinds in the order they ran."""
    ran: list[str] = []
    for _ in range(500):
        due = [j for j in coord.state.due_jobs(time.time() + 1e6, limit=1000) if j.analysis_id == analysis_id]
        if not due:
            break
        job = due[0]
        run_job(coord, settings, job.job_id, "test")
        coord.on_job_finished(job.job_id)
        ran.append(job.kind.value)
    return ran


def _spec(**kw: Any) -> AnalysisSpec:
    base: dict[str, Any] = dict(metrics=("streaming_hours", "is_streamer"), slices=(SliceFilter(), US))
    base.update(kw)
    return AnalysisSpec(**base)


def test_missing_table_runs_stage1_first_then_slices_fits_and_finalizes(tmp_path: Path) -> None:
    coord, settings, uris, config = _setup(tmp_path)
    version = _register(coord, uris, config)
    analysis = coord.submit("autoplay", _spec())
    assert analysis.experiment_version == version == 1
    jobs = {j.job_id: j for j in coord.state.list_jobs(analysis.analysis_id)}
    gate = jobs[stage1_job_id(analysis.analysis_id)]
    assert gate.kind == JobKind.STAGE1 and gate.due_at is not None
    assert gate.spec is not None and gate.spec["reason"] == "no analysis table has been published yet"
    slices = [j for j in jobs.values() if j.kind == JobKind.SLICE]
    assert len(slices) == 2 and all(j.waiting and j.depends_on == gate.job_id for j in slices)
    assert sorted(gate.children) == sorted(j.job_id for j in slices)

    ran = _drain(coord, settings, analysis.analysis_id)
    assert ran[0] == "stage1" and ran.count("stage1") == 1 and ran.count("slice") == 2
    final = coord.state.get_analysis(analysis.analysis_id)
    assert final.state == AnalysisState.SUCCEEDED, final.error
    experiment = coord.experiment("autoplay")
    assert experiment is not None
    done = coord.state.get_job(gate.job_id)
    assert done.output["spec_hash"] == spec_hash(experiment) and done.output["experiment_version"] == 1
    table = open_table(keys.analysis_table("autoplay"), coord.store)
    assert table.num_rows == done.output["rows"] and table.manifest["spec"] == experiment.canonical()
    card = coord.results(analysis.analysis_id)
    # streaming_hours: ttest + CUPED ols (declared covariate); is_streamer: proportion; 2 treated cells, 2 slices
    assert {(r.metric, r.model) for r in card.records} == {
        ("streaming_hours", "ttest"), ("streaming_hours", "ols"), ("is_streamer", "proportion")}
    assert {r.slice for r in card.records} == {"all users", "country=US"}
    assert {r.control for r in card.records} == {config.control} and len(card.records) == 3 * 2 * 2
    # CUPED on the stage-1 pre-period column narrows the interval of the same effect
    everyone = [r for r in card.records if r.slice == "all users" and r.metric == "streaming_hours"]
    for cell in {r.cell for r in everyone}:
        by_model = {r.model: r for r in everyone if r.cell == cell}
        assert by_model["ols"].se < by_model["ttest"].se

    again = coord.submit("autoplay", _spec())
    assert coord.stage1_job(again.analysis_id) is None  # the table is current: no second stage 1
    assert "stage1" not in _drain(coord, settings, again.analysis_id)
    assert coord.state.get_analysis(again.analysis_id).state == AnalysisState.SUCCEEDED


def test_spec_change_source_change_and_refresh_each_rerun_stage1(tmp_path: Path) -> None:
    coord, settings, uris, config = _setup(tmp_path)
    _register(coord, uris, config)
    first = coord.submit("autoplay", _spec(slices=(SliceFilter(),)))
    _drain(coord, settings, first.analysis_id)
    experiment = coord.experiment("autoplay")
    assert experiment is not None
    assert coord.stage1_reason(experiment) is None

    assert coord.stage1_reason(experiment, refresh=True) == "refresh was requested"
    refreshed = coord.submit("autoplay", _spec(slices=(SliceFilter(),), refresh=True))
    before = open_table(keys.analysis_table("autoplay"), coord.store).run_id
    _drain(coord, settings, refreshed.analysis_id)
    assert open_table(keys.analysis_table("autoplay"), coord.store).run_id != before
    assert coord.state.get_job(stage1_job_id(refreshed.analysis_id)).output["reused"] is False

    later = time.time() + 60  # a source rewritten after the table was built
    os.utime(uris["playback"], (later, later))
    reason = coord.stage1_reason(experiment)
    assert reason is not None and "source 'playback'" in reason and "after the table was built" in reason
    touched = coord.submit("autoplay", _spec(slices=(SliceFilter(),)))
    assert coord.stage1_job(touched.analysis_id) is not None
    os.utime(uris["playback"], (time.time() - 3600, time.time() - 3600))  # back in the past: current again
    _drain(coord, settings, touched.analysis_id)

    assert _register(coord, uris, config, description="autoplay, second look") == 2
    changed = coord.submit("autoplay", _spec(slices=(SliceFilter(),)))
    assert changed.experiment_version == 2
    gate = coord.state.get_job(stage1_job_id(changed.analysis_id))
    assert gate.spec is not None and gate.spec["reason"] == "the registered spec changed since the table was built"
    _drain(coord, settings, changed.analysis_id)
    v2 = coord.experiment("autoplay")
    assert v2 is not None
    assert open_table(keys.analysis_table("autoplay"), coord.store).manifest["spec"] == v2.canonical()
    assert coord.stage1_reason(v2) is None


def test_a_registered_spec_round_trips_to_the_same_hash(tmp_path: Path) -> None:
    """Staleness compares the table's spec hash with the registered one: a parse/dump cycle must not change it."""
    coord, _settings, uris, config = _setup(tmp_path, users=200)
    _register(coord, uris, config)
    registered = coord.experiment_version("autoplay")
    assert registered is not None
    reparsed = ExperimentSpec.parse(registered.spec.model_dump(mode="json"))
    assert spec_hash(reparsed) == spec_hash(registered.spec) == registered.spec_hash


def test_stage1_failure_fails_its_slices_and_fits_with_the_reason(tmp_path: Path) -> None:
    coord, settings, uris, config = _setup(tmp_path)
    _register(coord, uris, config)
    analysis = coord.submit("autoplay", _spec())
    # the source loses a column the spec reads after the analysis was accepted (a broken upstream job)
    pq.write_table(pq.read_table(uris["playback"]).drop_columns(["watch_seconds"]), uris["playback"])
    _drain(coord, settings, analysis.analysis_id)
    status = coord.status(analysis.analysis_id)
    assert status.analysis.state == AnalysisState.FAILED
    assert status.stage1 is not None and status.stage1.state == JobState.FAILED
    assert status.stage1.attempts == 1  # a missing column is bad input: not retried
    stage1_failure = next(f for f in status.failures if f.kind == "stage1")
    assert "MissingColumnError" in stage1_failure.error and "playback" in stage1_failure.error
    dependants = [f for f in status.failures if f.kind in ("slice", "fit")]
    assert len(dependants) == status.progress.total - 1 == status.progress.failed - 1
    assert all(f.error.startswith("stage 1 failed: MissingColumnError") for f in dependants)
    assert "watch_seconds" in stage1_failure.error and "watch_seconds" in dependants[0].error
    assert status.analysis.error is not None and "stage 1 failed" in status.analysis.error
    with pytest.raises(ConflictError, match=r"its stage 1 failed .*watch_seconds"):
        coord.request_slice(analysis.analysis_id, SliceFilter.where(device="tv"))


def test_live_slice_waits_for_a_pending_stage1_and_jobs_read_their_own_version(tmp_path: Path) -> None:
    coord, settings, uris, config = _setup(tmp_path)
    _register(coord, uris, config)
    analysis = coord.submit("autoplay", _spec(slices=(SliceFilter(),)))
    live = coord.request_slice(analysis.analysis_id, US)
    assert live.waiting and live.depends_on == stage1_job_id(analysis.analysis_id)
    # a second registration while the analysis is queued: its jobs keep reading version 1
    _register(coord, uris, config, metrics=["streaming_hours", "longest_session_hours"])
    ran = _drain(coord, settings, analysis.analysis_id)
    assert ran[0] == "stage1" and ran.count("slice") == 2
    final = coord.state.get_analysis(analysis.analysis_id)
    assert final.state == AnalysisState.SUCCEEDED and final.experiment_version == 1, final.error
    v1 = coord.experiment_version("autoplay", 1)
    assert v1 is not None
    built = open_table(keys.analysis_table("autoplay"), coord.store).manifest
    assert built["spec"] == v1.spec.canonical()
    assert {r.slice for r in coord.results(analysis.analysis_id).records} == {"all users", "country=US"}
    with pytest.raises(Exception, match="is_streamer"):  # the current version no longer has it
        coord.submit("autoplay", _spec())


def test_a_table_rebuilt_for_a_newer_version_is_not_sliced_for_an_older_analysis(tmp_path: Path) -> None:
    coord, settings, uris, config = _setup(tmp_path)
    _register(coord, uris, config)
    _drain(coord, settings, coord.submit("autoplay", _spec(slices=(SliceFilter(),))).analysis_id)
    older = coord.submit("autoplay", _spec(slices=(SliceFilter(),)))  # version 1, table current: no stage 1
    assert coord.stage1_job(older.analysis_id) is None
    _register(coord, uris, config, description="second look")
    newer = coord.submit("autoplay", _spec(slices=(SliceFilter(),)))
    _drain(coord, settings, newer.analysis_id)  # rebuilds the table for version 2 while the older one waits
    _drain(coord, settings, older.analysis_id)
    status = coord.status(older.analysis_id)
    assert status.analysis.state == AnalysisState.FAILED
    failure = next(f for f in status.failures if f.kind == "slice")
    assert "rebuilt from another version of its spec" in failure.error and "version 1" in failure.error
    assert coord.state.get_analysis(newer.analysis_id).state == AnalysisState.SUCCEEDED


def test_a_stage1_job_holds_its_own_longer_lease(tmp_path: Path) -> None:
    """Stage 1 builds the whole table: a slice-sized lease would have it taken back and run twice."""
    coord, settings, uris, config = _setup(tmp_path, users=200)
    _register(coord, uris, config)
    analysis = coord.submit("autoplay", _spec(slices=(SliceFilter(),)))
    job = coord.claim(stage1_job_id(analysis.analysis_id), "w")
    assert job is not None and job.lease_expires_at is not None and job.started_at is not None
    assert job.lease_expires_at - job.started_at == settings.stage1_lease_s == 3600.0 > settings.lease_s


def test_one_build_at_a_time_a_waiting_stage1_reuses_the_table_just_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from xpcompute.coordinator import table_jobs

    monkeypatch.setattr(table_jobs, "STAGE1_POLL_S", 0.02)
    coord, settings, uris, config = _setup(tmp_path, users=500)
    _register(coord, uris, config)
    first = coord.submit("autoplay", _spec(slices=(SliceFilter(),)))
    second = coord.submit("autoplay", _spec(slices=(SliceFilter(),)))  # no table yet: both plan stage 1
    claim = keys.stage1_claim("autoplay")
    assert coord.store.put_if_absent(claim, json.dumps({"job_id": "other.stage1", "started_at": time.time()}).encode())
    done = threading.Event()
    builder = threading.Thread(target=lambda: (run_job(coord, settings, stage1_job_id(first.analysis_id), "w1"),
                                               done.set()))
    builder.start()
    assert not done.wait(0.5)  # another job holds the build: this one waits instead of building alongside
    coord.store.delete(claim)
    assert done.wait(60)
    builder.join()
    built = coord.state.get_job(stage1_job_id(first.analysis_id))
    assert built.state == JobState.SUCCEEDED and built.output["reused"] is False
    assert not coord.store.exists(claim)  # released after the build
    run_job(coord, settings, stage1_job_id(second.analysis_id), "w2")
    reused = coord.state.get_job(stage1_job_id(second.analysis_id))
    assert reused.output["reused"] is True and reused.output["run"] == built.output["run"]

    # a claim whose holder is no longer running (a crash mid-build), or unknown and older than the stage-1
    # lease, does not block the next build
    for holder, started in ((built.job_id, time.time()), ("gone.stage1", time.time() - 7200)):
        coord.store.put_bytes(claim, json.dumps({"job_id": holder, "started_at": started}).encode())
        refresh = coord.submit("autoplay", _spec(slices=(SliceFilter(),), refresh=True))
        run_job(coord, settings, stage1_job_id(refresh.analysis_id), "w3")
        rebuilt = coord.state.get_job(stage1_job_id(refresh.analysis_id))
        assert rebuilt.state == JobState.SUCCEEDED and rebuilt.output["reused"] is False
        assert rebuilt.output["run"] != built.output["run"]


def test_in_a_function_a_stage1_waiting_for_another_build_defers_instead_of_sleeping(tmp_path: Path) -> None:
    """A slice function has a timeout (5 minutes on AWS): it must not wait out another job's build."""
    coord, settings, uris, config = _setup(tmp_path, users=300)
    _register(coord, uris, config)
    in_function = settings.model_copy(update={"mode": "serverless"})
    waiting = coord.submit("autoplay", _spec(slices=(SliceFilter(),)))
    claim = keys.stage1_claim("autoplay")
    other = coord.submit("autoplay", _spec(slices=(SliceFilter(),)))
    holder = coord.claim(stage1_job_id(other.analysis_id), "w0")  # a live build elsewhere holds the claim
    assert holder is not None
    assert coord.store.put_if_absent(claim, json.dumps({"job_id": holder.job_id, "started_at": time.time()}).encode())
    started = time.monotonic()
    outcome = run_job(coord, in_function, stage1_job_id(waiting.analysis_id), "fn")
    assert outcome.status == "deferred" and "waiting for the stage-1 build" in str(outcome.error)
    assert time.monotonic() - started < 5
    job = coord.state.get_job(stage1_job_id(waiting.analysis_id))
    assert job.state == JobState.PENDING and job.attempts == 0 and job.due_at is not None
    assert json.loads(coord.store.get_bytes(claim))["job_id"] == holder.job_id  # the holder's claim is untouched


def test_a_table_built_without_the_ratio_residual_columns_is_rebuilt(tmp_path: Path) -> None:
    """A table an earlier release published (same spec, fewer columns) is stale: the next analysis rebuilds it,
    rather than fitting ratios from a table that lacks their residual columns."""
    coord, settings, uris, config = _setup(tmp_path)
    _register(coord, uris, config)
    first = coord.submit("autoplay", _spec(slices=(SliceFilter(),)))
    _drain(coord, settings, first.analysis_id)
    experiment = coord.experiment("autoplay")
    assert experiment is not None and coord.stage1_reason(experiment) is None
    manifest_key = keys.manifest(keys.analysis_table("autoplay"))
    manifest = json.loads(coord.store.get_bytes(manifest_key))
    residuals = [c["name"] for c in manifest["columns"] if c["name"].endswith("__res")]
    assert "rebuffer_rate__res" in residuals
    manifest["columns"] = [c for c in manifest["columns"] if not c["name"].endswith("__res")]
    coord.store.put_bytes(manifest_key, json.dumps(manifest).encode())
    reason = coord.stage1_reason(experiment)
    assert reason is not None and "without column(s)" in reason and "rebuffer_rate__res" in reason
    again = coord.submit("autoplay", _spec(slices=(SliceFilter(),)))
    assert "stage1" in _drain(coord, settings, again.analysis_id)
    assert coord.stage1_reason(experiment) is None
