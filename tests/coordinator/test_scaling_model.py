"""The scaling model's simulator (``benchmarks/scaling_model.py``) on workloads whose answer is known by hand.

Why: BENCHMARKS.md quotes its predictions and explains them by what it records (waits, the coordinator's busy
time); those records must add up on a run small enough to work out exactly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import scaling_model as model

# two slices of 1 s, each releasing two fits of 0.5 s: 4 s of work, 6 jobs
WORK = model.Workload(slice_s=[1.0, 1.0], fit_s=[[0.5, 0.5], [0.5, 0.5]])


def _pool(workers: int, **kw: float) -> model.Platform:
    return model.Platform(f"pool x{workers}", workers, "pool", 0.0, **kw)  # type: ignore[arg-type]


def test_a_rate_serves_units_first_in_first_out() -> None:
    rate = model.Rate(1000.0)
    assert rate.take(0.0, 1000.0) == 0.0
    assert rate.take(0.0, 500.0) == pytest.approx(1.0)  # behind the first second of units
    assert rate.take(2.0, 100.0) == 0.0  # idle again by then


def test_one_worker_runs_the_jobs_back_to_back() -> None:
    out = model.simulate(WORK, _pool(1))
    assert out.makespan_s == pytest.approx(4.0 + 0.2)  # the work, then the finalize
    assert out.busy_s == pytest.approx(4.0)
    # the second slice is queued when the first ends and its fits are not yet: it goes first (the model does not
    # hold the worker for the released fits, as the real pool does for REPORT_HOLD_S), then the fits
    assert out.first_results_s == pytest.approx(2.5)
    assert out.coordinator_events == WORK.jobs


def test_two_workers_halve_it_and_the_coordinator_time_adds_up() -> None:
    out = model.simulate(WORK, _pool(2, coordinator_event_s=0.1, coordinator_concurrency=1))
    assert out.coordinator_events == WORK.jobs
    assert out.coordinator_busy_s == pytest.approx(0.1 * WORK.jobs)
    # both slices at once (1 s), their events one after the other (1.1, 1.2 s), then four fits on two workers
    assert out.makespan_s == pytest.approx(1.2 + 1.0 + 0.1 + 0.2, abs=0.11)
    assert out.waits["coordinator concurrency"] > 0


def test_copies_of_an_analysis_share_the_workers() -> None:
    one = model.simulate(WORK, _pool(2))
    three = model.simulate(WORK, _pool(2), analyses=3)
    assert three.busy_s == pytest.approx(3 * one.busy_s)
    assert three.coordinator_events == 3 * WORK.jobs
    assert three.makespan_s >= 3 * 4.0 / 2  # no faster than the work over two workers
