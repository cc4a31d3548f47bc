"""The one result record every fit ends in.

The API, the scorecard, the notebook export and the plots all read this type
(design principle: one point of exit). Fields that do not apply to a model are
``None``; optional coordinates (segment, time, quantile, slice) say which
sub-population or statistic the effect refers to.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ResultRecord(BaseModel):
    """One treatment-versus-control comparison for one metric."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    model: str
    cell: str
    control: str
    effect: float = Field(description="Absolute effect: E[y|cell] - E[y|control] (or the model's estimand).")
    se: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    relative_effect: float | None = Field(description="effect / control mean (delta method).")
    relative_se: float | None = None
    relative_ci_low: float | None
    relative_ci_high: float | None
    n_cell: float
    n_control: float
    mean_cell: float | None
    mean_control: float | None
    alpha: float = 0.05
    statistic: float | None = None
    df: float | None = None
    segment: str | None = None
    time: str | None = None
    quantile: float | None = None
    slice: str | None = None
    p_value_adjusted: float | None = None
    correction: str | None = None
    notes: list[str] = Field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: non-finite floats become ``None`` (JSON has no NaN)."""
        out: dict[str, Any] = {}
        for key, value in self.model_dump().items():
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            out[key] = value
        return out


class CellSummary(BaseModel):
    """Per-cell summary statistics for one metric (count, mean, variance, quantiles)."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    cell: str
    count: float
    mean: float
    variance: float | None
    quantiles: dict[str, float] = Field(default_factory=dict)
    segment: str | None = None
    time: str | None = None
    slice: str | None = None
