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
    # -- inference (coordinator/inference_pass.py); all None on records stored before it existed ----------------
    inference: str | None = Field(
        default=None,
        description="Which inference produced the decision: 'fixed_horizon', 'always_valid' or 'group_sequential'.",
    )
    sequential_ci_low: float | None = Field(
        default=None, description="Always-valid confidence sequence, or repeated CI (group-sequential), absolute."
    )
    sequential_ci_high: float | None = None
    sequential_p_value: float | None = Field(
        default=None,
        description="Anytime p-value (always-valid), or the fixed p-value times alpha / this look's nominal alpha "
        "(group-sequential: <= alpha exactly when the boundary is crossed). The decision p-value when set.",
    )
    sequential_p_value_adjusted: float | None = Field(
        default=None, description="sequential_p_value after the analysis's multiple-testing correction."
    )
    look: int | None = Field(default=None, description="This analysis's look number (1-based) at the experiment.")
    planned_looks: int | None = None
    information_fraction: float | None = Field(default=None, description="Units now / planned units.")
    boundary_z: float | None = Field(default=None, description="Critical |z| at this look (group-sequential).")
    alpha_spent: float | None = Field(default=None, description="Cumulative alpha spent by this look.")
    boundary_crossed: bool | None = None
    posterior_mean: float | None = Field(default=None, description="Normal-normal posterior of the absolute effect.")
    posterior_sd: float | None = None
    credible_low: float | None = None
    credible_high: float | None = None
    chance_to_beat_control: float | None = None
    expected_loss_ship: float | None = None
    expected_loss_no_ship: float | None = None
    prior: str | None = Field(default=None, description="The prior used: 'flat' or 'N(mean, sd^2) relative|absolute'.")
    shrunk_effect: float | None = Field(
        default=None,
        description="Empirical-Bayes shrunken relative effect (scale of relative_effect), across the analysis's "
        "headline estimates of this cell.",
    )
    shrunk_se: float | None = None
    shrunk_ci_low: float | None = None
    shrunk_ci_high: float | None = None
    shrinkage_prior_sd: float | None = Field(
        default=None, description="SD (tau) of the fitted prior the shrinkage used, on the relative scale."
    )

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
