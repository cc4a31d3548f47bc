"""The hypothesis tests of a decision: superiority, non-inferiority and deterioration, on summary statistics.

Each test reads an effect (cell minus control, or the relative effect), its standard
error and, for Welch t-tests, its degrees of freedom; ``df=None`` (or infinite) means
a normal (z) test. Every function is vectorised: the decision rule calls them on one
number per metric, the simulation (tests/decision) on a million.

Everything is *oriented* first: ``d = effect`` when higher is better, ``-effect``
otherwise, so "positive" always means "better" and one formula serves both
directions. In the metric's own orientation:

* superiority (goals): H0 ``d <= 0`` against ``d > 0`` (``one_sided``), or
  ``d = 0`` against ``d != 0`` with the improvement required to be in the desired
  direction (``two_sided``, which is the one-sided test at half the level);
* non-inferiority (guardrails): H0 ``d <= -margin`` (worse by the margin or more)
  against ``d > -margin``; rejected exactly when the one-sided ``1 - alpha``
  confidence bound on the bad side stays inside the margin. This is
  ``statsmodels.stats.weightstats.ttest_ind(x1, x2, value=-margin, alternative='larger',
  usevar='unequal')`` for a higher-is-better metric (``value=+margin, alternative='smaller'``
  otherwise), and ``test_proportions_2indep(..., value=..., method='wald')`` for proportions;
* deterioration: H0 ``d >= 0`` against ``d < 0`` (one-sided, "it got worse").

The reference tests in ``tests/decision/test_tests.py`` hold these to statsmodels
on raw rows at rtol 1e-8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

Alternative = Literal["two_sided", "one_sided"]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


def _arr(x: ArrayLike | None) -> FloatArray:
    return np.asarray(np.nan if x is None else x, dtype=np.float64)


def _orient(effect: ArrayLike, higher_is_better: ArrayLike) -> FloatArray:
    e = _arr(effect)
    hib = np.asarray(higher_is_better, dtype=bool)
    return np.where(hib, e, -e)


def _sf(z: FloatArray, df: ArrayLike | None) -> FloatArray:
    """Upper tail P(T > z): Student t with ``df`` where it is finite, else standard normal."""
    if df is None:
        return np.asarray(special.ndtr(-z), dtype=np.float64)
    d = _arr(df)
    t = special.stdtr(np.where(np.isfinite(d), d, 1.0), -z)
    return np.asarray(np.where(np.isfinite(d), t, special.ndtr(-z)), dtype=np.float64)


def _quantile(p: ArrayLike, df: ArrayLike | None) -> FloatArray:
    """Upper ``p`` quantile: t with ``df`` where finite, else normal."""
    pp = _arr(p)
    if df is None:
        return np.asarray(-special.ndtri(pp), dtype=np.float64)
    d = _arr(df)
    t = special.stdtrit(np.where(np.isfinite(d), d, 1.0), 1.0 - pp)
    return np.asarray(np.where(np.isfinite(d), t, -special.ndtri(pp)), dtype=np.float64)


@dataclass(frozen=True)
class TestResult:
    """One test per element: its statistic, p-value, whether it rejects at ``level``, and the bad-side bound.

    ``bound`` is the one-sided ``1 - level`` confidence bound on the *bad* side, in the metric's own
    orientation (a lower bound when higher is better, an upper bound otherwise): what a reader
    compares with a guardrail's margin.
    """

    statistic: FloatArray
    p_value: FloatArray
    level: FloatArray
    rejected: BoolArray
    bound: FloatArray


def superiority(
    effect: ArrayLike,
    se: ArrayLike | None,
    *,
    alpha: ArrayLike,
    higher_is_better: ArrayLike = True,
    alternative: Alternative = "two_sided",
    df: ArrayLike | None = None,
    n_goals: int = 1,
) -> TestResult:
    """Superiority of a goal in its desired direction, at ``alpha / n_goals`` (Bonferroni across goals).

    ``p_value`` is the unadjusted p-value of the stated alternative (two-sided: ``2 P(T > |t|)``);
    ``rejected`` needs ``p_value < alpha / n_goals`` and, two-sided, the effect in the desired direction.
    """
    if n_goals < 1:
        raise ValueError(f"n_goals must be at least 1, got {n_goals}")
    d, s = _orient(effect, higher_is_better), _arr(se)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = d / s
    level = _arr(alpha) / float(n_goals)
    if alternative == "one_sided":
        p = _sf(z, df)
        bound_level = level
    elif alternative == "two_sided":
        p = np.minimum(2.0 * _sf(np.abs(z), df), 1.0)
        bound_level = level / 2.0
    else:
        raise ValueError(f"alternative {alternative!r} is not known; use 'two_sided' or 'one_sided'")
    valid = np.isfinite(z) & (s > 0)
    rejected = valid & (p < level) & (d > 0)
    bound = d - _quantile(bound_level, df) * s
    return TestResult(z, np.where(valid, p, np.nan), level * np.ones_like(z), rejected,
                      _deorient(bound, higher_is_better))


def non_inferiority(
    effect: ArrayLike,
    se: ArrayLike | None,
    margin: ArrayLike,
    *,
    alpha: ArrayLike,
    higher_is_better: ArrayLike = True,
    df: ArrayLike | None = None,
) -> TestResult:
    """One-sided non-inferiority at ``alpha`` (unadjusted: an intersection-union test needs no correction).

    ``margin`` > 0 is the tolerated deterioration in the effect's scale (absolute units, or a fraction
    when ``effect``/``se`` are relative). Rejects H0 "worse by ``margin`` or more".
    """
    d, s, m = _orient(effect, higher_is_better), _arr(se), _arr(margin)
    if np.any(m[np.isfinite(m)] <= 0):
        raise ValueError("a non-inferiority margin must be positive (the tolerated deterioration)")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (d + m) / s
    level = _arr(alpha) * np.ones_like(z)
    p = _sf(z, df)
    valid = np.isfinite(z) & (s > 0)
    bound = d - _quantile(level, df) * s
    return TestResult(z, np.where(valid, p, np.nan), level, valid & (p < level), _deorient(bound, higher_is_better))


def deterioration(
    effect: ArrayLike,
    se: ArrayLike | None,
    *,
    alpha: ArrayLike,
    higher_is_better: ArrayLike = True,
    df: ArrayLike | None = None,
) -> TestResult:
    """One-sided inferiority test ("the metric got worse") at ``alpha``: H0 ``d >= 0`` against ``d < 0``."""
    d, s = _orient(effect, higher_is_better), _arr(se)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = d / s
    level = _arr(alpha) * np.ones_like(z)
    p = _sf(-z, df)
    valid = np.isfinite(z) & (s > 0)
    bound = d + _quantile(level, df) * s  # upper bound of the oriented effect: below 0 when it surely got worse
    return TestResult(z, np.where(valid, p, np.nan), level, valid & (p < level), _deorient(bound, higher_is_better))


def _deorient(value: FloatArray, higher_is_better: ArrayLike) -> FloatArray:
    hib = np.asarray(higher_is_better, dtype=bool)
    return np.asarray(np.where(hib, value, -value), dtype=np.float64)


def guardrail_power_beta(n_guardrails: int, beta: float, n_other: int = 0) -> float:
    """The type II error each guardrail (non-inferiority) test must be designed for, so the decision keeps power.

    Shipping needs *every* guardrail to be shown non-inferior (an intersection-union test), so the
    chances of missing one add up: with per-test type II errors ``beta_g`` the decision's power is at
    least ``1 - sum beta_g`` under any dependence (a union bound). Schultzberg, Ankargren & Frånberg
    (2024, section 3.4) therefore correct beta, not alpha, across guardrails: ``beta / (G + n_other)``,
    where ``n_other`` counts further tests that must pass for a ship (deterioration and quality tests,
    their section 4). Alpha is not corrected across guardrails: a false ship needs *all* of them to err.
    """
    if n_guardrails < 0 or n_other < 0:
        raise ValueError(f"test counts must be >= 0, got n_guardrails={n_guardrails}, n_other={n_other}")
    if not 0 < beta < 1:
        raise ValueError(f"beta must be in (0, 1), got {beta}")
    total = n_guardrails + n_other
    return beta if total == 0 else beta / total


def goal_alpha(alpha: float, n_goals: int) -> float:
    """Per-goal level: Bonferroni across the goal metrics (the only family whose alpha the rule corrects)."""
    if n_goals < 1:
        raise ValueError(f"n_goals must be at least 1, got {n_goals}")
    return alpha / n_goals


__all__ = [
    "Alternative", "TestResult", "deterioration", "goal_alpha", "guardrail_power_beta", "non_inferiority",
    "superiority",
]
