"""DynamoDB's ``due_jobs`` reads a window of keys, not every due job's item, and its batch is still fair.

Before, each call read up to 2,000 due keys per priority class from an index projecting whole items (charged as
whole items), though a dispatch sends at most 200. Now it reads ``due_window(limit)`` keys (4 x, at least 100, at
most 2,000) from a keys-only index and reads only the chosen jobs from the table. On moto's server over HTTP.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from xpcompute.coordinator.jobs import (
    PRIORITY_LIVE,
    PRIORITY_PRECOMPUTED,
    Analysis,
    AnalysisState,
    Job,
    JobKind,
    JobState,
)
from xpcompute.coordinator.state.dynamodb_store import INDEX, DynamoDBStateStore, due_window, table_definition
from xpcompute.coordinator.state.fair import DueKey, fair_order
from xpcompute.coordinator.state.sqlite_store import SQLiteStateStore


class Reads:
    """What the store's DynamoDB client read: items per index Query, attribute names seen, items batch-read."""

    def __init__(self, store: DynamoDBStateStore) -> None:
        self.queries: list[int] = []
        self.index_attributes: set[str] = set()
        self.batch_items = 0
        events = store._resource.meta.client.meta.events
        events.register("after-call.dynamodb.Query", self._query)
        events.register("after-call.dynamodb.BatchGetItem", self._batch)

    def _query(self, parsed: Any, **_: Any) -> None:
        self.queries.append(int(parsed.get("Count", 0)))
        for item in parsed.get("Items", []):
            self.index_attributes.update(item)

    def _batch(self, parsed: Any, **_: Any) -> None:
        self.batch_items += sum(len(v) for v in parsed.get("Responses", {}).values())

    def reset(self) -> None:
        self.queries.clear()
        self.index_attributes.clear()
        self.batch_items = 0


@pytest.fixture
def dynamo(moto_endpoint: str) -> Iterator[DynamoDBStateStore]:
    store = DynamoDBStateStore(f"window-{uuid.uuid4().hex[:8]}", endpoint_url=moto_endpoint, create=True)
    yield store
    store.close()


def _fit(aid: str, n: int, due: float, priority: int = PRIORITY_PRECOMPUTED) -> Job:
    return Job(job_id=f"{aid}.fit.s.m{n:04d}.ttest", analysis_id=aid, kind=JobKind.FIT, slice_id="s",
               slice_label="s", metric=f"m{n:04d}", model="ttest", due_at=due, priority=priority)


def _create(store: Any, aid: str, jobs: list[Job]) -> None:
    store.create_analysis(Analysis(analysis_id=aid, experiment_id="exp", request={}, created_at=1.0,
                                   updated_at=1.0), jobs)


def _backlog() -> dict[str, list[Job]]:
    """3,000 due jobs: one analysis with 1,800 due first, five with 240 each starting a little later, interleaved."""
    jobs = {"big": [_fit("big", i, due=1.0 + i * 0.001) for i in range(1800)]}
    for a in range(5):
        jobs[f"small{a}"] = [_fit(f"small{a}", i, due=1.4 + a * 0.0001 + i * 0.002) for i in range(240)]
    return jobs


def test_one_dispatch_reads_a_window_of_keys_and_returns_a_fair_batch(dynamo: DynamoDBStateStore) -> None:
    backlog = _backlog()
    for aid, jobs in backlog.items():
        _create(dynamo, aid, jobs)
    keys = [DueKey(j.priority, j.analysis_id, j.due_at or 0.0, j.job_id) for js in backlog.values() for j in js]
    assert len(keys) == 3000
    reads = Reads(dynamo)

    batch = dynamo.due_jobs(now=100.0, limit=200)

    window = due_window(200)
    assert window == 800
    assert sum(reads.queries) <= window  # keys read from the index, over every class's query
    assert reads.index_attributes <= {"pk", "sk", "due"}  # keys only, no job body from the index
    assert reads.batch_items == 200  # only the chosen jobs are read whole
    oldest = sorted(keys, key=lambda k: (k.due_at, k.job_id))[:window]
    assert [j.job_id for j in batch] == [k.job_id for k in fair_order(oldest)[:200]]
    # the big analysis, due first with 1,800 jobs, takes turns with the five that joined while it waited
    per_analysis = Counter(j.analysis_id for j in batch)
    assert set(per_analysis) == set(backlog)
    assert max(per_analysis.values()) - min(per_analysis.values()) <= 1


