"""How an experiment's results are inferred: the pydantic settings the YAML and the analysis request carry.

Fixed-horizon p-values are the default. A team that looks at results while
the test runs chooses a sequential method here, with the planned number of
units (the confidence sequence's tuning and each look's information
fraction); Bayesian quantities and empirical-Bayes shrinkage are added on
request, with an optional prior per metric (flat by default). The experiment
YAML sets them for every analysis (``inference:``); a request may override
them for one analysis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:  # the spec is imported by every function; scipy (the math modules) only where a result is computed
    from xpcompute.inference.bayes import NormalPrior

Sequential = Literal["none", "always_valid", "group_sequential"]
Spending = Literal["obrien_fleming", "pocock"]  # as xpcompute.inference.sequential.Spending


class PriorSpec(BaseModel):
    """A normal prior on one metric's effect: mean and standard deviation, on the relative or absolute scale."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mean: float = 0.0
    sd: float = Field(gt=0, description="Prior standard deviation of the effect, e.g. 0.05 for +-5% relative.")
    scale: Literal["relative", "absolute"] = "relative"

    def prior(self) -> NormalPrior:
        from xpcompute.inference.bayes import NormalPrior

        return NormalPrior(mean=self.mean, variance=self.sd**2, scale=self.scale)


class InferenceSpec(BaseModel):
    """Sequential testing, Bayesian results and shrinkage for an experiment or one analysis."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sequential: Sequential = Field(
        default="none",
        description="'none' (fixed horizon), 'always_valid' (asymptotic confidence sequences: valid at every "
        "look) or 'group_sequential' (Lan-DeMets alpha spending at each look's information fraction).",
    )
    planned_units: int | None = Field(
        default=None, gt=1, description="Units planned in the whole test (all cells); needed by both sequential methods."
    )
    spending: Spending = Field(default="obrien_fleming", description="Alpha-spending function for group_sequential.")
    planned_looks: int | None = Field(default=None, ge=1, le=1000, description="Looks planned (shown as 'look k of K').")
    bayesian: bool = Field(default=False, description="Add the normal-normal posterior to every moments-based record.")
    shrinkage: bool = Field(default=False, description="Add empirical-Bayes shrunken estimates across the analysis.")
    priors: dict[str, PriorSpec] = Field(default_factory=dict, description="Per-metric priors; others are flat.")

    @model_validator(mode="after")
    def _planned(self) -> InferenceSpec:
        if self.sequential != "none" and self.planned_units is None:
            raise ValueError(f"sequential '{self.sequential}' needs planned_units: the number of units the test "
                             "is planned to reach (all cells together)")
        return self


__all__ = ["InferenceSpec", "PriorSpec", "Sequential"]
