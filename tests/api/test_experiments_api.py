"""Registered experiments over HTTP: PUT/GET/list/versions, validation against the sources, no stale copies,
and analysis requests resolved against the registered spec (treatment, covariates, models per metric kind)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from service_helpers import analysis_table, publish, raw_sources, spec_body

from xpcompute.api.app import create_app
from xpcompute.config import Settings
from xpcompute.coordinator.runtime import build_coordinator
from xpcompute.storage.objects import LocalObjectStore
from xpcompute.storage.versions import VersionedDocuments


@dataclass
class Env:
    client: TestClient
    settings: Settings
    uris: dict[str, str]
    config: Any
    raw: Path


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Any]:
    root = tmp_path_factory.mktemp("raw")
    uris, config = raw_sources(str(root), users=2000)
    return root, uris, config


@pytest.fixture
def env(tmp_path: Path, raw: tuple[Path, dict[str, str], Any]) -> Iterator[Env]:
    root, uris, config = raw
    settings = Settings(home=tmp_path / "home", dispatch="inline", slice_engine="arrow")
    with TestClient(create_app(settings)) as client:
        yield Env(client, settings, uris, config, root)


def _put(env: Env, experiment_id: str = "autoplay", **overrides: Any) -> Any:
    return env.client.put(f"/experiments/{experiment_id}", json=spec_body(env.uris, env.config, experiment_id,
                                                                         **overrides))


def test_put_answers_a_version_and_the_same_content_keeps_it(env: Env) -> None:
    first = _put(env)
    assert first.status_code == 201, first.json()
    body = first.json()
    assert body["version"] == 1 and body["created"] is True and len(body["spec_hash"]) == 64
    assert body["spec"]["metrics"] == ["streaming_hours", "longest_session_hours", "is_streamer", "rebuffer_rate"]
    same = _put(env)
    assert same.status_code == 200 and same.json()["version"] == 1 and same.json()["created"] is False
    assert same.json()["spec_hash"] == body["spec_hash"]
    no_id = spec_body(env.uris, env.config)
    del no_id["id"]  # the path names the experiment; the body may leave it out
    assert env.client.put("/experiments/autoplay", json=no_id).json()["version"] == 1

    second = _put(env, metrics=["streaming_hours", "longest_session_hours"])
    assert second.status_code == 201 and second.json()["version"] == 2
    assert _put(env, "other", description="another test").json()["version"] == 1

    listed = env.client.get("/experiments").json()["experiments"]
    assert [(e["experiment_id"], e["version"]) for e in listed] == [("autoplay", 2), ("other", 1)]
    assert listed[0]["metrics"] == ["streaming_hours", "longest_session_hours"] and listed[0]["control"] == "control"
    current = env.client.get("/experiments/autoplay").json()
    assert current["version"] == 2 and current["spec_hash"] == second.json()["spec_hash"]
    old = env.client.get("/experiments/autoplay", params={"version": 1}).json()
    assert old["version"] == 1 and "is_streamer" in old["spec"]["metrics"]
    versions = env.client.get("/experiments/autoplay/versions").json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    missing = env.client.get("/experiments/nobody")
    assert missing.status_code == 404 and "PUT /experiments/nobody" in missing.json()["message"]
    assert env.client.get("/experiments/autoplay", params={"version": 7}).status_code == 404
    assert env.client.get("/experiments/nobody/versions").status_code == 404


def test_invalid_specs_and_sources_are_refused_naming_the_problem(env: Env, tmp_path: Path) -> None:
    bad_control = _put(env, control="nobody")
    assert bad_control.status_code == 422 and "control 'nobody' is not one of the cells" in bad_control.json()["message"]
    unknown_metric = _put(env, metrics=["no_such_metric"])
    assert unknown_metric.status_code == 422 and "no_such_metric" in unknown_metric.json()["message"]
    other_id = env.client.put("/experiments/autoplay", json=spec_body(env.uris, env.config, "someone_else"))
    assert other_id.status_code == 422 and "differs from the experiment id 'autoplay'" in other_id.json()["message"]
    sources = {name: {"uri": uri} for name, uri in env.uris.items()}
    relative = _put(env, sources={**sources, "users": {"uri": "raw/users.parquet"}})
    assert relative.status_code == 422 and "relative uri 'raw/users.parquet'" in relative.json()["message"]
    gone = _put(env, sources={**sources, "users": {"uri": str(tmp_path / "nowhere.parquet")}})
    assert gone.status_code == 422 and "source 'users' not found" in gone.json()["message"]

    thin = tmp_path / "users_without_country.parquet"
    pq.write_table(pq.read_table(env.uris["users"]).drop_columns(["country"]), thin)
    no_column = _put(env, sources={**sources, "users": {"uri": str(thin)}})
    assert no_column.status_code == 422, no_column.json()
    assert no_column.json()["error"] == "missing_column"
    assert "source 'users'" in no_column.json()["message"] and "'country'" in no_column.json()["message"]
    assert env.client.get("/experiments").json()["experiments"] == []  # nothing invalid was registered


def test_analysis_runs_stage1_and_records_the_version_it_used(env: Env) -> None:
    _put(env, shares={"control": 1.0, "autoplay": 1.0, "autoplay_plus": 1.0})
    created = env.client.post("/experiments/autoplay/analyses", json={"metrics": ["streaming_hours", "rebuffer_rate"]})
    assert created.status_code == 202, created.json()
    body = created.json()
    assert body["experiment_version"] == 1 and body["stage1"] is True
    status = env.client.get(f"/analyses/{body['analysis_id']}").json()
    assert status["state"] == "SUCCEEDED", status["failures"]
    assert status["experiment_version"] == 1
    assert status["stage1"]["state"] == "SUCCEEDED" and status["stage1"]["reason"].startswith("no analysis table")
    assert status["progress"]["total"] == 1 + 1 + 3  # stage 1, one slice, three fits
    card = env.client.get(f"/analyses/{body['analysis_id']}/results").json()
    assert card["experiment_version"] == 1
    assert card["spec"]["control"] == "control" and card["spec"]["treatment"] == "cell"
    assert card["spec"]["expected_shares"] == {"control": 1.0, "autoplay": 1.0, "autoplay_plus": 1.0}
    assert {(r["metric"], r["model"]) for r in card["records"]} == {
        ("streaming_hours", "ttest"), ("streaming_hours", "ols"), ("rebuffer_rate", "ratio")}

    again = env.client.post("/experiments/autoplay/analyses", json={"metrics": ["is_streamer"]}).json()
    assert again["stage1"] is False  # the table is current
    refreshed = env.client.post("/experiments/autoplay/analyses", json={"metrics": ["is_streamer"], "refresh": True})
    assert refreshed.json()["stage1"] is True
    both = env.client.post("/experiments/autoplay/analyses",
                           json={"metrics": ["is_streamer"], "refresh": True, "table": "autoplay/analysis"})
    assert both.status_code == 422 and "refresh" in both.json()["message"]


def test_an_analysis_that_names_no_metrics_analyses_every_metric_of_the_spec(env: Env) -> None:
    _put(env)
    experiment = env.client.get("/experiments/autoplay").json()
    every = experiment["spec"]["metrics"] if "spec" in experiment else experiment["metrics"]
    created = env.client.post("/experiments/autoplay/analyses", json={})
    assert created.status_code == 202, created.json()
    card = env.client.get(f"/analyses/{created.json()['analysis_id']}/results").json()
    assert tuple(card["spec"]["metrics"]) == tuple(every) and len(every) >= 4
    assert {r["metric"] for r in card["records"]} == set(every)  # each one fitted
    wrong = env.client.post("/experiments/autoplay/analyses", json={"roles": {"goal": ["nope"]}})
    assert wrong.status_code == 422 and "roles names ['nope'], which are not metrics of experiment 'autoplay'" \
        in wrong.json()["message"]


def test_a_running_server_sees_a_re_registration_made_elsewhere(env: Env) -> None:
    _put(env)
    first = env.client.post("/experiments/autoplay/analyses", json={"metrics": ["is_streamer"]})
    assert first.status_code == 202
    # another server (or the CLI) registers version 2 without is_streamer, through the same stores
    elsewhere = build_coordinator(env.settings, dispatcher=None)
    spec = spec_body(env.uris, env.config, metrics=["streaming_hours", "longest_session_hours"])
    assert elsewhere.register_spec("autoplay", spec).version == 2
    refused = env.client.post("/experiments/autoplay/analyses", json={"metrics": ["is_streamer"]})
    assert refused.status_code == 422
    message = refused.json()["message"]
    assert "'is_streamer' is not a metric of experiment 'autoplay'" in message and "streaming_hours" in message
    assert env.client.get("/experiments/autoplay").json()["version"] == 2
    ok = env.client.post("/experiments/autoplay/analyses", json={"metrics": ["streaming_hours"]}).json()
    assert ok["experiment_version"] == 2 and ok["stage1"] is True  # the spec changed: the table is rebuilt


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"metrics": ["streaming_hours"], "covariates": ["pre_streaming_hours"]},
         "its covariates come from its spec (pre_streaming_hours)"),
        ({"metrics": ["rebuffer_rate"], "models": ["ols"]},
         "it is a ratio of per-user sums, analysed by the delta method (model 'ratio')"),
        ({"metrics": ["rebuffer_rate"], "models": ["ttest"]}, "would estimate a different quantity"),
        ({"metrics": ["streaming_hours"], "models": ["ratio"]}, "model 'ratio' does not apply"),
        ({"metrics": ["streaming_hours"], "models": ["proportion"]}, "model 'proportion' does not apply"),
        ({"metrics": ["streaming_hours"], "treatment": "device"},
         "treatment 'device' is not a column of the analysis table"),
        ({"metrics": ["streaming_hours"], "control": "nobody"}, "control 'nobody' is not a cell"),
        ({"metrics": ["streaming_hours"], "models": ["cate"], "segment": "plan"}, "segment 'plan' is not a dimension"),
        ({"metrics": ["streaming_hours"], "models": ["dte"]}, "model 'dte' needs the user-by-day table"),
        ({"metrics": ["streaming_hours"], "slices": [{"all_of": [{"column": "plan", "values": ["basic"]}]}]},
         "slice column 'plan' is not a declared dimension"),
    ],
)
def test_requests_that_would_measure_something_else_are_refused(env: Env, body: dict[str, Any],
                                                                 fragment: str) -> None:
    _put(env)
    response = env.client.post("/experiments/autoplay/analyses", json=body)
    assert 400 <= response.status_code < 500, response.json()
    assert fragment in response.json()["message"], response.json()


def test_treatment_may_name_the_experiments_own_cell_column(env: Env, tmp_path: Path) -> None:
    renamed = tmp_path / "allocations_variant.parquet"
    pq.write_table(pq.read_table(env.uris["allocations"]).rename_columns(["user_id", "variant", "allocation_date"]),
                   renamed)
    sources = {name: {"uri": uri} for name, uri in env.uris.items()}
    put = _put(env, sources={**sources, "allocations": {"uri": str(renamed)}}, allocation={"cell_column": "variant"})
    assert put.status_code == 201, put.json()
    for treatment in ("variant", "cell", None):
        body: dict[str, Any] = {"metrics": ["is_streamer"]}
        if treatment is not None:
            body["treatment"] = treatment
        created = env.client.post("/experiments/autoplay/analyses", json=body)
        assert created.status_code == 202, created.json()
        status = env.client.get(f"/analyses/{created.json()['analysis_id']}").json()
        assert status["state"] == "SUCCEEDED", status["failures"]
        assert {r["cell"] for r in status["records"]} == {"autoplay", "autoplay_plus"}
    other = env.client.post("/experiments/autoplay/analyses", json={"metrics": ["is_streamer"], "treatment": "user_id"})
    assert other.status_code == 422
    assert "omit 'treatment' or set it to 'cell' or 'variant'" in other.json()["message"]


def test_unregistered_experiments_need_a_put_or_an_explicit_table(env: Env) -> None:
    missing = env.client.post("/experiments/unknown/analyses", json={"metrics": ["hours"]})
    assert missing.status_code == 404
    assert "PUT /experiments/unknown with its spec first" in missing.json()["message"]
    store = LocalObjectStore(env.settings.objects_root)
    key = publish(store, "unknown", analysis_table(800))  # a request may only name its own experiment's tables
    adhoc = env.client.post("/experiments/unknown/analyses",
                            json={"metrics": ["hours"], "table": key, "covariates": ["pre_hours"], "models": ["ols"]})
    assert adhoc.status_code == 202, adhoc.json()
    assert adhoc.json()["experiment_version"] is None and adhoc.json()["stage1"] is False
    assert env.client.get(f"/analyses/{adhoc.json()['analysis_id']}").json()["state"] == "SUCCEEDED"
    refresh = env.client.post("/experiments/adhoc_table/analyses", json={"metrics": ["hours"], "refresh": True})
    assert refresh.status_code == 422 and "is not registered" in refresh.json()["message"]
    segment = env.client.post("/experiments/unknown/analyses", json={"metrics": ["hours"], "table": key,
                                                                   "segment": "country"})
    assert segment.status_code == 422 and "segment is only used by model 'cate'" in segment.json()["message"]


def test_concurrent_registrations_get_distinct_versions_and_a_lost_pointer_is_recovered(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    docs = VersionedDocuments(store, "experiments")
    results: list[int] = []

    def put(i: int) -> None:
        results.append(docs.put("x", {"n": i})[0].version)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(1, 9))  # put-if-absent: no number given twice
    store.delete(docs.pointer_key("x"))  # a writer that died before moving the pointer
    assert docs.latest_number("x") == 8
    latest = docs.latest("x")
    assert latest is not None and docs.put("x", latest.document) == (latest, False)
    assert docs.names() == ["x"]
