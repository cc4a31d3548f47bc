"""Pydantic specs at the edge: what one fit is asked to do.

A ``FitSpec`` is the frozen config object of one estimation (pyfixest-style).
It is stored next to every result so that the result can be reproduced.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ModelName = Literal[
    "ttest", "proportion", "ols", "cate", "dte", "did", "mannwhitney", "quantile", "ratio", "event_quantile"
]
NullPolicy = Literal["drop", "refuse"]
CollinearPolicy = Literal["drop", "refuse"]


class CompressSpec(BaseModel):
    """How rows are compressed before a fit.

    ``lossless``: group by the design's discrete keys into sufficient statistics.
    ``none``: one group per input row (the raw data, same code path).
    ``ntile``: lossy; a continuous metric is bucketed into ``buckets`` quantile
    buckets, each represented by its mean (used by rank and quantile models).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["lossless", "none", "ntile"] = "lossless"
    buckets: int | None = None

    @classmethod
    def parse(cls, text: str) -> CompressSpec:
        """Parse the CLI form: ``lossless``, ``none`` or ``ntile:N``."""
        if text in ("lossless", "none"):
            return cls(kind=text)
        if text.startswith("ntile:"):
            try:
                buckets = int(text.split(":", 1)[1])
            except ValueError as exc:
                raise ValueError(f"--compress {text!r}: N in ntile:N must be an integer, e.g. ntile:1000") from exc
            return cls(kind="ntile", buckets=buckets)
        raise ValueError(f"--compress {text!r}: use lossless, none or ntile:N")

    @model_validator(mode="after")
    def _check(self) -> CompressSpec:
        if self.kind == "ntile" and (self.buckets is None or self.buckets < 2):
            raise ValueError("ntile compression needs buckets >= 2, e.g. ntile:1000")
        if self.kind != "ntile" and self.buckets is not None:
            raise ValueError("buckets only applies to ntile compression")
        return self

    def label(self) -> str:
        return f"ntile:{self.buckets}" if self.kind == "ntile" else self.kind


_BUILT_IN = frozenset({"ttest", "proportion", "ols", "cate", "dte", "did", "mannwhitney", "quantile", "ratio", "event_quantile"})
#: Which built-in models read which option (a custom model may read any). ``segment`` and ``time`` are not here:
#: the potential-outcomes base reports every model per segment or period.
_OPTION_MODELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("covariates", "--covariates", ("ols", "cate", "dte", "did", "ratio")),
    ("cluster", "--cluster", ("dte", "did", "event_quantile")),
    ("reference_period", "--reference-period", ("did",)),
    ("denominator", "--denominator", ("ratio",)),
)
_WHY: dict[tuple[str, str], str] = {
    ("covariates", "ttest"): "for a regression-adjusted (CUPED) estimate use model 'ols'",
    ("covariates", "proportion"): "for a regression-adjusted (CUPED) estimate use model 'ols'",
    ("covariates", "quantile"): "quantile effects here are marginal (unadjusted); drop --covariates",
    ("covariates", "mannwhitney"): "the rank test is unadjusted; drop --covariates",
    ("cluster", "quantile"): "the quantile bootstrap resamples rows, not clusters; drop --cluster",
    ("cluster", "ttest"): "clustered errors are available with model 'dte' on a user-by-period table",
    ("cluster", "ols"): "clustered errors are available with model 'dte' on a user-by-period table",
}


class FitSpec(BaseModel):
    """One metric, one model, control against every other cell."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str
    treatment: str
    model: ModelName = "ttest"
    control: str | None = Field(default=None, description="Control cell; default: 'control' if present, else the first cell in sorted order.")
    covariates: tuple[str, ...] = ()
    segment: str | None = None
    time: str | None = None
    cluster: str | None = None
    denominator: str | None = None
    reference_period: str | None = Field(
        default=None,
        description="Model 'did': the reference period (a label of the time column as stored, e.g. '-1' or "
        "'2024-03-03'); effects are relative to it. Default: the first period.",
    )
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9, 0.99)
    weights: str | None = Field(default=None, description="Frequency-weight column (integer replicate counts).")
    compress: CompressSpec = CompressSpec()
    alpha: float = 0.05
    null_policy: NullPolicy = "drop"
    collinear_policy: CollinearPolicy = "drop"
    bootstrap_reps: int = 1000
    seed: int = 0
    min_cell_count: int = Field(
        default=2,
        ge=2,
        description="Fewest rows a cell needs: fewer is refused (or, within a segment or period, reported without an SE).",
    )

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, v: float) -> float:
        if not 0 < v < 1:
            raise ValueError("alpha must be in (0, 1), e.g. 0.05")
        return v

    @field_validator("quantiles")
    @classmethod
    def _quantiles(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not 0 < q < 1 for q in v):
            raise ValueError("quantiles must be in (0, 1), e.g. 0.5,0.9")
        return v

    @field_validator("bootstrap_reps")
    @classmethod
    def _reps(cls, v: int) -> int:
        if v < 50:
            raise ValueError("bootstrap_reps must be at least 50 for a usable interval")
        return v

    @model_validator(mode="after")
    def _model_inputs(self) -> FitSpec:
        if self.model == "cate" and not self.segment:
            raise ValueError("model 'cate' needs a segment column (--segment COL)")
        if self.model in ("dte", "did") and not (self.time and self.cluster):
            raise ValueError(f"model {self.model!r} needs a time column and a cluster (user) column (--time COL --cluster COL)")
        if self.model == "ratio" and not self.denominator:
            raise ValueError("model 'ratio' needs a denominator column (--denominator COL)")
        # an option the model would ignore changes nothing the user can see but what they think they measured
        for option, flag, models in _OPTION_MODELS:
            if getattr(self, option) and self.model in _BUILT_IN and self.model not in models:
                raise ValueError(
                    f"{flag} does not apply to model {self.model!r} (only to {', '.join(models)}); "
                    f"{_WHY.get((option, self.model), 'drop it, or choose a model that uses it')}"
                )
        return self
