"""Repairing a damaged result object within its analysis (``POST /analyses/{id}/retry``, ``xpcompute retry``).

A fit job's records are stored once, put-if-absent, at the job's ``result_key``. When that object is later
found damaged (truncated, not JSON, not a list of records) or gone, the scorecard reports it as a failure
naming the key, and the rest of the analysis still answers (``scorecard.assemble``). Retrying the analysis
now recomputes just those fits:

1. ``reopen_damaged`` finds the SUCCEEDED fit jobs whose object does not decode and puts each back to
   PENDING (due now, a fresh attempt count), conditionally on the version read, so of two concurrent
   retries only one reopens a job.
2. The fit runs as any other (``worker.run_fit``); its records are stored by ``store_result``: put-if-absent
   as always, and when an object is already at the key, it is read back; a valid one is kept (a duplicate
   delivery finished first), a damaged one is replaced whole by one atomic put (a local store writes a
   temporary file and renames it over the key; S3 replaces the object in one PUT). A reader sees the damaged
   object or the new one, never a half-written one, and a valid result is never overwritten.
3. The job's output lists the key under ``healed`` and its error history says why it ran again; the
   analysis is finalized again (corrections, decision and the stored scorecard recomputed with the record).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace

from xpcompute.coordinator.jobs import Job, JobKind, JobState
from xpcompute.coordinator.scorecard import records_of
from xpcompute.coordinator.state.base import StateStore
from xpcompute.errors import ConflictError, CorruptObjectError, NotFoundError
from xpcompute.storage.objects import ObjectStore

log = logging.getLogger(__name__)


def result_damage(job: Job, store: ObjectStore) -> str | None:
    """Why a SUCCEEDED fit's stored records cannot be read (damaged or missing), or ``None`` when they can."""
    try:
        records_of(job, store)
    except CorruptObjectError as exc:
        return str(exc)
    except NotFoundError:
        return f"result object {job.result_key} is missing from the store"
    return None


def damaged_fits(jobs: Iterable[Job], store: ObjectStore) -> list[tuple[Job, str]]:
    """The SUCCEEDED fit jobs among ``jobs`` whose result object is damaged or missing, with the reason."""
    out = []
    for job in jobs:
        if job.kind == JobKind.FIT and job.state == JobState.SUCCEEDED and job.result_key is not None:
            reason = result_damage(job, store)
            if reason is not None:
                out.append((job, reason))
    return out


def reopen_damaged(state: StateStore, store: ObjectStore, jobs: Iterable[Job], now: float) -> list[Job]:
    """Put each SUCCEEDED fit whose result is damaged back to PENDING, due now; returns the jobs reopened.

    The write is conditional on the job's state and version, so a job another retry (or anything else)
    changed meanwhile is left alone.
    """
    reopened: list[Job] = []
    for job, reason in damaged_fits(jobs, store):
        log.warning("%s; recomputing fit %s", reason, job.job_id)
        new = replace(
            job, state=JobState.PENDING, attempts=0, due_at=now, ready_at=now, finished_at=None,
            dispatched_at=None, worker=None, lease_expires_at=None, updated_at=now, output={},
            errors=[*job.errors, f"recomputed on request: {reason}"][-10:],
        )
        try:
            reopened.append(state.update_job(new, JobState.SUCCEEDED, job.version))
        except ConflictError:
            continue
    return reopened
