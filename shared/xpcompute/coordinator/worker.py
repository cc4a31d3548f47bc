"""Run one job: the shared worker code behind the slice and fit functions and the local pool.

A job is stage 1 (build the analysis table), a slice (stage 2: compress one
slice) or a fit (one model, one metric, one slice).

``run_job`` leases the job, does the work, writes the result object at the
job's fixed key with a put-if-absent (a second run never writes a second
result), then completes the job; any exception becomes a recorded
failure. Data problems (``InputError``: a missing column, an empty slice, a
metric with no variance) fail at once, since retrying cannot fix them;
anything else (the object store down, a crash) is retried with backoff.

Compressed slices and cubes are derived from the analysis table, so a damaged
one (its bytes do not decode) is recomputed once by the job that finds it,
written over the damaged bytes, logged, and listed in the job's output
(``healed``), instead of failing every fit that reads it.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import dataclass
from typing import Literal

from xpcompute.compression.schema import CompressedTable
from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.jobs import Job, JobKind, JobState
from xpcompute.coordinator.lru import LRU
from xpcompute.coordinator.planner import compression_of, fit_input, fit_specs
from xpcompute.coordinator.repair import store_result
from xpcompute.coordinator.service import Coordinator
from xpcompute.coordinator.slicing import (
    SliceTask,
    cell_counts,
    compute_artifacts,
    compute_slice,
    decode_derived,
    encode_derived,
    moments_specs,
    note_healed,
    take_healed,
)
from xpcompute.errors import CorruptObjectError, InputError, NotFoundError, StorageError, XPError
from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.pipeline.tables import PublishedTable
from xpcompute.spec import FitSpec
from xpcompute.storage import keys

Status = Literal["succeeded", "retrying", "failed", "skipped", "lost"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What one delivery of a job did. ``skipped``: not claimable (a duplicate); ``lost``: the lease was taken back."""

    job_id: str
    analysis_id: str
    status: Status
    error: str | None = None


def describe(exc: BaseException) -> str:
    """A failure reason worth keeping: the error type and message, and where it came from when unexpected."""
    text = f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, XPError):
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            last = frames[-1]
            text += f" (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name})"
    return text[:2000]


