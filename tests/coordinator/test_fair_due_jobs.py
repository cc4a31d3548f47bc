"""Both state stores return due jobs fairly: priority classes first, analyses taking turns within a class.

Before, ``due_jobs`` ordered by (priority, due_at), so an analysis whose many jobs became due a moment earlier
filled every batch the coordinator dispatched, and a small analysis behind it waited for all of them.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from xpcompute.coordinator.jobs import PRIORITY_LIVE, PRIORITY_PRECOMPUTED, Analysis, Job, JobKind
from xpcompute.coordinator.state.base import StateStore
from xpcompute.coordinator.state.dynamodb_store import DynamoDBStateStore
from xpcompute.coordinator.state.fair import DueKey, fair_order
from xpcompute.coordinator.state.sqlite_store import SQLiteStateStore


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        s: StateStore = SQLiteStateStore(tmp_path / "state.db")
    else:  # moto's server over HTTP
        endpoint = request.getfixturevalue("moto_endpoint")
        s = DynamoDBStateStore(f"fair-{uuid.uuid4().hex[:8]}", endpoint_url=endpoint, create=True)
    yield s
    s.close()


def _fit(aid: str, n: int, due: float | None, priority: int = PRIORITY_PRECOMPUTED) -> Job:
    return Job(job_id=f"{aid}.fit.s.m{n:03d}.ttest", analysis_id=aid, kind=JobKind.FIT, slice_id="s",
               slice_label="s", metric=f"m{n:03d}", model="ttest", due_at=due, priority=priority)


def _create(store: StateStore, aid: str, jobs: list[Job]) -> None:
    store.create_analysis(Analysis(analysis_id=aid, experiment_id="exp", request={}, created_at=1.0,
                                   updated_at=1.0), jobs)


def test_a_big_analysis_due_first_takes_turns_with_a_small_one(store: StateStore) -> None:
    _create(store, "big", [_fit("big", i, due=1.0 + i / 1000) for i in range(40)])
    _create(store, "small", [_fit("small", i, due=2.0 + i / 1000) for i in range(3)]
            + [_fit("small", 90 + i, due=0.5, priority=PRIORITY_LIVE) for i in range(2)])
    _create(store, "later", [_fit("later", 0, due=3.0)])

    first = [(j.analysis_id, j.metric) for j in store.due_jobs(now=10.0, limit=7)]
    assert first == [("big", "m000"), ("small", "m000"), ("later", "m000"),
                     ("big", "m001"), ("small", "m001"),
                     ("big", "m002"), ("small", "m002")]
    everything = store.due_jobs(now=10.0, limit=1000)
    assert len(everything) == 46
    # the small analysis's live jobs keep their class: after every pre-computed job, even though due earlier
    assert [j.analysis_id for j in everything[-2:]] == ["small", "small"]
    assert all(j.priority == PRIORITY_LIVE for j in everything[-2:])
    assert [j.metric for j in everything[7:44]] == [f"m{i:03d}" for i in range(3, 40)]  # then the rest of big


def test_every_store_gives_the_order_fair_order_defines(store: StateStore) -> None:
    rng = random.Random(13)
    keys = []
    for a in range(5):
        aid = f"a{a}"
        jobs = [_fit(aid, i, due=round(rng.uniform(0, 10), 3), priority=rng.choice((0, 1, 2, 3)))
                for i in range(rng.randint(1, 25))]
        jobs.append(_fit(aid, 99, due=None))  # waiting on its slice: never due
        _create(store, aid, jobs)
        keys += [DueKey(j.priority, aid, j.due_at, j.job_id) for j in jobs if j.due_at is not None and j.due_at <= 8]
    expected = [k.job_id for k in fair_order(keys)]
    assert [j.job_id for j in store.due_jobs(now=8.0, limit=10_000)] == expected
    assert [j.job_id for j in store.due_jobs(now=8.0, limit=9)] == expected[:9]


def test_fair_order_is_round_robin_within_a_class() -> None:
    keys = [DueKey(0, "a", 1.0, "a1"), DueKey(0, "a", 1.1, "a2"), DueKey(0, "b", 5.0, "b1"),
            DueKey(1, "c", 0.0, "c1"), DueKey(0, "a", 1.2, "a3"), DueKey(0, "b", 6.0, "b2")]
    assert [k.job_id for k in fair_order(keys)] == ["a1", "b1", "a2", "b2", "a3", "c1"]
