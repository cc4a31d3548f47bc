"""Assemble a scorecard from stored records: corrections across the whole analysis, plus the SRM check.

The coordinator then adds the inference pass and the ship decision (``decision``, per cell).

Only stored objects go in (the records each fit job wrote, the cell counts
each slice job recorded), so the scorecard can be rebuilt at any time and a
partial one can be shown while the analysis runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from xpcompute import quasi
from xpcompute.coordinator.jobs import Analysis, Job, JobKind, JobState, Progress
from xpcompute.errors import CorruptObjectError, InputError, NotFoundError
from xpcompute.postprocess import Correction, adjust_pvalues, srm_test
from xpcompute.records import ResultRecord
from xpcompute.storage.objects import ObjectStore


@dataclass(frozen=True)
class SliceSRM:
    """The sample-ratio check of one slice."""

    slice: str
    slice_id: str
    chi2: float
    df: int
    p_value: float
    mismatch: bool
    observed: dict[str, float]
    expected: dict[str, float]


@dataclass(frozen=True)
class Failure:
    """A FAILED job and why: nothing is silently missing from a scorecard."""

    job_id: str
    kind: str
    slice: str
    metric: str | None
    model: str | None
    attempts: int
    error: str

    def describe(self) -> str:
        """One line for a terminal: what failed, where, why, then the job and its attempts (to retry or look up)."""
        what = f"{self.metric} ({self.model})" if self.metric else f"the {self.kind} job"
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        return f"{what} on {self.slice}: {self.error} (job {self.job_id}, {tries})"


@dataclass
class Scorecard:
    """The analysis's results; ``version`` is the analysis version it was assembled for (a cache check)."""

    analysis_id: str
    experiment_id: str
    state: str
    complete: bool
    correction: str
    progress: Progress
    records: list[ResultRecord] = field(default_factory=list)
    srm: list[SliceSRM] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    spec: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    finished_at: float | None = None
    version: int = 0
    #: the inference summary (``inference_pass.InferenceSummary.to_json_dict``): method, look k of K, alpha spent,
    #: what crossed; ``None`` on scorecards stored before it existed
    inference: dict[str, Any] | None = None
    #: the ship decision, one dict per treatment cell (``xpcompute.decision.rule.CellDecision.to_json_dict``:
    #: recommendation, reasons, warnings, checks), from the experiment's rule after the inference pass
    decision: list[dict[str, Any]] = field(default_factory=list)
    #: why there is no decision when the rule could not run (bad roles, say); ``None`` otherwise
    decision_note: str | None = None
    #: why there is no sample-ratio check (a quasi-experiment: ``xpcompute.quasi.SRM_NOT_APPLICABLE``); ``None`` otherwise
    srm_note: str | None = None
    #: segment discovery (``xpcompute.segments.SegmentReport`` as JSON): per-dimension heterogeneity tests and
    #: honest-tree segments with BH-adjusted p-values; ``None`` when the experiment declares no dimensions
    segments: dict[str, Any] | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "analysis_id": self.analysis_id,
            "experiment_id": self.experiment_id,
            "state": self.state,
            "complete": self.complete,
            "correction": self.correction,
            "progress": self.progress.__dict__,
            "records": [r.to_json_dict() for r in self.records],
            "srm": [s.__dict__ for s in self.srm],
            "failures": [f.__dict__ for f in self.failures],
            "spec": self.spec,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "version": self.version,
            "inference": self.inference,
            "decision": self.decision,
            "decision_note": self.decision_note,
            "segments": self.segments,
            "srm_note": self.srm_note,
        }


def failure_of(job: Job) -> Failure:
    return Failure(
        job_id=job.job_id, kind=job.kind.value, slice=job.slice_label, metric=job.metric, model=job.model,
        attempts=job.attempts, error=job.last_error or "failed without a recorded reason",
    )


def records_of(job: Job, store: ObjectStore) -> list[ResultRecord]:
    """The records a SUCCEEDED fit job stored; ``CorruptObjectError`` (naming the key) when they do not decode."""
    assert job.result_key is not None
    data = store.get_bytes(job.result_key)
    try:
        raw = json.loads(data)
        if not isinstance(raw, list):
            raise TypeError(f"a list of records was expected, found {type(raw).__name__}")
        return [ResultRecord.model_validate(r) for r in raw]
    except (ValueError, TypeError) as exc:  # JSON and pydantic errors are ValueErrors
        first = str(exc).splitlines()[0][:200]
        raise CorruptObjectError(
            f"result object {job.result_key} is damaged ({len(data)} bytes: {first}); retry the analysis "
            f"(POST /analyses/{job.analysis_id}/retry or xpcompute retry {job.analysis_id}) to recompute it"
        ) from None


def _sort_key(r: ResultRecord) -> tuple[Any, ...]:
    return (r.slice or "", r.metric, r.model, r.cell, r.segment or "", r.time or "", r.quantile or 0.0)


def assemble(analysis: Analysis, jobs: list[Job], store: ObjectStore, complete: bool) -> Scorecard:
    """Records of every succeeded fit, corrected together; SRM per slice; every failure with its reason."""
    records: list[ResultRecord] = []
    failures: list[Failure] = []
    srm: list[SliceSRM] = []
    spec = analysis.request
    shares = spec.get("expected_shares")
    for job in jobs:
        if job.state == JobState.FAILED:
            failures.append(failure_of(job))
        elif job.state == JobState.SUCCEEDED and job.kind == JobKind.FIT:
            try:
                records.extend(records_of(job, store))
            except NotFoundError:
                failures.append(Failure(job.job_id, job.kind.value, job.slice_label, job.metric, job.model,
                                        job.attempts, f"result object {job.result_key} is missing from the store"))
            except CorruptObjectError as exc:
                failures.append(Failure(job.job_id, job.kind.value, job.slice_label, job.metric, job.model,
                                        job.attempts, str(exc)))
        elif job.state == JobState.SUCCEEDED and job.kind == JobKind.SLICE and spec.get("design") != "quasi":
            counts = job.output.get("cell_counts") or {}
            if len(counts) >= 2:
                try:
                    res = srm_test(counts, shares)
                except InputError as exc:
                    failures.append(Failure(job.job_id, "srm", job.slice_label, None, None, 0, str(exc)))
                else:
                    srm.append(SliceSRM(job.slice_label, job.slice_id, res.chi2, res.df, res.p_value, res.mismatch,
                                        res.observed, res.expected))
    correction: Correction = spec.get("correction", "bh")
    records = adjust_pvalues(sorted(records, key=_sort_key), correction)
    return Scorecard(
        analysis_id=analysis.analysis_id, experiment_id=analysis.experiment_id, state=analysis.state.value,
        complete=complete, correction=correction, progress=Progress.of(jobs), records=records,
        srm=sorted(srm, key=lambda s: s.slice), failures=failures, spec=spec,
        created_at=analysis.created_at, finished_at=analysis.finished_at, version=analysis.version,
        srm_note=quasi.SRM_NOT_APPLICABLE if spec.get("design") == "quasi" else None,
    )
