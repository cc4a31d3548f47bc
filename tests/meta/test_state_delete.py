"""``delete_analysis`` in both state stores: the analysis and its jobs go, another analysis stays."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "coordinator"))

from service_fixtures import moto_endpoint  # noqa: F401

from xpcompute.coordinator.jobs import Analysis, Job, JobKind
from xpcompute.coordinator.state.base import StateStore
from xpcompute.coordinator.state.dynamodb_store import DynamoDBStateStore
from xpcompute.coordinator.state.sqlite_store import SQLiteStateStore
from xpcompute.errors import NotFoundError


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        s: StateStore = SQLiteStateStore(tmp_path / "state.db")
    else:
        s = DynamoDBStateStore(f"state-{uuid.uuid4().hex[:8]}", endpoint_url=request.getfixturevalue("moto_endpoint"),
                               create=True)
    yield s
    s.close()


def _analysis(aid: str) -> Analysis:
    return Analysis(analysis_id=aid, experiment_id="exp", request={"metrics": ["m"]}, created_at=1.0, updated_at=1.0)


def _jobs(aid: str, n: int) -> list[Job]:
    return [Job(job_id=f"{aid}.slice.s{i}", analysis_id=aid, kind=JobKind.SLICE, slice_id=f"s{i}", slice_label=f"s{i}",
                due_at=1.0) for i in range(n)]


def test_delete_removes_the_analysis_and_its_jobs_only(store: StateStore) -> None:
    assert store.create_analysis(_analysis("a1"), _jobs("a1", 3))
    assert store.create_analysis(_analysis("a2"), _jobs("a2", 2))
    assert store.delete_analysis("a1") == 4  # the analysis and its three jobs
    with pytest.raises(NotFoundError):
        store.get_analysis("a1")
    assert store.list_jobs("a1") == [] and [a.analysis_id for a in store.list_analyses()] == ["a2"]
    assert len(store.list_jobs("a2")) == 2 and all(j.analysis_id == "a2" for j in store.due_jobs(10.0))
    assert store.delete_analysis("a1") == 0
