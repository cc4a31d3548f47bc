"""Stage 1 on EMR Serverless: the same ``spark_app.py`` driver, started with ``StartJobRun`` instead of spark-submit.

Why: on AWS the managed way to run a Spark application without keeping a cluster is EMR Serverless, which takes
an entry point on S3 and its arguments, not a spark-submit command line. The driver program is the one
``spark_submit.py`` runs (``spark_app.py``: it loads the spec, runs stage 1 on the session Spark gives it, and
writes its JSON status), so both routes publish the same tables and report the same way, and callers get the
same ``Stage1Submission`` and the same typed errors from either.

What this adapter does, and it is the only module in ``pipeline/`` that talks to boto3:

1. uploads ``spark_app.py`` (content-addressed, so an unchanged driver is uploaded once) and the experiment spec
   (JSON) under ``code_uri``, through the object store;
2. ``StartJobRun`` with a ``sparkSubmit`` job driver: the entry point, ``--spec/--output-root/--status``, and
   ``sparkSubmitParameters`` that ship the Python environment (a ``venv-pack`` archive of an environment with
   ``xpcompute[spark]`` installed, unpacked as ``./environment`` and used as ``PYSPARK_PYTHON``);
3. polls ``GetJobRun`` until the run is terminal (``CancelJobRun`` when it outlives ``timeout_s``);
4. trusts the status JSON the application wrote, as ``spark_submit`` does, for the outcome: a failure the
   application classified comes back as that error type.

Errors are typed: an application or run that does not exist is ``NotFoundError``; a request EMR Serverless
refuses (a terminated application, a bad role, a timeout under 5 minutes) is ``InputError``; a run that failed, was
cancelled or did not finish is ``JobFailedError``; EMR Serverless or S3 unreachable is ``StorageError``.

Databricks and EMR on EC2 need no adapter: they run ``spark-submit`` against their own master (see
``infra/README.md``, "Stage 1 on a Spark cluster").
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xpcompute.config import Settings
from xpcompute.errors import InputError, JobFailedError, NotFoundError, StorageError, XPError
from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline.spark_submit import APP_FILE, Stage1Submission, _failure
from xpcompute.storage.objects import split_uri

log = logging.getLogger(__name__)

TERMINAL = frozenset({"SUCCESS", "FAILED", "CANCELLED"})
"""EMR Serverless job-run states after which nothing changes (the others: SUBMITTED, PENDING, SCHEDULED, RUNNING,
QUEUED, CANCELLING)."""

ENVIRONMENT_DIR = "environment"
"""Where EMR Serverless unpacks ``python_archive`` in the driver's and executors' working directories."""


@dataclass(frozen=True)
class EmrServerlessConfig:
    """Where and as whom stage 1 runs on EMR Serverless.

    ``application_id``: a Spark application made once (``aws emr-serverless create-application --type SPARK``).
    ``execution_role_arn``: the job role; it needs S3 read on the raw tables and ``code_uri``, and write on the
    output root and ``code_uri``. ``code_uri``: an ``s3://`` prefix for the driver, the specs and the statuses.
    ``python_archive``: ``s3://.../xpcompute-env.tar.gz`` made with ``venv-pack`` from an environment holding
    ``xpcompute[spark]`` (Amazon Linux 2023, x86_64); without it the release's own Python runs the driver, which then
    needs xpcompute some other way (a custom image). ``log_uri``: where EMR Serverless keeps the driver's logs.
    """

    application_id: str
    execution_role_arn: str
    code_uri: str
    python_archive: str | None = None
    log_uri: str | None = None
    region: str = "us-east-1"
    endpoint_url: str | None = None
    spark_conf: Mapping[str, str] = field(default_factory=dict)
    execution_timeout_minutes: int = 120

    def __post_init__(self) -> None:
        for name in ("code_uri", "python_archive", "log_uri"):
            value = getattr(self, name)
            if value is not None and not str(value).startswith("s3://"):
                raise InputError(f"EMR Serverless reads from S3 only: {name} must be an s3:// URI, got {value!r}")
        if not self.application_id:
            raise InputError("EMR Serverless needs application_id (from `aws emr-serverless create-application`)")
        if not self.execution_role_arn.startswith("arn:"):
            raise InputError(f"execution_role_arn must be an IAM role ARN, got {self.execution_role_arn!r}")


@dataclass(frozen=True)
class EmrJobRun:
    """A submitted stage-1 run: what to poll, and where its driver writes its status."""

    application_id: str
    job_run_id: str
    arn: str
    name: str
    entry_point: str
    spec_uri: str
    status_uri: str
    output_root: str
    submitted_at: float


def spark_submit_parameters(config: EmrServerlessConfig) -> str:
    """``sparkSubmitParameters``: the Python environment and the same defaults ``spark_submit`` uses off loopback."""
    conf: dict[str, str] = {
        "spark.sql.parquet.compression.codec": "zstd",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
    }
    if config.python_archive:
        python = f"./{ENVIRONMENT_DIR}/bin/python"
        conf.update({
            "spark.archives": f"{config.python_archive}#{ENVIRONMENT_DIR}",
            "spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON": python,
            "spark.emr-serverless.driverEnv.PYSPARK_PYTHON": python,
            "spark.executorEnv.PYSPARK_PYTHON": python,
        })
    conf.update(config.spark_conf)
    return " ".join(f"--conf {shlex.quote(f'{k}={v}')}" for k, v in conf.items())


def _wrap(action: str, exc: Exception) -> XPError:
    """The typed error for a failed EMR Serverless call (botocore's ClientError carries the service's code)."""
    response = getattr(exc, "response", None)
    code = str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
    message = str(response.get("Error", {}).get("Message", exc)) if isinstance(response, dict) else str(exc)
    if code == "ResourceNotFoundException":
        return NotFoundError(f"EMR Serverless {action}: {message}")
    if code in ("ValidationException", "AccessDeniedException", "ConflictException"):
        return InputError(f"EMR Serverless refused {action} ({code}): {message}")
    return StorageError(f"EMR Serverless {action} failed: {code or type(exc).__name__}: {message}")


class EmrServerlessStage1:
    """Submits stage 1 to one EMR Serverless application and follows the run to its end."""

    def __init__(self, config: EmrServerlessConfig, client: Any | None = None) -> None:
        self.config = config
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "emr-serverless",
                region_name=self.config.region,
                endpoint_url=self.config.endpoint_url,
                config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60),
            )
        return self._client

    def _call(self, action: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response: dict[str, Any] = getattr(self.client, action)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _wrap(action, exc) from exc
        return response

    def _put(self, uri: str, data: bytes) -> None:
        store, key = split_uri(uri, endpoint_url=self.config.endpoint_url)
        store.put_bytes(key, data)

    def upload_driver(self) -> str:
        """Put ``spark_app.py`` under ``code_uri`` by its content hash; returns its ``s3://`` URI."""
        code = APP_FILE.read_bytes()
        uri = f"{self.config.code_uri.rstrip('/')}/driver/spark_app-{hashlib.sha256(code).hexdigest()[:16]}.py"
        store, key = split_uri(uri, endpoint_url=self.config.endpoint_url)
        if not store.exists(key):
            store.put_bytes(key, code)
        return uri

    def job_driver(self, entry_point: str, spec_uri: str, output_root: str, status_uri: str,
                   daily: bool | None = None) -> dict[str, Any]:
        """The ``jobDriver`` of ``StartJobRun``: spark_app.py's own command line (see its ``main``)."""
        args = ["--spec", spec_uri, "--output-root", output_root, "--status", status_uri]
        if daily is False:
            args.append("--no-daily")
        return {"sparkSubmit": {"entryPoint": entry_point, "entryPointArguments": args,
                                "sparkSubmitParameters": spark_submit_parameters(self.config)}}

    def submit(self, experiment: ExperimentSpec, output_root: str, *, daily: bool | None = None) -> EmrJobRun:
        """Upload the driver and the spec, and start the job run; returns at once (``wait`` follows it)."""
        if not output_root.startswith("s3://"):
            raise InputError(f"EMR Serverless writes to S3 only: output_root must be s3://..., got {output_root!r}")
        token = uuid.uuid4().hex
        run_prefix = f"{self.config.code_uri.rstrip('/')}/runs/{experiment.id}/{token}"
        spec_uri, status_uri = f"{run_prefix}/spec.json", f"{run_prefix}/status.json"
        entry_point = self.upload_driver()
        self._put(spec_uri, experiment.model_dump_json().encode())
        name = f"xpcompute-stage1-{experiment.id}"[:256]
        request: dict[str, Any] = {
            "applicationId": self.config.application_id,
            "clientToken": token,  # a retried StartJobRun with the same token starts one run, not two
            "executionRoleArn": self.config.execution_role_arn,
            "name": name,
            "jobDriver": self.job_driver(entry_point, spec_uri, output_root, status_uri, daily),
            "executionTimeoutMinutes": self.config.execution_timeout_minutes,
            "tags": {"xpcompute:experiment": experiment.id},
        }
        if self.config.log_uri:
            request["configurationOverrides"] = {
                "monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": self.config.log_uri}}
            }
        response = self._call("start_job_run", **request)
        run = EmrJobRun(
            application_id=str(response["applicationId"]), job_run_id=str(response["jobRunId"]),
            arn=str(response.get("arn", "")), name=name, entry_point=entry_point, spec_uri=spec_uri,
            status_uri=status_uri, output_root=output_root, submitted_at=time.time(),
        )
        log.info("stage 1 for %s submitted to EMR Serverless as job run %s", experiment.id, run.job_run_id)
        return run

    def describe(self, run: EmrJobRun) -> dict[str, Any]:
        """``GetJobRun``'s ``jobRun``: state, stateDetails, jobDriver, timings."""
        job: dict[str, Any] = self._call("get_job_run", applicationId=run.application_id,
                                         jobRunId=run.job_run_id)["jobRun"]
        return job

    def cancel(self, run: EmrJobRun) -> None:
        self._call("cancel_job_run", applicationId=run.application_id, jobRunId=run.job_run_id)

    def read_status(self, run: EmrJobRun) -> dict[str, Any] | None:
        """The status JSON the driver wrote, or ``None`` when it wrote none (it never started, or was killed)."""
        store, key = split_uri(run.status_uri, endpoint_url=self.config.endpoint_url)
        try:
            raw = json.loads(store.get_bytes(key))
        except NotFoundError:
            return None
        except json.JSONDecodeError as exc:
            raise JobFailedError(f"job run {run.job_run_id} wrote an unreadable status at {run.status_uri}: {exc}") from exc
        return raw if isinstance(raw, dict) else None

    def wait(self, run: EmrJobRun, timeout_s: float = 3600.0, poll_s: float = 10.0,
             sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
             ) -> Stage1Submission:
        """Poll until the run is terminal; raise unless its driver published the tables (see ``submit_stage1``)."""
        deadline = clock() + timeout_s
        while True:
            done = self.poll(run, overdue=clock() >= deadline, timeout_s=timeout_s)
            if done is not None:
                return done
            sleep(poll_s)

    def poll(self, run: EmrJobRun, *, overdue: bool = False, timeout_s: float = 3600.0) -> Stage1Submission | None:
        """Look at the run once: ``None`` while it runs, its submission once it succeeded; a typed error when it
        failed, or when it still runs ``overdue`` (then it is cancelled first).

        ``wait`` loops over this in one process; the coordinator's stage-1 job calls it once per delivery and
        defers in between (``ledger.Deferred``), so no function waits out an hour-long run.
        """
        job = self.describe(run)
        state = str(job.get("state", ""))
        if state not in TERMINAL:
            if not overdue:
                return None
            self.cancel(run)
            raise JobFailedError(
                f"EMR Serverless job run {run.job_run_id} (application {run.application_id}) was still {state} "
                f"after {timeout_s:g} s and was cancelled; raise timeout_s or the application's capacity"
            )
        status = self.read_status(run)
        details = str(job.get("stateDetails") or "")
        where = f"driver logs under {self.config.log_uri}" if self.config.log_uri else "no log_uri was configured"
        submission = Stage1Submission(
            application_id=str((status or {}).get("application_id") or run.job_run_id),
            exit_code=0 if state == "SUCCESS" else 1,
            status=status,
            log_tail=f"EMR Serverless job run {run.job_run_id}: {state}" + (f": {details}" if details else "")
            + f" ({where})",
            seconds=time.time() - run.submitted_at,
            command=("emr-serverless", "start-job-run", run.application_id, run.job_run_id, run.entry_point),
        )
        if submission.ok:
            return submission
        if status is None:
            raise JobFailedError(
                f"EMR Serverless job run {run.job_run_id} ended {state} without the status the driver writes at "
                f"{run.status_uri}" + (f": {details}" if details else "")
                + f"; the driver did not start or was killed ({where})"
            )
        raise _failure(submission, f"EMR Serverless application {run.application_id}")


