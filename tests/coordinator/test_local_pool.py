"""The local worker pool: grows with the queue up to its maximum, shrinks when idle, survives a killed worker."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_helpers import analysis_table, publish, reference_records, wait_done, wait_for

from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.dispatch.local_pool import LocalPoolDispatcher
from xpcompute.coordinator.jobs import JobKind, JobState
from xpcompute.coordinator.runtime import EmbeddedRuntime
from xpcompute.pipeline.slices import SliceFilter

SLICES = (
    SliceFilter(),
    SliceFilter.where(country="US"),
    SliceFilter.where(country="CA"),
    SliceFilter.where(country="MX"),
    SliceFilter.where(country="BR"),
    SliceFilter.where(device="tv"),
)


@pytest.fixture
def pool_runtime(tmp_path: Path) -> Iterator[EmbeddedRuntime]:
    settings = Settings(home=tmp_path, dispatch="local", slice_engine="arrow", workers=2, worker_idle_s=0.5,
                        backoff_s=0.0, tick_s=0.1)
    rt = EmbeddedRuntime(settings)
    publish(rt.coordinator.store, "exp", analysis_table(20_000))
    rt.start()
    yield rt
    rt.stop()


def _pool(rt: EmbeddedRuntime) -> LocalPoolDispatcher:
    assert isinstance(rt.dispatcher, LocalPoolDispatcher)
    return rt.dispatcher


def test_pool_grows_to_its_maximum_under_load_then_retires_idle_workers(pool_runtime: EmbeddedRuntime) -> None:
    coord = pool_runtime.coordinator
    pool = _pool(pool_runtime)
    analysis = coord.submit("exp", AnalysisSpec(metrics=("hours", "is_streamer"), slices=SLICES))
    assert wait_done(coord, analysis.analysis_id) == "SUCCEEDED"
    assert pool.stats.peak_workers == 2  # never more than the maximum
    assert pool.stats.jobs >= 6 + 12
    wait_for(lambda: pool.worker_count == 0, timeout=10)  # idle workers are stopped
    assert pool.stats.retired == pool.stats.started, f"workers ended on their own: {pool.stats}"
    # a lone chain of jobs needs one worker at a time
    started = pool.stats.started
    single = coord.submit("exp", AnalysisSpec(metrics=("hours",), slices=(SliceFilter.where(device="ios"),)))
    assert wait_done(coord, single.analysis_id) == "SUCCEEDED"
    assert pool.stats.started - started == 1


def test_worker_killed_mid_job_is_retried_and_results_are_correct(pool_runtime: EmbeddedRuntime) -> None:
    coord = pool_runtime.coordinator
    pool = _pool(pool_runtime)
    analysis = coord.submit("exp", AnalysisSpec(metrics=("hours",), slices=SLICES))
    victim = None
    deadline = time.monotonic() + 30
    while victim is None and time.monotonic() < deadline:
        running = [j for j in coord.state.list_jobs(analysis.analysis_id) if j.state == JobState.RUNNING]
        for job in running:
            pid = pool.worker_pids().get(job.worker or "")
            if pid is None:
                continue
            os.kill(pid, signal.SIGSTOP)  # freeze it, then check it is still inside this job
            if coord.state.get_job(job.job_id).state == JobState.RUNNING:
                os.kill(pid, signal.SIGKILL)
                victim = job.job_id
                break
            os.kill(pid, signal.SIGCONT)
    assert victim is not None, "no job was caught running"
    assert wait_done(coord, analysis.analysis_id) == "SUCCEEDED"
    job = coord.state.get_job(victim)
    assert job.state == JobState.SUCCEEDED and job.attempts == 2
    assert "died with exit code -9" in job.errors[0]
    assert pool.stats.died == 1
    card = coord.results(analysis.analysis_id)
    assert len(card.records) == len(SLICES)
    table = analysis_table(20_000)
    for sl in SLICES:
        (ref,) = reference_records(table, sl, "hours", "ttest")
        got = next(r for r in card.records if r.slice == sl.label())
        assert got.effect == pytest.approx(ref.effect, rel=1e-12)  # type: ignore[attr-defined]
        assert got.se == pytest.approx(ref.se, rel=1e-12)  # type: ignore[attr-defined]
    assert sum(1 for j in coord.state.list_jobs(analysis.analysis_id) if j.kind == JobKind.FIT) == len(SLICES)


SERVER = """
import sys, time
sys.path[:0] = {paths!r}
from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.runtime import EmbeddedRuntime
from xpcompute.pipeline.slices import SliceFilter
if __name__ == "__main__":
    rt = EmbeddedRuntime(Settings(home={home!r}, dispatch="local", slice_engine="arrow", workers=2)).start()
    spec = AnalysisSpec(metrics=("hours", "is_streamer"),
                        slices=tuple(SliceFilter.where(bucket=b) for b in range(40)))
    print(rt.coordinator.submit("exp", spec).analysis_id, flush=True)
    time.sleep(600)
"""


def test_coordinator_killed_mid_analysis_resumes_after_restart(tmp_path: Path) -> None:
    import subprocess
    import sys

    settings = Settings(home=tmp_path, dispatch="local", slice_engine="arrow", workers=2, backoff_s=0.0)
    from xpcompute.storage.objects import LocalObjectStore

    publish(LocalObjectStore(settings.objects_root), "exp", analysis_table(20_000))
    code = SERVER.format(paths=sys.path, home=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        aid = proc.stdout.readline().strip()
        assert aid, "the first coordinator did not start"
        from xpcompute.coordinator.state.sqlite_store import SQLiteStateStore

        state = SQLiteStateStore(settings.state_path)
        wait_for(lambda: state.job_counts(aid)[JobState.SUCCEEDED] >= 10, timeout=60, every=0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the coordinator and its workers die at once, mid-analysis
        proc.wait(10)
    counts = state.job_counts(aid)
    assert counts[JobState.PENDING] + counts[JobState.RUNNING] > 0, "the analysis finished before the crash"
    state.close()

    with EmbeddedRuntime(settings) as restarted:
        assert wait_done(restarted.coordinator, aid, timeout=60) == "SUCCEEDED"
        jobs = restarted.coordinator.state.list_jobs(aid)
        assert len(jobs) == 40 * 3 and all(j.state == JobState.SUCCEEDED for j in jobs)
        card = restarted.coordinator.results(aid)
        assert len(card.records) == 40 * 2
        table = analysis_table(20_000)
        sl = SliceFilter.where(bucket=7)
        (ref,) = reference_records(table, sl, "hours", "ttest")
        got = next(r for r in card.records if r.slice == sl.label() and r.metric == "hours")
        assert got.effect == pytest.approx(ref.effect, rel=1e-12)  # type: ignore[attr-defined]
