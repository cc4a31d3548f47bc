"""The state-store protocol: the few primitives the coordinator's state machine needs.

Every write that changes a record is conditional on the record's current
``state`` and ``version`` (optimistic concurrency). A lost race raises
``ConflictError``; that is how duplicated deliveries and replayed events are
turned into no-ops instead of double work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from xpcompute.coordinator.jobs import Analysis, AnalysisState, Job, JobState


@runtime_checkable
class StateStore(Protocol):
    def create_analysis(self, analysis: Analysis, jobs: Sequence[Job]) -> bool:
        """Store a new analysis and its planned jobs; ``False`` (and no write) if the id exists."""
        ...

    def get_analysis(self, analysis_id: str) -> Analysis:
        """The analysis; ``NotFoundError`` if absent."""
        ...

    def update_analysis(self, analysis: Analysis, expected_version: int) -> Analysis:
        """Replace the analysis if its stored version is ``expected_version``; bumps the version."""
        ...

    def list_analyses(self, state: AnalysisState | None = None) -> list[Analysis]:
        """Analyses, optionally only those in ``state`` (a restarted coordinator resumes the RUNNING ones)."""
        ...

    def delete_analysis(self, analysis_id: str) -> int:
        """Remove the analysis and every job of it; returns how many records went (0 when it was absent)."""
        ...

    def add_jobs(self, jobs: Sequence[Job]) -> list[Job]:
        """Insert jobs whose ids are new; returns the ones inserted (existing ids are left untouched)."""
        ...

    def get_job(self, job_id: str) -> Job:
        """The job; ``NotFoundError`` if absent."""
        ...

    def list_jobs(self, analysis_id: str) -> list[Job]:
        """Every job of an analysis."""
        ...

    def update_job(self, job: Job, expected_state: JobState, expected_version: int) -> Job:
        """Replace the job if it is still in ``expected_state`` at ``expected_version``; bumps the version."""
        ...

    def due_jobs(self, now: float, limit: int = 100) -> list[Job]:
        """PENDING jobs whose ``due_at`` has passed: by priority class (pre-computed before live), and within a
        class analyses take turns, each analysis's jobs oldest first (``state/fair.py``)."""
        ...

    def job_counts(self, analysis_id: str) -> dict[JobState, int]:
        """Jobs per state, from the analysis's counter: one read, however many jobs (the coordinator asks after
        every completion). Stores move the counter in the same transaction as the job write that changes a state."""
        ...

    def recount_jobs(self, analysis_id: str) -> dict[JobState, int]:
        """Jobs per state by reading every job of the analysis: what ``job_counts`` must always equal."""
        ...

    def expired_jobs(self, now: float, limit: int = 100) -> list[Job]:
        """RUNNING jobs whose lease ran out before ``now`` (their worker died or hangs)."""
        ...

    def close(self) -> None:
        ...
