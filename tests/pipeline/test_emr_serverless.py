"""Stage 1 on EMR Serverless, against moto's server over HTTP on 127.0.0.1 (S3 and EMR Serverless).

moto records job runs (``StartJobRun`` -> ``SUCCESS`` at once) but runs no Spark, so the test plays the driver's
part where one is needed: it reads the spec back with ``spark_app.load_spec`` from where the job driver says, and
writes the status with ``spark_app.write_status`` where the job driver says, exactly as ``spark_app.py`` would on
EMR. What is checked is the adapter's side: what it uploads, the ``StartJobRun`` request EMR Serverless receives,
how it follows the run, and the typed error for each way a run or a request fails.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from pipeline_helpers import Moto

from xpcompute.errors import InputError, JobFailedError, MissingColumnError, NotFoundError, StorageError
from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline import spark_app
from xpcompute.pipeline.emr_serverless import (
    EmrServerlessConfig,
    EmrServerlessStage1,
    spark_submit_parameters,
    submit_stage1_emr_serverless,
)
from xpcompute.pipeline.spark_submit import APP_FILE
from xpcompute.storage.objects import split_uri
from xpcompute.synthetic import SyntheticConfig, experiment_spec, generate, write_parquet

ROLE = "arn:aws:iam::123456789012:role/xpcompute-emr-job"  # moto's default account
OUTPUT = "s3://xp-test/emr-published"


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> ExperimentSpec:
    config = SyntheticConfig(users=200, seed=5)
    uris = write_parquet(generate(config), str(tmp_path_factory.mktemp("emr") / "raw"))
    built: ExperimentSpec = experiment_spec(uris, config, daily=False)
    return built


def emr_client(moto: Moto, attempts: int = 3, endpoint: str | None = None) -> Any:
    return boto3.client("emr-serverless", endpoint_url=endpoint or moto.endpoint, region_name="us-east-1",
                        config=Config(retries={"max_attempts": attempts, "mode": "standard"}))


@pytest.fixture
def application(moto_s3: Moto) -> Iterator[str]:
    client = emr_client(moto_s3)
    app_id = str(client.create_application(name="xpcompute-stage1", releaseLabel="emr-7.5.0", type="SPARK")
                 ["applicationId"])
    yield app_id


def make_config(moto: Moto, application_id: str, **overrides: Any) -> EmrServerlessConfig:
    base: dict[str, Any] = {
        "application_id": application_id, "execution_role_arn": ROLE, "code_uri": "s3://xp-test/emr-code",
        "python_archive": "s3://xp-test/envs/xpcompute-env.tar.gz", "log_uri": "s3://xp-test/emr-logs",
        "endpoint_url": moto.endpoint, "spark_conf": {"spark.executor.memory": "4g"},
    }
    return EmrServerlessConfig(**{**base, **overrides})


def read(moto: Moto, uri: str) -> bytes:
    store, key = split_uri(uri, endpoint_url=moto.endpoint)
    return store.get_bytes(key)


def test_the_job_run_starts_spark_app_with_its_own_command_line(
    moto_s3: Moto, application: str, spec: ExperimentSpec
) -> None:
    runner = EmrServerlessStage1(make_config(moto_s3, application))
    sent: list[dict[str, Any]] = []  # the StartJobRun request as botocore sends it (moto does not echo every field)
    runner.client.meta.events.register("before-call.emr-serverless.StartJobRun",
                                       lambda params, **_: sent.append(json.loads(params["body"])))
    run = runner.submit(spec, OUTPUT, daily=False)
    job = runner.describe(run)  # what EMR Serverless recorded, read back over HTTP

    driver = job["jobDriver"]["sparkSubmit"]
    assert driver["entryPoint"] == run.entry_point and run.entry_point.startswith("s3://xp-test/emr-code/driver/")
    assert read(moto_s3, run.entry_point) == APP_FILE.read_bytes()  # the very spark_app.py spark-submit runs
    assert driver["entryPointArguments"] == [
        "--spec", run.spec_uri, "--output-root", OUTPUT, "--status", run.status_uri, "--no-daily"
    ]
    conf = dict(arg.split("=", 1) for arg in shlex.split(driver["sparkSubmitParameters"]) if arg != "--conf")
    assert conf["spark.archives"] == "s3://xp-test/envs/xpcompute-env.tar.gz#environment"
    assert conf["spark.emr-serverless.driverEnv.PYSPARK_PYTHON"] == "./environment/bin/python"
    assert conf["spark.executorEnv.PYSPARK_PYTHON"] == "./environment/bin/python"
    assert conf["spark.sql.session.timeZone"] == "UTC" and conf["spark.executor.memory"] == "4g"
    assert job["executionRole"] == ROLE and job["name"] == f"xpcompute-stage1-{spec.id}"
    assert job["executionTimeoutMinutes"] == 120 and job["tags"] == {"xpcompute:experiment": spec.id}
    (request,) = sent
    assert request["configurationOverrides"]["monitoringConfiguration"]["s3MonitoringConfiguration"]["logUri"] == (
        "s3://xp-test/emr-logs"
    )
    assert request["clientToken"] in run.spec_uri  # one token names the run's files and makes retries idempotent
    # the driver's own loader reads back the spec it will be given
    assert spark_app.load_spec(run.spec_uri).model_dump_json() == spec.model_dump_json()
    # the driver is stored by content: a second run reuses it
    assert runner.submit(spec, OUTPUT).entry_point == run.entry_point


def test_a_finished_run_returns_what_its_driver_reported(
    moto_s3: Moto, application: str, spec: ExperimentSpec
) -> None:
    runner = EmrServerlessStage1(make_config(moto_s3, application))
    run = runner.submit(spec, OUTPUT)
    table = f"{OUTPUT}/experiments/{spec.id}/analysis"
    spark_app.write_status(run.status_uri, {  # the driver's part, at the location the job driver gave it
        "format": spark_app.STATUS_FORMAT, "ok": True, "experiment": spec.id, "application_id": "spark-0001",
        "tables": {"analysis": {"uri": table, "run": "r1", "rows": 200}}, "seconds": {"total": 12.5},
    })
    done = runner.wait(run, poll_s=0)
    assert done.ok and done.application_id == "spark-0001" and done.table_uri("analysis") == table
    assert done.command[:4] == ("emr-serverless", "start-job-run", application, run.job_run_id)
    assert "SUCCESS" in done.log_tail and "s3://xp-test/emr-logs" in done.log_tail


def test_a_failure_the_driver_classified_is_raised_as_its_own_type(
    moto_s3: Moto, application: str, spec: ExperimentSpec
) -> None:
    runner = EmrServerlessStage1(make_config(moto_s3, application))
    run = runner.submit(spec, OUTPUT)
    spark_app.write_status(run.status_uri, {
        "format": spark_app.STATUS_FORMAT, "ok": False, "application_id": "spark-0002",
        "error": {"type": "MissingColumnError", "message": "playback has no column watch_seconds", "code": None},
    })
    with pytest.raises(MissingColumnError, match="watch_seconds") as caught:
        runner.wait(run, poll_s=0)
    assert isinstance(caught.value.__cause__, JobFailedError)
    assert "EMR Serverless application" in str(caught.value.__cause__)


def test_a_run_without_a_status_or_cancelled_is_a_job_failure(
    moto_s3: Moto, application: str, spec: ExperimentSpec
) -> None:
    runner = EmrServerlessStage1(make_config(moto_s3, application, log_uri=None))
    silent = runner.submit(spec, OUTPUT)
    with pytest.raises(JobFailedError, match="ended SUCCESS without the status"):
        runner.wait(silent, poll_s=0)
    cancelled = runner.submit(spec, OUTPUT)
    runner.cancel(cancelled)  # CancelJobRun over HTTP; moto marks the run CANCELLED
    assert runner.describe(cancelled)["state"] == "CANCELLED"
    with pytest.raises(JobFailedError, match="ended CANCELLED"):
        runner.wait(cancelled, poll_s=0)


def test_refused_and_failed_requests_are_typed(moto_s3: Moto, application: str, spec: ExperimentSpec) -> None:
    with pytest.raises(NotFoundError, match="start_job_run"):
        submit_stage1_emr_serverless(spec, OUTPUT, make_config(moto_s3, "00nosuchapp00"))
    with pytest.raises(InputError, match="AccessDeniedException"):  # a role in another account
        EmrServerlessStage1(make_config(moto_s3, application, execution_role_arn="arn:aws:iam::999999999999:role/x")
                            ).submit(spec, OUTPUT)
    with pytest.raises(InputError, match="ValidationException"):  # EMR wants at least 5 minutes
        EmrServerlessStage1(make_config(moto_s3, application, execution_timeout_minutes=1)).submit(spec, OUTPUT)
    client = emr_client(moto_s3)
    client.stop_application(applicationId=application)
    client.delete_application(applicationId=application)
    with pytest.raises(InputError, match="terminated"):
        EmrServerlessStage1(make_config(moto_s3, application)).submit(spec, OUTPUT)
    # EMR Serverless unreachable (a closed port), after one attempt
    closed = emr_client(moto_s3, attempts=1, endpoint="http://127.0.0.1:9")
    with pytest.raises(StorageError, match="start_job_run failed"):
        EmrServerlessStage1(make_config(moto_s3, application), client=closed).submit(spec, OUTPUT)


def test_bad_configuration_is_refused_before_any_call(moto_s3: Moto, spec: ExperimentSpec) -> None:
    with pytest.raises(InputError, match="code_uri must be an s3:// URI"):
        make_config(moto_s3, "app", code_uri="/tmp/code")
    with pytest.raises(InputError, match="IAM role ARN"):
        make_config(moto_s3, "app", execution_role_arn="xpcompute-role")
    with pytest.raises(InputError, match="output_root must be s3://"):
        EmrServerlessStage1(make_config(moto_s3, "app")).submit(spec, "/tmp/out")


class _StillRunning:
    """A stand-in for the EMR Serverless client whose run never ends (moto's runs end at once)."""

    def __init__(self) -> None:
        self.polls = 0
        self.cancelled: list[str] = []

    def get_job_run(self, applicationId: str, jobRunId: str) -> dict[str, Any]:
        self.polls += 1
        return {"jobRun": {"state": "RUNNING"}}

    def cancel_job_run(self, applicationId: str, jobRunId: str) -> dict[str, Any]:
        self.cancelled.append(jobRunId)
        return {}


def test_a_run_past_its_timeout_is_cancelled(moto_s3: Moto, application: str, spec: ExperimentSpec) -> None:
    run = EmrServerlessStage1(make_config(moto_s3, application)).submit(spec, OUTPUT)
    fake = _StillRunning()
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(JobFailedError, match="still RUNNING after 60 s and was cancelled"):
        EmrServerlessStage1(make_config(moto_s3, application), client=fake).wait(
            run, timeout_s=60, poll_s=10, sleep=sleep, clock=lambda: now[0])
    assert fake.cancelled == [run.job_run_id] and fake.polls == 7


def test_spark_submit_parameters_without_an_archive_leave_python_to_the_release() -> None:
    params = spark_submit_parameters(EmrServerlessConfig("app", ROLE, "s3://b/code"))
    assert "spark.archives" not in params and "PYSPARK_PYTHON" not in params
    assert "--conf spark.sql.session.timeZone=UTC" in params


def test_the_module_is_the_only_pipeline_user_of_boto3() -> None:
    pipeline = Path(__file__).resolve().parents[2] / "shared" / "xpcompute" / "pipeline"
    users = sorted(p.name for p in pipeline.rglob("*.py") if "import boto3" in p.read_text())
    assert users == ["emr_serverless.py"]


def test_the_stage1_engine_setting_selects_emr_serverless(
    moto_s3: Moto, application: str, spec: ExperimentSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``XPCOMPUTE_STAGE1_ENGINE=emr-serverless``: the coordinator's stage-1 entry point submits to EMR Serverless
    (over HTTP to moto) and opens the table the driver reported; the test plays the driver with DuckDB."""
    from xpcompute.config import Settings
    from xpcompute.pipeline.spark_submit import run_stage1_configured
    from xpcompute.pipeline.stage1 import run_stage1
    from xpcompute.pipeline.tables import open_table

    submitted: list[Any] = []
    real_submit = EmrServerlessStage1.submit

    def submit_and_play_the_driver(self: EmrServerlessStage1, experiment: ExperimentSpec, output_root: str,
                                   *, daily: bool | None = None) -> Any:
        run = real_submit(self, experiment, output_root, daily=daily)
        submitted.append((self.config, run))
        built = run_stage1(spark_app.load_spec(run.spec_uri), output_root, engine="duckdb", daily=False)
        spark_app.write_status(run.status_uri, {
            "format": spark_app.STATUS_FORMAT, "ok": True, "experiment": experiment.id, "application_id": "spark-9",
            "tables": {"analysis": {"uri": built.analysis.uri, "run": built.analysis.run_id,
                                    "rows": built.analysis.num_rows}},
        })
        return run

    monkeypatch.setattr(EmrServerlessStage1, "submit", submit_and_play_the_driver)
    settings = Settings.from_env({
        "XPCOMPUTE_STAGE1_ENGINE": "emr-serverless", "XPCOMPUTE_EMR_APPLICATION_ID": application,
        "XPCOMPUTE_EMR_EXECUTION_ROLE_ARN": ROLE, "XPCOMPUTE_EMR_ENDPOINT": moto_s3.endpoint,
        "XPCOMPUTE_EMR_POLL_S": "0", "XPCOMPUTE_EMR_LOG_URI": "s3://xp-test/emr-logs",
    })
    table = run_stage1_configured(spec, "s3://xp-test/svc", settings)
    ((config, run),) = submitted
    assert config.application_id == application and config.code_uri == "s3://xp-test/svc/emr-code"
    assert config.log_uri == "s3://xp-test/emr-logs" and config.endpoint_url == moto_s3.endpoint
    assert EmrServerlessStage1(config).describe(run)["state"] == "SUCCESS"  # the run EMR Serverless recorded
    direct = run_stage1(spec, f"s3://{moto_s3.bucket}/direct", engine="duckdb", daily=False).analysis
    assert table.read().sort_by("user_id").equals(open_table(direct).read().sort_by("user_id"))

    with pytest.raises(InputError, match="XPCOMPUTE_EMR_EXECUTION_ROLE_ARN"):
        run_stage1_configured(spec, "s3://xp-test/svc", Settings.from_env({
            "XPCOMPUTE_STAGE1_ENGINE": "emr-serverless", "XPCOMPUTE_EMR_APPLICATION_ID": application}))
    with pytest.raises(InputError, match="writes to S3 only"):
        run_stage1_configured(spec, "/tmp/local-root", settings)
