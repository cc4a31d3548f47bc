"""A bounded load test against the local server: concurrent analyses over real HTTP, nothing lost or doubled.

Default: 20 analyses x 50 slices (2,000 jobs) submitted at once to ``xpcompute
serve``'s app on 127.0.0.1 with the local worker pool. Every analysis must
finish, every job run exactly once, every slice appear exactly once in its
scorecard; p50/p95 submit-to-done latencies are printed.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from service_fixtures import free_port
from service_helpers import analysis_table, publish

from xpcompute.api.app import create_app
from xpcompute.config import Settings
from xpcompute.coordinator.state.sqlite_store import SQLiteStateStore
from xpcompute.storage import keys
from xpcompute.storage.objects import LocalObjectStore

ANALYSES = int(os.environ.get("XPCOMPUTE_LOAD_ANALYSES", "20"))
SLICES = int(os.environ.get("XPCOMPUTE_LOAD_SLICES", "50"))
BOUND_S = 240.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    settings = Settings(home=tmp_path, dispatch="local", slice_engine="arrow", worker_idle_s=5.0, tick_s=0.25)
    publish(LocalObjectStore(settings.objects_root), "exp", analysis_table(5000))
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", settings
    srv.should_exit = True
    thread.join(30)


def test_concurrent_analyses_complete_without_loss_or_duplication(server: tuple[str, Settings]) -> None:
    url, settings = server
    body = {
        "metrics": ["hours"],
        "slices": [{"all_of": [{"column": "bucket", "values": [b]}]} for b in range(SLICES)],
    }

    def run_one(i: int) -> tuple[str, float]:
        with httpx.Client(base_url=url, timeout=60) as client:
            start = time.monotonic()
            response = client.post("/experiments/exp/analyses", json=body)
            assert response.status_code == 202, response.text
            aid = response.json()["analysis_id"]
            while client.get(f"/analyses/{aid}").json()["state"] == "RUNNING":
                assert time.monotonic() - start < BOUND_S, f"analysis {i} not done within {BOUND_S}s"
                time.sleep(0.1)
            return aid, time.monotonic() - start

    wall = time.monotonic()
    with ThreadPoolExecutor(ANALYSES) as pool:
        results = list(pool.map(run_one, range(ANALYSES)))
    wall = time.monotonic() - wall
    latencies = sorted(t for _, t in results)
    p50 = statistics.median(latencies)
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    jobs = ANALYSES * SLICES * 2
    print(f"\nload: {ANALYSES} analyses x {SLICES} slices = {jobs} jobs in {wall:.1f}s ({jobs / wall:.0f} jobs/s); "
          f"submit-to-done p50 {p50:.1f}s p95 {p95:.1f}s max {latencies[-1]:.1f}s")

    state = SQLiteStateStore(settings.state_path)
    store = LocalObjectStore(settings.objects_root)
    with httpx.Client(base_url=url, timeout=60) as client:
        for aid, _ in results:
            all_jobs = state.list_jobs(aid)
            assert len(all_jobs) == SLICES * 2
            assert all(j.state == "SUCCEEDED" for j in all_jobs)
            assert all(j.attempts == 1 for j in all_jobs), "a job ran more than once"
            assert len(store.list(keys.analysis_prefix(aid) + "results")) == SLICES
            card = client.get(f"/analyses/{aid}/results").json()
            slices = [r["slice"] for r in card["records"]]
            assert sorted(slices) == sorted(f"bucket={b}" for b in range(SLICES))  # each exactly once
    state.close()
