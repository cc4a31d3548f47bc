"""Per-analysis job counters: ``job_counts`` reads one counter that every job write moves in its own transaction.

Checked on both stores (SQLite; DynamoDB on moto's server over HTTP): after creation, new and duplicated jobs,
claims, retries, failures, lost races, lease renewals, concurrent finishes and a real analysis run through the
coordinator, the counter equals a full recount of the jobs (``recount_jobs``).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from xpcompute.coordinator.jobs import PRIORITY_PRECOMPUTED, Analysis, Job, JobKind, JobState
from xpcompute.coordinator.state.base import StateStore
from xpcompute.coordinator.state.dynamodb_store import COUNTER_SK, DynamoDBStateStore
from xpcompute.coordinator.state.sqlite_store import SQLiteStateStore
from xpcompute.errors import ConflictError


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        s: StateStore = SQLiteStateStore(tmp_path / "state.db")
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        s = DynamoDBStateStore(f"counters-{uuid.uuid4().hex[:8]}", endpoint_url=endpoint, create=True)
    yield s
    s.close()


def _analysis(aid: str = "a1") -> Analysis:
    return Analysis(analysis_id=aid, experiment_id="exp", request={"metrics": ["m"]}, created_at=1.0, updated_at=1.0)


def _job(aid: str, name: str, due: float | None = 1.0) -> Job:
    return Job(job_id=f"{aid}.slice.{name}", analysis_id=aid, kind=JobKind.SLICE, slice_id=name, slice_label=name,
               due_at=due, priority=PRIORITY_PRECOMPUTED)


def _move(store: StateStore, job_id: str, to: JobState, **changes: object) -> Job:
    job = store.get_job(job_id)
    return store.update_job(replace(job, state=to, **changes), job.state, job.version)  # type: ignore[arg-type]


def _agree(store: StateStore, aid: str = "a1") -> dict[JobState, int]:
    counts = store.job_counts(aid)
    assert counts == store.recount_jobs(aid)
    return counts


def test_counters_follow_every_kind_of_write(store: StateStore) -> None:
    store.create_analysis(_analysis(), [_job("a1", f"s{i}") for i in range(4)] + [_job("a1", "w", due=None)])
    assert _agree(store)[JobState.PENDING] == 5
    assert not store.create_analysis(_analysis(), [_job("a1", "again")])  # refused: nothing counted
    created = store.add_jobs([_job("a1", "s0"), _job("a1", "live")])  # one duplicate, one new
    assert [j.slice_id for j in created] == ["live"] and _agree(store)[JobState.PENDING] == 6

    _move(store, "a1.slice.s0", JobState.RUNNING, lease_expires_at=50.0)
    _move(store, "a1.slice.s0", JobState.RUNNING, lease_expires_at=90.0)  # a lease renewal moves no counter
    _move(store, "a1.slice.s0", JobState.SUCCEEDED)
    _move(store, "a1.slice.s1", JobState.RUNNING)
    _move(store, "a1.slice.s1", JobState.PENDING, attempts=1, due_at=5.0)  # a retry goes back to PENDING
    _move(store, "a1.slice.s1", JobState.RUNNING)
    _move(store, "a1.slice.s1", JobState.FAILED)
    _move(store, "a1.slice.w", JobState.FAILED)  # a dependent failed with its parent, never run
    stale = store.get_job("a1.slice.s2")
    _move(store, "a1.slice.s2", JobState.RUNNING)
    with pytest.raises(ConflictError):  # a lost race writes nothing, the counter included
        store.update_job(replace(stale, state=JobState.RUNNING), JobState.PENDING, stale.version)
    counts = _agree(store)
    assert counts == {JobState.PENDING: 2, JobState.RUNNING: 1, JobState.SUCCEEDED: 1, JobState.FAILED: 2}

    store.create_analysis(_analysis("a2"), [_job("a2", "x")])  # analyses count apart
    assert _agree(store, "a2")[JobState.PENDING] == 1 and _agree(store) == counts
    assert store.delete_analysis("a1") == 7  # the analysis and its six jobs; the counter goes with them
    assert _agree(store) == dict.fromkeys(JobState, 0)


@pytest.fixture(params=["sqlite", "dynamodb"])
def concurrent_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    """As ``store``, but DynamoDB is a moto server answering one request at a time.

    Why: moto applies a ``TransactWriteItems`` without isolation, and when one is cancelled it puts back a copy
    of the whole table taken when it began, undoing other clients' writes made meanwhile. DynamoDB runs each
    request atomically; a server that answers one request at a time does too, while the clients stay concurrent.
    """
    if request.param == "sqlite":
        s: StateStore = SQLiteStateStore(tmp_path / "state.db")
        yield s
        s.close()
        return
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app), threaded=False,
                         request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        s = DynamoDBStateStore(f"counters-{uuid.uuid4().hex[:8]}", endpoint_url=f"http://127.0.0.1:{server.port}",
                               create=True)
        yield s
        s.close()
    finally:
        server.shutdown()
        thread.join()


def test_concurrent_claims_and_finishes_keep_the_counter_exact(concurrent_store: StateStore) -> None:
    store = concurrent_store
    n = 12
    store.create_analysis(_analysis(), [_job("a1", f"s{i}") for i in range(n)])
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        barrier.wait()
        try:
            for i in range(n):  # every worker tries every job: one claim wins per job, the rest conflict
                job = store.get_job(f"a1.slice.s{i}")
                if job.state != JobState.PENDING:
                    continue
                try:
                    running = store.update_job(replace(job, state=JobState.RUNNING, worker=f"w{w}"), JobState.PENDING,
                                               job.version)
                except ConflictError:
                    continue
                done = JobState.FAILED if i % 4 == 0 else JobState.SUCCEEDED
                store.update_job(replace(running, state=done), JobState.RUNNING, running.version)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _agree(store) == {JobState.PENDING: 0, JobState.RUNNING: 0, JobState.SUCCEEDED: 9, JobState.FAILED: 3}


def test_an_analysis_stored_before_counters_is_recounted(store: StateStore, tmp_path: Path) -> None:
    store.create_analysis(_analysis(), [_job("a1", "s0"), _job("a1", "s1")])
    _move(store, "a1.slice.s0", JobState.RUNNING)
    if isinstance(store, SQLiteStateStore):  # as a database written before the job_counts table
        store._conn().execute("DELETE FROM job_counts WHERE analysis_id='a1'")
    else:
        assert isinstance(store, DynamoDBStateStore)
        store._table.delete_item(Key={"pk": "A#a1", "sk": COUNTER_SK})
    assert _agree(store) == {JobState.PENDING: 1, JobState.RUNNING: 1, JobState.SUCCEEDED: 0, JobState.FAILED: 0}
    _move(store, "a1.slice.s0", JobState.SUCCEEDED)
    assert _agree(store)[JobState.SUCCEEDED] == 1


def test_a_coordinator_event_reads_one_counter_item_on_dynamodb(moto_endpoint: str) -> None:
    """What the fix is for: ``job_counts`` costs one GetItem, however many jobs the analysis has."""
    store = DynamoDBStateStore(f"counters-{uuid.uuid4().hex[:8]}", endpoint_url=moto_endpoint, create=True)
    try:
        store.create_analysis(_analysis(), [_job("a1", f"s{i}") for i in range(40)])
        calls: list[str] = []
        client = store._resource.meta.client
        client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
        assert store.job_counts("a1")[JobState.PENDING] == 40
        assert calls == ["GetItem"]
    finally:
        store.close()


def test_counters_equal_a_recount_through_the_coordinator_on_dynamodb(moto_endpoint: str) -> None:
    """A real analysis on DynamoDB: a duplicate delivery and a replayed report, then the object store gone and
    the remaining jobs retried to failure (the failed slice's fit fails with it); after each step the counter
    equals the recount, and finalize, which reads it, ends the analysis."""
    import boto3
    from moto.server import ThreadedMotoServer
    from service_fixtures import free_port
    from service_helpers import FakeClock, analysis_table, publish

    from xpcompute.config import Settings
    from xpcompute.coordinator.analysis_spec import AnalysisSpec
    from xpcompute.coordinator.jobs import AnalysisState
    from xpcompute.coordinator.runtime import build_coordinator
    from xpcompute.coordinator.worker import run_job
    from xpcompute.pipeline.slices import SliceFilter

    port = free_port()
    objects = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)  # S3 apart, to stop it later
    objects.start()
    s3 = f"http://127.0.0.1:{port}"
    bucket = f"xp-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3, region_name="us-east-1").create_bucket(Bucket=bucket)
    settings = Settings(mode="serverless", state="dynamodb", dynamodb_table=f"state-{uuid.uuid4().hex[:8]}",
                        dynamodb_endpoint=moto_endpoint, dynamodb_create=True, objects=f"s3://{bucket}/xp",
                        s3_endpoint=s3, slice_engine="arrow", dispatch="inline", backoff_s=1.0, transient_retries=0)
    coord = build_coordinator(settings, dispatcher=None)
    clock = FakeClock()
    coord.clock = clock
    state = coord.state
    try:
        publish(coord.store, "exp", analysis_table(1000))
        spec = AnalysisSpec(metrics=("hours",), models=("ttest",), slices=(SliceFilter(), SliceFilter.where(country="US")))
        aid = coord.submit("exp", spec).analysis_id
        first, second = sorted(j.job_id for j in state.list_jobs(aid) if j.kind == JobKind.SLICE)
        assert run_job(coord, settings, first, "w1").status == "succeeded"
        assert run_job(coord, settings, first, "w2").status == "skipped"  # a duplicate delivery counts nothing
        coord.on_job_finished(first)
        coord.on_job_finished(first)  # and so does a replayed report
        assert _agree(state, aid) == {JobState.PENDING: 3, JobState.RUNNING: 0, JobState.SUCCEEDED: 1,
                                      JobState.FAILED: 0}
        (fit,) = [j.job_id for j in state.list_jobs(aid) if j.depends_on == first]
    finally:
        objects.stop()  # the object store goes away: the remaining jobs are retried, then fail
    for job_id in (fit, second):
        for attempt in range(1, 4):
            assert run_job(coord, settings, job_id, f"w{attempt}").status == ("failed" if attempt == 3 else "retrying")
            assert _agree(state, aid)[JobState.RUNNING] == 0
            clock.advance(60.0)
        coord.on_job_finished(job_id)
    assert _agree(state, aid) == {JobState.PENDING: 0, JobState.RUNNING: 0, JobState.SUCCEEDED: 1, JobState.FAILED: 3}
    assert state.get_analysis(aid).state == AnalysisState.FAILED
    state.close()
