"""Service configuration, read from environment variables in one place.

Every function, the API and the embedded server build one ``Settings`` with
``Settings.from_env()``; nothing else reads ``os.environ`` for service
configuration. Defaults give the embedded default: SQLite state and a local
object store under ``.xpcompute/``, a local worker pool, no API key.

| variable | default | meaning |
|---|---|---|
| ``XPCOMPUTE_MODE`` | ``embedded`` | ``embedded`` (one machine: local pool, coordinator loop in the server) or ``serverless`` (functions on Lambda/OpenFaaS) |
| ``XPCOMPUTE_HOME`` | ``.xpcompute`` | folder for the embedded state database and object store |
| ``XPCOMPUTE_STATE`` | ``sqlite`` | state store: ``sqlite`` or ``dynamodb`` |
| ``XPCOMPUTE_SQLITE_PATH`` | ``$XPCOMPUTE_HOME/state.db`` | SQLite state file |
| ``XPCOMPUTE_DYNAMODB_TABLE`` | ``xpcompute-state`` | DynamoDB table name |
| ``XPCOMPUTE_DYNAMODB_ENDPOINT`` | unset (AWS) | DynamoDB endpoint, e.g. moto's ``http://127.0.0.1:5000`` |
| ``XPCOMPUTE_DYNAMODB_CREATE`` | ``0`` | ``1``: create the table if missing (emulators only) |
| ``XPCOMPUTE_OBJECTS`` | ``$XPCOMPUTE_HOME/objects`` | object store root: a folder, or ``s3://bucket/prefix`` |
| ``XPCOMPUTE_S3_ENDPOINT`` | unset (AWS) | S3 endpoint, e.g. moto's ``http://127.0.0.1:5000`` |
| ``AWS_REGION`` | ``us-east-1`` | region for every AWS client |
| ``XPCOMPUTE_DISPATCH`` | ``local`` | fan-out: ``local`` (worker processes), ``inline`` (in the caller), ``lambda``, ``sqs``, ``openfaas`` |
| ``XPCOMPUTE_WORKERS`` | CPU count | local pool: most worker processes |
| ``XPCOMPUTE_WORKER_IDLE_S`` | ``10`` | local pool: an idle worker exits after this many seconds |
| ``XPCOMPUTE_LAMBDA_ENDPOINT`` | unset (AWS) | Lambda endpoint, e.g. serverless-offline's ``http://127.0.0.1:3002`` |
| ``XPCOMPUTE_FUNCTION_PREFIX`` | ``xpcompute-dev-`` | deployed function names are ``PREFIX + slice/fit/coordinator`` |
| ``XPCOMPUTE_SQS_QUEUE_URL`` | unset | SQS queue the functions consume (``dispatch=sqs``) |
| ``XPCOMPUTE_SQS_ENDPOINT`` | unset (AWS) | SQS endpoint, e.g. moto's |
| ``XPCOMPUTE_OPENFAAS_URL`` | unset | OpenFaaS gateway, e.g. ``http://127.0.0.1:8080`` |
| ``XPCOMPUTE_CALLBACK_URL`` | unset | URL OpenFaaS calls back when an async function finishes |
| ``XPCOMPUTE_LEASE_S`` | ``120`` | a RUNNING job not finished within its lease is taken back and retried |
| ``XPCOMPUTE_STAGE1_LEASE_S`` | ``3600`` | the lease of a stage-1 job (it builds the whole analysis table, so it runs far longer than a slice or a fit) |
| ``XPCOMPUTE_MAX_ATTEMPTS`` | ``3`` | attempts per job before it is FAILED |
| ``XPCOMPUTE_BACKOFF_S`` | ``0.5`` | first retry delay; doubles per attempt |
| ``XPCOMPUTE_BACKOFF_MAX_S`` | ``30`` | longest retry delay |
| ``XPCOMPUTE_TRANSIENT_RETRIES`` | ``6`` | extra attempts for a job whose attempt failed on the object or state store (an outage), beyond ``MAX_ATTEMPTS``: with the doubling backoff, about 90 s of outage is ridden out |
| ``XPCOMPUTE_REDISPATCH_S`` | ``60`` | a dispatched job nobody claimed within this is dispatched again; each re-send of it waits twice as long (at most 32x) |
| ``XPCOMPUTE_LOOK_WAIT_S`` | ``3600`` | sequential inference: how long an analysis whose jobs are done waits to finalize for the look of an earlier-created analysis of its experiment that is still running; past it, that look is marked skipped |
| ``XPCOMPUTE_TICK_S`` | ``0.5`` | embedded coordinator loop period (reclaim, retry, dispatch) |
| ``XPCOMPUTE_SLICE_ENGINE`` | ``cube`` | stage-2 engine for slice jobs: ``cube`` (the embedded default: the first slices by DuckDB SQL straight from the table, then one C++ group-by by every dimension per analysis and each slice re-aggregated from it), ``duckdb``, ``spark``, ``trino`` (pipeline SQL per slice) or ``arrow`` (in-process Arrow filter + C++ group-by) |
| ``XPCOMPUTE_SEGMENTS`` | ``true`` | segment discovery when an analysis of a registered, randomized experiment with dimensions is finalized (the scorecard's ``segments`` section; it builds the segment cube, about 12 s at 10M users on 2 cores); ``false`` leaves the section out (``GET /analyses/{id}/segments`` still answers) |
| ``XPCOMPUTE_STAGE1_ENGINE`` | ``duckdb`` | stage 1: ``duckdb`` (embedded), ``spark`` (a Spark session in this process), ``spark-submit`` (a Spark application submitted to ``XPCOMPUTE_SPARK_MASTER`` and followed to completion; EMR on EC2 and Databricks too, see infra/README.md) or ``emr-serverless`` (the same application started with EMR Serverless ``StartJobRun``; needs an ``s3://`` ``XPCOMPUTE_OBJECTS`` and the ``XPCOMPUTE_EMR_*`` settings) |
| ``XPCOMPUTE_SPARK_MASTER`` | ``local[*]`` | Spark master for the in-process session and for ``spark-submit``, e.g. ``local[2]``, ``spark://127.0.0.1:7077``, ``yarn`` |
| ``XPCOMPUTE_EMR_APPLICATION_ID`` | unset | ``emr-serverless``: the Spark application (``aws emr-serverless create-application --type SPARK``) |
| ``XPCOMPUTE_EMR_EXECUTION_ROLE_ARN`` | unset | ``emr-serverless``: the job role (S3 read on the raw tables and the code prefix, write on the objects root) |
| ``XPCOMPUTE_EMR_CODE_URI`` | ``$XPCOMPUTE_OBJECTS/emr-code`` | ``emr-serverless``: ``s3://`` prefix for the driver, the specs and the run statuses |
| ``XPCOMPUTE_EMR_PYTHON_ARCHIVE`` | unset | ``emr-serverless``: ``s3://.../xpcompute-env.tar.gz`` (``venv-pack`` of an environment with ``xpcompute[spark]``) |
| ``XPCOMPUTE_EMR_LOG_URI`` | unset | ``emr-serverless``: ``s3://`` prefix for the driver's logs |
| ``XPCOMPUTE_EMR_ENDPOINT`` | unset (AWS) | ``emr-serverless``: EMR Serverless (and its S3) endpoint, e.g. moto's |
| ``XPCOMPUTE_EMR_POLL_S`` | ``10`` | ``emr-serverless``: seconds between ``GetJobRun`` polls; the run is cancelled past ``XPCOMPUTE_STAGE1_LEASE_S`` |
| ``XPCOMPUTE_AUTH`` | ``auto`` | API key check: ``on``, ``off``, or ``auto`` (off in embedded mode, on otherwise) |
| ``XPCOMPUTE_API_KEYS`` | unset | comma-separated accepted API keys |
| ``XPCOMPUTE_API_KEY_HEADER`` | ``X-API-Key`` | header that carries the key |
| ``XPCOMPUTE_MAX_BODY_BYTES`` | ``1048576`` | largest accepted request body |
| ``XPCOMPUTE_JOB_TIMEOUT_S`` | ``110`` | local pool: a slice or fit job running longer is killed (its worker terminated and replaced) and recorded as a failed attempt; stage-1 jobs are bounded by ``XPCOMPUTE_STAGE1_LEASE_S``. Below the lease, so a hung job is stopped before it is leased again |
| ``XPCOMPUTE_SHUTDOWN_GRACE_S`` | ``10`` | on shutdown, running jobs get this long before their workers are terminated (then killed); jobs left RUNNING are reclaimed by the next start |
| ``XPCOMPUTE_MAX_CELLS`` | ``20`` | an analysis whose treatment column has more distinct values is refused before any job exists (a unit id as treatment makes one cell per unit) |
| ``XPCOMPUTE_MAX_SEGMENTS`` | ``50`` | a ``cate`` segment column with more distinct values is refused |
| ``XPCOMPUTE_MAX_METRICS`` | ``100`` | metrics per analysis request (422 above it) |
| ``XPCOMPUTE_MAX_SLICES`` | ``500`` | slices per analysis request (422 above it) |
| ``XPCOMPUTE_MAX_JOBS`` | ``20000`` | jobs per analysis, live slices included (422 above it) |
| ``XPCOMPUTE_MAX_ANALYSES_PER_KEY`` | ``20`` | with API keys on: analyses one key may have running at once, across every server process sharing the state store (429 above it) |
| ``XPCOMPUTE_RATE_PER_KEY`` | ``1200`` | with API keys on: requests per minute per key over a sliding minute, counted in the state store so every server process sharing it enforces one limit (429 above it) |
| ``XPCOMPUTE_SESSION_TTL_S`` | ``3600`` | with API keys on: lifetime of the browser session ``POST /login`` gives for a key (an HttpOnly, SameSite=Strict cookie, ``Secure`` over https; ``api/session.py``) |
| ``XPCOMPUTE_SESSION_SECRET`` | derived from the keys | signs session cookies and CSRF tokens; unset, a secret derived from ``XPCOMPUTE_API_KEYS`` (the same in every process with the same keys; changing the keys ends every session) |
| ``XPCOMPUTE_TABLE_ALLOW`` | unset | comma-separated key prefixes a request's ``table`` may name besides its own experiment's ``{experiment}/...`` |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from xpcompute.errors import InputError

Mode = Literal["embedded", "serverless"]
StateKind = Literal["sqlite", "dynamodb"]
DispatchKind = Literal["local", "inline", "lambda", "sqs", "openfaas"]
EngineKind = Literal["duckdb", "spark", "trino", "arrow", "cube"]
Stage1EngineKind = Literal["duckdb", "spark", "spark-submit", "emr-serverless"]
AuthMode = Literal["on", "off", "auto"]

_PREFIX = "XPCOMPUTE_"


class Settings(BaseModel):
    """Validated service settings; see the module docstring for each variable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Mode = "embedded"
    home: Path = Path(".xpcompute")
    state: StateKind = "sqlite"
    sqlite_path: Path | None = None
    dynamodb_table: str = "xpcompute-state"
    dynamodb_endpoint: str | None = None
    dynamodb_create: bool = False
    objects: str | None = None
    s3_endpoint: str | None = None
    aws_region: str = "us-east-1"
    dispatch: DispatchKind = "local"
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=512)
    worker_idle_s: float = Field(default=10.0, gt=0)
    lambda_endpoint: str | None = None
    function_prefix: str = "xpcompute-dev-"
    sqs_queue_url: str | None = None
    sqs_endpoint: str | None = None
    openfaas_url: str | None = None
    callback_url: str | None = None
    lease_s: float = Field(default=120.0, gt=0)
    stage1_lease_s: float = Field(default=3600.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    transient_retries: int = Field(default=6, ge=0, le=100)
    redispatch_s: float = Field(default=60.0, gt=0)
    look_wait_s: float = Field(default=3600.0, gt=0)
    tick_s: float = Field(default=0.5, gt=0)
    slice_engine: EngineKind = "cube"
    segments: bool = True
    stage1_engine: Stage1EngineKind = "duckdb"
    spark_master: str = "local[*]"
    emr_application_id: str | None = None
    emr_execution_role_arn: str | None = None
    emr_code_uri: str | None = None
    emr_python_archive: str | None = None
    emr_log_uri: str | None = None
    emr_endpoint: str | None = None
    emr_poll_s: float = Field(default=10.0, ge=0)
    auth: AuthMode = "auto"
    api_keys: tuple[str, ...] = ()
    api_key_header: str = "X-API-Key"
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    job_timeout_s: float = Field(default=110.0, gt=0)
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    max_cells: int = Field(default=20, ge=2)
    max_segments: int = Field(default=50, ge=1)
    max_metrics: int = Field(default=100, ge=1)
    max_slices: int = Field(default=500, ge=1)
    max_jobs: int = Field(default=20_000, ge=1)
    max_analyses_per_key: int = Field(default=20, ge=1)
    rate_per_key: int = Field(default=1200, ge=1)
    session_ttl_s: float = Field(default=3600.0, ge=60, le=7 * 86400)
    session_secret: str | None = Field(default=None, repr=False)
    table_allow: tuple[str, ...] = ()

    @field_validator("api_keys", "table_allow", mode="before")
    @classmethod
    def _keys(cls, v: object) -> object:
        if isinstance(v, str):
            return tuple(k.strip() for k in v.split(",") if k.strip())
        return v

    @property
    def state_path(self) -> Path:
        return self.sqlite_path or self.home / "state.db"

    @property
    def objects_root(self) -> str:
        return self.objects or str(self.home / "objects")

    @property
    def auth_enabled(self) -> bool:
        return self.auth == "on" or (self.auth == "auto" and self.mode != "embedded")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from ``XPCOMPUTE_*`` variables (plus ``AWS_REGION``); ``overrides`` win."""
        env = os.environ if environ is None else environ
        raw: dict[str, object] = {}
        for name in cls.model_fields:
            value = env.get(_PREFIX + name.upper())
            if value is not None and value != "":
                raw[name] = value
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if region and "aws_region" not in raw:
            raw["aws_region"] = region
        raw.update(overrides)
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{_PREFIX}{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
            )
            raise InputError(f"invalid configuration: {problems}") from exc
