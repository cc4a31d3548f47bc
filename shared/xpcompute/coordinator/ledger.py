"""The job ledger: a job's lease, completion and failure, and the registered experiment versions jobs read.

This is the part of the coordinator a slice or fit function needs to run a
job (``worker.run_job``): claim it, complete it or record its failure, each one
conditional write in the state store, and read the spec version its analysis
was planned from. ``service.Coordinator`` extends it with planning, fan-out,
advancing and the scorecard.

Why a module of its own: a job function's cold start pays for every module it
imports, and planning and finalizing (pyarrow schema checks, corrections, the
decision, the scorecard) are the coordinator function's work, never a job's.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from xpcompute.config import Settings
from xpcompute.coordinator.jobs import Analysis, Job, JobKind, JobState
from xpcompute.coordinator.lru import LRU
from xpcompute.coordinator.state.base import StateStore
from xpcompute.errors import ConflictError, InputError, NotFoundError
from xpcompute.storage import keys
from xpcompute.storage.objects import ObjectStore
from xpcompute.storage.versions import Version, VersionedDocuments, content_hash

if TYPE_CHECKING:
    from xpcompute.experiment import ExperimentSpec

Clock = Callable[[], float]
#: a re-sent job waits at most 2**this x ``redispatch_s`` before the next re-send (60 s -> 32 min)
REDISPATCH_DOUBLINGS = 5


class Deferred(Exception):
    """Raised by a job's work to say: not finished, deliver me again in ``delay_s`` (``JobLedger.defer``).

    Why: a job that follows work running elsewhere (a stage 1 on EMR Serverless, up to an hour) must not hold a
    function for that long (Lambda stops it at its timeout). It records what it started in ``output`` and returns;
    each later delivery looks once and defers again until the work is done.
    """

    def __init__(self, delay_s: float, output: dict[str, object], reason: str) -> None:
        super().__init__(reason)
        self.delay_s = delay_s
        self.output = output


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts, backoff and leases; from ``XPCOMPUTE_MAX_ATTEMPTS``, ``_BACKOFF_S``, ``_LEASE_S``, ``_STAGE1_LEASE_S`` ..."""

    max_attempts: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    lease_s: float = 120.0
    redispatch_s: float = 60.0
    stage1_lease_s: float = 3600.0
    transient_retries: int = 6

    @classmethod
    def from_settings(cls, s: Settings) -> RetryPolicy:
        return cls(s.max_attempts, s.backoff_s, s.backoff_max_s, s.lease_s, s.redispatch_s, s.stage1_lease_s,
                   s.transient_retries)

    def lease(self, kind: JobKind) -> float:
        """How long a worker may hold a job: stage 1 builds the whole table, so it gets its own, longer lease."""
        return self.stage1_lease_s if kind == JobKind.STAGE1 else self.lease_s

    def redispatch(self, dispatches: int) -> float:
        """How long a job sent ``dispatches`` times already waits unclaimed before it is sent again: doubling from
        ``redispatch_s``, capped at ``REDISPATCH_MAX_FACTOR`` times it.

        Why back off: a re-send is for a message that was lost (a Lambda async invocation dropped after its
        retries, a worker gone). A job that waits behind a long queue (SQS, async Lambda at full concurrency) was
        not lost, and re-sending it every ``redispatch_s`` filled the queue with copies, each costing a function
        invocation that finds it already claimed.
        """
        return self.redispatch_s * 2 ** min(max(dispatches, 0), REDISPATCH_DOUBLINGS)

    def backoff(self, attempts: int) -> float:
        """Delay before attempt ``attempts + 1``: doubling from ``backoff_s``, capped."""
        return min(self.backoff_max_s, self.backoff_s * 2 ** max(attempts - 1, 0))


