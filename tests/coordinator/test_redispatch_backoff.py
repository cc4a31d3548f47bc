"""A job sent but not claimed is sent again after ``redispatch_s``, then after twice that, and so on (capped): a job
waiting in a long queue is not copied into it every minute, and one whose message was lost is still re-sent."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from service_helpers import analysis_table, publish

from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.dispatch.base import Message
from xpcompute.coordinator.jobs import JobKind, JobState
from xpcompute.coordinator.ledger import REDISPATCH_DOUBLINGS, RetryPolicy
from xpcompute.coordinator.service import Coordinator
from xpcompute.coordinator.state.sqlite_store import SQLiteStateStore
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.storage.objects import LocalObjectStore


class Kept:
    """A dispatcher that keeps what it is sent (and delivers nothing, as if every message sat in a queue)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def submit(self, messages: list[Message]) -> None:
        self.sent.extend(m.job_id for m in messages)

    def close(self) -> None:
        pass


def test_resends_back_off_and_a_claim_starts_the_count_again(tmp_path: Path) -> None:
    now = [1_000.0]
    kept = Kept()
    store = LocalObjectStore(tmp_path / "objects")
    coord = Coordinator(SQLiteStateStore(tmp_path / "state.db"), store, kept, RetryPolicy(redispatch_s=60.0),
                        clock=lambda: now[0])
    publish(store, "exp", analysis_table(500))
    aid = coord.submit("exp", AnalysisSpec(metrics=("hours",), models=("ttest",), slices=(SliceFilter(),))).analysis_id
    (job_id,) = [j.job_id for j in coord.state.list_jobs(aid) if j.kind == JobKind.SLICE]

    assert kept.sent == [job_id]  # submit sends what is due at once
    sends = [0]
    for t in range(0, 4_000, 5):  # the coordinator dispatches on every event; here every 5 s for an hour
        now[0] = 1_000.0 + t
        if coord.dispatch_due():
            sends.append(t)
    gaps = [b - a for a, b in pairwise(sends)]
    assert sends[:5] == [0, 60, 180, 420, 900]  # waits of 60, 120, 240, 480 s
    assert gaps[-1] == 60 * 2**REDISPATCH_DOUBLINGS == max(gaps)  # capped at 32 minutes
    assert kept.sent == [job_id] * len(sends) and coord.state.get_job(job_id).dispatches == len(sends)

    job = coord.claim(job_id, "w")  # delivered at last: a later retry is sent and re-sent from the start
    assert job is not None and job.dispatches == 0
    retried = coord.fail(job, "the object store timed out", retryable=True)
    assert retried is not None and retried.state == JobState.PENDING and retried.due_at is not None
    now[0] = retried.due_at
    assert coord.dispatch_due() == 1
    resent = coord.state.get_job(job_id)
    assert resent.dispatches == 1 and resent.due_at == now[0] + 60.0
    coord.state.close()


def test_the_wait_doubles_from_redispatch_s_and_is_capped() -> None:
    policy = RetryPolicy(redispatch_s=10.0)
    assert [policy.redispatch(n) for n in range(8)] == [10, 20, 40, 80, 160, 320, 320, 320]
