"""Item 1 and the quotas of issue 13: designs that cannot be sensible, and requests past a configured limit,
are refused before any job exists, with the limit and its variable named (422), and per-key quotas answer 429."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import analysis_table, publish

from xpcompute.api.app import Backend, create_app
from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.runtime import build_coordinator
from xpcompute.errors import LimitError
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.storage.objects import LocalObjectStore


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(**{"home": tmp_path, "dispatch": "inline", "slice_engine": "arrow", **kw})


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = _settings(tmp_path, max_metrics=2, max_slices=3, max_jobs=7, max_segments=10)
    publish(LocalObjectStore(settings.objects_root), "exp", analysis_table(600))
    with TestClient(create_app(settings)) as c:
        yield c


def test_a_unit_id_as_treatment_is_refused_before_any_job(client: TestClient) -> None:
    """The issue's cheap request: every unit becomes a cell, and its fits held every worker for minutes."""
    response = client.post("/experiments/exp/analyses", json={"metrics": ["hours"], "treatment": "user_id"})
    assert response.status_code == 422, response.json()
    body = response.json()
    assert body["error"] == "limit_exceeded"
    assert "treatment column 'user_id' has more than 20 distinct values" in body["message"]
    assert "XPCOMPUTE_MAX_CELLS" in body["message"]
    assert client.post("/experiments/exp/analyses", json={"metrics": ["hours"]}).status_code == 202


def test_a_segment_with_too_many_values_is_refused(client: TestClient) -> None:
    response = client.post("/experiments/exp/analyses",
                           json={"metrics": ["hours"], "models": ["cate"], "segment": "bucket"})
    assert response.status_code == 422
    assert "segment column 'bucket' has more than 10 distinct values" in response.json()["message"]
    assert "XPCOMPUTE_MAX_SEGMENTS" in response.json()["message"]


@pytest.mark.parametrize(("body", "fragment"), [
    ({"metrics": ["hours", "is_streamer", "pre_hours"]}, "at most 2 are allowed per analysis (XPCOMPUTE_MAX_METRICS)"),
    ({"metrics": ["hours"], "slices": [{}] + [{"all_of": [{"column": "country", "values": [c]}]}
                                              for c in ("US", "CA", "MX")]},
     "at most 3 are allowed per analysis (XPCOMPUTE_MAX_SLICES)"),
    ({"metrics": ["hours", "is_streamer"], "models": ["ttest", "ols"], "slices": [{}, {"all_of": [
        {"column": "country", "values": ["US"]}]}]}, "at most 7 are allowed (XPCOMPUTE_MAX_JOBS)"),
])
def test_per_request_limits_name_their_variable(client: TestClient, body: dict[str, Any], fragment: str) -> None:
    response = client.post("/experiments/exp/analyses", json=body)
    assert response.status_code == 422, response.json()
    assert fragment in response.json()["message"]


def test_live_slices_count_towards_the_job_limit(client: TestClient) -> None:
    aid = client.post("/experiments/exp/analyses", json={"metrics": ["hours", "is_streamer"]}).json()["analysis_id"]
    assert client.post(f"/analyses/{aid}/slices", json={"all_of": [{"column": "country", "values": ["US"]}]}
                       ).status_code == 202  # 3 + 3 jobs
    again = client.post(f"/analyses/{aid}/slices", json={"all_of": [{"column": "country", "values": ["US"]}]})
    assert again.status_code == 202  # the same slice again adds nothing, so it is not refused
    over = client.post(f"/analyses/{aid}/slices", json={"all_of": [{"column": "country", "values": ["CA"]}]})
    assert over.status_code == 422 and "XPCOMPUTE_MAX_JOBS" in over.json()["message"]