@dataclass(frozen=True)
class RegisteredExperiment:
    """One version of a registered experiment: what ``PUT``/``GET /experiments/{id}`` return.

    ``created`` is true when a registration stored a new version (false when
    the same content was already the current version).
    """

    experiment_id: str
    version: int
    spec_hash: str
    created_at: str
    spec: ExperimentSpec
    created: bool = False

    def to_json_dict(self) -> dict[str, object]:
        """Everything but the spec itself (what the CLI prints after ``experiment register``)."""
        return {"experiment_id": self.experiment_id, "version": self.version, "spec_hash": self.spec_hash,
                "created_at": self.created_at, "created": self.created}


class JobLedger:
    """Jobs' leases and outcomes, and experiment versions, over a ``StateStore`` and an ``ObjectStore``.

    Holds no state of its own beyond a cache of parsed (immutable) spec versions, so any number of copies
    (the functions, the coordinator, API threads) can use the same stores at once.
    """

    def __init__(
        self, state: StateStore, store: ObjectStore, policy: RetryPolicy | None = None, clock: Clock = time.time
    ) -> None:
        self.state = state
        self.store = store
        self.policy = policy or RetryPolicy()
        self.clock = clock
        #: parsed spec versions by (id, version, hash): a version's object never changes, so this cannot go stale
        self._parsed: LRU[tuple[str, int, str], ExperimentSpec] = LRU(64)
        self._parsed_lock = threading.Lock()

    def analysis(self, analysis_id: str) -> Analysis:
        """An experiment's analysis by id; ``NotFoundError`` for an unknown id, and for a replay of the archive
        (stored as an analysis record of kind ``replay``: ``meta.replay_jobs``), which has no scorecard."""
        found = self.state.get_analysis(analysis_id)
        if found.is_replay:
            raise NotFoundError(f"{analysis_id} is a replay of the archive, not an analysis: "
                                f"GET /meta/replays/{analysis_id}")
        return found

    # ---- experiments --------------------------------------------------------
    @property
    def experiments(self) -> VersionedDocuments:
        """Registered specs: immutable numbered versions in the object store (see ``storage.versions``)."""
        return VersionedDocuments(self.store, keys.EXPERIMENTS)

    def experiment_version(self, experiment_id: str, version: int | None = None) -> RegisteredExperiment | None:
        """Version ``version`` of a registered experiment (default: the current one, read from the store now).

        ``None`` when the experiment was never registered. The current version
        is looked up on every call, so a re-registration is seen at once by
        every server and function; only parsed versions (immutable) are cached.
        """
        keys.experiment_id(experiment_id)
        if version is not None:
            return self._registered(self.experiments.get(experiment_id, version), False)
        latest = self.experiments.latest(experiment_id)
        if latest is None:
            latest = self._migrate_legacy(experiment_id)
        return None if latest is None else self._registered(latest, False)

    def experiment(self, experiment_id: str) -> ExperimentSpec | None:
        """The current registered spec, or ``None`` for an experiment never registered (ad-hoc tables)."""
        current = self.experiment_version(experiment_id)
        return None if current is None else current.spec

    def experiment_of(self, analysis: Analysis) -> ExperimentSpec | None:
        """The spec version ``analysis`` was planned from (``None`` for an ad-hoc analysis), whatever is current."""
        if analysis.experiment_version is None:
            return None
        found = self.experiment_version(analysis.experiment_id, analysis.experiment_version)
        return None if found is None else found.spec

    def list_experiments(self) -> list[RegisteredExperiment]:
        """The current version of every registered experiment, by id."""
        out = []
        for name in self.experiments.names():
            found = self.experiment_version(name)
            if found is not None:
                out.append(found)
        return out

    def experiment_versions(self, experiment_id: str) -> list[RegisteredExperiment]:
        """Every version of one experiment, oldest first; ``NotFoundError`` if it was never registered."""
        if self.experiment_version(experiment_id) is None:
            raise NotFoundError(unregistered_message(experiment_id))
        return [self._registered(v, False) for v in self.experiments.versions(experiment_id)]

    def _registered(self, stored: Version, created: bool) -> RegisteredExperiment:
        key = (stored.name, stored.version, stored.hash)
        with self._parsed_lock:
            spec = self._parsed.get(key)
        if spec is None:
            from xpcompute.experiment import (
                ExperimentSpec,  # parsing a spec is a slice job's and the API's work
            )

            spec = ExperimentSpec.parse(stored.document, origin=f"experiment {stored.name!r} version {stored.version}")
            with self._parsed_lock:
                self._parsed.put(key, spec)
        return RegisteredExperiment(stored.name, stored.version, stored.hash, stored.created_at, spec, created)

    def _migrate_legacy(self, experiment_id: str) -> Version | None:
        """A spec registered before versions existed (``experiment.json``) becomes version 1 on first read."""
        try:
            raw = json.loads(self.store.get_bytes(keys.experiment_spec(experiment_id)))
        except NotFoundError:
            return None
        from xpcompute.experiment import ExperimentSpec

        spec = ExperimentSpec.parse(raw, origin=f"experiment {experiment_id} ({keys.experiment_spec(experiment_id)})")
        stored, _ = self.experiments.put(experiment_id, spec.canonical())
        return stored

    # ---- stage 1: is the analysis table up to date? ------------------------------
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
            lease_expires_at=now + self.policy.lease(job.kind), worker=worker, dispatches=0,
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

    def fail(self, job: Job, error: str, retryable: bool = True, transient: bool = False) -> Job | None:
        """Record a failure: back to PENDING after a backoff while attempts remain, else FAILED with the reason.

        ``transient`` (the attempt failed on the object or state store, not on the job's own work) allows
        ``transient_retries`` more attempts, so a store outage of a minute or so delays jobs instead of
        failing the analysis.
        """
        now = self.clock()
        errors = [*job.errors, error][-10:]
        allowed = job.max_attempts + (self.policy.transient_retries if transient else 0)
        if retryable and job.attempts < allowed:
            new = replace(
                job, state=JobState.PENDING, updated_at=now, lease_expires_at=None, worker=None,
                due_at=now + self.policy.backoff(job.attempts), dispatched_at=None, last_error=error, errors=errors,
                output={},  # the next attempt starts afresh: not from what a deferred one was following
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

    def defer(self, job: Job, delay_s: float, output: dict[str, object]) -> Job | None:
        """RUNNING -> PENDING, due in ``delay_s``, keeping ``output`` for the next delivery (``Deferred``).

        The attempt is given back: a poll is not a failure, so only real failures count towards
        ``max_attempts``. ``None`` if the lease was lost meanwhile.
        """
        now = self.clock()
        new = replace(
            job, state=JobState.PENDING, updated_at=now, lease_expires_at=None, worker=None, due_at=now + delay_s,
            dispatched_at=None, attempts=max(job.attempts - 1, 0), output=dict(output),
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
            new = self.fail(job, f"lease of {self.policy.lease(job.kind):g}s expired on worker {job.worker} "
                                 f"(attempt {job.attempts})", retryable=True)
            if new is not None:
                out.append(new)
        return out


def unregistered_message(experiment_id: str) -> str:
    return (
        f"experiment {experiment_id!r} is not registered: PUT /experiments/{experiment_id} with its spec first "
        "(stage 1 then builds its analysis table with the first analysis), or give 'table' to analyse a "
        "published analysis table ad hoc"
    )


def spec_hash(experiment: ExperimentSpec) -> str:
    """The content hash of a spec as stored (and of the spec stage 1 records in the table's manifest)."""
    return content_hash(experiment.canonical())


def table_spec_hash(manifest: dict[str, object]) -> str | None:
    """The hash of the spec a published table was built from: of the spec its manifest records, computed here
    the same way as ``spec_hash`` (so no other hashing scheme can make a current table look stale)."""
    if isinstance(manifest.get("spec"), dict):
        try:  # re-read, so a table recorded before a release added default fields is still current
            from xpcompute.experiment import ExperimentSpec

            return spec_hash(ExperimentSpec.parse(manifest["spec"], origin="the table's manifest"))  # type: ignore[arg-type]
        except InputError:
            return None
    value = manifest.get("spec_hash")
    return value if isinstance(value, str) else None
