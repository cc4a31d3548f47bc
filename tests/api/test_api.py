"""The HTTP API in-process: routes, validation messages, auth, body limit, partial results, live slices."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import analysis_table, publish, reference_records

from xpcompute.api.app import Backend, create_app
from xpcompute.config import Settings
from xpcompute.coordinator.jobs import JobKind
from xpcompute.coordinator.runtime import build_coordinator
from xpcompute.coordinator.worker import run_job
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.storage.objects import LocalObjectStore

BODY: dict[str, Any] = {
    "metrics": ["hours", "is_streamer"],
    "models": ["ttest"],
    "slices": [{}, {"all_of": [{"column": "country", "values": ["US"]}]}],
}


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = dict(home=tmp_path, dispatch="inline", slice_engine="arrow")
    base.update(kw)
    return Settings(**base)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = _settings(tmp_path)
    publish(LocalObjectStore(settings.objects_root), "exp", analysis_table(2000))
    with TestClient(create_app(settings)) as c:
        yield c


def test_post_analysis_runs_and_results_carry_the_slice(client: TestClient) -> None:
    created = client.post("/experiments/exp/analyses", json=BODY)
    assert created.status_code == 202
    body = created.json()
    assert body["jobs"] == 2 + 4 and body["status_path"] == f"analyses/{body['analysis_id']}"
    status = client.get(f"/analyses/{body['analysis_id']}").json()
    assert status["state"] == "SUCCEEDED"
    assert status["progress"] == {"total": 6, "pending": 0, "running": 0, "succeeded": 6, "failed": 0}
    assert {s["label"] for s in status["slices"]} == {"all users", "country=US"}
    card = client.get(f"/analyses/{body['analysis_id']}/results").json()
    assert card["complete"] and card["correction"] == "bh" and len(card["records"]) == 4
    us = next(r for r in card["records"] if r["slice"] == "country=US" and r["metric"] == "hours")
    (ref,) = reference_records(analysis_table(2000), SliceFilter.where(country="US"), "hours", "ttest")
    assert us["effect"] == pytest.approx(ref.effect, rel=1e-12)  # type: ignore[attr-defined]
    assert us["p_value_adjusted"] >= us["p_value"]
    assert {s["slice"] for s in card["srm"]} == {"all users", "country=US"}


def test_live_slice_endpoint_adds_a_slice(client: TestClient) -> None:
    aid = client.post("/experiments/exp/analyses", json=BODY).json()["analysis_id"]
    live = client.post(f"/analyses/{aid}/slices", json={"any_of": [{"column": "country", "values": ["MX", "BR"]}]})
    assert live.status_code == 202 and live.json()["label"] == "country in (MX, BR)"
    card = client.get(f"/analyses/{aid}/results").json()
    assert {r["slice"] for r in card["records"]} == {"all users", "country=US", "country in (MX, BR)"}


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"metrics": []}, 422, "name the metrics to analyse ('metrics': columns of the published table)"),
        ({}, 422, "only a registered experiment's analysis defaults to the metrics of its spec"),
        ({"metrics": ["hours'; DROP TABLE users; --"]}, 422, "must be an identifier"),
        ({"metrics": ["hours"], "models": ["magic"]}, 422, "models.0: Input should be"),
        ({"metrics": ["hours"], "alpha": 2}, 422, "alpha: Input should be less than 1"),
        ({"metrics": ["hours"], "slices": [{"all_of": [{"column": "planet", "values": ["mars"]}]}]}, 422,
         "column 'planet' not found"),
        ({"metrics": ["hours"], "slices": [{"all_of": [{"column": "country", "values": [{"$ne": 1}]}]}]}, 422,
         "slices.0.all_of.0.values.0"),
        ({"metrics": ["revenue"]}, 422, "'revenue' not found"),
        ({"metrics": ["hours"], "unknown": 1}, 422, "unknown: Extra inputs are not permitted"),
    ],
)
def test_bad_requests_get_4xx_naming_the_problem(client: TestClient, body: dict[str, Any], status: int,
                                                 fragment: str) -> None:
    response = client.post("/experiments/exp/analyses", json=body)
    assert response.status_code == status
    assert fragment in response.json()["message"], response.json()


def test_unknown_ids_and_malformed_json(client: TestClient) -> None:
    missing = client.get("/analyses/nope")
    assert missing.status_code == 404 and "analysis 'nope' not found" in missing.json()["message"]
    assert client.post("/experiments/no_table/analyses", json={"metrics": ["hours"]}).status_code == 404
    assert client.post("/experiments/bad..id/analyses", json={"metrics": ["hours"]}).status_code == 422
    bad_json = client.post("/experiments/exp/analyses", content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 422 and bad_json.json()["error"] == "invalid_request"
    assert client.post("/analyses/nope/slices", json={}).status_code == 404


def test_body_size_limit(tmp_path: Path) -> None:
    with TestClient(create_app(_settings(tmp_path, max_body_bytes=2048))) as c:
        big = {"metrics": ["hours"], "slices": [{"all_of": [{"column": "country", "values": ["US"] * 500}]}]}
        response = c.post("/experiments/exp/analyses", json=big)
        assert response.status_code == 413 and "XPCOMPUTE_MAX_BODY_BYTES" in response.json()["message"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts bytes as they arrive
            for _ in range(10):
                yield b" " * 1000

        streamed = c.post("/experiments/exp/analyses", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413


def test_api_key_is_required_when_auth_is_on(tmp_path: Path) -> None:
    settings = _settings(tmp_path, auth="on", api_keys=("k1", "k2"))
    publish(LocalObjectStore(settings.objects_root), "exp", analysis_table(500))
    with TestClient(create_app(settings)) as c:
        assert c.get("/healthz").status_code == 200  # health stays open for load balancers
        denied = c.post("/experiments/exp/analyses", json=BODY)
        assert denied.status_code == 401 and "X-API-Key" in denied.json()["message"]
        assert c.get("/analyses/x", headers={"X-API-Key": "wrong"}).status_code == 401
        ok = c.post("/experiments/exp/analyses", json=BODY, headers={"X-API-Key": "k2"})
        assert ok.status_code == 202


def test_auth_defaults_on_outside_embedded_mode_and_names_missing_keys() -> None:
    assert not Settings(mode="embedded").auth_enabled
    assert Settings(mode="serverless").auth_enabled
    assert not Settings(mode="serverless", auth="off").auth_enabled


def test_openapi_lists_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) == {
        "/healthz", "/experiments", "/experiments/{experiment_id}", "/experiments/{experiment_id}/versions",
        "/experiments/{experiment_id}/analyses", "/experiments/{experiment_id}/power", "/analyses/{analysis_id}",
        "/analyses/{analysis_id}/results", "/analyses/{analysis_id}/slices", "/analyses/{analysis_id}/retry",
        "/analyses/{analysis_id}/segments",  # segment discovery (api/segment_routes.py)
        "/experiments/{experiment_id}/archive", "/meta/replay",  # the archive and replay (api/meta_routes.py)
        "/meta/replays", "/meta/replays/{replay_id}",  # a replay as jobs (meta/replay_jobs.py)
    }
    assert "AnalysisSpec" in spec["components"]["schemas"]
    assert client.get("/healthz").json()["status"] == "ok"


def test_partial_results_while_running(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    coord = build_coordinator(settings, dispatcher=None)  # nothing runs unless the test runs it
    publish(coord.store, "exp", analysis_table(1000))
    with TestClient(create_app(settings, Backend(settings, coord))) as c:
        aid = c.post("/experiments/exp/analyses", json=BODY).json()["analysis_id"]
        first = next(j for j in coord.state.list_jobs(aid) if j.kind == JobKind.SLICE)
        run_job(coord, settings, first.job_id, "w")
        coord.on_job_finished(first.job_id)
        fit = next(j for j in coord.state.list_jobs(aid) if j.depends_on == first.job_id)
        run_job(coord, settings, fit.job_id, "w")
        status = c.get(f"/analyses/{aid}").json()
        assert status["state"] == "RUNNING" and status["progress"]["succeeded"] == 2
        assert len(status["records"]) == 1 and status["records"][0]["slice"] == first.slice_label
        partial = c.get(f"/analyses/{aid}/results").json()
        assert partial["complete"] is False and len(partial["records"]) == 1
