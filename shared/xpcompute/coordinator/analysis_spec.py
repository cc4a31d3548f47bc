"""What one analysis is asked to do: the validated request the coordinator plans from.

It is pydantic because it arrives from outside (HTTP, an event, a notebook)
and is stored verbatim with the analysis, so the analysis can be re-planned
after a restart and reproduced later.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from xpcompute.config import EngineKind
from xpcompute.decision.roles import RolesSpec
from xpcompute.inference.settings import InferenceSpec
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.postprocess import Correction
from xpcompute.spec import ModelName

MAX_METRICS = 100
MAX_SLICES = 500
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _name(value: str, role: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{role} {value!r} must be an identifier (letters, digits, '_'; at most 64 characters)")
    return value


class AnalysisSpec(BaseModel):
    """Metrics x slices x models for one experiment.

    ``models`` empty means each metric's declared models (``ttest`` on an
    ad-hoc table). Rank and quantile models are fitted on an
    n-tile compression (``ntile_buckets``); ``dte`` on the user-by-day panel,
    which needs stage 1 run with ``daily=True``. ``slices`` are pre-computed when the
    analysis is created; more can be requested live later.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    metrics: tuple[str, ...] = Field(
        default=(), max_length=MAX_METRICS,
        description="Metrics to analyse; for a registered experiment, names from its spec's 'metrics' (empty, the "
        "default: every one of them). An analysis of a published table names its columns.",
    )
    models: tuple[ModelName, ...] = Field(
        default=(),
        description="Models to fit to every metric; empty means each metric's declared models (plus CUPED 'ols' "
        "where the experiment declares covariates for it). A model that does not apply to a metric's kind is "
        "refused, e.g. anything but 'ratio' on a ratio metric.",
    )
    slices: tuple[SliceFilter, ...] = Field(
        default=(SliceFilter(),), min_length=1, max_length=MAX_SLICES,
        description="Slices computed when the analysis is created (conditions on declared dimensions); default "
        "all users. More can be requested later with POST /analyses/{id}/slices.",
    )
    treatment: str = Field(
        default="cell",
        description="Column holding each unit's cell. For a registered experiment omit it, or give 'cell' or the "
        "experiment's allocation.cell_column (stage 1 stores that column as 'cell'); anything else is refused. For "
        "an ad-hoc 'table', any column of that table.",
    )
    control: str | None = Field(
        default=None,
        description="The control cell; default the registered experiment's control (ad hoc: 'control' if present, "
        "else the first cell in sorted order).",
    )
    covariates: tuple[str, ...] = Field(
        default=(), max_length=32,
        description="Covariates for 'ols'/'cate' on an ad-hoc 'table' only; a registered experiment's covariates "
        "come from its spec, and setting them here is refused.",
    )
    segment: str | None = Field(default=None, description="Segment column (a declared dimension) for 'cate'.")
    alpha: float = Field(
        default=0.05, gt=0, lt=1, description="Significance level of every test and of the confidence intervals."
    )
    correction: Correction = Field(
        default="bh", description="Multiple-testing correction across metrics x slices x cells: bh, holm or none."
    )
    expected_shares: dict[str, float] | None = Field(
        default=None,
        description="Planned share per cell for the sample-ratio check; default the registered experiment's "
        "'shares', else an equal split.",
    )
    engine: EngineKind | None = Field(default=None, description="Stage-2 engine; default XPCOMPUTE_SLICE_ENGINE.")
    table: str | None = Field(
        default=None,
        description="Object-store key of a published analysis table to analyse ad hoc (no registered spec needed). "
        "Default: the registered experiment's stage-1 table, (re)built by a stage-1 job when it is missing or "
        "older than the spec or the sources.",
    )
    ntile_buckets: int = Field(
        default=1000,
        description="Buckets of the n-tile compression the slice jobs use for rank and quantile models "
        "(mannwhitney, quantile); exact for metrics with at most this many distinct values.",
    )
    refresh: bool = Field(
        default=False,
        description="Rebuild the registered experiment's analysis table (a stage-1 job) before slicing, even when "
        "it is up to date with the spec and the sources. Not allowed with 'table'.",
    )

    reference_period: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="Model 'did': the period the effects are relative to (a label of the unit-by-period table's "
        "day column: a day index, or for a quasi-experiment an event time such as '-1', its default). A period "
        "the experiment does not have is refused.",
    )
    design: Literal["randomized", "quasi"] = Field(
        default="randomized",
        description="Set from the registered experiment's design. 'quasi' (no random assignment): the "
        "sample-ratio check does not apply and is not run.",
    )

    inference: InferenceSpec | None = Field(
        default=None,
        description="Sequential testing, Bayesian results and shrinkage for this analysis; default the registered "
        "experiment's 'inference:' block (fixed horizon for an ad-hoc table). Stored resolved with the analysis.",
    )

    roles: RolesSpec | None = Field(
        default=None,
        description="Metric roles for this analysis's ship decision (goal, guardrails with margins, secondary, "
        "diagnostic), overriding the experiment's 'roles:' metric by metric; names must be in 'metrics'.",
    )

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for m in v:
            _name(m, "metric")
        if len(set(v)) != len(v):
            raise ValueError(f"metrics {list(v)} repeat a name; list each metric once")
        return v

    @field_validator("covariates")
    @classmethod
    def _covariates(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for c in v:
            _name(c, "covariate")
        return v

    @field_validator("treatment", "segment")
    @classmethod
    def _columns(cls, v: str | None) -> str | None:
        return None if v is None else _name(v, "column")

    @field_validator("table")
    @classmethod
    def _table(cls, v: str | None) -> str | None:
        if v is not None and (".." in v or v.startswith("/") or not re.match(r"^[A-Za-z0-9_./-]{1,512}$", v)):
            raise ValueError(f"table {v!r} must be a relative object-store key (letters, digits, _ . / -; no '..')")
        return v

    @field_validator("ntile_buckets")
    @classmethod
    def _buckets(cls, v: int) -> int:
        if v < 2:
            raise ValueError(f"ntile_buckets must be at least 2 (got {v}), e.g. 1000")
        return v

    @field_validator("expected_shares")
    @classmethod
    def _shares(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is not None and (len(v) < 2 or any(s <= 0 for s in v.values())):
            raise ValueError("expected_shares needs a positive share for each of at least two cells")
        return v

    @model_validator(mode="after")
    def _distinct_slices(self) -> AnalysisSpec:
        ids = [s.slice_id for s in self.slices]
        if len(set(ids)) != len(ids):
            dup = sorted({s.label() for s in self.slices if ids.count(s.slice_id) > 1})
            raise ValueError(f"slices {dup} are listed more than once (same conditions); list each slice once")
        labels = Counter(s.label() for s in self.slices)
        taken = sorted(label for label, n in labels.items() if n > 1)
        if taken:
            raise ValueError(f"slice label(s) {taken} would name more than one slice (a 'name' may not take another "
                             "slice's label); give each slice its own 'name'")
        if "cate" in self.models and not self.segment:
            raise ValueError("model 'cate' needs a segment column: set segment")
        if self.segment and "cate" not in self.models:
            raise ValueError("segment is only used by model 'cate' (effects per segment); add 'cate' to models "
                             "or drop segment")
        if self.roles is not None and self.metrics:  # empty: the experiment's, checked once resolved
            unknown = self.roles.unknown(self.metrics)
            if unknown:
                raise ValueError(f"roles names {unknown}, which are not metrics of this request; use names from "
                                 f"metrics: {list(self.metrics)}")
        if self.refresh and self.table is not None:
            raise ValueError("refresh rebuilds a registered experiment's own table; an explicit 'table' is analysed "
                             "as published. Drop one of them")
        return self
