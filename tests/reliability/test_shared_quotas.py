"""Issue 13's per-key quotas hold across server processes that share one state store.

Before, each server process counted a key's requests and running analyses on its own, so two processes
behind one load balancer let a key run twice its analyses and send twice its rate. Now both are counted in
the state store (SQLite file or DynamoDB, ``coordinator/state/quotas.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from service_fixtures import free_port, moto_endpoint  # noqa: F401  (the DynamoDB case runs on moto over HTTP)
from service_helpers import analysis_table, publish

from xpcompute.api.app import Backend, create_app
from xpcompute.config import Settings
from xpcompute.coordinator.jobs import AnalysisState
from xpcompute.coordinator.runtime import build_coordinator
from xpcompute.coordinator.state.dynamodb_store import DynamoDBStateStore
from xpcompute.coordinator.state.quotas import DynamoDBQuotaStore, QuotaStore, SQLiteQuotaStore
from xpcompute.storage.objects import LocalObjectStore

ROOT = Path(__file__).resolve().parents[2]
ANALYSIS = {"metrics": ["hours"]}


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(**{"home": tmp_path, "dispatch": "inline", "slice_engine": "arrow", "auth": "on",
                       "api_keys": "k1,k2", **kw})


def _app(settings: Settings) -> TestClient:
    """One server instance: its own coordinator, its own state-store connections, its own quota objects."""
    # no dispatcher: analyses stay RUNNING, so the running-analyses quota is what the test sees
    backend = Backend(settings, coordinator=build_coordinator(settings, dispatcher=None))
    return TestClient(create_app(settings, backend))


def test_two_app_instances_on_one_store_share_the_running_analyses_quota(tmp_path: Path) -> None:
    settings = _settings(tmp_path, max_analyses_per_key=3)
    publish(LocalObjectStore(settings.objects_root), "exp", analysis_table(400))
    k1, k2 = {"X-API-Key": "k1"}, {"X-API-Key": "k2"}
    with _app(settings) as a, _app(settings) as b:
        started = [c.post("/experiments/exp/analyses", json=ANALYSIS, headers=k1) for c in (a, b, a)]
        assert [r.status_code for r in started] == [202, 202, 202]
        for over in (b.post("/experiments/exp/analyses", json=ANALYSIS, headers=k1),
                     a.post("/experiments/exp/analyses", json=ANALYSIS, headers=k1)):
            assert over.status_code == 429 and over.json()["error"] == "quota_exceeded"
            message = over.json()["message"]
            assert "at most 3 may run at once per key (XPCOMPUTE_MAX_ANALYSES_PER_KEY)" in message
            assert "across every server sharing the state store" in message
        assert b.post("/experiments/exp/analyses", json=ANALYSIS, headers=k2).status_code == 202  # its own quota
        # one of k1's analyses finishes (in the store, as any process would see it): a slot is free again
        state = a.app.state.backend.coordinator.state  # type: ignore[attr-defined]
        done = state.get_analysis(started[0].json()["analysis_id"])
        state.update_analysis(replace(done, state=AnalysisState.SUCCEEDED), done.version)
        assert b.post("/experiments/exp/analyses", json=ANALYSIS, headers=k1).status_code == 202
        assert a.post("/experiments/exp/analyses", json=ANALYSIS, headers=k1).status_code == 429
        # a refused submission (an unknown metric: 4xx before any analysis exists) gives its slot back
        done = state.get_analysis(started[1].json()["analysis_id"])
        state.update_analysis(replace(done, state=AnalysisState.SUCCEEDED), done.version)
        assert a.post("/experiments/exp/analyses", json={"metrics": ["nope"]}, headers=k1).status_code in (400, 422)
        assert b.post("/experiments/exp/analyses", json=ANALYSIS, headers=k1).status_code == 202


def test_two_app_instances_on_one_store_share_the_request_rate(tmp_path: Path) -> None:
    settings = _settings(tmp_path, rate_per_key=6)
    with _app(settings) as a, _app(settings) as b:
        codes = [(a if i % 2 else b).get("/experiments", headers={"X-API-Key": "k1"}).status_code for i in range(9)]
        assert codes == [200] * 6 + [429] * 3, codes
        limited = a.get("/experiments", headers={"X-API-Key": "k1"}).json()
        assert "more than 6 requests in the last minute (XPCOMPUTE_RATE_PER_KEY)" in limited["message"]
        assert b.get("/experiments", headers={"X-API-Key": "k2"}).status_code == 200


def _serve(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "XPCOMPUTE_HOME": str(home), "XPCOMPUTE_DISPATCH": "inline", "XPCOMPUTE_AUTH": "on",
           "XPCOMPUTE_API_KEYS": "k1", "XPCOMPUTE_RATE_PER_KEY": "8"}
    return subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "xpcompute.api.app:create_app",
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_two_server_processes_share_the_request_rate(tmp_path: Path) -> None:
    """The real thing: two uvicorn processes on one SQLite state file; a key's rate is one budget for both."""
    ports = [free_port(), free_port()]
    servers = [_serve(tmp_path / "home", port) for port in ports]
    try:
        deadline = time.monotonic() + 60
        for port, server in zip(ports, servers, strict=True):
            while True:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the servers did not start"
                time.sleep(0.2)
        codes = [httpx.get(f"http://127.0.0.1:{ports[i % 2]}/experiments", headers={"X-API-Key": "k1"},
                           timeout=10).status_code for i in range(12)]
        assert codes == [200] * 8 + [429] * 4, codes
        body = httpx.get(f"http://127.0.0.1:{ports[0]}/experiments", headers={"X-API-Key": "k1"}, timeout=10).json()
        assert body["error"] == "quota_exceeded" and "(XPCOMPUTE_RATE_PER_KEY)" in body["message"]
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(20)