def test_a_request_may_name_only_its_own_experiments_tables_or_the_allow_list(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    publish(store, "exp", analysis_table(400))
    publish(store, "shared", analysis_table(400))
    coord = build_coordinator(_settings(tmp_path), dispatcher=None)
    with pytest.raises(LimitError, match=r"'shared/analysis' is not a table of experiment 'other'.*under 'other/'"):
        coord.submit("other", AnalysisSpec(metrics=("hours",), table="shared/analysis"))
    assert coord.submit("exp", AnalysisSpec(metrics=("hours",), table="exp/analysis")).state.value == "RUNNING"
    allowed = build_coordinator(_settings(tmp_path, table_allow="shared,tables/public"), dispatcher=None)
    assert allowed.submit("other", AnalysisSpec(metrics=("hours",), table="shared/analysis")).state.value == "RUNNING"


def test_settings_read_the_limits_from_the_environment() -> None:
    s = Settings.from_env({"XPCOMPUTE_MAX_CELLS": "5", "XPCOMPUTE_TABLE_ALLOW": "a, b/c", "XPCOMPUTE_JOB_TIMEOUT_S": "3"})
    assert (s.max_cells, s.table_allow, s.job_timeout_s) == (5, ("a", "b/c"), 3.0)
    assert (Settings().max_cells, Settings().max_segments, Settings().max_slices) == (20, 50, 500)


def _keyed_client(tmp_path: Path, **kw: Any) -> TestClient:
    settings = _settings(tmp_path, auth="on", api_keys="k1,k2", **kw)
    publish(LocalObjectStore(settings.objects_root), "exp", analysis_table(400))
    # no dispatcher: analyses stay RUNNING, so the running-analyses quota is what the test sees
    backend = Backend(settings, coordinator=build_coordinator(settings, dispatcher=None))
    return TestClient(create_app(settings, backend))


def test_running_analyses_per_key_are_bounded(tmp_path: Path) -> None:
    with _keyed_client(tmp_path, max_analyses_per_key=2) as client:
        for _ in range(2):
            assert client.post("/experiments/exp/analyses", json={"metrics": ["hours"]},
                               headers={"X-API-Key": "k1"}).status_code == 202
        over = client.post("/experiments/exp/analyses", json={"metrics": ["hours"]}, headers={"X-API-Key": "k1"})
        assert over.status_code == 429 and over.json()["error"] == "quota_exceeded"
        assert "at most 2 may run at once per key (XPCOMPUTE_MAX_ANALYSES_PER_KEY)" in over.json()["message"]
        # another key has its own quota
        assert client.post("/experiments/exp/analyses", json={"metrics": ["hours"]},
                           headers={"X-API-Key": "k2"}).status_code == 202


def test_request_rate_per_key_is_bounded(tmp_path: Path) -> None:
    with _keyed_client(tmp_path, rate_per_key=5) as client:
        codes = [client.get("/experiments", headers={"X-API-Key": "k1"}).status_code for _ in range(7)]
        assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
        limited = client.get("/experiments", headers={"X-API-Key": "k1"}).json()
        assert "more than 5 requests in the last minute (XPCOMPUTE_RATE_PER_KEY)" in limited["message"]
        assert client.get("/experiments", headers={"X-API-Key": "k2"}).status_code == 200
        assert client.get("/healthz").status_code == 200  # liveness is never rate limited


def test_slice_filters_are_normalised_so_equivalent_ones_share_an_id() -> None:
    """Item 9: ``values: [US, US]``, ``any_of: [country=US]`` and ``country=US`` are one slice, one label."""
    forms = [
        SliceFilter.where(country="US"),
        SliceFilter.model_validate({"all_of": [{"column": "country", "values": ["US", "US"]}]}),
        SliceFilter.model_validate({"any_of": [{"column": "country", "values": ["US"]}]}),
        SliceFilter.model_validate({"all_of": [{"column": "country", "values": ["US"]}] * 2}),
        SliceFilter.model_validate({"any_of": [{"column": "country", "values": ["US"]}] * 2}),
    ]
    assert {f.slice_id for f in forms} == {forms[0].slice_id}
    assert {f.label() for f in forms} == {"country=US"}
    both = SliceFilter.model_validate({"all_of": [{"column": "device", "values": ["tv"]}],
                                       "any_of": [{"column": "country", "values": ["CA", "US", "CA"]}]})
    assert both.any_of[0].values == ("CA", "US")
    assert both.slice_id == SliceFilter.where(country=["US", "CA"], device="tv").slice_id
    assert both.label() == "device=tv & country in (CA, US)"
    overlap = SliceFilter.model_validate({"all_of": [{"column": "country", "values": ["US"]}],
                                          "any_of": [{"column": "country", "values": ["US"]}]})
    assert overlap.slice_id == forms[0].slice_id and overlap.label() == "country=US"
    # True and 1 are equal in Python but not the same slice value
    assert SliceFilter.where(flag=True).slice_id != SliceFilter.where(flag=1).slice_id
    with pytest.raises(ValueError, match="listed more than once"):
        AnalysisSpec(metrics=("hours",), slices=(forms[0], forms[2]))


def test_a_slice_name_cannot_take_another_slices_label(client: TestClient) -> None:
    with pytest.raises(ValueError, match=r"slice label\(s\) \['country=US'\] would name more than one slice"):
        AnalysisSpec(metrics=("hours",), slices=(SliceFilter.where(country="US"),
                                                 SliceFilter(name="country=US", all_of=SliceFilter.where(country="CA").all_of)))
    aid = client.post("/experiments/exp/analyses", json={"metrics": ["hours"], "slices": [
        {"all_of": [{"column": "country", "values": ["US"]}]}]}).json()["analysis_id"]
    live = client.post(f"/analyses/{aid}/slices",
                       json={"name": "country=US", "all_of": [{"column": "country", "values": ["CA"]}]})
    assert live.status_code == 422 and "already the label of another slice" in live.json()["message"]
    same = client.post(f"/analyses/{aid}/slices", json={"any_of": [{"column": "country", "values": ["US", "US"]}]})
    assert same.status_code == 202 and same.json()["label"] == "country=US"  # the same slice: nothing new
    assert len(client.get(f"/analyses/{aid}").json()["slices"]) == 1
