"""Both state stores obey one contract: conditional writes, due/expired queries, counts, idempotent creation."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from service_helpers import closed_port

from xpcompute.coordinator.jobs import (
    PRIORITY_LIVE,
    PRIORITY_PRECOMPUTED,
    Analysis,
    AnalysisState,
    Job,
    JobKind,
    JobState,
)
from xpcompute.coordinator.state.base import StateStore
from xpcompute.coordinator.state.dynamodb_store import DynamoDBStateStore
from xpcompute.coordinator.state.sqlite_store import SQLiteStateStore
from xpcompute.errors import ConflictError, NotFoundError, StorageError


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        s: StateStore = SQLiteStateStore(tmp_path / "state.db")
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        s = DynamoDBStateStore(f"state-{uuid.uuid4().hex[:8]}", endpoint_url=endpoint, create=True)
    yield s
    s.close()


def _analysis(aid: str = "a1", now: float = 100.0) -> Analysis:
    return Analysis(analysis_id=aid, experiment_id="exp", request={"metrics": ["m"]}, created_at=now, updated_at=now)


def _job(aid: str, name: str, due: float | None = None, priority: int = PRIORITY_PRECOMPUTED) -> Job:
    return Job(job_id=f"{aid}.slice.{name}", analysis_id=aid, kind=JobKind.SLICE, slice_id=name, slice_label=name,
               due_at=due, priority=priority)


def test_create_is_idempotent_and_reads_back(store: StateStore) -> None:
    jobs = [_job("a1", "s1", due=1.0), _job("a1", "s2")]
    assert store.create_analysis(_analysis(), jobs)
    assert not store.create_analysis(_analysis(), [_job("a1", "s3", due=1.0)])
    assert [j.job_id for j in store.list_jobs("a1")] == ["a1.slice.s1", "a1.slice.s2"]
    assert store.get_analysis("a1").request == {"metrics": ["m"]}
    assert store.get_job("a1.slice.s1").due_at == 1.0
    with pytest.raises(NotFoundError, match="a2"):
        store.get_analysis("a2")
    with pytest.raises(NotFoundError):
        store.get_job("a1.slice.nope")


def test_conditional_update_lets_exactly_one_writer_win(store: StateStore) -> None:
    store.create_analysis(_analysis(), [_job("a1", "s1", due=1.0)])
    job = store.get_job("a1.slice.s1")
    won = store.update_job(replace(job, state=JobState.RUNNING, worker="w1"), JobState.PENDING, job.version)
    assert won.version == job.version + 1
    with pytest.raises(ConflictError, match="changed concurrently"):
        store.update_job(replace(job, state=JobState.RUNNING, worker="w2"), JobState.PENDING, job.version)
    assert store.get_job(job.job_id).worker == "w1"
    with pytest.raises(NotFoundError):
        store.update_job(replace(job, job_id="a1.slice.ghost"), JobState.PENDING, 0)


def test_concurrent_claims_on_one_job_have_one_winner(store: StateStore) -> None:
    store.create_analysis(_analysis(), [_job("a1", "s1", due=1.0)])
    job = store.get_job("a1.slice.s1")
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def claim(name: str) -> None:
        barrier.wait()
        try:
            store.update_job(replace(job, state=JobState.RUNNING, worker=name), JobState.PENDING, job.version)
        except ConflictError:
            return
        winners.append(name)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert store.get_job(job.job_id).worker == winners[0]


def test_due_jobs_order_precomputed_before_live_and_skip_waiting(store: StateStore) -> None:
    jobs = [
        _job("a1", "live", due=1.0, priority=PRIORITY_LIVE),
        _job("a1", "late", due=5.0),
        _job("a1", "early", due=2.0),
        _job("a1", "waiting", due=None),
        _job("a1", "future", due=50.0),
    ]
    store.create_analysis(_analysis(), jobs)
    due = [j.slice_id for j in store.due_jobs(now=10.0)]
    assert due == ["early", "late", "live"]
    assert [j.slice_id for j in store.due_jobs(now=10.0, limit=1)] == ["early"]


def test_expired_leases_and_counts(store: StateStore) -> None:
    store.create_analysis(_analysis(), [_job("a1", "s1", due=1.0), _job("a1", "s2", due=1.0)])
    for name, lease in (("s1", 20.0), ("s2", 40.0)):
        job = store.get_job(f"a1.slice.{name}")
        store.update_job(replace(job, state=JobState.RUNNING, lease_expires_at=lease), JobState.PENDING, job.version)
    assert [j.slice_id for j in store.expired_jobs(now=30.0)] == ["s1"]
    counts = store.job_counts("a1")
    assert counts[JobState.RUNNING] == 2 and counts[JobState.PENDING] == 0
    assert store.due_jobs(now=100.0) == []


def test_add_jobs_inserts_only_new_ids(store: StateStore) -> None:
    store.create_analysis(_analysis(), [_job("a1", "s1", due=1.0)])
    created = store.add_jobs([_job("a1", "s1", due=9.0), _job("a1", "s2", due=9.0)])
    assert [j.slice_id for j in created] == ["s2"]
    assert store.get_job("a1.slice.s1").due_at == 1.0


def test_analysis_updates_are_versioned_and_listed_by_state(store: StateStore) -> None:
    store.create_analysis(_analysis("a1", 1.0), [])
    store.create_analysis(_analysis("a2", 2.0), [])
    a1 = store.get_analysis("a1")
    store.update_analysis(replace(a1, state=AnalysisState.SUCCEEDED, finished_at=5.0), a1.version)
    with pytest.raises(ConflictError):
        store.update_analysis(replace(a1, state=AnalysisState.FAILED), a1.version)
    assert [a.analysis_id for a in store.list_analyses(AnalysisState.RUNNING)] == ["a2"]
    assert [a.analysis_id for a in store.list_analyses()] == ["a1", "a2"]
    assert store.get_analysis("a1").state == AnalysisState.SUCCEEDED


def test_sqlite_state_survives_reopening(tmp_path: Path) -> None:
    first = SQLiteStateStore(tmp_path / "s.db")
    first.create_analysis(_analysis(), [_job("a1", "s1", due=1.0)])
    first.close()
    second = SQLiteStateStore(tmp_path / "s.db")
    assert second.get_job("a1.slice.s1").due_at == 1.0
    assert second.list_analyses(AnalysisState.RUNNING)[0].analysis_id == "a1"
    second.close()


def test_unreachable_dynamodb_is_a_storage_error() -> None:
    store = DynamoDBStateStore("t", endpoint_url=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(StorageError, match="unreachable"):
        store.get_analysis("a1")
