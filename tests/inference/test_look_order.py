"""Looks of concurrent analyses of one sequential experiment: an analysis's look counts every analysis of the
experiment created before it, whatever order their jobs finish in.

Jobs are run by hand (no dispatcher) so the order is the test's: analysis B, created after A, has all its jobs
done before A has run any.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "coordinator"))

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from service_helpers import FakeClock, analysis_table

from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.inference_pass import (
    plan_look,
    read_look_entries,
    read_looks,
    run_inference_pass,
    skip_look,
)
from xpcompute.coordinator.jobs import AnalysisState, JobKind, JobState
from xpcompute.coordinator.runtime import build_coordinator
from xpcompute.coordinator.service import Coordinator
from xpcompute.coordinator.worker import run_job
from xpcompute.inference import group_sequential_boundaries
from xpcompute.inference.settings import InferenceSpec
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.pipeline.tables import publish_table
from xpcompute.records import ResultRecord
from xpcompute.storage import keys
from xpcompute.storage.objects import LocalObjectStore

PLANNED = 3000
N_A, N_B = 1000, 2000
INFERENCE = InferenceSpec(sequential="group_sequential", planned_units=PLANNED, planned_looks=3)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Coordinator, Settings]:
    settings = Settings(home=tmp_path, dispatch="inline", slice_engine="arrow")
    coord = build_coordinator(settings, dispatcher=None)
    coord.clock = FakeClock()
    # the experiment's data at A's look and at B's (two snapshots, so each analysis has its own n)
    _publish(coord, "exp/snap_a", analysis_table(N_A, seed=1))
    _publish(coord, "exp/snap_b", analysis_table(N_B, seed=2))
    return coord, settings


def _publish(coord: Coordinator, key: str, table: pa.Table) -> None:
    def write(fs: pafs.FileSystem, path: str) -> pa.Schema:
        fs.create_dir(path, recursive=True)
        pq.write_table(table, f"{path}/part-0.parquet", filesystem=fs)
        return table.schema

    publish_table(coord.store, key, write)


def _spec(snapshot: str, inference: InferenceSpec | None = INFERENCE, **kw: Any) -> AnalysisSpec:
    base: dict[str, Any] = dict(metrics=("hours",), models=("ttest",), slices=(SliceFilter(),),
                                table=snapshot, inference=inference)
    base.update(kw)
    return AnalysisSpec(**base)


def _submit(coord: Coordinator, aid: str, spec: AnalysisSpec) -> None:
    clock = coord.clock
    assert isinstance(clock, FakeClock)
    clock.advance(60.0)
    coord.submit("exp", spec, analysis_id=aid)


def _run_all(coord: Coordinator, settings: Settings, aid: str) -> None:
    """Run every job of ``aid`` the way a worker and the coordinator function would (each completion reported)."""
    while True:
        due = [j for j in coord.state.list_jobs(aid) if j.state == JobState.PENDING and j.due_at is not None]
        if not due:
            return
        for job in due:
            assert run_job(coord, settings, job.job_id, "w").status == "succeeded"
            coord.on_job_finished(job.job_id)


def _looks(coord: Coordinator) -> list[dict[str, Any]]:
    store = coord.store
    raw = [json.loads(store.get_bytes(k)) for k in store.list(keys.experiment_look("exp"))]
    return sorted((d for d in raw if not d.get("skipped")), key=lambda d: (d["created_at"], d["analysis_id"]))


def _inference(coord: Coordinator, aid: str) -> dict[str, Any]:
    summary = coord.results(aid).inference
    assert summary is not None
    return summary


def test_a_later_analysis_finishing_first_counts_the_earlier_look(setup: tuple[Coordinator, Settings]) -> None:
    coord, settings = setup
    _submit(coord, "A", _spec("exp/snap_a"))
    _submit(coord, "B", _spec("exp/snap_b"))
    _run_all(coord, settings, "B")  # B, created after A, is done first
    _run_all(coord, settings, "A")
    assert coord.state.get_analysis("A").state == AnalysisState.SUCCEEDED
    assert coord.state.get_analysis("B").state == AnalysisState.SUCCEEDED

    fa, fb = N_A / PLANNED, N_B / PLANNED
    first = group_sequential_boundaries([fa], 0.05, "obrien_fleming", 2)
    second = group_sequential_boundaries([fa, fb], 0.05, "obrien_fleming", 2)
    a, b = _inference(coord, "A"), _inference(coord, "B")
    assert a["look"] == 1 and a["boundary_z"] == pytest.approx(first.z[-1], rel=1e-12)
    assert b["look"] == 2, b
    assert b["boundary_z"] == pytest.approx(second.z[-1], rel=1e-12)
    assert b["alpha_spent"] == pytest.approx(second.cumulative_alpha[-1], rel=1e-12)
    assert b["alpha_spent_before"] == pytest.approx(first.cumulative_alpha[-1], rel=1e-12)
    record = next(r for r in coord.results("B").records if r.slice == "all users")
    assert record.look == 2 and record.boundary_z == pytest.approx(second.z[-1], rel=1e-12)
    # the stored looks agree: B's stored look is the second, with the boundary it reported
    looks = _looks(coord)
    assert [d["analysis_id"] for d in looks] == ["A", "B"]
    assert looks[1]["boundary_z"] == pytest.approx(second.z[-1], rel=1e-12)
    assert looks[1]["alpha_spent"] == pytest.approx(second.cumulative_alpha[-1], rel=1e-12)


def _note(summary: dict[str, Any], text: str) -> bool:
    return any(text in note for note in summary["notes"])


@pytest.mark.parametrize("spending", ["obrien_fleming", "pocock"])
def test_the_later_analysis_waits_and_a_live_slice_reuses_its_look(setup: tuple[Coordinator, Settings],
                                                                   spending: str) -> None:
    coord, settings = setup
    inference = INFERENCE.model_copy(update={"spending": spending})
    _submit(coord, "A", _spec("exp/snap_a", inference))
    _submit(coord, "B", _spec("exp/snap_b", inference, slices=(SliceFilter(), SliceFilter.where(country="US"))))
    _run_all(coord, settings, "B")
    # every job of B is done, but A (created first) has no look yet: B waits, and its partial scorecard says so
    assert coord.state.get_analysis("B").state == AnalysisState.RUNNING
    assert coord.maybe_finalize("B") is None and coord.tick(sweep=True) == 0
    assert coord.state.get_analysis("B").state == AnalysisState.RUNNING
    assert _note(_inference(coord, "B"), "must count the look of analysis A")
    assert _looks(coord) == []
    _run_all(coord, settings, "A")  # A's finalize stores its look, then finalizes B
    assert coord.state.get_analysis("B").state == AnalysisState.SUCCEEDED
    expected = group_sequential_boundaries([N_A / PLANNED, N_B / PLANNED], 0.05, spending, 2)
    b = _inference(coord, "B")
    assert b["look"] == 2 and b["boundary_z"] == pytest.approx(expected.z[-1], rel=1e-12)
    assert [(d["analysis_id"], d["boundary_z"]) for d in _looks(coord)] == [
        ("A", pytest.approx(expected.z[0], rel=1e-12)), ("B", pytest.approx(expected.z[1], rel=1e-12))]

    # a live slice re-finalizes B: the same look (no third look, same boundary), nothing to wait for
    job = coord.request_slice("B", SliceFilter.where(country="CA"))
    assert coord.state.get_analysis("B").state == AnalysisState.RUNNING
    _run_all(coord, settings, "B")
    assert job.kind == JobKind.SLICE and coord.state.get_analysis("B").state == AnalysisState.SUCCEEDED
    again = coord.results("B")
    assert again.inference is not None and again.inference["look"] == 2
    assert again.inference["boundary_z"] == b["boundary_z"]
    assert {r.slice for r in again.records} >= {"country=CA"}
    assert [d["analysis_id"] for d in _looks(coord)] == ["A", "B"]


def test_the_same_data_analysed_twice_finishing_out_of_order_is_one_look(setup: tuple[Coordinator, Settings]) -> None:
    """Without the ordering both analyses stored look 1 at the same fraction, and the next analysis's boundaries
    failed (fractions must increase): its sequential results fell back to fixed horizon."""
    coord, settings = setup
    _publish(coord, "exp/snap_c", analysis_table(PLANNED, seed=3))
    _submit(coord, "A", _spec("exp/snap_a"))
    _submit(coord, "B", _spec("exp/snap_a"))
    _run_all(coord, settings, "B")
    _run_all(coord, settings, "A")
    b = _inference(coord, "B")
    assert b["look"] == 1 and _note(b, "did not grow past look 1")
    assert [d["analysis_id"] for d in _looks(coord)] == ["A"]
    _submit(coord, "C", _spec("exp/snap_c"))
    _run_all(coord, settings, "C")
    c = _inference(coord, "C")
    expected = group_sequential_boundaries([N_A / PLANNED, 1.0], 0.05, "obrien_fleming", 2)
    assert c["look"] == 2 and c["boundary_z"] == pytest.approx(expected.z[-1], rel=1e-12), c["notes"]


def _fail(coord: Coordinator, job_id: str) -> None:
    job = coord.claim(job_id, "w")
    assert job is not None
    failed = coord.fail(job, "injected: the warehouse refused the query", retryable=False)
    assert failed is not None and failed.state == JobState.FAILED
    coord.on_job_finished(job_id)


def test_an_earlier_failed_analysis_does_not_block(setup: tuple[Coordinator, Settings]) -> None:
    """A fails (its US slice) after B is done: A's finalize (FAILED) records its look, since its all-users
    results were shown, and finalizes B as look 2. An earlier analysis that failed without units has no look
    and blocks nothing either."""
    coord, settings = setup
    us = SliceFilter.where(country="US")
    _submit(coord, "A", _spec("exp/snap_a", slices=(SliceFilter(), us)))
    _submit(coord, "B", _spec("exp/snap_b"))
    _run_all(coord, settings, "B")
    assert coord.state.get_analysis("B").state == AnalysisState.RUNNING
    _fail(coord, f"A.slice.{us.slice_id}")
    _run_all(coord, settings, "A")
    assert coord.state.get_analysis("A").state == AnalysisState.FAILED
    assert coord.state.get_analysis("B").state == AnalysisState.SUCCEEDED
    assert _inference(coord, "B")["look"] == 2
    assert [d["analysis_id"] for d in _looks(coord)] == ["A", "B"]

    # Z fails before it has any units (its only slice): it finalizes FAILED with no look, and Y goes on
    _publish(coord, "exp/snap_c", analysis_table(PLANNED, seed=3))
    _submit(coord, "Y0", _spec("exp/snap_c"))  # created first, fails without units
    _submit(coord, "Y1", _spec("exp/snap_c"))
    _run_all(coord, settings, "Y1")
    assert coord.state.get_analysis("Y1").state == AnalysisState.RUNNING
    _fail(coord, f"Y0.slice.{SliceFilter().slice_id}")
    assert coord.state.get_analysis("Y0").state == AnalysisState.FAILED
    assert coord.state.get_analysis("Y1").state == AnalysisState.SUCCEEDED
    assert _inference(coord, "Y1")["look"] == 3
    assert [d["analysis_id"] for d in _looks(coord)] == ["A", "B", "Y1"]


def test_a_stuck_earlier_analysis_is_skipped_after_the_wait(setup: tuple[Coordinator, Settings]) -> None:
    coord, settings = setup
    coord.look_wait_s = 600.0
    _submit(coord, "A", _spec("exp/snap_a"))
    _submit(coord, "B", _spec("exp/snap_b"))
    _run_all(coord, settings, "B")
    clock = coord.clock
    assert isinstance(clock, FakeClock)
    clock.advance(599.0)
    coord.tick(sweep=True)
    assert coord.state.get_analysis("B").state == AnalysisState.RUNNING
    clock.advance(2.0)
    coord.tick(sweep=True)  # the sweep finalizes B without A's look, and marks A's look skipped
    assert coord.state.get_analysis("B").state == AnalysisState.SUCCEEDED
    b = _inference(coord, "B")
    only_b = group_sequential_boundaries([N_B / PLANNED], 0.05, "obrien_fleming", 2)
    assert b["look"] == 1 and b["boundary_z"] == pytest.approx(only_b.z[-1], rel=1e-12)
    assert _note(b, "analysis A, created before this one, is not among the looks")
    # A ends later: it reports its own look (against the looks before it: none) and records nothing
    _run_all(coord, settings, "A")
    a = _inference(coord, "A")
    assert coord.state.get_analysis("A").state == AnalysisState.SUCCEEDED
    first = group_sequential_boundaries([N_A / PLANNED], 0.05, "obrien_fleming", 2)
    assert a["look"] == 1 and a["boundary_z"] == pytest.approx(first.z[-1], rel=1e-12)
    assert _note(a, "this look is not recorded: analysis B")
    assert [d["analysis_id"] for d in _looks(coord)] == ["B"]
    # a later analysis counts B only, and says A is left out
    _publish(coord, "exp/snap_c", analysis_table(PLANNED, seed=3))
    _submit(coord, "C", _spec("exp/snap_c"))
    _run_all(coord, settings, "C")
    c = _inference(coord, "C")
    expected = group_sequential_boundaries([N_B / PLANNED, 1.0], 0.05, "obrien_fleming", 2)
    assert c["look"] == 2 and c["boundary_z"] == pytest.approx(expected.z[-1], rel=1e-12)
    assert _note(c, "analysis A, created before this one, is not among the looks")
    assert [d["analysis_id"] for d in _looks(coord)] == ["B", "C"]


def test_fixed_horizon_analyses_neither_wait_nor_block(setup: tuple[Coordinator, Settings]) -> None:
    coord, settings = setup
    _submit(coord, "F", _spec("exp/snap_a", InferenceSpec()))  # fixed horizon, never runs
    _submit(coord, "A", _spec("exp/snap_a"))
    _submit(coord, "G", _spec("exp/snap_b", InferenceSpec()))
    _run_all(coord, settings, "G")  # fixed horizon: does not wait for A
    assert coord.state.get_analysis("G").state == AnalysisState.SUCCEEDED
    _run_all(coord, settings, "A")  # sequential: F has no look to wait for
    assert coord.state.get_analysis("A").state == AnalysisState.SUCCEEDED
    assert _inference(coord, "A")["look"] == 1
    assert coord.state.get_analysis("F").state == AnalysisState.RUNNING


class _SkipOnPut:
    """A store where a later analysis skips this look between the pass's read of the looks and its write."""

    def __init__(self, inner: Any, experiment: str, analysis: str, created_at: float) -> None:
        self.inner, self.experiment, self.analysis, self.created_at = inner, experiment, analysis, created_at

    def put_if_absent(self, key: str, data: bytes) -> bool:
        if key == keys.experiment_look(self.experiment, self.analysis):
            assert skip_look(self.inner, self.experiment, self.analysis, self.created_at, by="B", waited_s=3600.0)
        return bool(self.inner.put_if_absent(key, data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_look_skipped_while_it_is_being_written_is_not_recorded(tmp_path: Path) -> None:
    """Look and skip marker share one key, written put-if-absent: whichever is first holds."""
    store = LocalObjectStore(tmp_path / "objects")
    record = ResultRecord(metric="m", model="ttest", cell="b", control="a", effect=0.3, se=0.1, ci_low=0.1,
                          ci_high=0.5, p_value=0.003, relative_effect=0.03, relative_se=0.01, relative_ci_low=None,
                          relative_ci_high=None, n_cell=500.0, n_control=500.0, mean_cell=10.3, mean_control=10.0)
    args: dict[str, Any] = dict(experiment_id="exp", records=[record], spec=INFERENCE, alpha=0.05, correction="bh",
                                slice_counts={"all": {"a": 500.0, "b": 500.0}}, everyone_id="all")
    _, summary = run_inference_pass(_SkipOnPut(store, "exp", "A", 10.0), analysis_id="A",  # type: ignore[arg-type]
                                    created_at=10.0, **args)
    assert summary.look == 1 and any("this look is not recorded: analysis B" in n for n in summary.notes)
    assert read_looks(store, "exp") == []
    # the other order: A's look is stored first, so the marker is refused and B counts A
    _, first = run_inference_pass(store, analysis_id="A2", created_at=20.0, **args)
    assert first.look == 1
    assert not skip_look(store, "exp", "A2", 20.0, by="B2", waited_s=1.0)
    assert [lk.analysis_id for lk in read_looks(store, "exp")] == ["A2"]
    looks, skipped = read_look_entries(store, "exp")
    assert set(skipped) == {"A"}
    plan = plan_look(looks, "B2", 30.0, 1500.0, PLANNED, skipped)
    assert plan.index == 2 and plan.store and plan.note is not None and "analysis A, created before" in plan.note


def _finish(settings: Settings, job_id: str) -> None:
    """Run one job and report it to a coordinator of its own (another copy of the coordinator function)."""
    copy = build_coordinator(settings, dispatcher=None)
    assert run_job(copy, settings, job_id, "w").status == "succeeded"
    copy.on_job_finished(job_id)


def test_concurrent_last_jobs_of_two_analyses_give_consistent_looks(tmp_path: Path) -> None:
    """The last jobs of A and B end at the same time on two threads, each reported to its own coordinator over
    the same stores (two copies of the coordinator function): whichever finalize runs first, A is look 1 and B
    look 2, both stored, both finalized."""
    for rep in range(3):
        settings = Settings(home=tmp_path / f"r{rep}", dispatch="inline", slice_engine="arrow")
        coord = build_coordinator(settings, dispatcher=None)
        _publish(coord, "exp/snap_a", analysis_table(N_A, seed=1))
        _publish(coord, "exp/snap_b", analysis_table(N_B, seed=2))
        coord.submit("exp", _spec("exp/snap_a"), analysis_id="A")
        coord.clock = lambda: time.time() + 1.0  # B is created after A
        coord.submit("exp", _spec("exp/snap_b"), analysis_id="B")
        last: dict[str, str] = {}
        for aid in ("A", "B"):
            while aid not in last:
                jobs = coord.state.list_jobs(aid)
                due = [j for j in jobs if j.state == JobState.PENDING and j.due_at is not None]
                if sum(not j.state.terminal for j in jobs) == 1 and due:
                    last[aid] = due[0].job_id
                    break
                for job in due:
                    run_job(coord, settings, job.job_id, "w")
                    coord.on_job_finished(job.job_id)
        threads = [threading.Thread(target=_finish, args=(settings, last[aid])) for aid in ("B", "A")]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert coord.state.get_analysis("A").state == AnalysisState.SUCCEEDED
        assert coord.state.get_analysis("B").state == AnalysisState.SUCCEEDED
        assert [d["analysis_id"] for d in _looks(coord)] == ["A", "B"]
        assert _inference(coord, "B")["look"] == 2


@pytest.mark.parametrize("damage", [b'{"analysis_id": "A", "crea', b"[]", b'{"analysis_id": "A"}'])
def test_a_damaged_earlier_look_stops_the_sequential_pass_and_the_ship_call(
    setup: tuple[Coordinator, Settings], damage: bytes
) -> None:
    """A stored look that cannot be read is not left out (that would spend too little alpha): the analysis shows
    fixed-horizon results with a note naming the object, and makes no ship call from them."""
    coord, settings = setup
    _submit(coord, "A", _spec("exp/snap_a"))
    _run_all(coord, settings, "A")
    coord.store.put_bytes(keys.experiment_look("exp", "A"), damage)
    _submit(coord, "B", _spec("exp/snap_b"))
    _run_all(coord, settings, "B")
    assert coord.state.get_analysis("B").state == AnalysisState.SUCCEEDED  # the analysis itself is not lost
    card = coord.results("B")
    assert card.inference is not None and card.inference["method"] == "fixed_horizon"
    assert _note(card.inference, "inference pass failed") and _note(card.inference, "looks/A.json")
    assert {r.inference for r in card.records} == {"fixed_horizon"}
    assert card.decision == [] and card.decision_note is not None and "group_sequential" in card.decision_note
