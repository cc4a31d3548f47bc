"""The coordinator's state machine: create analyses, lease jobs, retry, reclaim, advance and finalize.

Every transition is one conditional write in the state store (see
``state.base``), so the coordinator itself holds no state: any number of
copies (API threads, the coordinator function, a restarted server) can call
these methods concurrently, and a duplicated delivery or a replayed event
loses its conditional write and does nothing. Work results are objects at
keys fixed by the job's identity, written before the job's SUCCEEDED
transition, so a second run of the same job writes no second result.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.dispatch.base import Dispatcher
from xpcompute.coordinator.jobs import (
    PRIORITY_LIVE,
    Analysis,
    AnalysisState,
    Job,
    JobKind,
    JobState,
    Progress,
    slice_job_id,
)
from xpcompute.coordinator.messages import RunJob
from xpcompute.coordinator.planner import fit_specs, plan, plan_slice
from xpcompute.coordinator.scorecard import Failure, Scorecard, assemble, failure_of, records_of
from xpcompute.coordinator.state.base import StateStore
from xpcompute.errors import ConflictError, InputError, NotFoundError, StorageError
from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.records import ResultRecord
from xpcompute.spec import FitSpec
from xpcompute.storage import keys
from xpcompute.storage.objects import ObjectStore

log = logging.getLogger(__name__)
Clock = Callable[[], float]


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts, backoff and leases; from ``XPCOMPUTE_MAX_ATTEMPTS``, ``_BACKOFF_S``, ``_LEASE_S`` ..."""

    max_attempts: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    lease_s: float = 120.0
    redispatch_s: float = 60.0

    @classmethod
    def from_settings(cls, s: Settings) -> RetryPolicy:
        return cls(s.max_attempts, s.backoff_s, s.backoff_max_s, s.lease_s, s.redispatch_s)

    def backoff(self, attempts: int) -> float:
        """Delay before attempt ``attempts + 1``: doubling from ``backoff_s``, capped."""
        return min(self.backoff_max_s, self.backoff_s * 2 ** max(attempts - 1, 0))


@dataclass(frozen=True)
class AnalysisStatus:
    """What ``GET /analyses/{id}`` shows: state, progress, failures and the records available so far."""

    analysis: Analysis
    progress: Progress
    failures: list[Failure]
    records: list[ResultRecord]
    slices: list[tuple[str, str, str]]  # (slice_id, label, state of its slice job)


