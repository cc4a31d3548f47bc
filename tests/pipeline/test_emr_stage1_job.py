"""The coordinator's stage-1 job on EMR Serverless does not wait in its function: it starts the run, defers, and
follows it one look per delivery (moto's S3 and EMR Serverless over HTTP on 127.0.0.1; the test plays the driver,
as ``test_emr_serverless.py`` does, because moto runs no Spark)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from pipeline_helpers import Moto

from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.jobs import JobKind, JobState, stage1_job_id
from xpcompute.coordinator.runtime import build_coordinator
from xpcompute.coordinator.service import Coordinator
from xpcompute.coordinator.worker import run_job
from xpcompute.errors import NotFoundError
from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline import spark_app
from xpcompute.pipeline.emr_serverless import EmrServerlessStage1
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.pipeline.stage1 import run_stage1
from xpcompute.pipeline.tables import open_table
from xpcompute.storage import keys
from xpcompute.synthetic import SyntheticConfig, experiment_spec, generate, write_parquet

ROLE = "arn:aws:iam::123456789012:role/xpcompute-emr-job"


class Driver:
    """Plays EMR: ``submit`` records the run; ``finish`` runs the driver's stage 1 (DuckDB) and writes its status,
    or a failed status; until then ``describe`` answers RUNNING (moto's own runs are SUCCESS at once)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs: list[Any] = []
        self.finished: set[str] = set()
        real_submit, real_describe = EmrServerlessStage1.submit, EmrServerlessStage1.describe
        driver = self

        def submit(self: EmrServerlessStage1, experiment: ExperimentSpec, output_root: str, **kw: Any) -> Any:
            run = real_submit(self, experiment, output_root, **kw)
            driver.runs.append(run)
            return run

        def describe(self: EmrServerlessStage1, run: Any) -> dict[str, Any]:
            job = real_describe(self, run)
            return job if run.job_run_id in driver.finished else {**job, "state": "RUNNING"}

        monkeypatch.setattr(EmrServerlessStage1, "submit", submit)
        monkeypatch.setattr(EmrServerlessStage1, "describe", describe)

    def finish(self, ok: bool = True) -> None:
        run = self.runs[-1]
        if ok:
            built = run_stage1(spark_app.load_spec(run.spec_uri), run.output_root, engine="duckdb", daily=False)
            status = {"format": spark_app.STATUS_FORMAT, "ok": True, "experiment": "emr", "application_id": "spark-1",
                      "tables": {"analysis": {"uri": built.analysis.uri, "run": built.analysis.run_id,
                                              "rows": built.analysis.num_rows}}}
        else:
            status = {"format": spark_app.STATUS_FORMAT, "ok": False, "application_id": "spark-2",
                      "error": {"type": "RuntimeError", "message": "executor lost", "code": None}}
        spark_app.write_status(run.status_uri, status)
        self.finished.add(run.job_run_id)


@pytest.fixture
def service(moto_s3: Moto, tmp_path: Path) -> Iterator[tuple[Coordinator, Settings]]:
    client = boto3.client("emr-serverless", endpoint_url=moto_s3.endpoint, region_name="us-east-1")
    app = str(client.create_application(name="xp", releaseLabel="emr-7.5.0", type="SPARK")["applicationId"])
    settings = Settings.from_env({
        "XPCOMPUTE_HOME": str(tmp_path / "home"), "XPCOMPUTE_OBJECTS": f"s3://{moto_s3.bucket}/svc-{tmp_path.name}",
        "XPCOMPUTE_S3_ENDPOINT": moto_s3.endpoint, "XPCOMPUTE_STAGE1_ENGINE": "emr-serverless",
        "XPCOMPUTE_EMR_APPLICATION_ID": app, "XPCOMPUTE_EMR_EXECUTION_ROLE_ARN": ROLE,
        "XPCOMPUTE_EMR_ENDPOINT": moto_s3.endpoint, "XPCOMPUTE_EMR_POLL_S": "30", "XPCOMPUTE_DISPATCH": "inline",
    })
    coord = build_coordinator(settings, dispatcher=None)
    config = SyntheticConfig(users=300, seed=3)
    uris = write_parquet(generate(config), str(tmp_path / "raw"))
    coord.register_experiment(experiment_spec(uris, config, experiment_id="emr", daily=False))
    yield coord, settings
    coord.state.close()


def _submit(coord: Coordinator) -> str:
    spec = AnalysisSpec(metrics=("streaming_hours",), models=("ttest",), slices=(SliceFilter(),))
    return coord.submit("emr", spec).analysis_id


def test_stage1_starts_the_run_defers_and_follows_it_one_look_per_delivery(
    service: tuple[Coordinator, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    coord, settings = service
    driver = Driver(monkeypatch)
    first, second = _submit(coord), _submit(coord)  # two analyses, one table to build

    out = run_job(coord, settings, stage1_job_id(first), "fn-1")
    assert out.status == "deferred" and "started as EMR Serverless job run" in str(out.error)
    job = coord.state.get_job(stage1_job_id(first))
    assert job.state == JobState.PENDING and job.attempts == 0 and job.worker is None  # a poll is no attempt
    assert job.due_at is not None and job.due_at - coord.clock() == pytest.approx(30, abs=5)
    assert job.output["emr_run"]["job_run_id"] == driver.runs[0].job_run_id
    claim = json.loads(coord.store.get_bytes(keys.stage1_claim("emr")))
    assert claim["job_id"] == job.job_id  # the build goes on: the claim stays held

    waiting = run_job(coord, settings, stage1_job_id(second), "fn-2")  # the other analysis defers, not a 2nd run
    assert waiting.status == "deferred" and "waiting for the stage-1 build" in str(waiting.error)
    assert len(driver.runs) == 1

    assert run_job(coord, settings, stage1_job_id(first), "fn-3").status == "deferred"  # still RUNNING
    driver.finish()
    done = run_job(coord, settings, stage1_job_id(first), "fn-4")
    assert done.status == "succeeded", done
    job = coord.state.get_job(stage1_job_id(first))
    published = open_table(keys.analysis_table("emr"), coord.store)  # where the service reads it
    assert job.output["emr_job_run"] == driver.runs[0].job_run_id and job.output["run"] == published.run_id
    assert job.output["rows"] == published.num_rows > 250
    assert job.attempts == 1 and not job.errors
    with pytest.raises(NotFoundError):
        coord.store.get_bytes(keys.stage1_claim("emr"))  # released
    coord.on_job_finished(job.job_id)
    assert any(j.kind == JobKind.SLICE and j.state == JobState.PENDING and j.due_at is not None
               for j in coord.state.list_jobs(first))

    reused = run_job(coord, settings, stage1_job_id(second), "fn-5")  # the table just built: no second run
    assert reused.status == "succeeded" and coord.state.get_job(stage1_job_id(second)).output["reused"] is True
    assert len(driver.runs) == 1


def test_a_failed_run_is_retried_as_a_new_run(service: tuple[Coordinator, Settings],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    coord, settings = service
    driver = Driver(monkeypatch)
    aid = _submit(coord)
    assert run_job(coord, settings, stage1_job_id(aid), "fn-1").status == "deferred"
    driver.finish(ok=False)
    failed = run_job(coord, settings, stage1_job_id(aid), "fn-2")
    assert failed.status == "retrying" and "executor lost" in str(failed.error)
    job = coord.state.get_job(stage1_job_id(aid))
    assert job.output == {} and job.attempts == 1  # the retry starts afresh, not from the failed run
    assert run_job(coord, settings, stage1_job_id(aid), "fn-3").status == "deferred"
    assert len(driver.runs) == 2 and driver.runs[1].job_run_id != driver.runs[0].job_run_id
    driver.finish()
    assert run_job(coord, settings, stage1_job_id(aid), "fn-4").status == "succeeded"