@pytest.fixture(params=["sqlite", "dynamodb"])
def quota_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, list[QuotaStore]]]:
    """Four independent clients of one store (separate connections), as four processes would have."""
    if request.param == "sqlite":
        yield "sqlite", [SQLiteQuotaStore(tmp_path / "state.db") for _ in range(4)]
        return
    endpoint = request.getfixturevalue("moto_endpoint")
    table = f"quota-{uuid.uuid4().hex[:8]}"
    DynamoDBStateStore(table, endpoint_url=endpoint, create=True).close()
    yield "dynamodb", [DynamoDBQuotaStore(table, endpoint_url=endpoint) for _ in range(4)]


def test_holds_and_counters_are_atomic_across_clients(quota_stores: tuple[str, list[QuotaStore]]) -> None:
    """Many clients at once on SQLite (its write lock serializes them). On DynamoDB the clients take turns:
    DynamoDB applies each conditional ``UpdateItem`` atomically, but moto's server does not serialize
    concurrent ones (it loses ``ADD``s under threads), so concurrency there would test moto, not this code."""
    from concurrent.futures import ThreadPoolExecutor

    kind, stores = quota_stores
    workers = 8 if kind == "sqlite" else 1

    def take(i: int) -> bool:
        return stores[i % 4].try_hold("kid", f"a{i}|0", 3)

    with ThreadPoolExecutor(workers) as pool:
        granted = list(pool.map(take, range(16)))
    assert sum(granted) == 3  # never more than the limit, whoever asks
    held = stores[0].holds("kid")
    assert len(held) == 3 and stores[3].holds("other") == []
    stores[1].drop_holds("kid", held[:1])
    assert stores[2].try_hold("kid", "late|0", 3) and not stores[2].try_hold("kid", "later|0", 3)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda i: stores[i % 4].count("c", 1, time.time() + 60), range(20)))
    assert stores[0].count("c", 0, 0) == 20 and stores[1].count("c", -1, time.time() + 60) == 19