def config_from_settings(settings: Settings, output_root: str) -> EmrServerlessConfig:
    """The configuration ``XPCOMPUTE_STAGE1_ENGINE=emr-serverless`` runs under (the ``XPCOMPUTE_EMR_*`` settings).

    The code prefix defaults to ``emr-code`` under the output root (the service's ``s3://`` object store).
    """
    missing = [f"XPCOMPUTE_{name.upper()}" for name in ("emr_application_id", "emr_execution_role_arn")
               if not getattr(settings, name)]
    if missing:
        raise InputError(f"XPCOMPUTE_STAGE1_ENGINE=emr-serverless needs {' and '.join(missing)}")
    if not output_root.startswith("s3://"):
        raise InputError(f"XPCOMPUTE_STAGE1_ENGINE=emr-serverless writes to S3 only: XPCOMPUTE_OBJECTS must be "
                         f"s3://bucket/prefix, got {output_root!r}")
    return EmrServerlessConfig(
        application_id=str(settings.emr_application_id), execution_role_arn=str(settings.emr_execution_role_arn),
        code_uri=settings.emr_code_uri or f"{output_root.rstrip('/')}/emr-code",
        python_archive=settings.emr_python_archive, log_uri=settings.emr_log_uri, region=settings.aws_region,
        endpoint_url=settings.emr_endpoint,
    )


def submit_stage1_emr_serverless(
    experiment: ExperimentSpec, output_root: str, config: EmrServerlessConfig, *, timeout_s: float = 3600.0,
    poll_s: float = 10.0, daily: bool | None = None, client: Any | None = None,
) -> Stage1Submission:
    """Run stage 1 on EMR Serverless and wait for it: ``submit_stage1``'s counterpart, same result, same errors."""
    runner = EmrServerlessStage1(config, client=client)
    return runner.wait(runner.submit(experiment, output_root, daily=daily), timeout_s=timeout_s, poll_s=poll_s)


__all__ = [
    "TERMINAL",
    "EmrJobRun",
    "EmrServerlessConfig",
    "EmrServerlessStage1",
    "config_from_settings",
    "spark_submit_parameters",
    "submit_stage1_emr_serverless",
]
