"""Request and response bodies of the HTTP API (pydantic: they are the edge, and they make /openapi.json)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from xpcompute.records import ResultRecord


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable code, e.g. invalid_input, not_found, unauthorized.")
    message: str = Field(description="What is wrong and what to change.")


class ProgressBody(BaseModel):
    total: int
    pending: int
    running: int
    succeeded: int
    failed: int


class FailureBody(BaseModel):
    job_id: str
    kind: str
    slice: str
    metric: str | None
    model: str | None
    attempts: int
    error: str


class SliceStateBody(BaseModel):
    slice_id: str
    label: str
    state: str = Field(description="State of the slice's compression job.")


class SRMBody(BaseModel):
    slice: str
    slice_id: str
    chi2: float
    df: int
    p_value: float
    mismatch: bool
    observed: dict[str, float]
    expected: dict[str, float]


class AnalysisCreated(BaseModel):
    analysis_id: str
    experiment_id: str
    state: str
    jobs: int
    status_path: str = Field(description="Relative to the API's base URL.")
    results_path: str


class AnalysisStatusBody(BaseModel):
    """Status and progress, failures with their reasons, and the results available so far."""

    model_config = ConfigDict(extra="forbid")

    analysis_id: str
    experiment_id: str
    state: str
    progress: ProgressBody
    slices: list[SliceStateBody]
    failures: list[FailureBody]
    error: str | None
    created_at: float
    finished_at: float | None
    records: list[ResultRecord] = Field(description="Partial results: uncorrected records of the fits done so far.")


class ScorecardBody(BaseModel):
    """The scorecard: every result record (with its slice) corrected across the analysis, SRM per slice."""

    analysis_id: str
    experiment_id: str
    state: str
    complete: bool
    correction: str
    progress: ProgressBody
    records: list[ResultRecord]
    srm: list[SRMBody]
    failures: list[FailureBody]
    spec: dict[str, Any]
    created_at: float
    finished_at: float | None


class LiveSliceAccepted(BaseModel):
    analysis_id: str
    slice_id: str
    label: str
    job_id: str
    state: str


class Health(BaseModel):
    status: str
    version: str
    mode: str
    state_store: str
    dispatch: str
