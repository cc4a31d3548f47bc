"""Items 1 and 7 of issue 13 in the local pool: fair dispatch across analyses, a time limit per job that kills
and records, and a scheduler that survives its own errors and says so on /healthz.

Pools here start workers with ``fork`` so that a job body patched in the test (a slow or instant ``run_job``)
is what the worker runs; the forkserver pools of the other tests import the real one.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import analysis_table, publish, wait_for

from xpcompute.api.app import create_app
from xpcompute.config import Settings
from xpcompute.coordinator import worker as worker_module
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.dispatch.local_pool import FairQueue, LocalPoolDispatcher
from xpcompute.coordinator.jobs import JobKind, JobState
from xpcompute.coordinator.messages import RunJob
from xpcompute.coordinator.runtime import build_coordinator
from xpcompute.coordinator.service import Coordinator
from xpcompute.coordinator.worker import Outcome
from xpcompute.storage.objects import LocalObjectStore


def _job(analysis: str, n: int, priority: int = 0) -> RunJob:
    return RunJob(job_id=f"{analysis}.{n}", analysis_id=analysis, kind=JobKind.FIT, priority=priority)


def test_fair_queue_takes_analyses_in_turn_and_keeps_priority_classes() -> None:
    queue = FairQueue()
    for n in range(100):
        queue.push(_job("big", n))
    queue.push(_job("small", 0))
    queue.push(_job("small", 1))
    queue.push(_job("live", 0, priority=2))
    order = [queue.pop().job_id for _ in range(len(queue))]
    # the small analysis's two jobs run within its first turns, not after the big one's hundred
    assert order[:4] == ["big.0", "small.0", "big.1", "small.1"]
    assert order[4:102] == [f"big.{n}" for n in range(2, 100)]
    assert order[102:] == ["live.0"]  # a live slice keeps its (lower) class: after every pre-computed job
    queue.push(_job("a", 0))
    queue.push(_job("a", 1), front=True)  # a job handed back goes first again
    assert [queue.pop().job_id, queue.pop().job_id] == ["a.1", "a.0"]
    assert len(queue) == 0


class _Recorder:
    def __init__(self) -> None:
        self.reports: list[str] = []
        self.died: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    def report(self, job_id: str, analysis_id: str, status: str) -> None:
        with self.lock:
            self.reports.append(job_id)

    def on_died(self, job_id: str, worker: str, reason: str) -> None:
        with self.lock:
            self.died.append((job_id, worker, reason))


@pytest.fixture
def fork_pool(tmp_path: Path) -> Iterator[Callable[..., LocalPoolDispatcher]]:
    pools: list[LocalPoolDispatcher] = []

    def make(recorder: _Recorder, on_died: Callable[[str, str, str], None] | None = None,
             **kw: Any) -> LocalPoolDispatcher:
        settings = Settings(home=tmp_path, dispatch="local", slice_engine="arrow", backoff_s=0.0)
        pool = LocalPoolDispatcher(settings.model_dump(mode="json"), recorder.report, on_died or recorder.on_died,
                                   start_method="fork", **{"max_workers": 1, "idle_s": 5.0, **kw})
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close(timeout=2.0)


def _instant(coordinator: Coordinator, settings: Settings, job_id: str, worker: str) -> Outcome:
    return Outcome(job_id, job_id.split(".", 1)[0], "succeeded")


def test_one_analysis_cannot_hold_every_worker_while_another_waits(
    fork_pool: Callable[..., LocalPoolDispatcher], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker_module, "run_job", _instant)
    recorder = _Recorder()
    pool = fork_pool(recorder)
    pool.submit([_job("big", n) for n in range(60)])
    pool.submit([_job("small", n) for n in range(3)])
    wait_for(lambda: len(recorder.reports) == 63, timeout=30)
    last_small = max(recorder.reports.index(f"small.{n}") for n in range(3))
    assert last_small < 12, recorder.reports[:15]  # before: after all 60 of the big analysis


def test_a_job_past_its_time_limit_is_killed_and_recorded_as_a_failed_attempt(
    tmp_path: Path, fork_pool: Callable[..., LocalPoolDispatcher], monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(home=tmp_path, dispatch="local", slice_engine="arrow", backoff_s=0.0)
    publish(LocalObjectStore(settings.objects_root), "exp", analysis_table(300))
    coord = build_coordinator(settings, dispatcher=None)
    analysis = coord.submit("exp", AnalysisSpec(metrics=("hours",)))
    (slice_job,) = [j for j in coord.state.list_jobs(analysis.analysis_id) if j.kind == JobKind.SLICE]

    def hang(coordinator: Coordinator, settings: Settings, job_id: str, worker: str) -> Outcome:
        coordinator.claim(job_id, worker)
        time.sleep(300)
        raise AssertionError("not reached: the pool kills this worker")

    monkeypatch.setattr(worker_module, "run_job", hang)
    recorder = _Recorder()

    def died(job_id: str, worker: str, reason: str) -> None:
        coord.abandon(job_id, worker, reason)
        recorder.on_died(job_id, worker, reason)  # after the ledger has it: the test waits on this

    pool = fork_pool(recorder, on_died=died, job_timeout_s=1.0)
    pool.submit([RunJob(job_id=slice_job.job_id, analysis_id=analysis.analysis_id, kind=JobKind.SLICE)])
    wait_for(lambda: bool(pool.worker_pids()), timeout=10)
    (pid,) = [p for p in pool.worker_pids().values() if p is not None]
    wait_for(lambda: bool(recorder.died), timeout=15)
    (job_id, worker, reason), = recorder.died
    assert worker.startswith("local-")
    assert job_id == slice_job.job_id and "ran past its time limit of 1 s (XPCOMPUTE_JOB_TIMEOUT_S)" in reason
    assert pool.stats.timed_out == 1
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # terminated and reaped, not only re-leased
    job = coord.state.get_job(slice_job.job_id)
    assert job.state == JobState.PENDING and job.attempts == 1 and job.worker is None  # a retry is due
    assert "time limit" in (job.last_error or "") and "time limit" in job.errors[-1]


def test_the_scheduler_survives_a_file_descriptor_shortage_and_reports_it(
    fork_pool: Callable[..., LocalPoolDispatcher], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker_module, "run_job", _instant)
    recorder = _Recorder()
    pool = fork_pool(recorder)
    spawn = pool._spawn
    healthy = threading.Event()

    def failing_spawn() -> Any:
        if not healthy.is_set():
            raise OSError(errno.EMFILE, "Too many open files")
        return spawn()

    monkeypatch.setattr(pool, "_spawn", failing_spawn)
    pool.submit([_job("a", 0)])
    wait_for(lambda: pool.health() is not None, timeout=10)
    assert "Too many open files" in (pool.health() or "")
    wait_for(lambda: pool.stats.scheduler_errors >= 2, timeout=10)  # retried, with backoff
    healthy.set()
    wait_for(lambda: recorder.reports == ["a.0"], timeout=15)
    wait_for(lambda: pool.health() is None, timeout=5)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread's death is the point
def test_a_dead_scheduler_thread_is_started_again(
    fork_pool: Callable[..., LocalPoolDispatcher], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker_module, "run_job", _instant)
    recorder = _Recorder()
    pool = fork_pool(recorder)

    def die() -> None:
        raise SystemExit  # not an Exception: ends the thread past the supervisor

    monkeypatch.setattr(pool, "_schedule_once", die)
    pool.submit([])
    wait_for(lambda: not pool._scheduler.is_alive(), timeout=5)
    monkeypatch.undo()
    monkeypatch.setattr(worker_module, "run_job", _instant)
    pool.submit([_job("a", 0)])
    wait_for(lambda: recorder.reports == ["a.0"], timeout=15)
    assert pool.stats.scheduler_restarts >= 1


def test_healthz_reports_a_pool_that_cannot_start_workers(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, dispatch="local", slice_engine="arrow", workers=1)
    publish(LocalObjectStore(settings.objects_root), "exp", analysis_table(300))
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        pool = client.app.state.backend._runtime.dispatcher  # type: ignore[attr-defined]

        def cannot_start() -> Any:
            raise OSError(errno.EMFILE, "Too many open files")

        pool._spawn = cannot_start
        assert client.post("/experiments/exp/analyses", json={"metrics": ["hours"]}).status_code == 202
        wait_for(lambda: client.get("/healthz").status_code == 503, timeout=10)
        body = client.get("/healthz").json()
        assert body["status"] == "degraded" and "Too many open files" in body["reason"]