def run_slice(
    coordinator: Coordinator, settings: Settings, job: Job, replace_key: str | None = None
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


def run_stage1_job(coordinator: Coordinator, settings: Settings, job: Job) -> dict[str, object]:
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
    from xpcompute.coordinator.service import spec_hash

    digest = spec_hash(experiment)
    out: dict[str, object] = {"experiment_version": analysis.experiment_version, "spec_hash": digest,
                              "engine": settings.stage1_engine}
    claim = keys.stage1_claim(experiment.id)
    _take_claim(coordinator, claim, job, settings.stage1_lease_s)
    try:
        reused = _current_table(coordinator, experiment.id, digest, analysis.created_at)
        if reused is not None:
            return {**out, "rows": reused.num_rows, "run": reused.run_id, "reused": True}
        if settings.stage1_engine == "duckdb":
            from xpcompute.pipeline.stage1 import run_stage1

            table = run_stage1(experiment, coordinator.store, engine="duckdb").analysis
        else:
            from xpcompute.pipeline.spark_submit import run_stage1_configured

            table = run_stage1_configured(experiment, coordinator.store.uri, settings)
    finally:
        coordinator.store.delete(claim)
    return {**out, "rows": table.num_rows, "run": table.run_id, "reused": False}


def _take_claim(coordinator: Coordinator, claim: str, job: Job, stale_s: float) -> None:
    """Create the claim object, waiting while another live job holds it.

    A claim is dead when its holder's job is no longer RUNNING under a live
    lease (it finished, failed, or its worker died and the lease ran out), when
    it is this job's own from an earlier attempt, or, for a holder the state
    store does not know, when it is older than ``stale_s``.
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
        time.sleep(STAGE1_POLL_S)


def _claim_alive(coordinator: Coordinator, held: dict[str, object], job: Job, stale_s: float) -> bool:
    holder_id = str(held.get("job_id") or "")
    if holder_id == job.job_id:
        return False
    try:
        holder = coordinator.state.get_job(holder_id)
    except NotFoundError:
        started = held.get("started_at")
        return isinstance(started, int | float) and time.time() - float(started) <= stale_s
    return holder.state == JobState.RUNNING and (holder.lease_expires_at or 0.0) > coordinator.clock()


def _current_table(coordinator: Coordinator, experiment_id: str, digest: str, since: float) -> PublishedTable | None:
    """The published analysis table if it was built from spec content ``digest`` after ``since`` (Unix seconds)."""
    from datetime import datetime

    from xpcompute.coordinator.service import table_spec_hash
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
    coordinator: Coordinator, table_key: str, experiment: ExperimentSpec, version: int | None
) -> None:
    """Refuse to slice a table built from another version of the spec than the analysis was planned from.

    Why: the experiment's table has one key; if a later registration's
    analysis rebuilt it while this one was queued, its slices would silently
    mix two definitions of the metrics (or windows). Failing says so instead.
    """
    from xpcompute.coordinator.service import spec_hash, table_spec_hash
    from xpcompute.pipeline.tables import open_table

    manifest = open_table(table_key, coordinator.store).manifest
    if table_spec_hash(manifest) != spec_hash(experiment):
        raise InputError(
            f"the analysis table of experiment {experiment.id!r} was rebuilt from another version of its spec after "
            f"this analysis (version {version}) was planned; submit a new analysis to analyse the current table"
        )


def fit_input_key(job: Job) -> tuple[str, str]:
    """The compressed table a fit job reads, by its model's layout: (layout, key)."""
    assert job.model is not None and job.metric is not None
    return fit_input(job.analysis_id, job.slice_id, job.metric, job.model)


#: compressed slices this (warm) worker decoded last, by object key. A slice's fit jobs run back to back and
#: all read the same moments table (decoding a 20-metric table costs more than most fits); an object at its
#: key is written once (put-if-absent) and never changes, so a copy cannot go stale.
_DECODED: LRU[str, CompressedTable] = LRU(8)


def run_fit(coordinator: Coordinator, job: Job, settings: Settings | None = None) -> dict[str, object]:
    """Read ("decompress") the slice's table for the model, fit one model to one metric, store the records.

    A damaged compressed table is recomputed once (``heal_input``; needs ``settings``) before the fit.
    """
    from xpcompute.models import fit_compressed

    layout, key = fit_input_key(job)
    compressed = _DECODED.get(key)
    if compressed is None:
        try:
            decoded = decode_derived(coordinator.store, key)
        except NotFoundError:
            reason = _artifact_error(coordinator, job, layout)
            if reason is None:
                raise
            raise InputError(f"the {layout} table of metric {job.metric!r} in slice {job.slice_label!r} "
                             f"could not be built: {reason}") from None
        except CorruptObjectError as exc:
            if settings is None:
                raise
            decoded = heal_input(coordinator, settings, job, key, exc)
        compressed = _DECODED.put(key, decoded)
    spec = FitSpec.model_validate(job.spec)
    records = [r.model_copy(update={"slice": job.slice_label}) for r in fit_compressed(compressed, spec)]
    assert job.result_key is not None
    body = json.dumps([r.to_json_dict() for r in records], sort_keys=True).encode()
    store_result(coordinator.store, job.result_key, body)  # a damaged object there is replaced (repair.py)
    return {"records": len(records), "input": layout}


def heal_input(
    coordinator: Coordinator, settings: Settings, job: Job, key: str, damage: CorruptObjectError
) -> CompressedTable:
    """Recompute a fit's damaged input by re-running its slice's computation, once, writing over ``key``.

    The compressed slice (and its n-tile/panel tables) is a pure function of the analysis table and the
    request, so recomputing it gives the bytes that should have been there. A second failure to decode is
    raised, not retried here.
    """
    if job.depends_on is None:
        raise damage
    log.warning("%s; recomputing it from the analysis table (fit %s)", damage, job.job_id)
    parent = coordinator.state.get_job(job.depends_on)
    run_slice(coordinator, settings, parent, replace_key=key)
    note_healed(key)
    return decode_derived(coordinator.store, key)


def _artifact_error(coordinator: Coordinator, job: Job, layout: str) -> str | None:
    """Why the slice job left this fit's table out (its recorded ``artifact_errors``), if it did."""
    if layout == "moments" or job.depends_on is None:
        return None
    try:
        parent = coordinator.state.get_job(job.depends_on)
    except NotFoundError:
        return None
    errors = parent.output.get("artifact_errors") or {}
    reason = errors.get(f"{job.metric}.{layout}") if isinstance(errors, dict) else None
    return None if reason is None else str(reason)


def run_job(coordinator: Coordinator, settings: Settings, job_id: str, worker: str) -> Outcome:
    """Lease, run, store, complete. Safe to call for the same job any number of times, concurrently."""
    job = coordinator.claim(job_id, worker)
    if job is None:
        analysis_id = job_id.split(".", 1)[0]
        return Outcome(job_id, analysis_id, "skipped")
    take_healed()  # nothing left over from an earlier job of this thread
    try:
        if job.kind == JobKind.STAGE1:
            output = run_stage1_job(coordinator, settings, job)
        elif job.kind == JobKind.SLICE:
            output = run_slice(coordinator, settings, job)
        else:
            output = run_fit(coordinator, job, settings)
        healed = take_healed()
        if healed:
            log.warning("job %s recomputed damaged stored object(s): %s", job.job_id, ", ".join(healed))
            output = {**output, "healed": healed}
    except Exception as exc:
        error = describe(exc)
        new = coordinator.fail(job, error, retryable=not isinstance(exc, InputError),
                               transient=isinstance(exc, StorageError))
        if new is None:
            return Outcome(job.job_id, job.analysis_id, "lost", error)
        status: Status = "failed" if new.state == JobState.FAILED else "retrying"
        return Outcome(job.job_id, job.analysis_id, status, error)
    if not coordinator.complete(job, output):
        return Outcome(job.job_id, job.analysis_id, "lost")
    return Outcome(job.job_id, job.analysis_id, "succeeded")
