"""The state machine: completion, exact results, idempotence, retries, leases, live slices, restarts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_helpers import FakeClock, analysis_table, publish, reference_records

from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.jobs import PRIORITY_LIVE, AnalysisState, JobKind, JobState
from xpcompute.coordinator.messages import JobFinished
from xpcompute.coordinator.runtime import EmbeddedRuntime, build_coordinator
from xpcompute.coordinator.worker import run_job
from xpcompute.errors import InputError, NotFoundError, StorageError
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.storage import keys
from xpcompute.storage.objects import ObjectStore

US = SliceFilter.where(country="US")
NOT_US = SliceFilter(all_of=({"column": "country", "values": ("US",), "negate": True},))  # type: ignore[arg-type]


class FlakyStore:
    """Wraps a real store; writes to keys containing ``match`` fail ``times`` times (a store outage)."""

    def __init__(self, inner: ObjectStore, match: str, times: int) -> None:
        self.inner, self.match, self.left = inner, match, times

    def _maybe_fail(self, key: str) -> None:
        if self.match in key and self.left > 0:
            self.left -= 1
            raise StorageError(f"S3 put {key} failed: connection reset (injected)")

    def put_bytes(self, key: str, data: bytes) -> None:
        self._maybe_fail(key)
        self.inner.put_bytes(key, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        self._maybe_fail(key)
        return self.inner.put_if_absent(key, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[EmbeddedRuntime]:
    settings = Settings(home=tmp_path, dispatch="inline", slice_engine="arrow", backoff_s=1.0, lease_s=30.0)
    rt = EmbeddedRuntime(settings)
    rt.coordinator.clock = FakeClock()
    publish(rt.coordinator.store, "exp", analysis_table(3000))
    yield rt
    rt.stop()


def _spec(**kw: Any) -> AnalysisSpec:
    base: dict[str, Any] = dict(metrics=("hours", "is_streamer"), models=("ttest", "ols"),
                                covariates=("country", "pre_hours"), slices=(SliceFilter(), US))
    base.update(kw)
    return AnalysisSpec(**base)


def test_analysis_runs_to_a_scorecard_equal_to_direct_fits(runtime: EmbeddedRuntime) -> None:
    coord = runtime.coordinator
    analysis = coord.submit("exp", _spec())
    assert coord.state.get_analysis(analysis.analysis_id).state == AnalysisState.SUCCEEDED
    card = coord.results(analysis.analysis_id)
    assert card.complete and card.progress.total == 2 * (1 + 4) and card.progress.succeeded == 10
    table = analysis_table(3000)
    by_key = {(r.slice, r.metric, r.model, r.cell): r for r in card.records}
    assert len(by_key) == 8
    for sl in (SliceFilter(), US):
        for metric in ("hours", "is_streamer"):
            for model in ("ttest", "ols"):
                covs = ("country", "pre_hours") if model == "ols" else ()
                (ref,) = reference_records(table, sl, metric, model, covs)
                got = by_key[(sl.label(), metric, model, "treatment")]
                assert got.effect == pytest.approx(ref.effect, rel=1e-12)  # type: ignore[attr-defined]
                assert got.se == pytest.approx(ref.se, rel=1e-12)  # type: ignore[attr-defined]
                assert got.p_value == pytest.approx(ref.p_value, rel=1e-9)  # type: ignore[attr-defined]
                assert got.p_value_adjusted is not None and got.correction == "bh"
    assert {s.slice for s in card.srm} == {"all users", "country=US"}
    assert all(not s.mismatch for s in card.srm)
    stored = json.loads(coord.store.get_bytes(keys.scorecard(analysis.analysis_id)))
    assert len(stored["records"]) == 8


def test_same_job_delivered_twice_does_work_once(runtime: EmbeddedRuntime) -> None:
    coord = runtime.coordinator
    coord.dispatcher = None  # plan only; the test delivers by hand
    analysis = coord.submit("exp", _spec(slices=(SliceFilter(),), metrics=("hours",), models=("ttest",)))
    slice_job = next(j for j in coord.state.list_jobs(analysis.analysis_id) if j.kind == JobKind.SLICE)
    first = run_job(coord, runtime.settings, slice_job.job_id, "w1")
    after_first = coord.state.get_job(slice_job.job_id)
    second = run_job(coord, runtime.settings, slice_job.job_id, "w2")
    assert (first.status, second.status) == ("succeeded", "skipped")
    assert coord.state.get_job(slice_job.job_id).version == after_first.version  # no second transition
    assert after_first.attempts == 1 and after_first.worker == "w1"
    coord.on_job_finished(slice_job.job_id)
    coord.on_job_finished(slice_job.job_id)  # a replayed report releases nothing twice
    (fit,) = [j for j in coord.state.list_jobs(analysis.analysis_id) if j.kind == JobKind.FIT]
    assert fit.due_at is not None and fit.version == 1

    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def deliver(worker: str) -> None:
        barrier.wait()
        outcomes.append(run_job(coord, runtime.settings, fit.job_id, worker).status)

    threads = [threading.Thread(target=deliver, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["skipped", "skipped", "skipped", "succeeded"]
    results = coord.store.list(keys.analysis_prefix(analysis.analysis_id) + "results")
    assert results == [fit.result_key]
    coord.on_job_finished(fit.job_id)
    done = coord.state.get_analysis(analysis.analysis_id)
    coord.on_job_finished(fit.job_id)
    assert coord.state.get_analysis(analysis.analysis_id).version == done.version  # finalized once
    assert len(coord.results(analysis.analysis_id).records) == 1


def test_store_outage_is_retried_with_backoff_then_succeeds(runtime: EmbeddedRuntime) -> None:
    coord = runtime.coordinator
    clock = coord.clock
    assert isinstance(clock, FakeClock)
    coord.store = FlakyStore(coord.store, "/slices/", times=2)  # type: ignore[assignment]
    analysis = coord.submit("exp", _spec(slices=(SliceFilter(),), metrics=("hours",), models=("ttest",)))
    slice_job = next(j for j in coord.state.list_jobs(analysis.analysis_id) if j.kind == JobKind.SLICE)
    assert slice_job.state == JobState.PENDING and slice_job.attempts == 1
    assert slice_job.due_at == pytest.approx(clock.now + 1.0)  # first backoff
    assert "connection reset" in (slice_job.last_error or "")
    clock.advance(1.0)
    coord.tick()
    slice_job = coord.state.get_job(slice_job.job_id)
    assert slice_job.attempts == 2 and slice_job.due_at == pytest.approx(clock.now + 2.0)  # doubled
    clock.advance(2.0)
    coord.tick()
    assert coord.state.get_analysis(analysis.analysis_id).state == AnalysisState.SUCCEEDED
    assert coord.state.get_job(slice_job.job_id).attempts == 3
    assert len(coord.state.get_job(slice_job.job_id).errors) == 2


def test_exhausted_retries_fail_the_job_its_fits_and_the_analysis_with_reasons(runtime: EmbeddedRuntime) -> None:
    coord = runtime.coordinator
    clock = coord.clock
    assert isinstance(clock, FakeClock)
    coord.store = FlakyStore(coord.store, "/slices/", times=100)  # type: ignore[assignment]
    analysis = coord.submit("exp", _spec(slices=(SliceFilter(), US), metrics=("hours",), models=("ttest",)))
    for _ in range(12):  # a store error is transient: max_attempts (3) + transient_retries (6) attempts
        clock.advance(40.0)
        coord.tick()
    final = coord.state.get_analysis(analysis.analysis_id)
    assert final.state == AnalysisState.FAILED
    assert final.error is not None and "gave up after 9 attempts" in final.error
    card = coord.results(analysis.analysis_id)
    assert card.complete and card.records == []
    kinds = sorted((f.kind, f.slice) for f in card.failures)
    assert kinds == [("fit", "all users"), ("fit", "country=US"), ("slice", "all users"), ("slice", "country=US")]
    fit_failure = next(f for f in card.failures if f.kind == "fit")
    assert "its slice" in fit_failure.error and "connection reset" in fit_failure.error


def test_bad_data_fails_at_once_without_retries(runtime: EmbeddedRuntime) -> None:
    coord = runtime.coordinator
    empty = SliceFilter.where(country="Atlantis")
    analysis = coord.submit("exp", _spec(metrics=("hours",), models=("ttest",), slices=(SliceFilter(), empty)))
    status = coord.status(analysis.analysis_id)
    assert status.analysis.state == AnalysisState.FAILED
    assert status.progress.succeeded == 2 and len(status.records) == 1  # the good slice still reports
    slice_failure = next(f for f in status.failures if f.kind == "slice")
    assert slice_failure.attempts == 1 and "is empty" in slice_failure.error
    assert slice_failure.slice == "country=Atlantis"


def test_expired_lease_is_taken_back_and_the_job_completes(runtime: EmbeddedRuntime) -> None:
    coord = runtime.coordinator
    clock = coord.clock
    assert isinstance(clock, FakeClock)
    dispatcher = coord.dispatcher
    coord.dispatcher = None
    analysis = coord.submit("exp", _spec(slices=(SliceFilter(),), metrics=("hours",), models=("ttest",)))
    slice_job = next(j for j in coord.state.list_jobs(analysis.analysis_id) if j.kind == JobKind.SLICE)
    stuck = coord.claim(slice_job.job_id, "hung-worker")
    assert stuck is not None and stuck.state == JobState.RUNNING
    clock.advance(29.0)
    assert coord.reclaim_expired() == []
    clock.advance(2.0)
    coord.dispatcher = dispatcher
    assert coord.tick() == 1
    clock.advance(1.0)
    coord.tick()
    job = coord.state.get_job(slice_job.job_id)
    assert job.state == JobState.SUCCEEDED and job.attempts == 2
    assert "lease of 30s expired on worker hung-worker" in job.errors[0]
    assert not coord.complete(stuck)  # the hung worker's late completion is refused
    assert coord.state.get_analysis(analysis.analysis_id).state == AnalysisState.SUCCEEDED


def test_partial_results_are_readable_while_running(runtime: EmbeddedRuntime) -> None:
    coord = runtime.coordinator
    coord.dispatcher = None
    analysis = coord.submit("exp", _spec(slices=(SliceFilter(), US), metrics=("hours",), models=("ttest",)))
    first = next(j for j in coord.state.list_jobs(analysis.analysis_id) if j.kind == JobKind.SLICE)
    run_job(coord, runtime.settings, first.job_id, "w")
    coord.on_job_finished(first.job_id)
    fit = next(j for j in coord.state.list_jobs(analysis.analysis_id) if j.depends_on == first.job_id)
    run_job(coord, runtime.settings, fit.job_id, "w")
    status = coord.status(analysis.analysis_id)
    assert status.analysis.state == AnalysisState.RUNNING
    assert (status.progress.succeeded, status.progress.pending, status.progress.total) == (2, 2, 4)
    assert [r.slice for r in status.records] == [first.slice_label]
    partial = coord.results(analysis.analysis_id)
    assert not partial.complete and len(partial.records) == 1


def test_live_slice_reopens_a_finished_analysis_and_joins_its_scorecard(runtime: EmbeddedRuntime) -> None:
    coord = runtime.coordinator
    analysis = coord.submit("exp", _spec(slices=(SliceFilter(),), metrics=("hours",), models=("ttest",)))
    done = coord.state.get_analysis(analysis.analysis_id)
    assert done.state == AnalysisState.SUCCEEDED
    assert isinstance(coord.clock, FakeClock)
    coord.clock.advance(5.0)
    job = coord.request_slice(analysis.analysis_id, NOT_US)
    assert job.priority == PRIORITY_LIVE + 1 and job.state == JobState.SUCCEEDED
    again = coord.request_slice(analysis.analysis_id, NOT_US)  # idempotent
    assert again.job_id == job.job_id
    card = coord.results(analysis.analysis_id)
    assert card.complete and sorted(r.slice or "" for r in card.records) == ["all users", "country!=US"]
    assert coord.state.get_analysis(analysis.analysis_id).finished_at == done.finished_at + 5.0  # type: ignore[operator]
    assert card.version == coord.state.get_analysis(analysis.analysis_id).version
    (ref,) = reference_records(analysis_table(3000), NOT_US, "hours", "ttest")
    live = next(r for r in card.records if r.slice == "country!=US")
    assert live.effect == pytest.approx(ref.effect, rel=1e-12)  # type: ignore[attr-defined]


def test_restarted_coordinator_resumes_a_half_done_analysis(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, dispatch="inline", slice_engine="arrow", lease_s=0.3, backoff_s=0.0)
    first = build_coordinator(settings, dispatcher=None)
    publish(first.store, "exp", analysis_table(2000))
    analysis = first.submit("exp", _spec(slices=(SliceFilter(), US), metrics=("hours",), models=("ttest",)))
    sl = next(j for j in first.state.list_jobs(analysis.analysis_id) if j.kind == JobKind.SLICE)
    run_job(first, settings, sl.job_id, "w")  # done, but the process "crashes" before reporting it
    claimed = first.claim(f"{analysis.analysis_id}.slice.{US.slice_id}", "dying-worker")
    assert claimed is not None
    first.state.close()

    time.sleep(0.4)  # the dying worker's lease runs out while the coordinator is down
    restarted = EmbeddedRuntime(settings)
    try:
        restarted.start()
        state = restarted.coordinator.state.get_analysis(analysis.analysis_id).state
        assert state == AnalysisState.SUCCEEDED
        card = restarted.coordinator.results(analysis.analysis_id)
        assert sorted(r.slice or "" for r in card.records) == ["all users", "country=US"]
    finally:
        restarted.stop()


def test_requests_are_validated_with_messages_naming_the_problem(runtime: EmbeddedRuntime) -> None:
    with pytest.raises(ValueError, match="repeat a name"):
        AnalysisSpec(metrics=("a", "a"))
    with pytest.raises(ValueError, match="listed more than once"):
        AnalysisSpec(metrics=("a",), slices=(US, SliceFilter.where(country="US")))
    with pytest.raises(ValueError, match="identifier"):
        AnalysisSpec(metrics=("hours; DROP TABLE x",))
    with pytest.raises(InputError, match="column 'nope' not found"):
        runtime.coordinator.submit("exp", _spec(slices=(SliceFilter.where(nope="x"),)))
    with pytest.raises(InputError, match="'no_such_metric' not found"):
        runtime.coordinator.submit("exp", _spec(metrics=("no_such_metric",)))
    with pytest.raises(NotFoundError, match="PUT /experiments/other_exp with its spec first"):
        runtime.coordinator.submit("other_exp", _spec())
    with pytest.raises(InputError, match="experiment id"):
        runtime.coordinator.submit("../etc", _spec())


def test_job_finished_message_round_trips() -> None:
    msg = JobFinished(job_id="a.slice.s", analysis_id="a")
    assert JobFinished.model_validate_json(msg.model_dump_json()) == msg


def test_cube_engine_reaggregates_slices_exactly(runtime: EmbeddedRuntime) -> None:
    coord = runtime.coordinator
    slices = (SliceFilter(), US, NOT_US, SliceFilter.either(country=["MX", "BR"]))
    analysis = coord.submit("exp", _spec(slices=slices, engine="cube"))
    card = coord.results(analysis.analysis_id)
    assert card.complete and not card.failures
    table = analysis_table(3000)
    for sl in slices:
        for metric in ("hours", "is_streamer"):
            for model, covs in (("ttest", ()), ("ols", ("country", "pre_hours"))):
                (ref,) = reference_records(table, sl, metric, model, covs)
                got = next(r for r in card.records if (r.slice, r.metric, r.model) == (sl.label(), metric, model))
                assert got.effect == pytest.approx(ref.effect, rel=1e-10)  # type: ignore[attr-defined]
                assert got.se == pytest.approx(ref.se, rel=1e-10)  # type: ignore[attr-defined]
                assert got.n_cell == ref.n_cell  # type: ignore[attr-defined]
    cubes = [k for k in coord.store.list(keys.analysis_prefix(analysis.analysis_id) + "cubes") if k.endswith(".parquet")]
    assert len(cubes) == 1  # country is already a fit key (an ols covariate), so every slice shares one cube
    empty = coord.request_slice(analysis.analysis_id, SliceFilter.where(country="Atlantis"))
    assert empty.state == JobState.FAILED and "is empty" in (empty.last_error or "")


def test_a_claimed_cube_is_left_to_its_builder_unless_the_claim_is_stale(tmp_path: Path) -> None:
    """While one job builds a cube, the others compute from the rows; a crashed builder's claim expires."""
    from xpcompute.coordinator import slicing
    from xpcompute.storage.objects import open_store

    store = open_store(str(tmp_path))
    built: list[int] = []

    def build() -> Any:
        built.append(1)
        return slicing.compress_moments(analysis_table(200), ["cell"], {"hours": []})

    store.put_if_absent(keys.cube_claim("a1", "sig"), json.dumps({"at": time.time()}).encode())
    assert slicing._cube(store, "a1", "sig", build) is None and not built  # another job is building it
    store.put_if_absent(keys.cube_claim("a2", "sig"), json.dumps({"at": time.time() - 2 * slicing.CLAIM_STALE_S}).encode())
    cube = slicing._cube(store, "a2", "sig", build)  # the claim is stale: build it here
    assert cube is not None and built == [1] and store.exists(keys.cube("a2", "sig"))
    again = slicing._cube(store, "a2", "sig", build)  # stored: read, not rebuilt
    assert again is not None and again.table.equals(cube.table) and built == [1]
