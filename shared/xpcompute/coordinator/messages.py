"""What travels between the coordinator and the functions: pydantic models, because they cross process
and network boundaries (a Lambda event, an SQS body, an OpenFaaS request, a pipe to a local worker).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from xpcompute.coordinator.jobs import JobKind


class RunJob(BaseModel):
    """Run one job (sent to the slice or fit function). Delivering it twice is harmless."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["run_job"] = "run_job"
    job_id: str = Field(min_length=1, max_length=512)
    analysis_id: str = Field(min_length=1, max_length=128)
    kind: JobKind
    priority: int = Field(default=0, ge=0, description="Lower runs first where the transport can order.")


class JobFinished(BaseModel):
    """A job reached a terminal or retry state (sent to the coordinator function)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["job_finished"] = "job_finished"
    job_id: str = Field(min_length=1, max_length=512)
    analysis_id: str = Field(min_length=1, max_length=128)


class Tick(BaseModel):
    """Periodic housekeeping: reclaim expired leases, dispatch due jobs, finalize finished analyses."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["tick"] = "tick"


CoordinatorEvent = JobFinished | Tick
