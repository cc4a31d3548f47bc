"""The coordinator's records: one ``Analysis`` and the ``Job``s it fans out into.

Plain dataclasses: they live inside the coordinator and the state stores, and
are converted to pydantic models only at the edges (API responses, events).
Every record carries a ``version`` that each conditional write checks and
bumps, so two writers racing on one record cannot both win.

Job life cycle::

    PENDING --claim (lease)--> RUNNING --complete--> SUCCEEDED
       ^                          |
       +--- fail / lease expired -+--> FAILED (attempts exhausted; keeps its reason)

A PENDING job is *due* for dispatch once ``due_at`` is set and has passed.
Fit jobs wait (``due_at`` unset) until their slice job has succeeded, and
slice jobs wait on the analysis's stage-1 job when it has one; a
retried job waits out its backoff; a dispatched job's ``due_at`` moves to the
re-dispatch deadline, so a message lost on the way is sent again and nothing
is silently dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED)


class JobKind(StrEnum):
    """``stage1`` builds the analysis table from the sources (only when it is missing or stale);
    ``slice`` compresses one slice of it; ``fit`` fits one model to one metric of one slice; ``replay``
    replays a metric definition on one archived experiment (``meta.replay_jobs``)."""

    STAGE1 = "stage1"
    SLICE = "slice"
    FIT = "fit"
    REPLAY = "replay"


class AnalysisState(StrEnum):
    """RUNNING until every job is terminal; then SUCCEEDED, or FAILED when any job failed.

    A finished analysis goes back to RUNNING when a live slice is requested.
    """

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


#: Priority bases (lower runs first): pre-computed slices first, live slices queued behind them.
PRIORITY_PRECOMPUTED = 0
PRIORITY_LIVE = 2
#: Every priority a job can have: within each base, fits run before slice jobs, so a finished
#: slice's results land while the remaining slices are still being compressed.
PRIORITIES = (0, 1, 2, 3)


def job_priority(kind: JobKind, base: int) -> int:
    """A fit (or stage-1) job's priority is its base; a slice job's is one behind it.

    Stage 1 gates every slice of its analysis, so it goes first.
    """
    return base + 1 if kind == JobKind.SLICE else base


def slice_job_id(analysis_id: str, sid: str) -> str:
    """Deterministic ids: planning the same analysis twice yields the same jobs (idempotent creation)."""
    return f"{analysis_id}.slice.{sid}"


def fit_job_id(analysis_id: str, sid: str, metric: str, model: str) -> str:
    return f"{analysis_id}.fit.{sid}.{metric}.{model}"


def stage1_job_id(analysis_id: str) -> str:
    return f"{analysis_id}.stage1"


#: the ``kind`` of a replay's request (``Analysis.is_replay``)
REPLAY_REQUEST = "replay"


@dataclass
class Analysis:
    """One analysis request and its overall state.

    ``request`` is the validated request as JSON (``AnalysisSpec.model_dump``),
    with the registered experiment's defaults filled in (treatment, control,
    expected shares): stored so that the analysis can be re-planned and
    reproduced. ``experiment_version`` is the version of the registered spec it
    was planned from (``None`` for an ad-hoc table); its jobs read that version,
    whatever is registered later.
    """

    analysis_id: str
    experiment_id: str
    request: dict[str, Any]
    state: AnalysisState = AnalysisState.RUNNING
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None
    version: int = 0
    error: str | None = None
    experiment_version: int | None = None

    @property
    def is_replay(self) -> bool:
        """A replay of the archive (``meta.replay_jobs``), stored as an analysis record: it has no scorecard."""
        return self.request.get("kind") == REPLAY_REQUEST

    def to_item(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Analysis:
        data: dict[str, Any] = {f.name: item[f.name] for f in dataclasses.fields(cls) if f.name in item}
        data["state"] = AnalysisState(data["state"])
        return cls(**data)


@dataclass
class Job:
    """One unit of work: build the analysis table, compute one slice, or fit one model to one metric of one slice.

    ``slice`` is the slice filter as JSON (``SliceFilter.model_dump``); ``spec``
    is a fit job's ``FitSpec`` as JSON; ``children`` are the jobs a job
    releases when it succeeds (a stage-1 job's slice jobs, a slice job's fit
    jobs) and fails when it fails.
    """

    job_id: str
    analysis_id: str
    kind: JobKind
    slice_id: str
    slice_label: str
    slice: dict[str, Any] = field(default_factory=dict)
    metric: str | None = None
    model: str | None = None
    spec: dict[str, Any] | None = None
    depends_on: str | None = None
    children: list[str] = field(default_factory=list)
    priority: int = PRIORITY_PRECOMPUTED
    state: JobState = JobState.PENDING
    attempts: int = 0
    max_attempts: int = 3
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    ready_at: float | None = None
    due_at: float | None = None
    dispatched_at: float | None = None
    #: times it was sent since it last became due unclaimed (re-sends back off: ``RetryPolicy.redispatch``)
    dispatches: int = 0
    lease_expires_at: float | None = None
    worker: str | None = None
    last_error: str | None = None
    result_key: str | None = None
    output: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def waiting(self) -> bool:
        """PENDING on a dependency (not yet due for dispatch)."""
        return self.state == JobState.PENDING and self.due_at is None

    def to_item(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Job:
        data: dict[str, Any] = {f.name: item[f.name] for f in dataclasses.fields(cls) if f.name in item}
        data["state"] = JobState(data["state"])
        data["kind"] = JobKind(data["kind"])
        data["errors"] = list(data.get("errors") or [])
        data["children"] = list(data.get("children") or [])
        data["output"] = dict(data.get("output") or {})
        return cls(**data)


@dataclass(frozen=True)
class Progress:
    """Job counts of one analysis (what ``GET /analyses/{id}`` reports)."""

    total: int
    pending: int
    running: int
    succeeded: int
    failed: int

    @classmethod
    def of(cls, jobs: list[Job]) -> Progress:
        count = {s: 0 for s in JobState}
        for job in jobs:
            count[job.state] += 1
        return cls.of_counts(count)

    @classmethod
    def of_counts(cls, count: Mapping[JobState, int]) -> Progress:
        """From jobs per state (``StateStore.job_counts``: one read)."""
        return cls(
            total=sum(count.values()),
            pending=count[JobState.PENDING],
            running=count[JobState.RUNNING],
            succeeded=count[JobState.SUCCEEDED],
            failed=count[JobState.FAILED],
        )

    @property
    def done(self) -> bool:
        return self.total > 0 and self.succeeded + self.failed == self.total
