"""The one input every inference function shares: an effect, its standard error and its sample size.

Why a separate type: sequential intervals, Bayesian posteriors and shrinkage all work on the same summary
(an asymptotically normal estimate with a known standard error). Every moments-based model in `models/`
(t-test, proportion, OLS/CUPED, ratio) already reports exactly that in its `ResultRecord`, so one adapter
covers them all and no function here ever needs raw rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xpcompute.records import ResultRecord


@dataclass(frozen=True)
class EffectEstimate:
    """An asymptotically normal effect estimate.

    effect: the estimate (absolute difference, or relative lift when `relative`).
    se: its standard error.
    n: units in both arms together (the sample size the sequential methods index time by).
    mean_control: the control mean, needed to move a prior between the absolute and the relative scale.
    """

    effect: float
    se: float
    n: float
    mean_control: float | None = None
    relative: bool = False

    def __post_init__(self) -> None:
        if not (self.se > 0 and math.isfinite(self.se)):
            raise ValueError(f"se must be positive and finite, got {self.se}")
        if not self.n > 0:
            raise ValueError(f"n must be positive, got {self.n}")

    @property
    def z(self) -> float:
        return self.effect / self.se


def two_sample_effect(
    mean_control: float,
    var_control: float,
    n_control: float,
    mean_treatment: float,
    var_treatment: float,
    n_treatment: float,
    *,
    relative: bool = False,
) -> EffectEstimate:
    """Difference of two independent means (unequal variances), absolute or relative.

    Absolute: d = m_b - m_a, Var = v_a/n_a + v_b/n_b (Welch).
    Relative: d = (m_b - m_a)/m_a, Var = v_b/(m_a^2 n_b) + v_a m_b^2/(m_a^4 n_a) (first-order delta method for
    m_b/m_a - 1 with independent arms; the same definition gbstats and `models/ttest.py` use).
    For a proportion pass var = p(1-p); for CUPED/ratio metrics pass the adjusted mean and its per-unit variance.
    """
    if relative:
        if mean_control == 0:
            raise ValueError("relative effect needs a non-zero control mean")
        effect = (mean_treatment - mean_control) / mean_control
        var = var_treatment / (mean_control**2 * n_treatment) + var_control * mean_treatment**2 / (
            mean_control**4 * n_control
        )
    else:
        effect = mean_treatment - mean_control
        var = var_control / n_control + var_treatment / n_treatment
    return EffectEstimate(effect, math.sqrt(var), n_control + n_treatment, mean_control, relative)


def effect_from_record(record: ResultRecord, *, relative: bool = False) -> EffectEstimate:
    """The estimate of one `ResultRecord` (any moments-based model), absolute or relative."""
    if relative:
        if record.relative_effect is None or record.relative_se is None:
            raise ValueError(f"record {record.metric}/{record.cell} has no relative effect")
        effect, se = record.relative_effect, record.relative_se
    else:
        if record.se is None:
            raise ValueError(f"record {record.metric}/{record.cell} has no standard error")
        effect, se = record.effect, record.se
    return EffectEstimate(effect, se, record.n_cell + record.n_control, record.mean_control, relative)