def test_draining_a_backlog_sends_every_job_once_and_a_late_analysis_within_the_bound(
        dynamo: DynamoDBStateStore) -> None:
    """Dispatch as the coordinator does (each batch marked due again later); a late analysis joins in time."""
    limit = 50
    _create(dynamo, "old", [_fit("old", i, due=1.0 + i * 0.001) for i in range(560)])
    _create(dynamo, "late", [_fit("late", i, due=5.0 + i * 0.001) for i in range(40)])
    reads = Reads(dynamo)
    sent: list[str] = []
    first_late = None
    batches = 0
    while batch := dynamo.due_jobs(now=100.0, limit=limit):
        assert sum(reads.queries) <= due_window(limit)
        reads.reset()
        if first_late is None and any(j.analysis_id == "late" for j in batch):
            first_late = batches
        for job in batch:
            dynamo.update_job(replace(job, dispatched_at=100.0, due_at=160.0), JobState.PENDING, job.version)
        sent += [j.job_id for j in batch]
        batches += 1
    assert len(sent) == len(set(sent)) == 600
    assert batches == 12
    # 560 older due jobs, a window of 200 and batches of 50: in the window after (560 - 200) / 50 = 7.2 batches
    assert first_late is not None and first_late <= 8
    assert dynamo.due_jobs(now=200.0, limit=limit)  # due again after the redispatch time


def test_up_to_a_window_both_stores_give_the_same_order(dynamo: DynamoDBStateStore, tmp_path: Path) -> None:
    sqlite = SQLiteStateStore(tmp_path / "state.db")
    try:
        for a, (n, start) in enumerate([(150, 1.0), (90, 1.05), (40, 1.2), (20, 3.0)]):
            jobs = [_fit(f"a{a}", i, due=start + i * 0.003, priority=PRIORITY_LIVE if i % 7 == 0 else
                         PRIORITY_PRECOMPUTED) for i in range(n)]
            _create(dynamo, f"a{a}", jobs)
            _create(sqlite, f"a{a}", jobs)
        for limit in (75, 30, 300):  # windows 300, 120 and 1,200; the pre-computed class holds 257 due jobs
            got = [j.job_id for j in dynamo.due_jobs(now=10.0, limit=limit)]
            want = [j.job_id for j in sqlite.due_jobs(now=10.0, limit=limit)]
            if due_window(limit) >= 257:
                assert got == want
            else:  # past the window, DynamoDB's batch is the fair order of the oldest window
                assert len(got) == limit and got[0] == want[0]
    finally:
        sqlite.close()


def test_the_index_is_keys_only_and_every_reader_takes_the_record_from_the_table(
        dynamo: DynamoDBStateStore) -> None:
    (index,) = table_definition("t")["GlobalSecondaryIndexes"]
    assert index["IndexName"] == INDEX == "by_state_keys"
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    described = dynamo._resource.meta.client.describe_table(TableName=dynamo.table_name)["Table"]
    assert [g["IndexName"] for g in described["GlobalSecondaryIndexes"]] == [INDEX]

    _create(dynamo, "a1", [_fit("a1", 0, due=1.0), _fit("a1", 1, due=1.0)])
    running = [dynamo.update_job(replace(j, state=JobState.RUNNING, lease_expires_at=5.0, due_at=None, worker="w"),
                                 JobState.PENDING, j.version) for j in dynamo.list_jobs("a1")]
    reads = Reads(dynamo)
    expired = dynamo.expired_jobs(now=10.0)
    assert [j.job_id for j in expired] == [j.job_id for j in running]
    assert all(j.worker == "w" and j.state == JobState.RUNNING for j in expired)  # whole jobs, from the table
    assert reads.index_attributes <= {"pk", "sk", "due"}
    a1 = dynamo.get_analysis("a1")
    dynamo.update_analysis(replace(a1, state=AnalysisState.SUCCEEDED), a1.version)
    assert dynamo.list_analyses(AnalysisState.RUNNING) == []
    assert [a.analysis_id for a in dynamo.list_analyses(AnalysisState.SUCCEEDED)] == ["a1"]
    assert reads.index_attributes <= {"pk", "sk", "due"}


def test_a_table_with_only_the_old_index_is_still_served(moto_endpoint: str) -> None:
    """The deploy that adds ``by_state_keys`` leaves a while when it is backfilling: queries use ``by_state``."""
    import boto3

    from xpcompute.coordinator.state.dynamodb_store import LEGACY_INDEX

    name = f"legacy-{uuid.uuid4().hex[:8]}"
    old = table_definition(name)
    old["GlobalSecondaryIndexes"][0].update(IndexName=LEGACY_INDEX, Projection={"ProjectionType": "ALL"})
    client = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_table(**old)
    store = DynamoDBStateStore(name, endpoint_url=moto_endpoint)
    try:
        _create(store, "a1", [_fit("a1", i, due=1.0 + i) for i in range(3)])
        assert [j.metric for j in store.due_jobs(now=10.0, limit=2)] == ["m0000", "m0001"]
        assert [a.analysis_id for a in store.list_analyses(AnalysisState.RUNNING)] == ["a1"]
        assert store.expired_jobs(now=10.0) == []
    finally:
        store.close()
