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

Stage 1 and slice jobs are in ``table_jobs`` and imported when one runs (the
slice function's handler imports them at start); a fit needs only the job
ledger, the stored tables (``stored``) and the models.
"""

from __future__ import annotations

import importlib
import json
import logging
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from xpcompute.config import Settings
from xpcompute.coordinator.jobs import Job, JobKind, JobState
from xpcompute.coordinator.ledger import Deferred, JobLedger
from xpcompute.coordinator.lru import LRU
from xpcompute.coordinator.stored import decode_derived, fit_input, note_healed, store_result, take_healed
from xpcompute.errors import CorruptObjectError, InputError, NotFoundError, StorageError, XPError
from xpcompute.spec import FitSpec

if TYPE_CHECKING:  # the API imports this module (through the runtime) and decodes nothing
    from xpcompute.compression.schema import CompressedTable

Status = Literal["succeeded", "retrying", "failed", "skipped", "lost", "deferred"]
log = logging.getLogger(__name__)

#: what each function's work runs, beyond this module: its handler loads them in the init phase (``preload``), so
#: a new execution environment's first job does not pay for them, and nothing else is loaded there
FUNCTION_MODULES = {
    "fit": ("xpcompute.models",),
    "slice": ("xpcompute.coordinator.table_jobs",),
    "coordinator": ("xpcompute.coordinator.service",),
}


def preload(function: str) -> None:
    """Import the modules ``function`` (fit, slice, coordinator) runs (``FUNCTION_MODULES``)."""
    for name in FUNCTION_MODULES[function]:
        importlib.import_module(name)


@dataclass(frozen=True)
class Outcome:
    """What one delivery of a job did. ``skipped``: not claimable (a duplicate); ``lost``: the lease was taken back;
    ``deferred``: its work is running elsewhere and the job is due again later (``ledger.Deferred``)."""

    job_id: str
    analysis_id: str
    status: Status
    error: str | None = None

    @property
    def reported(self) -> bool:
        """Whether the coordinator hears of it (``JobFinished``): not for a duplicate, nor while deferred."""
        return self.status not in ("skipped", "deferred")


def describe(exc: BaseException) -> str:
    """A failure reason worth keeping: the error type and message, and where it came from when unexpected."""
    text = f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, XPError):
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            last = frames[-1]
            text += f" (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name})"
    return text[:2000]


def fit_input_key(job: Job) -> tuple[str, str]:
    """The compressed table a fit job reads, by its model's layout: (layout, key)."""
    assert job.model is not None and job.metric is not None
    return fit_input(job.analysis_id, job.slice_id, job.metric, job.model)


#: compressed slices this (warm) worker decoded last, by (store, object key). A slice's fit jobs run back to back and
#: all read the same moments table (decoding a 20-metric table costs more than most fits); an object at its
#: key is written once (put-if-absent) and never changes, so a copy cannot go stale.
_DECODED: LRU[tuple[str, str], CompressedTable] = LRU(8)


def run_fit(coordinator: JobLedger, job: Job, settings: Settings | None = None) -> dict[str, object]:
    """Read ("decompress") the slice's table for the model, fit one model to one metric, store the records.

    A damaged compressed table is recomputed once (``heal_input``; needs ``settings``) before the fit.
    """
    from xpcompute.models import fit_compressed

    layout, key = fit_input_key(job)
    cached = (coordinator.store.uri, key)  # the store's too: one process may serve several (tests, a notebook)
    compressed = _DECODED.get(cached)
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
        compressed = _DECODED.put(cached, decoded)
    spec = FitSpec.model_validate(job.spec)
    records = [r.model_copy(update={"slice": job.slice_label}) for r in fit_compressed(compressed, spec)]
    assert job.result_key is not None
    body = json.dumps([r.to_json_dict() for r in records], sort_keys=True).encode()
    store_result(coordinator.store, job.result_key, body)  # a damaged object there is replaced (repair.py)
    return {"records": len(records), "input": layout}


def heal_input(
    coordinator: JobLedger, settings: Settings, job: Job, key: str, damage: CorruptObjectError
) -> CompressedTable:
    """Recompute a fit's damaged input by re-running its slice's computation, once, writing over ``key``.

    The compressed slice (and its n-tile/panel tables) is a pure function of the analysis table and the
    request, so recomputing it gives the bytes that should have been there. A second failure to decode is
    raised, not retried here.
    """
    if job.depends_on is None:
        raise damage
    from xpcompute.coordinator.table_jobs import run_slice  # healing is rare: the fit function loads it then

    log.warning("%s; recomputing it from the analysis table (fit %s)", damage, job.job_id)
    parent = coordinator.state.get_job(job.depends_on)
    run_slice(coordinator, settings, parent, replace_key=key)
    note_healed(key)
    return decode_derived(coordinator.store, key)


def _artifact_error(coordinator: JobLedger, job: Job, layout: str) -> str | None:
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


def run_job(coordinator: JobLedger, settings: Settings, job_id: str, worker: str) -> Outcome:
    """Lease, run, store, complete. Safe to call for the same job any number of times, concurrently."""
    job = coordinator.claim(job_id, worker)
    if job is None:
        analysis_id = job_id.split(".", 1)[0]
        return Outcome(job_id, analysis_id, "skipped")
    take_healed()  # nothing left over from an earlier job of this thread
    try:
        if job.kind == JobKind.STAGE1:
            from xpcompute.coordinator.table_jobs import (
                run_stage1_job,  # the slice function imports it at start
            )

            output = run_stage1_job(coordinator, settings, job)
        elif job.kind == JobKind.SLICE:
            from xpcompute.coordinator.table_jobs import run_slice

            output = run_slice(coordinator, settings, job)
        elif job.kind == JobKind.REPLAY:
            from xpcompute.meta.replay_jobs import run_replay_job  # a replay of the archive (meta-analysis)

            output = run_replay_job(coordinator, job)
        else:
            output = run_fit(coordinator, job, settings)
        healed = take_healed()
        if healed:
            log.warning("job %s recomputed damaged stored object(s): %s", job.job_id, ", ".join(healed))
            output = {**output, "healed": healed}
    except Deferred as wait:
        log.info("job %s deferred %gs: %s", job.job_id, wait.delay_s, wait)
        deferred = coordinator.defer(job, wait.delay_s, wait.output)
        return Outcome(job.job_id, job.analysis_id, "deferred" if deferred is not None else "lost", str(wait))
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
