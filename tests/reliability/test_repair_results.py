"""Issue 13: a damaged result object is repaired within its analysis by ``POST /analyses/{id}/retry`` and
``xpcompute retry``: just the fits whose stored records are damaged (or gone) run again, the damaged object
is replaced whole (put-if-absent alone would keep it), and the scorecard is whole again, equal to before."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from service_fixtures import moto_endpoint  # noqa: F401  (the S3 case runs on moto over HTTP)
from service_helpers import analysis_table, publish

from xpcompute.api.app import Backend, create_app
from xpcompute.cli import main
from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.jobs import JobKind, JobState
from xpcompute.coordinator.runtime import EmbeddedRuntime
from xpcompute.coordinator.service import Coordinator
from xpcompute.coordinator.stored import decodes, store_result, take_healed
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.records import ResultRecord
from xpcompute.storage import keys
from xpcompute.storage.objects import LocalObjectStore, ObjectStore, S3ObjectStore

SLICES = (SliceFilter(), SliceFilter.where(country="US"))


def finished(settings: Settings) -> tuple[Coordinator, str]:
    publish(LocalObjectStore(settings.objects_root), "exp", analysis_table(1200))
    coord = EmbeddedRuntime(settings).coordinator  # inline dispatch: every job runs within the call
    analysis = coord.submit("exp", AnalysisSpec(metrics=("hours", "is_streamer"), slices=SLICES))
    assert coord.state.get_analysis(analysis.analysis_id).state.value == "SUCCEEDED"
    return coord, analysis.analysis_id


def damage(coord: Coordinator, aid: str) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """Truncate one fit's result, delete another's, and truncate the stored scorecard; returns what was there."""
    before = [r.model_dump() for r in coord.results(aid).records]
    fits = sorted((j for j in coord.state.list_jobs(aid) if j.kind == JobKind.FIT), key=lambda j: j.job_id)
    versions = {j.job_id: j.version for j in fits}
    truncated, deleted = fits[0], fits[3]
    assert truncated.result_key is not None and deleted.result_key is not None
    data = coord.store.get_bytes(truncated.result_key)
    coord.store.put_bytes(truncated.result_key, data[: len(data) // 2])
    coord.store.delete(deleted.result_key)
    coord.store.put_bytes(keys.scorecard(aid), b"{ truncated")
    failures = coord.results(aid).failures
    assert {f.job_id for f in failures} == {truncated.job_id, deleted.job_id}
    assert any("is damaged" in f.error and f"POST /analyses/{aid}/retry" in f.error for f in failures)
    return before, versions, [truncated.job_id, deleted.job_id]


def check_repaired(coord: Coordinator, aid: str, before: list[dict[str, Any]], versions: dict[str, Any],
                   damaged: list[str]) -> None:
    card = coord.results(aid)
    assert card.failures == [] and card.complete
    assert [r.model_dump() for r in card.records] == before  # the same numbers, corrections included
    for job in coord.state.list_jobs(aid):
        if job.kind != JobKind.FIT:
            continue
        assert job.state == JobState.SUCCEEDED
        if job.job_id in damaged:
            assert job.attempts == 1 and any("recomputed on request" in e for e in job.errors)
        else:  # every other fit was left alone
            assert job.version == versions[job.job_id], job.job_id
    truncated = coord.state.get_job(damaged[0])
    assert truncated.output.get("healed") == [truncated.result_key]  # replaced, and the job says so
    assert coord.state.get_analysis(aid).state.value == "SUCCEEDED"
    assert coord.store.get_bytes(keys.scorecard(aid)).startswith(b"{\"")  # finalized again: stored whole


def test_retry_over_http_recomputes_only_the_damaged_fits(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, dispatch="inline", slice_engine="arrow")
    coord, aid = finished(settings)
    before, versions, damaged = damage(coord, aid)
    app = create_app(settings, backend=Backend(settings, coordinator=coord))
    with TestClient(app) as client:
        answer = client.post(f"/analyses/{aid}/retry")
        assert answer.status_code == 202, answer.text
        assert answer.json()["retried"] == 2 and sorted(answer.json()["job_ids"]) == sorted(damaged)
        assert client.get(f"/analyses/{aid}/results").json()["failures"] == []
        assert client.post(f"/analyses/{aid}/retry").json()["retried"] == 0  # nothing left to repair
    check_repaired(coord, aid, before, versions, damaged)


def test_xpcompute_retry_recomputes_the_damaged_fits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(home=tmp_path, dispatch="inline", slice_engine="arrow")
    coord, aid = finished(settings)
    before, versions, damaged = damage(coord, aid)
    monkeypatch.setenv("XPCOMPUTE_HOME", str(tmp_path))
    monkeypatch.setenv("XPCOMPUTE_DISPATCH", "inline")
    monkeypatch.setenv("XPCOMPUTE_SLICE_ENGINE", "arrow")
    assert main(["retry", aid]) == 0
    check_repaired(coord, aid, before, versions, damaged)


@pytest.fixture(params=["local", "s3"])
def object_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = f"xp-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return S3ObjectStore(bucket, "xp", endpoint_url=endpoint, region="us-east-1")


def test_store_result_keeps_a_valid_object_and_replaces_a_damaged_one_whole(object_store: ObjectStore) -> None:
    record = {"metric": "m", "model": "ttest", "cell": "b", "control": "a", "effect": 1.0, "se": 0.5,
              "ci_low": 0.1, "ci_high": 1.9, "p_value": 0.04, "relative_effect": 0.1, "relative_ci_low": 0.0,
              "relative_ci_high": 0.2, "n_cell": 10, "n_control": 10, "mean_cell": 2.0, "mean_control": 1.0}
    body = json.dumps([ResultRecord.model_validate(record).to_json_dict()]).encode()
    other = json.dumps([ResultRecord.model_validate({**record, "effect": 2.0}).to_json_dict()]).encode()
    assert decodes(body) and decodes(other) and not decodes(body[:-7]) and not decodes(b'{"a": 1}')
    take_healed()
    assert store_result(object_store, "r/fresh.json", body)  # absent: written
    assert not store_result(object_store, "r/fresh.json", other)  # valid one there: kept (put-if-absent)
    assert object_store.get_bytes("r/fresh.json") == body and take_healed() == []
    object_store.put_bytes("r/damaged.json", body[: len(body) // 2])
    assert store_result(object_store, "r/damaged.json", other)  # damaged: replaced by the whole new body
    assert object_store.get_bytes("r/damaged.json") == other and take_healed() == ["r/damaged.json"]
    assert object_store.list("r") == ["r/damaged.json", "r/fresh.json"]  # no temporary object left behind
