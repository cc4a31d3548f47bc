"""The jobs that build tables: stage 1 (the experiment's analysis table) and a slice (its compressed tables).

``worker.run_job`` runs them; they live apart from the fit so that the fit function, which runs neither,
does not import the slicing engine (DuckDB/Arrow slicing, n-tile and panel compression, Parquet scans).
The slice function's handler imports this module at start, so its first job does not pay for it either.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, NoReturn

from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.jobs import Job, JobState
from xpcompute.coordinator.ledger import Deferred, JobLedger
from xpcompute.coordinator.planner import compression_of, fit_specs
from xpcompute.coordinator.slicing import (
    SliceTask,
    cell_counts,
    compute_artifacts,
    compute_slice,
    moments_specs,
)
from xpcompute.coordinator.stored import encode_derived
from xpcompute.errors import InputError, NotFoundError
from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.pipeline.tables import PublishedTable
from xpcompute.storage import keys

if TYPE_CHECKING:  # boto3 loads with it: only the EMR Serverless route imports it
    from xpcompute.pipeline.emr_serverless import EmrServerlessStage1


def run_slice(
    coordinator: JobLedger, settings: Settings, job: Job, replace_key: str | None = None
) -> dict[str, object]:
    """Stage 2 for one slice: compress it and store the compressed tables its fits read.

    The moments table goes to the job's ``result_key``; metrics with rank or
    quantile fits get an n-tile table and metrics with ``dte`` fits a user-by-day
    panel, each at ``keys.analysis_distribution``. Every write is put-if-absent at
    a key fixed by the job, so a repeated delivery stores nothing new. A data
    problem with one metric's extra table is recorded in the output
    (``artifact_errors``) and fails only the fits that read it.

    ``replace_key``: the one object to write over (it was found damaged; see ``heal_input``).
    """

    def put(key: str, data: bytes) -> None:
        if key == replace_key:
            coordinator.store.put_bytes(key, data)
        else:
            coordinator.store.put_if_absent(key, data)

    analysis = coordinator.state.get_analysis(job.analysis_id)
    spec = AnalysisSpec.model_validate(analysis.request)
    experiment = coordinator.experiment_of(analysis)
    specs = fit_specs(spec, experiment)
    table_key = spec.table or keys.analysis_table(analysis.experiment_id)
    if experiment is not None and spec.table is None:
        _check_table_version(coordinator, table_key, experiment, analysis.experiment_version)
    task = SliceTask(
        experiment_id=analysis.experiment_id,
        table_prefix=table_key,
        slice=SliceFilter.model_validate(job.slice),
        specs=moments_specs(specs, spec.metrics),
        treatment=spec.treatment,
        experiment=experiment,
        engine=spec.engine or settings.slice_engine,
    )
    compressed = compute_slice(task, coordinator.store, job.analysis_id)
    # moments from the cube: the distribution tables may come from cubes too (see compute_artifacts)
    cube_rows = compressed.layout.n_rows if compressed.layout.extra.get("cube") else None
    artifacts: dict[str, str] = {}
    errors: dict[str, str] = {}
    sources = {"distribution": table_key, "panel": keys.user_day_table(analysis.experiment_id)}
    for layout, source in sources.items():
        tables, failed = compute_artifacts(task, coordinator.store, specs, layout, source, job.analysis_id, cube_rows)
        for metric, table in tables.items():
            key = keys.analysis_distribution(job.analysis_id, job.slice_id, metric, layout)
            put(key, encode_derived(table))
            artifacts[f"{metric}.{layout}"] = key
        errors.update({f"{metric}.{layout}": reason for metric, reason in failed.items()})
    if any(compression_of(s.model) == "events" for s in specs):  # event-level quantiles (pipeline/events.py)
        from xpcompute.pipeline.events import event_artifacts

        tables, failed = event_artifacts(experiment, coordinator.store, specs, task.slice)
        for metric, table in tables.items():
            key = keys.analysis_distribution(job.analysis_id, job.slice_id, metric, "events")
            put(key, encode_derived(table))
            artifacts[f"{metric}.events"] = key
        errors.update({f"{metric}.events": reason for metric, reason in failed.items()})
    if task.slice.is_everyone:  # the segment cube finalize reads (segments/service.py): built here, not there
        from xpcompute.segments.service import prebuild_cube

        reason = prebuild_cube(coordinator, analysis, spec, experiment)
        if reason is not None:
            errors["segments.cube"] = reason
    assert job.result_key is not None
    put(job.result_key, encode_derived(compressed))
    output: dict[str, object] = {
        "cell_counts": cell_counts(compressed, spec.treatment),
        "groups": compressed.n_groups,
        "rows": compressed.layout.n_rows,
    }
    if artifacts:
        output["artifacts"] = artifacts
    if errors:
        output["artifact_errors"] = errors
    return output


#: How often a stage-1 job waiting for another one's build looks again (seconds).
STAGE1_POLL_S = 1.0


def run_stage1_job(coordinator: JobLedger, settings: Settings, job: Job) -> dict[str, object]:
    """Stage 1 for the experiment version the analysis was planned from: sources -> the published analysis table.

    The engine is ``XPCOMPUTE_STAGE1_ENGINE``: DuckDB in this process (the
    default), a Spark session, a Spark application (``spark-submit``), or the
    same application as an EMR Serverless job run (``emr-serverless``). The
    table's manifest holds the spec it was built from, which is what later
    analyses compare (``Coordinator.stage1_reason``).

    One build per experiment at a time: the job holds a claim object
    (put-if-absent) while it builds, because two builds publishing the same
    table would each collect the other's files from under its readers. A job
    that finds the claim taken waits for it, then uses the table the other
    job published when it was built from the same spec content after this
    analysis was created (a refresh included).
    """
    analysis = coordinator.state.get_analysis(job.analysis_id)
    experiment = coordinator.experiment_of(analysis)
    if experiment is None:
        raise InputError(f"analysis {analysis.analysis_id} has no registered experiment version to build stage 1 "
                         f"from; PUT /experiments/{analysis.experiment_id} and submit a new analysis")
    from xpcompute.coordinator.ledger import spec_hash

    digest = spec_hash(experiment)
    out: dict[str, object] = {"experiment_version": analysis.experiment_version, "spec_hash": digest,
                              "engine": settings.stage1_engine}
    claim = keys.stage1_claim(experiment.id)
    on_emr = settings.stage1_engine == "emr-serverless"
    # a function does not wait out another job's build (it would outlive its timeout): it defers and looks again
    waits_by_deferring = on_emr or settings.mode == "serverless"
    _take_claim(coordinator, claim, job, settings.stage1_lease_s,
                defer_s=max(settings.emr_poll_s, STAGE1_POLL_S) if waits_by_deferring else None)
    keep_claim = False
    try:
        if isinstance(job.output.get("emr_run"), dict):  # an earlier delivery started the run: look at it
            return _follow_emr_run(settings, coordinator, job, out)
        reused = _current_table(coordinator, experiment.id, digest, analysis.created_at)
        if reused is not None:
            return {**out, "rows": reused.num_rows, "run": reused.run_id, "reused": True}
        if settings.stage1_engine == "duckdb":
            from xpcompute.pipeline.stage1 import run_stage1

            table = run_stage1(experiment, coordinator.store, engine="duckdb").analysis
        elif on_emr:
            _start_emr_run(settings, coordinator, experiment, out)
        else:
            from xpcompute.pipeline.spark_submit import run_stage1_configured

            table = run_stage1_configured(experiment, coordinator.store.uri, settings)
    except Deferred:
        keep_claim = True  # the build goes on elsewhere: the claim stays this job's until it ends
        raise
    finally:
        if not keep_claim:
            coordinator.store.delete(claim)
    return {**out, "rows": table.num_rows, "run": table.run_id, "reused": False}


def _start_emr_run(settings: Settings, coordinator: JobLedger, experiment: ExperimentSpec,
                   out: dict[str, object]) -> NoReturn:
    """Start stage 1 as an EMR Serverless job run and defer: the job follows the run one look per delivery.

    Why not wait for it here: a run takes up to ``XPCOMPUTE_STAGE1_LEASE_S`` (an hour), a Lambda function at most
    15 minutes (the slice function's timeout is 5). The run's identity goes into the job's output, which the next
    delivery reads (``_follow_emr_run``).
    """
    from dataclasses import asdict

    run = _emr_runner(settings, coordinator).submit(experiment, coordinator.store.uri)
    raise Deferred(settings.emr_poll_s, {**out, "emr_run": asdict(run)},
                   f"stage 1 of {experiment.id} started as EMR Serverless job run {run.job_run_id}")


def _emr_runner(settings: Settings, coordinator: JobLedger) -> EmrServerlessStage1:
    """The EMR Serverless adapter for the ``XPCOMPUTE_EMR_*`` settings, writing under the service's object store."""
    from xpcompute.pipeline.emr_serverless import EmrServerlessStage1, config_from_settings

    return EmrServerlessStage1(config_from_settings(settings, coordinator.store.uri))


def _follow_emr_run(settings: Settings, coordinator: JobLedger, job: Job, out: dict[str, object]) -> dict[str, object]:
    """One look at the run an earlier delivery started: defer while it runs, the table once it succeeded, a typed
    error (the job fails or retries as any other) once it failed or outlived ``XPCOMPUTE_STAGE1_LEASE_S``."""
    from xpcompute.pipeline.emr_serverless import EmrJobRun
    from xpcompute.pipeline.tables import open_table
    from xpcompute.storage.objects import split_uri

    recorded = job.output["emr_run"]
    assert isinstance(recorded, dict)
    run = EmrJobRun(**recorded)
    runner = _emr_runner(settings, coordinator)
    overdue = time.time() - run.submitted_at > settings.stage1_lease_s
    submission = runner.poll(run, overdue=overdue, timeout_s=settings.stage1_lease_s)
    if submission is None:
        raise Deferred(settings.emr_poll_s, dict(job.output), f"EMR Serverless job run {run.job_run_id} still runs")
    store, key = split_uri(submission.table_uri("analysis"), endpoint_url=settings.s3_endpoint or runner.config.endpoint_url)
    table = open_table(key, store)
    return {**out, "rows": table.num_rows, "run": table.run_id, "reused": False, "emr_job_run": run.job_run_id,
            "seconds": round(submission.seconds, 1)}


def _take_claim(coordinator: JobLedger, claim: str, job: Job, stale_s: float, defer_s: float | None = None) -> None:
    """Create the claim object, waiting while another live job holds it (or, with ``defer_s``, deferring: a build
    on EMR Serverless can hold it for an hour, longer than a function may wait).

    A claim is dead when its holder's job is no longer RUNNING under a live
    lease (it finished, failed, or its worker died and the lease ran out) nor
    deferred while its EMR Serverless run goes on, when it is this job's own
    from an earlier attempt, or, for a holder the state store does not know,
    when it is older than ``stale_s``.
    """
    body = json.dumps({"job_id": job.job_id, "started_at": time.time()}).encode()
    while not coordinator.store.put_if_absent(claim, body):
        try:
            held = json.loads(coordinator.store.get_bytes(claim))
        except NotFoundError:
            continue
        except ValueError:
            held = {}
        if not _claim_alive(coordinator, held, job, stale_s):
            coordinator.store.delete(claim)
            continue
        if defer_s is not None:
            raise Deferred(defer_s, dict(job.output), f"waiting for the stage-1 build of job {held.get('job_id')}")
        time.sleep(STAGE1_POLL_S)


def _claim_alive(coordinator: JobLedger, held: dict[str, object], job: Job, stale_s: float) -> bool:
    holder_id = str(held.get("job_id") or "")
    if holder_id == job.job_id:
        return False
    try:
        holder = coordinator.state.get_job(holder_id)
    except NotFoundError:
        started = held.get("started_at")
        return isinstance(started, int | float) and time.time() - float(started) <= stale_s
    if holder.state == JobState.PENDING and isinstance(holder.output.get("emr_run"), dict):  # deferred, following
        submitted = holder.output["emr_run"].get("submitted_at")  # its run (``_follow_emr_run``)
        return isinstance(submitted, int | float) and time.time() - float(submitted) <= stale_s
    return holder.state == JobState.RUNNING and (holder.lease_expires_at or 0.0) > coordinator.clock()


def _current_table(coordinator: JobLedger, experiment_id: str, digest: str, since: float) -> PublishedTable | None:
    """The published analysis table if it was built from spec content ``digest`` after ``since`` (Unix seconds)."""
    from datetime import datetime

    from xpcompute.coordinator.ledger import table_spec_hash
    from xpcompute.pipeline.tables import open_table

    try:
        table = open_table(keys.analysis_table(experiment_id), coordinator.store)
    except NotFoundError:
        return None
    try:
        built_at = datetime.fromisoformat(str(table.manifest.get("created_at"))).timestamp()
    except ValueError:
        return None
    return table if table_spec_hash(table.manifest) == digest and built_at >= since else None


def _check_table_version(
    coordinator: JobLedger, table_key: str, experiment: ExperimentSpec, version: int | None
) -> None:
    """Refuse to slice a table built from another version of the spec than the analysis was planned from.

    Why: the experiment's table has one key; if a later registration's
    analysis rebuilt it while this one was queued, its slices would silently
    mix two definitions of the metrics (or windows). Failing says so instead.
    """
    from xpcompute.coordinator.ledger import spec_hash, table_spec_hash
    from xpcompute.pipeline.tables import open_table

    manifest = open_table(table_key, coordinator.store).manifest
    if table_spec_hash(manifest) != spec_hash(experiment):
        raise InputError(
            f"the analysis table of experiment {experiment.id!r} was rebuilt from another version of its spec after "
            f"this analysis (version {version}) was planned; submit a new analysis to analyse the current table"
        )
