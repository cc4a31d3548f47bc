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
from datetime import UTC, datetime

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
    stage1_job_id,
)
from xpcompute.coordinator.ledger import (
    Clock,
    JobLedger,
    RegisteredExperiment,
    RetryPolicy,
    spec_hash,
    table_spec_hash,
    unregistered_message,
)
from xpcompute.coordinator.messages import RunJob
from xpcompute.coordinator.planner import (
    Limits,
    check_design,
    check_job_limit,
    check_live_label,
    check_request_limits,
    fit_specs,
    plan,
    plan_slice,
    plan_stage1,
    resolve_request,
)
from xpcompute.coordinator.repair import reopen_damaged
from xpcompute.coordinator.scorecard import Failure, Scorecard, assemble, failure_of, records_of
from xpcompute.coordinator.state.base import StateStore
from xpcompute.errors import (
    ConflictError,
    CorruptObjectError,
    InputError,
    NotFoundError,
    StorageError,
    XPError,
)
from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.pipeline.tables import PublishedTable
from xpcompute.records import ResultRecord
from xpcompute.spec import FitSpec
from xpcompute.storage import keys
from xpcompute.storage.objects import ObjectStore, newest_modification

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisStatus:
    """What ``GET /analyses/{id}`` shows: state, progress, failures and the records available so far."""

    analysis: Analysis
    progress: Progress
    failures: list[Failure]
    records: list[ResultRecord]
    slices: list[tuple[str, str, str]]  # (slice_id, label, state of its slice job)
    stage1: Job | None = None  # the stage-1 job, when this analysis had to (re)build the table


