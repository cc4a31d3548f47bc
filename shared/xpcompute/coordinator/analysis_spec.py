"""What one analysis is asked to do: the validated request the coordinator plans from.

It is pydantic because it arrives from outside (HTTP, an event, a notebook)
and is stored verbatim with the analysis, so the analysis can be re-planned
after a restart and reproduced later.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from xpcompute.config import EngineKind
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

    ``models`` empty means each catalog metric's declared models (``ttest``
    for metrics outside the catalog). Rank and quantile models are fitted on an
    n-tile compression (``ntile_buckets``); ``dte`` on the user-by-day panel,
    which needs stage 1 run with ``daily=True``. ``slices`` are pre-computed when the
    analysis is created; more can be requested live later.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    metrics: tuple[str, ...] = Field(min_length=1, max_length=MAX_METRICS)
    models: tuple[ModelName, ...] = ()
    slices: tuple[SliceFilter, ...] = Field(default=(SliceFilter(),), min_length=1, max_length=MAX_SLICES)
    treatment: str = "cell"
    control: str | None = None
    covariates: tuple[str, ...] = Field(default=(), max_length=32)
    segment: str | None = None
    alpha: float = Field(default=0.05, gt=0, lt=1)
    correction: Correction = "bh"
    expected_shares: dict[str, float] | None = Field(
        default=None, description="Planned share per cell for the sample-ratio check (default: equal split)."
    )
    engine: EngineKind | None = Field(default=None, description="Stage-2 engine; default XPCOMPUTE_SLICE_ENGINE.")
    table: str | None = Field(
        default=None, description="Object-store key of a published analysis table; default the experiment's stage-1 output."
    )
    ntile_buckets: int = Field(
        default=1000,
        description="Buckets of the n-tile compression the slice jobs use for rank and quantile models "
        "(mannwhitney, quantile); exact for metrics with at most this many distinct values.",
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
        if "cate" in self.models and not self.segment:
            raise ValueError("model 'cate' needs a segment column: set segment")
        return self