class Coordinator:
    """The state machine over a ``StateStore`` and an object store (``ObjectStore``).

    ``dispatcher`` may be ``None`` for a caller that only reads or only runs
    jobs (a function); then nothing is fanned out from this instance.
    """

    def __init__(
        self,
        state: StateStore,
        store: ObjectStore,
        dispatcher: Dispatcher | None = None,
        policy: RetryPolicy | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.state = state
        self.store = store
        self.dispatcher = dispatcher
        self.policy = policy or RetryPolicy()
        self.clock = clock
        self._experiments: dict[str, ExperimentSpec | None] = {}

    # ---- experiments --------------------------------------------------------
    def register_experiment(self, experiment: ExperimentSpec) -> None:
        """Store an experiment spec so analyses of it use its catalog metrics, covariates and dimension checks."""
        self.store.put_bytes(keys.experiment_spec(experiment.id), experiment.model_dump_json().encode())
        self._experiments[experiment.id] = experiment

    def experiment(self, experiment_id: str) -> ExperimentSpec | None:
        """The registered spec, or ``None`` for an ad-hoc analysis table without one."""
        if experiment_id not in self._experiments:
            try:
                raw = json.loads(self.store.get_bytes(keys.experiment_spec(experiment_id)))
            except NotFoundError:
                self._experiments[experiment_id] = None
            else:
                self._experiments[experiment_id] = ExperimentSpec.parse(raw, origin=f"experiment {experiment_id}")
        return self._experiments[experiment_id]

    def _check_request(self, experiment_id: str, spec: AnalysisSpec, slices: Sequence[SliceFilter]) -> None:
        """Refuse what cannot work before any job exists: unknown slice columns or values, missing columns.

        The published analysis table's schema (from its manifest, no data read)
        is the reference; a registered experiment adds its dimension checks.
        """
        from xpcompute.compression.encode import require_columns
        from xpcompute.pipeline.tables import open_table

        table = open_table(spec.table or keys.analysis_table(experiment_id), self.store)
        schema = table.schema
        experiment = self.experiment(experiment_id)
        for s in slices:
            if experiment is not None:
                s.check(experiment, schema)
            else:
                require_columns(schema.empty_table(), s.columns(), f"slice {s.label()!r}: column")
        if experiment is None:
            require_columns(schema.empty_table(), [spec.treatment, *spec.metrics, *spec.covariates], "column")

    def _check_panel(self, experiment_id: str, specs: Sequence[FitSpec]) -> None:
        """``dte`` fits read stage 1's user-by-day table: refuse up front when it or the metric's column is missing."""
        from xpcompute.models.registry import model_class
        from xpcompute.pipeline.tables import open_table

        metrics = list(dict.fromkeys(s.metric for s in specs if model_class(s.model).compression == "panel"))
        if not metrics:
            return
        try:
            table = open_table(keys.user_day_table(experiment_id), self.store)
        except NotFoundError:
            raise InputError(
                f"model 'dte' needs the user-by-day table of experiment {experiment_id!r}, which stage 1 has not "
                "published; run stage 1 with daily=True (or drop 'dte' from models)"
            ) from None
        needed = {s.time for s in specs if s.time} | {s.cluster for s in specs if s.cluster}
        missing = [c for c in [*sorted(needed), *metrics] if c not in table.schema.names]
        if missing:
            raise InputError(
                f"model 'dte' needs per-day column(s) {', '.join(repr(c) for c in missing)} in the user-by-day table "
                f"of experiment {experiment_id!r}; re-run stage 1 with daily=True and these metrics, or drop 'dte'"
            )

    # ---- creating work ----------------------------------------------------------
    def submit(self, experiment_id: str, spec: AnalysisSpec, analysis_id: str | None = None) -> Analysis:
        """Plan and store a new analysis, then fan out its pre-computed slices. Re-submitting an id is a no-op."""
        keys.experiment_spec(experiment_id)  # validates the id
        self._check_request(experiment_id, spec, spec.slices)
        specs = fit_specs(spec, self.experiment(experiment_id))
        self._check_panel(experiment_id, specs)
        aid = analysis_id or uuid.uuid4().hex
        now = self.clock()
        analysis = Analysis(
            analysis_id=aid, experiment_id=experiment_id, request=spec.model_dump(mode="json"),
            created_at=now, updated_at=now,
        )
        jobs = plan(aid, spec, specs, now, self.policy.max_attempts)
        self.store.put_bytes(keys.analysis_request(aid), json.dumps(analysis.request, sort_keys=True).encode())
        if not self.state.create_analysis(analysis, jobs):
            return self.state.get_analysis(aid)
        self.dispatch_due()
        return analysis

    def request_slice(self, analysis_id: str, slice_filter: SliceFilter) -> Job:
        """Queue a live slice (behind the pre-computed ones); re-opens a finished analysis. Idempotent."""
        analysis = self.state.get_analysis(analysis_id)
        spec = AnalysisSpec.model_validate(analysis.request)
        self._check_request(analysis.experiment_id, spec, [slice_filter])
        specs: list[FitSpec] = fit_specs(spec, self.experiment(analysis.experiment_id))
        now = self.clock()
        jobs = plan_slice(analysis_id, slice_filter, specs, now, PRIORITY_LIVE, self.policy.max_attempts)
        if self.state.add_jobs(jobs):
            self._reopen(analysis_id)
        self.dispatch_due()
        return self.state.get_job(slice_job_id(analysis_id, slice_filter.slice_id))

    def _reopen(self, analysis_id: str) -> None:
        """Bump the analysis (back to RUNNING) so a finalize racing with new jobs loses its conditional write."""
        for _ in range(50):
            analysis = self.state.get_analysis(analysis_id)
            try:
                self.state.update_analysis(
                    replace(analysis, state=AnalysisState.RUNNING, finished_at=None, updated_at=self.clock()),
                    analysis.version,
                )
                return
            except ConflictError:
                continue
        raise ConflictError(f"analysis {analysis_id} is being updated too often to re-open; retry the request")

    # ---- the worker side: lease, complete, fail -----------------------------------
    def claim(self, job_id: str, worker: str) -> Job | None:
        """Lease a due PENDING job to ``worker``; ``None`` when it is not claimable (done, running, waiting)."""
        try:
            job = self.state.get_job(job_id)
        except NotFoundError:
            return None
        if job.state != JobState.PENDING or job.due_at is None:
            return None
        now = self.clock()
        leased = replace(
            job, state=JobState.RUNNING, attempts=job.attempts + 1, started_at=now, updated_at=now,
            lease_expires_at=now + self.policy.lease_s, worker=worker,
        )
        try:
            return self.state.update_job(leased, JobState.PENDING, job.version)
        except ConflictError:
            return None

    def complete(self, job: Job, output: dict[str, object] | None = None) -> bool:
        """RUNNING -> SUCCEEDED for the lease holder; ``False`` if the lease was lost (the result is identical)."""
        now = self.clock()
        done = replace(
            job, state=JobState.SUCCEEDED, finished_at=now, updated_at=now, lease_expires_at=None,
            due_at=None, output=dict(output or {}),
        )
        try:
            self.state.update_job(done, JobState.RUNNING, job.version)
        except ConflictError:
            return False
        return True

    def fail(self, job: Job, error: str, retryable: bool = True) -> Job | None:
        """Record a failure: back to PENDING after a backoff while attempts remain, else FAILED with the reason."""
        now = self.clock()
        errors = [*job.errors, error][-10:]
        if retryable and job.attempts < job.max_attempts:
            new = replace(
                job, state=JobState.PENDING, updated_at=now, lease_expires_at=None, worker=None,
                due_at=now + self.policy.backoff(job.attempts), dispatched_at=None, last_error=error, errors=errors,
            )
        else:
            reason = error if not retryable else f"{error} (gave up after {job.attempts} attempts)"
            new = replace(
                job, state=JobState.FAILED, updated_at=now, finished_at=now, lease_expires_at=None,
                due_at=None, last_error=reason, errors=errors,
            )
        try:
            return self.state.update_job(new, JobState.RUNNING, job.version)
        except ConflictError:
            return None

    def abandon(self, job_id: str, worker: str, reason: str) -> Job | None:
        """A worker died holding ``job_id``: fail its attempt now instead of waiting for the lease to run out."""
        try:
            job = self.state.get_job(job_id)
        except NotFoundError:
            return None
        if job.state != JobState.RUNNING or job.worker != worker:
            return None
        return self.fail(job, reason, retryable=True)

    def reclaim_expired(self) -> list[Job]:
        """Take back RUNNING jobs whose lease ran out (a worker died or hangs) and retry them."""
        out: list[Job] = []
        for job in self.state.expired_jobs(self.clock()):
            new = self.fail(job, f"lease of {self.policy.lease_s:g}s expired on worker {job.worker} "
                                 f"(attempt {job.attempts})", retryable=True)
            if new is not None:
                out.append(new)
        return out

    # ---- fan-out --------------------------------------------------------------
    def dispatch_due(self, limit: int = 10_000) -> int:
        """Send every due job once: mark it dispatched (conditionally), then hand it to the dispatcher."""
        if self.dispatcher is None:
            return 0
        sent = 0
        while sent < limit:
            now = self.clock()
            batch = self.state.due_jobs(now, limit=min(200, limit - sent))
            if not batch:
                break
            messages = []
            for job in batch:
                marked = replace(job, dispatched_at=now, due_at=now + self.policy.redispatch_s)
                try:
                    self.state.update_job(marked, JobState.PENDING, job.version)
                except ConflictError:
                    continue
                messages.append(RunJob(job_id=job.job_id, analysis_id=job.analysis_id, kind=job.kind,
                                       priority=job.priority))
            if messages:
                self.dispatcher.submit(messages)
                sent += len(messages)
        return sent

    # ---- advancing --------------------------------------------------------------
    def on_job_finished(self, job_id: str) -> None:
        """React to a job's completion: release or fail its dependents, fan out, finalize when all are done."""
        try:
            job = self.state.get_job(job_id)
        except NotFoundError:
            return
        if job.kind == JobKind.SLICE and job.state.terminal:
            self._settle_children(job)
        self.dispatch_due()
        self.maybe_finalize(job.analysis_id)

    def _settle_children(self, parent: Job) -> None:
        now = self.clock()
        for child_id in parent.children:
            for _ in range(5):
                try:
                    child = self.state.get_job(child_id)
                except NotFoundError:
                    break
                if child.state != JobState.PENDING or child.due_at is not None:
                    break
                if parent.state == JobState.SUCCEEDED:
                    new = replace(child, due_at=now, ready_at=now, updated_at=now)
                else:
                    new = replace(
                        child, state=JobState.FAILED, finished_at=now, updated_at=now,
                        last_error=f"its slice {parent.slice_label!r} failed: {parent.last_error}",
                    )
                try:
                    self.state.update_job(new, JobState.PENDING, child.version)
                    break
                except ConflictError:
                    continue

    def maybe_finalize(self, analysis_id: str) -> Analysis | None:
        """Finalize when every job is terminal (cheap count first)."""
        counts = self.state.job_counts(analysis_id)
        if counts[JobState.PENDING] or counts[JobState.RUNNING]:
            return None
        return self.finalize(analysis_id)

    def finalize(self, analysis_id: str) -> Analysis:
        """Corrections across the analysis + SRM -> scorecard object -> SUCCEEDED or FAILED (with the reasons)."""
        analysis = self.state.get_analysis(analysis_id)
        if analysis.state != AnalysisState.RUNNING:
            return analysis
        jobs = self.state.list_jobs(analysis_id)
        if any(not j.state.terminal for j in jobs):
            return analysis
        now = self.clock()
        failed = [j for j in jobs if j.state == JobState.FAILED]
        done = replace(
            analysis, state=AnalysisState.FAILED if failed else AnalysisState.SUCCEEDED, finished_at=now,
            updated_at=now, error=_summary(failed),
        )
        card = assemble(replace(done, version=analysis.version + 1), jobs, self.store, complete=True)
        try:
            self.store.put_bytes(keys.scorecard(analysis_id), json.dumps(card.to_json_dict(), sort_keys=True).encode())
        except StorageError as exc:
            # the analysis still ends, with the reason; GET /results re-assembles from stored records
            note = f"scorecard not stored ({exc})"
            done = replace(done, error=f"{done.error}; {note}" if done.error else note)
        try:
            return self.state.update_analysis(done, analysis.version)
        except ConflictError:
            return self.state.get_analysis(analysis_id)

    def sweep(self, analysis: Analysis) -> None:
        """Repair what a crash between two writes can leave: unreleased children, an unfinalized analysis."""
        jobs = {j.job_id: j for j in self.state.list_jobs(analysis.analysis_id)}
        for job in jobs.values():
            if job.kind == JobKind.SLICE and job.state.terminal and any(
                jobs[c].state == JobState.PENDING and jobs[c].due_at is None for c in job.children if c in jobs
            ):
                self._settle_children(job)
        self.maybe_finalize(analysis.analysis_id)

    def tick(self, sweep: bool = False) -> int:
        """Housekeeping: reclaim expired leases, re-dispatch due jobs; with ``sweep``, repair every running analysis."""
        reclaimed = self.reclaim_expired()
        if sweep:
            for analysis in self.state.list_analyses(AnalysisState.RUNNING):
                self.sweep(analysis)
        self.dispatch_due()
        for job in reclaimed:
            if job.state == JobState.FAILED:
                self.on_job_finished(job.job_id)
        return len(reclaimed)

    def resume(self, orphaned: Callable[[str], bool] | None = None) -> int:
        """After a restart: repair and re-dispatch every running analysis; returns how many were resumed.

        Jobs dispatched but not yet claimed are due again at once (their
        messages may have died with the old process; a duplicate is harmless).
        ``orphaned(worker)`` says which lease holders are known dead (the old
        process's local workers): their jobs are retried now, not after the lease.
        """
        running = self.state.list_analyses(AnalysisState.RUNNING)
        now = self.clock()
        for analysis in running:
            for job in self.state.list_jobs(analysis.analysis_id):
                try:
                    if job.state == JobState.PENDING and job.dispatched_at is not None and (job.due_at or 0) > now:
                        self.state.update_job(replace(job, due_at=now, dispatched_at=None), JobState.PENDING,
                                              job.version)
                    elif job.state == JobState.RUNNING and job.worker and orphaned and orphaned(job.worker):
                        self.fail(job, f"worker {job.worker} was lost when the coordinator restarted", retryable=True)
                except ConflictError:
                    continue
        self.tick(sweep=True)
        return len(running)

    # ---- reading ------------------------------------------------------------------
    def status(self, analysis_id: str, with_records: bool = True) -> AnalysisStatus:
        analysis = self.state.get_analysis(analysis_id)
        jobs = self.state.list_jobs(analysis_id)
        records: list[ResultRecord] = []
        if with_records:
            for job in jobs:
                if job.kind == JobKind.FIT and job.state == JobState.SUCCEEDED:
                    try:
                        records.extend(records_of(job, self.store))
                    except NotFoundError:
                        continue
        slices = [(j.slice_id, j.slice_label, j.state.value) for j in jobs if j.kind == JobKind.SLICE]
        failures = [failure_of(j) for j in jobs if j.state == JobState.FAILED]
        return AnalysisStatus(analysis, Progress.of(jobs), failures, records, slices)

    def results(self, analysis_id: str) -> Scorecard:
        """The finalized scorecard, or a partial one (``complete=False``) assembled from what is stored so far."""
        analysis = self.state.get_analysis(analysis_id)
        if analysis.state != AnalysisState.RUNNING:
            try:
                raw = json.loads(self.store.get_bytes(keys.scorecard(analysis_id)))
            except (NotFoundError, StorageError):
                raw = None
            if raw is not None and raw.get("version") == analysis.version:
                return _scorecard_from_json(raw)
        jobs = self.state.list_jobs(analysis_id)
        return assemble(analysis, jobs, self.store, complete=analysis.state != AnalysisState.RUNNING)


def _summary(failed: list[Job]) -> str | None:
    if not failed:
        return None
    first = failed[0]
    return f"{len(failed)} job(s) failed; first: {first.job_id}: {first.last_error}"


def _scorecard_from_json(raw: dict[str, object]) -> Scorecard:
    from xpcompute.coordinator.scorecard import SliceSRM

    progress = Progress(**raw["progress"])  # type: ignore[arg-type]
    return Scorecard(
        analysis_id=str(raw["analysis_id"]), experiment_id=str(raw["experiment_id"]), state=str(raw["state"]),
        complete=bool(raw["complete"]), correction=str(raw["correction"]), progress=progress,
        records=[ResultRecord.model_validate(r) for r in raw["records"]],  # type: ignore[attr-defined]
        srm=[SliceSRM(**s) for s in raw["srm"]],  # type: ignore[attr-defined]
        failures=[Failure(**f) for f in raw["failures"]],  # type: ignore[attr-defined]
        spec=dict(raw["spec"]),  # type: ignore[call-overload]
        created_at=float(raw["created_at"]),  # type: ignore[arg-type]
        finished_at=None if raw["finished_at"] is None else float(raw["finished_at"]),  # type: ignore[arg-type]
        version=int(raw["version"]),  # type: ignore[call-overload]
    )


__all__ = ["AnalysisStatus", "Coordinator", "InputError", "RetryPolicy"]