class Coordinator(JobLedger):
    """The state machine over a ``StateStore`` and an object store (``ObjectStore``).

    The job ledger (``ledger.JobLedger``: leases, outcomes, experiment versions) plus planning, fan-out,
    advancing and finalizing. ``dispatcher`` may be ``None`` for a caller that only reads or only runs
    jobs; then nothing is fanned out from this instance.
    """

    def __init__(
        self,
        state: StateStore,
        store: ObjectStore,
        dispatcher: Dispatcher | None = None,
        policy: RetryPolicy | None = None,
        clock: Clock = time.time,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(state, store, policy, clock)
        self.dispatcher = dispatcher
        self.limits = limits or Limits()

    def register_experiment(self, experiment: ExperimentSpec) -> RegisteredExperiment:
        """Store ``experiment`` as its next version, or return the current one when the content is the same.

        Callers validate the sources first (``pipeline.stage1.validate_sources``);
        analyses submitted afterwards plan from this version.
        """
        stored, created = self.experiments.put(experiment.id, experiment.canonical())
        return self._registered(stored, created)

    def register_spec(self, experiment_id: str, raw: dict[str, object]) -> RegisteredExperiment:
        """Validate a spec sent from outside (``PUT /experiments/{id}``) against its sources, then register it.

        Every problem is an ``InputError`` (4xx) that names it: an invalid
        field, an id that differs from the path, a relative local path (the
        server cannot know what it was relative to), a missing source, a
        missing column or a column of the wrong type.
        """
        keys.experiment_id(experiment_id)
        body = dict(raw)
        if body.setdefault("id", experiment_id) != experiment_id:
            raise InputError(f"the spec's id {body['id']!r} differs from the experiment id {experiment_id!r} in the "
                             "path; make them equal (or leave 'id' out of the body)")
        sources = body.get("sources")
        if isinstance(sources, dict):
            for name, src in sources.items():
                uri = src.get("uri") if isinstance(src, dict) else None
                if isinstance(uri, str) and "://" not in uri and not uri.startswith("/"):
                    raise InputError(
                        f"source {name!r} has the relative uri {uri!r}; the server cannot know what it is relative "
                        "to: give an absolute path or an s3://bucket/key uri"
                    )
        experiment = ExperimentSpec.parse(body, origin=f"experiment {experiment_id!r}")
        _check_sources(experiment)
        return self.register_experiment(experiment)

    def stage1_reason(self, experiment: ExperimentSpec, refresh: bool = False) -> str | None:
        """Why the experiment's analysis table must be (re)built before slicing, or ``None`` when it is current.

        Stale means: no published table; a table built from different spec
        content (its manifest's spec hash); a table without a column this
        release writes for the spec; a table without the user-by-day
        table the spec asks for; any source file modified after the table was
        published; or ``refresh`` asked for.
        """
        from xpcompute.pipeline.tables import open_table

        try:
            table = open_table(keys.analysis_table(experiment.id), self.store)
        except NotFoundError:
            return "no analysis table has been published yet"
        if refresh:
            return "refresh was requested"
        if table_spec_hash(table.manifest) != spec_hash(experiment):
            return "the registered spec changed since the table was built"
        from xpcompute.sql.stage1 import output_columns

        built = {str(c.get("name")) for c in table.manifest.get("columns") or () if isinstance(c, dict)}
        lacking = [c.name for c in output_columns(experiment, daily=False) if built and c.name not in built]
        if lacking:  # built by a release that wrote fewer columns (e.g. before the ratios' residual columns)
            return f"the table was built without column(s) {', '.join(lacking)}, which this release writes"
        if experiment.daily:
            try:
                open_table(keys.user_day_table(experiment.id), self.store)
            except NotFoundError:
                return "the spec asks for the user-by-day table (daily), which is missing"
        built_at = _timestamp(str(table.manifest.get("created_at", "")))
        for name in _used_sources(experiment):
            uri = experiment.sources[name].uri
            changed = newest_modification(uri, endpoint_url=_endpoint(self.store))
            if changed is not None and (built_at is None or changed > built_at):
                when = datetime.fromtimestamp(changed, UTC).isoformat(timespec="seconds")
                return f"source {name!r} ({uri}) changed at {when}, after the table was built"
        return None

    def _check_request(
        self, experiment_id: str, spec: AnalysisSpec, slices: Sequence[SliceFilter],
        experiment: ExperimentSpec | None, table_pending: bool = False,
    ) -> None:
        """Refuse what cannot work before any job exists: unknown slice columns or values, missing columns.

        The published analysis table's schema (from its manifest, no data read)
        is the reference; a registered experiment adds its dimension checks.
        When stage 1 is about to (re)build the table (``table_pending``), the
        columns it will have (``sql.stage1.output_columns``) stand in for it.
        """
        from xpcompute.compression.encode import require_columns
        from xpcompute.pipeline.tables import open_table

        if table_pending and experiment is not None:
            import pyarrow as pa

            from xpcompute.sql.stage1 import output_columns

            names = [c.name for c in output_columns(experiment, daily=False)]
            for s in slices:
                s.check(experiment)
            from xpcompute.metrics.events import EventQuantileMetric

            # an event-level quantile metric has no analysis-table column: its rows are in its events table
            columns = [m for m in spec.metrics if not isinstance(experiment.metric(m), EventQuantileMetric)]
            require_columns(pa.table({n: pa.array([], pa.null()) for n in names}), [spec.treatment, *columns], "column")
            return
        table = open_table(spec.table or keys.analysis_table(experiment_id), self.store)
        schema = table.schema
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
        """Plan and store a new analysis, then fan out its first jobs. Re-submitting an id is a no-op.

        A registered experiment is read at its current version (never a cached
        copy), the request is resolved against it (``planner.resolve_request``)
        and the analysis records the version. Without an explicit ``table``, a
        stage-1 job runs first when the analysis table is missing or stale
        (``stage1_reason``). An experiment that is not registered can only be
        analysed through a published table.
        """
        keys.experiment_id(experiment_id)
        registered = self.experiment_version(experiment_id)
        experiment = registered.spec if registered is not None else None
        spec = resolve_inference(resolve_request(spec, experiment), experiment)
        check_request_limits(experiment_id, spec, self.limits)
        reason: str | None = None
        if experiment is None and spec.table is None and not self._published(keys.analysis_table(experiment_id)):
            raise NotFoundError(unregistered_message(experiment_id))
        if experiment is not None and spec.table is None:
            reason = self.stage1_reason(experiment, spec.refresh)
            if reason is not None:
                _check_sources(experiment)
        self._check_request(experiment_id, spec, spec.slices, experiment, table_pending=reason is not None)
        check_design(spec, experiment, None if reason is not None else self._table(spec, experiment_id), self.limits)
        specs = fit_specs(spec, experiment)
        if reason is None or experiment is None or not experiment.daily:
            self._check_panel(experiment_id, specs)
        aid = analysis_id or uuid.uuid4().hex
        now = self.clock()
        version = registered.version if registered is not None else None
        analysis = Analysis(
            analysis_id=aid, experiment_id=experiment_id, request=spec.model_dump(mode="json"),
            created_at=now, updated_at=now, experiment_version=version,
        )
        gate = None
        if reason is not None:
            gate = plan_stage1(aid, experiment_id, version, reason, (), now, self.policy.max_attempts)
        jobs = plan(aid, spec, specs, now, self.policy.max_attempts, stage1=gate)
        check_job_limit(len(jobs), 0, self.limits)
        request = {**analysis.request, "experiment_version": version}
        self.store.put_bytes(keys.analysis_request(aid), json.dumps(request, sort_keys=True).encode())
        if not self.state.create_analysis(analysis, jobs):
            return self.state.get_analysis(aid)
        self.dispatch_due()
        return analysis

    def _table(self, spec: AnalysisSpec, experiment_id: str) -> PublishedTable:
        from xpcompute.pipeline.tables import open_table

        return open_table(spec.table or keys.analysis_table(experiment_id), self.store)

    def _published(self, table_key: str) -> bool:
        return self.store.exists(keys.manifest(table_key))

    def request_slice(self, analysis_id: str, slice_filter: SliceFilter) -> Job:
        """Queue a live slice (behind the pre-computed ones); re-opens a finished analysis. Idempotent.

        While the analysis's stage-1 job has not succeeded, the slice waits on it like the pre-computed ones
        (it names the stage-1 job in ``depends_on``; the stage-1 job releases every slice that does).
        """
        analysis = self.analysis(analysis_id)
        spec = AnalysisSpec.model_validate(analysis.request)
        experiment = self.experiment_of(analysis)
        gate = self.stage1_job(analysis_id)
        pending = gate is not None and gate.state != JobState.SUCCEEDED
        if gate is not None and gate.state == JobState.FAILED:
            raise ConflictError(f"analysis {analysis_id} has no analysis table: its stage 1 failed "
                                f"({gate.last_error}); fix the sources or the spec and submit a new analysis")
        self._check_request(analysis.experiment_id, spec, [slice_filter], experiment, table_pending=pending)
        specs: list[FitSpec] = fit_specs(spec, experiment)
        existing = self.state.list_jobs(analysis_id)
        check_live_label(existing, slice_filter)
        now = self.clock()
        jobs = plan_slice(analysis_id, slice_filter, specs, now, PRIORITY_LIVE, self.policy.max_attempts,
                          depends_on=gate.job_id if pending and gate is not None else None)
        if not any(j.job_id == jobs[0].job_id for j in existing):
            check_job_limit(len(jobs), len(existing), self.limits)
        if self.state.add_jobs(jobs):
            if pending and gate is not None:
                # the stage-1 job may have finished after it was read: settle the new slice now if so
                latest = self.state.get_job(gate.job_id)
                if latest.state.terminal:
                    self._settle_children(latest)
            self._reopen(analysis_id)
        self.dispatch_due()
        return self.state.get_job(slice_job_id(analysis_id, slice_filter.slice_id))

    def stage1_job(self, analysis_id: str) -> Job | None:
        """The analysis's stage-1 job, or ``None`` when its table was up to date (or given) at submit."""
        try:
            return self.state.get_job(stage1_job_id(analysis_id))
        except NotFoundError:
            return None

    def retry_failed(self, analysis_id: str) -> list[Job]:
        """Run the FAILED jobs of an analysis again, from a fresh attempt count (``POST /analyses/{id}/retry``),
        and recompute the fits whose stored result object is damaged or missing.

        A job whose own parent (stage 1 or its slice) is retried waits for it
        again; the others are due now. The analysis goes back to RUNNING and is
        finalized again when they are done. Returns the jobs put back.
        """
        jobs = {j.job_id: j for j in self.state.list_jobs(analysis_id)}
        failed = {jid for jid, j in jobs.items() if j.state == JobState.FAILED}
        now = self.clock()
        # fits whose stored result is damaged or missing run again too, just those (coordinator/repair.py)
        retried: list[Job] = reopen_damaged(self.state, self.store, jobs.values(), now)
        for jid in sorted(failed, key=lambda i: jobs[i].priority):
            job = jobs[jid]
            waits = job.depends_on is not None and job.depends_on in failed
            new = replace(
                job, state=JobState.PENDING, attempts=0, due_at=None if waits else now,
                ready_at=None if waits else now, finished_at=None, dispatched_at=None, worker=None,
                lease_expires_at=None, updated_at=now,
                errors=[*job.errors, f"retried on request after: {job.last_error}"][-10:],
            )
            try:
                retried.append(self.state.update_job(new, JobState.FAILED, job.version))
            except ConflictError:
                continue
        if retried:
            self._reopen(analysis_id)
            self.dispatch_due()
        return retried

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
                marked = replace(job, dispatched_at=now, due_at=now + self.policy.redispatch(job.dispatches),
                                 dispatches=job.dispatches + 1)
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
        if job.kind in (JobKind.STAGE1, JobKind.SLICE) and job.state.terminal:
            self._settle_children(job)
        self.dispatch_due()
        self.maybe_finalize(job.analysis_id)

    def _dependents(self, parent: Job) -> list[str]:
        """The jobs ``parent`` gates: its planned children, and (stage 1) live slices added later that name it."""
        if parent.kind != JobKind.STAGE1:
            return list(parent.children)
        later = [j.job_id for j in self.state.list_jobs(parent.analysis_id) if j.depends_on == parent.job_id]
        return list(dict.fromkeys([*parent.children, *later]))

    def _settle_children(self, parent: Job, reason: str | None = None) -> None:
        """Release ``parent``'s waiting dependents when it succeeded; fail them (and theirs) with its reason if not.

        A failed stage 1 fails its slices and, through them, their fits, all with "stage 1 failed: ...".
        """
        now = self.clock()
        if reason is None and parent.kind == JobKind.STAGE1:
            reason = f"stage 1 failed: {parent.last_error}"
        elif reason is None:
            reason = f"its slice {parent.slice_label!r} failed: {parent.last_error}"
        for child_id in self._dependents(parent):
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
                    new = replace(child, state=JobState.FAILED, finished_at=now, updated_at=now, last_error=reason)
                try:
                    written = self.state.update_job(new, JobState.PENDING, child.version)
                except ConflictError:
                    continue
                if written.state == JobState.FAILED and written.children:
                    self._settle_children(written, reason)
                break

    #: How long an analysis with every job done waits for the looks of earlier-created sequential analyses of its
    #: experiment before it is finalized without them (``_looks_pending``; ``inference_pass`` says why it waits);
    #: ``XPCOMPUTE_LOOK_WAIT_S`` through ``runtime.build_coordinator``.
    look_wait_s: float = 3600.0

    def maybe_finalize(self, analysis_id: str) -> Analysis | None:
        """Finalize when every job is terminal (cheap count first) and no look it must count is still to come.

        A sequential analysis waits (stays RUNNING, ``None`` returned) while an analysis of its experiment created
        before it is RUNNING without a stored look: its look must count that one (``inference_pass``). The earlier
        analysis's finalize re-checks it (``_finalize_later``), and so does the sweep. After ``look_wait_s`` from
        its last job's end it stops waiting: each look still missing is marked skipped (``skip_look``), so the
        earlier analysis never records it and the stored looks stay consistent.
        """
        counts = self.state.job_counts(analysis_id)
        if counts[JobState.PENDING] or counts[JobState.RUNNING]:
            return None
        analysis = self.state.get_analysis(analysis_id)
        if analysis.state != AnalysisState.RUNNING:
            return analysis
        pending = self._looks_pending(analysis)
        if pending:
            jobs = self.state.list_jobs(analysis_id)
            ready_at = max((j.finished_at or j.updated_at for j in jobs), default=analysis.created_at)
            waited = self.clock() - ready_at
            if waited < self.look_wait_s:
                return None
            from xpcompute.coordinator.inference_pass import skip_look

            for earlier in pending:
                if skip_look(self.store, analysis.experiment_id, earlier.analysis_id, earlier.created_at,
                             by=analysis_id, waited_s=waited):
                    log.warning("analysis %s stopped waiting for the look of analysis %s after %.0f s: that look "
                                "is not recorded", analysis_id, earlier.analysis_id, waited)
        return self.finalize(analysis_id)

    def _looks_pending(self, analysis: Analysis) -> list[Analysis]:
        """The RUNNING sequential analyses of ``analysis``'s experiment created before it without a stored look
        (or skip marker): what a sequential ``analysis`` must wait for before its own look is placed. Nothing when
        ``analysis`` is not sequential or already has its look (a live slice re-finalizing it reuses the look)."""
        if not _sequential(analysis) or self.store.exists(
                keys.experiment_look(analysis.experiment_id, analysis.analysis_id)):
            return []
        me = (analysis.created_at, analysis.analysis_id)
        return [a for a in self.state.list_analyses(AnalysisState.RUNNING)
                if a.experiment_id == analysis.experiment_id and (a.created_at, a.analysis_id) < me
                and _sequential(a) and not self.store.exists(keys.experiment_look(a.experiment_id, a.analysis_id))]

    def _finalize_later(self, analysis: Analysis) -> None:
        """After a sequential analysis's finalize: finalize the later analyses of its experiment that waited for
        its look (``maybe_finalize`` re-checks each; one that still waits on another stays RUNNING). A failure here
        is logged, not raised: ``analysis`` is done, and the sweep finalizes them later."""
        if not _sequential(analysis):
            return
        me = (analysis.created_at, analysis.analysis_id)
        try:
            later = sorted((a for a in self.state.list_analyses(AnalysisState.RUNNING)
                            if a.experiment_id == analysis.experiment_id and (a.created_at, a.analysis_id) > me
                            and _sequential(a)), key=lambda a: (a.created_at, a.analysis_id))
            for waiting in later:
                self.maybe_finalize(waiting.analysis_id)
        except Exception:
            log.exception("finalizing the analyses that waited for the look of analysis %s failed; the sweep "
                          "retries them", analysis.analysis_id)

    def finalize(self, analysis_id: str) -> Analysis:
        """Corrections across the analysis + SRM -> scorecard object -> SUCCEEDED or FAILED (with the reasons).

        Now, without waiting for earlier analyses' looks (``maybe_finalize`` waits); a look placed before an
        earlier analysis's leaves that one unrecorded (``inference_pass.plan_look``). Then the later analyses of
        the experiment that waited for this one's look are finalized (``_finalize_later``).
        """
        analysis = self.state.get_analysis(analysis_id)
        if analysis.state != AnalysisState.RUNNING:
            return analysis
        jobs = self.state.list_jobs(analysis_id)
        if any(not j.state.terminal for j in jobs):
            return analysis
        if analysis.is_replay:  # a replay of the archive: its own document, no scorecard
            from xpcompute.meta.replay_jobs import finalize_replay

            return finalize_replay(self, analysis, jobs)
        now = self.clock()
        failed = [j for j in jobs if j.state == JobState.FAILED]
        # a live slice asked for after the analysis was planned fails alone: its failure is listed with the
        # results, but what the analysis was created to compute decides whether the analysis failed
        planned_failed = [j for j in failed if j.priority < PRIORITY_LIVE]
        done = replace(
            analysis, state=AnalysisState.FAILED if planned_failed else AnalysisState.SUCCEEDED, finished_at=now,
            updated_at=now, error=_summary(failed),
        )
        card = assemble(replace(done, version=analysis.version + 1), jobs, self.store, complete=True)
        card = self._with_inference(card, analysis, jobs, record_look=True)
        card = self._with_decision(card, analysis)
        from xpcompute.segments.service import with_segments  # here: only finalize runs it (the job functions
        # import this module for claims and completions, and segment discovery's modules cost their cold start)

        card = with_segments(self, card, analysis)  # segment discovery (xpcompute.segments)
        try:
            self.store.put_bytes(keys.scorecard(analysis_id), json.dumps(card.to_json_dict(), sort_keys=True).encode())
        except StorageError as exc:
            # the analysis still ends, with the reason; GET /results re-assembles from stored records
            note = f"scorecard not stored ({exc})"
            done = replace(done, error=f"{done.error}; {note}" if done.error else note)
        try:
            final = self.state.update_analysis(done, analysis.version)
        except ConflictError:
            final = self.state.get_analysis(analysis_id)
        self._finalize_later(analysis)  # its look is stored now: the later analyses waiting for it can go on
        return final

    def sweep(self, analysis: Analysis) -> None:
        """Repair what a crash between two writes can leave: unreleased children, an unfinalized analysis."""
        jobs = {j.job_id: j for j in self.state.list_jobs(analysis.analysis_id)}
        for job in jobs.values():
            gated = [*job.children, *(j.job_id for j in jobs.values() if j.depends_on == job.job_id)]
            if job.kind in (JobKind.STAGE1, JobKind.SLICE) and job.state.terminal and any(
                jobs[c].state == JobState.PENDING and jobs[c].due_at is None for c in gated if c in jobs
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
        analysis = self.analysis(analysis_id)
        jobs = self.state.list_jobs(analysis_id)
        records: list[ResultRecord] = []
        if with_records:
            for job in jobs:
                if job.kind == JobKind.FIT and job.state == JobState.SUCCEEDED:
                    try:
                        records.extend(records_of(job, self.store))
                    except (NotFoundError, CorruptObjectError):
                        continue  # listed with its reason by results(); the other records still show
        slices = [(j.slice_id, j.slice_label, j.state.value) for j in jobs if j.kind == JobKind.SLICE]
        failures = [failure_of(j) for j in jobs if j.state == JobState.FAILED]
        stage1 = next((j for j in jobs if j.kind == JobKind.STAGE1), None)
        return AnalysisStatus(analysis, Progress.of(jobs), failures, records, slices, stage1)

    def results(self, analysis_id: str) -> Scorecard:
        """The finalized scorecard, or a partial one (``complete=False``) assembled from what is stored so far."""
        analysis = self.analysis(analysis_id)
        if analysis.state != AnalysisState.RUNNING:
            try:
                raw = json.loads(self.store.get_bytes(keys.scorecard(analysis_id)))
            except (NotFoundError, StorageError, ValueError):  # ValueError: a damaged stored scorecard
                raw = None
            if isinstance(raw, dict) and raw.get("version") == analysis.version:
                try:
                    return _scorecard_from_json(raw)
                except (KeyError, TypeError, ValueError) as exc:  # re-assembled below from the stored records
                    log.warning("stored scorecard of %s is damaged (%s); assembling it again", analysis_id, exc)
        jobs = self.state.list_jobs(analysis_id)
        card = assemble(analysis, jobs, self.store, complete=analysis.state != AnalysisState.RUNNING)
        return self._with_decision(self._with_inference(card, analysis, jobs, record_look=False), analysis)

    def _with_decision(self, card: Scorecard, analysis: Analysis) -> Scorecard:
        """The ship decision per cell (``xpcompute.decision``) on the records after the inference pass. A rule
        that cannot run (roles without a direction, a failing team rule) leaves ``decision_note``, never fails
        the analysis."""
        from xpcompute.decision import decide

        wanted = (analysis.request.get("inference") or {}).get("sequential", "none")
        if wanted != "none" and (card.inference or {}).get("method") == "fixed_horizon":
            # the sequential pass failed (a damaged stored look, say): a fixed-horizon test at an interim look
            # would overstate the evidence, so no ship call is made from it
            return replace(card, decision=[], decision_note=(
                f"no decision: this experiment is tested {wanted}, and its sequential inference pass did not run "
                "(see the inference notes); fixed-horizon results at an interim look cannot decide it"))
        try:
            cells = decide(card.records, experiment=self.experiment_of(analysis), request=analysis.request,
                           srm=card.srm, complete=card.complete, failures=card.failures)
        except (ValueError, XPError) as exc:
            log.warning("decision of analysis %s failed: %s", analysis.analysis_id, exc)
            return replace(card, decision=[], decision_note=f"no decision: {exc}")
        return replace(card, decision=[c.to_json_dict() for c in cells], decision_note=None)

    def _with_inference(self, card: Scorecard, analysis: Analysis, jobs: list[Job], record_look: bool) -> Scorecard:
        """The scorecard after the inference pass (``inference_pass``): sequential, Bayesian and shrinkage fields
        on the records and the ``inference`` summary. At finalize (``record_look``) the analysis's look is stored
        (put-if-absent); a partial scorecard only reads the looks. A failure of the pass is reported in the
        summary's notes and leaves the fixed-horizon records as they are: it never fails the analysis."""
        from xpcompute.coordinator.inference_pass import InferenceSummary, run_inference_pass
        from xpcompute.inference.settings import InferenceSpec

        raw = analysis.request.get("inference")
        settings = InferenceSpec() if raw is None else InferenceSpec.model_validate(raw)
        experiment = self.experiment_of(analysis)
        covariates = {m: experiment.covariates_for(m) for m in experiment.metrics} if experiment is not None else {
            m: tuple(analysis.request.get("covariates") or ()) for m in analysis.request.get("metrics") or ()}
        counts = {j.slice_id: dict(j.output.get("cell_counts") or {}) for j in jobs
                  if j.kind == JobKind.SLICE and j.state == JobState.SUCCEEDED}
        try:
            records, summary = run_inference_pass(
                self.store, experiment_id=analysis.experiment_id, analysis_id=analysis.analysis_id,
                created_at=analysis.created_at, records=card.records, spec=settings,
                alpha=float(analysis.request.get("alpha", 0.05)), correction=card.correction,  # type: ignore[arg-type]
                slice_counts=counts, everyone_id=SliceFilter().slice_id,
                higher_is_better=experiment.higher_is_better() if experiment is not None else None,
                covariates=covariates, record_look=record_look,
            )
        except (ValueError, StorageError, CorruptObjectError) as exc:
            log.warning("inference pass of analysis %s failed: %s", analysis.analysis_id, exc)
            records = [r.model_copy(update={"inference": "fixed_horizon"}) for r in card.records]
            summary = InferenceSummary(notes=[f"the {settings.sequential} inference pass failed ({exc}); "
                                              "fixed-horizon results shown"])
        if (not record_look and analysis.state == AnalysisState.RUNNING and settings.sequential != "none"
                and jobs and all(j.state.terminal for j in jobs)):
            try:
                pending = self._looks_pending(analysis)
            except StorageError:
                pending = []
            if pending:
                names = ", ".join(a.analysis_id for a in pending)
                summary.notes.append(f"waiting to finalize: this look must count the look of analysis {names} "
                                     f"(created before it, still running); finalized when that look is stored, "
                                     f"or without it {self.look_wait_s:,.0f} s after this analysis's last job")
        return replace(card, records=records, inference=summary.to_json_dict())


def _sequential(analysis: Analysis) -> bool:
    """Whether the analysis's (resolved) request asks for sequential inference: it has a look to store."""
    raw = analysis.request.get("inference")
    return isinstance(raw, dict) and raw.get("sequential", "none") != "none"


def resolve_inference(spec: AnalysisSpec, experiment: ExperimentSpec | None) -> AnalysisSpec:
    """The request with its inference settings resolved: its own override, else the experiment's ``inference:``
    block, else fixed horizon (an ad-hoc table). Stored resolved, so the analysis is reproducible whatever the
    experiment's spec says later. Priors must name metrics (of the experiment, or of the request when ad hoc)."""
    from xpcompute.inference.settings import InferenceSpec

    inference = spec.inference
    if inference is None:
        inference = experiment.inference if experiment is not None else InferenceSpec()
    known = set(experiment.metrics) if experiment is not None else set(spec.metrics)
    unknown = sorted(set(inference.priors) - known)
    if unknown:
        raise InputError(f"inference.priors names {unknown}, which are not metrics of this "
                         f"{'experiment' if experiment is not None else 'analysis'}; use one of {sorted(known)}")
    return spec.model_copy(update={"inference": inference})


def _used_sources(experiment: ExperimentSpec) -> list[str]:
    """The sources stage 1 reads (declared but unused sources do not make the table stale)."""
    used = [experiment.allocation.source, experiment.users_source]
    for m in experiment.metrics:
        used += sorted(experiment.metric(m).sources())
    for c in experiment.covariates:
        used += sorted(experiment.covariate(c).sources())
    return [u for u in dict.fromkeys(used) if u in experiment.sources]


def _check_sources(experiment: ExperimentSpec) -> None:
    """Stage 1's source checks, with a missing source reported as bad input (the spec names it), not a 404."""
    from xpcompute.pipeline.stage1 import validate_sources

    try:
        validate_sources(experiment)
    except NotFoundError as exc:
        raise InputError(f"experiment {experiment.id!r}: {exc}") from exc


def _timestamp(iso: str) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def _endpoint(store: ObjectStore) -> str | None:
    """The S3 endpoint the store uses, so source look-ups reach the same service (moto, MinIO)."""
    value = getattr(store, "endpoint_url", None)
    return value if isinstance(value, str) else None


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
        inference=raw.get("inference"),  # type: ignore[arg-type]
        decision=list(raw.get("decision") or []),  # type: ignore[call-overload]
        decision_note=raw.get("decision_note"),  # type: ignore[arg-type]
        segments=raw.get("segments"),  # type: ignore[arg-type]
        srm_note=raw.get("srm_note"),  # type: ignore[arg-type]
    )


__all__ = [
    "AnalysisStatus", "Coordinator", "InputError", "RegisteredExperiment", "RetryPolicy", "spec_hash", "table_spec_hash",
]
