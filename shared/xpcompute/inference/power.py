"""Power, sample size and minimum detectable effect for two-sample tests of means and proportions.

Why here: planning and monitoring need the same summary statistics the analysis uses. The variance comes from
the experiment's pre-period (the metric measured over the same window before the start), and CUPED shrinks it
by 1 - R^2, the share left after regressing the metric on its pre-period covariates; both are reported.

Test: the two-sample z-test (Wald, unpooled variances), as the analysis itself uses at A/B-test sizes:
    se(n_c, n_t) = sqrt(V_c / n_c + V_t / n_t),  V = per-unit variance x (1 - R^2)
    power (two-sided) = Phi(|d|/se - z_{1-alpha/2}) + Phi(-|d|/se - z_{1-alpha/2})
    power (one-sided) = Phi(d/se - z_{1-alpha})
Means: V_c = V_t = the pre-period variance. Proportions: V_c = p(1-p), V_t = p'(1-p'), p' = p + d.
A relative MDE r is the absolute d = r * baseline mean. Sample size and MDE invert the exact power (both tails)
by Brent's method, which is what `statsmodels.stats.power.NormalIndPower.solve_power` does; with equal variances
these equal statsmodels with effect_size = d / sqrt(V) and nobs1 = n_c, ratio = n_t / n_c (tests check 1e-8).

With sequential methods the power of "significant at some look" has no closed form for the confidence
sequence, so `simulated_sequential_power` simulates it (the result says `simulated=True` and how many draws);
for group-sequential designs `sequential.crossing_probabilities` gives the exact value to compare.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special, stats

from xpcompute.inference.sequential import (
    confidence_sequence_rho,
    group_sequential_boundaries,
)

Kind = Literal["mean", "proportion"]
SequentialMethod = Literal[
    "fixed_single_look", "fixed_every_look", "confidence_sequence", "obrien_fleming", "pocock"
]
FloatArray = NDArray[np.float64]


# ---------------------------------------------------------------------------------------------------------------
# Variance from the pre-period


@dataclass(frozen=True)
class PrePeriodVariance:
    """A metric's variance in the pre-period, raw and after CUPED on the given covariates.

    variance: sample variance of the metric (ddof 1); r_squared: R^2 of the metric on the covariates (with an
    intercept); cuped_variance = variance * (1 - r_squared), the residual variance CUPED leaves.
    """

    n: float
    mean: float
    variance: float
    r_squared: float
    cuped_variance: float

    @property
    def variance_reduction(self) -> float:
        """The factor 1 - R^2 (1 - rho^2 with a single covariate)."""
        return 1.0 - self.r_squared


def preperiod_variance(
    n: float,
    sum_y: float,
    sum_y2: float,
    sum_x: ArrayLike | None = None,
    sum_xx: ArrayLike | None = None,
    sum_xy: ArrayLike | None = None,
) -> PrePeriodVariance:
    """Variance and CUPED variance from one pass of sums (no rows): n, sum y, sum y^2, and for k covariates
    sum x (k), sum x x' (k x k) and sum x y (k).

    Centred cross-products: Syy = sum y^2 - (sum y)^2 / n, Sxx = sum xx' - sx sx' / n, Sxy = sum xy - sx sy / n;
    R^2 = Sxy' Sxx^{-1} Sxy / Syy (one covariate: the squared correlation rho^2).
    """
    if n < 2:
        raise ValueError("need at least 2 units")
    syy = sum_y2 - sum_y * sum_y / n
    variance = syy / (n - 1)
    r2 = 0.0
    if sum_x is not None:
        if sum_xx is None or sum_xy is None:
            raise ValueError("covariates need sum_x, sum_xx and sum_xy")
        sx = np.atleast_1d(np.asarray(sum_x, dtype=np.float64))
        sxx = np.atleast_2d(np.asarray(sum_xx, dtype=np.float64)) - np.outer(sx, sx) / n
        sxy = np.atleast_1d(np.asarray(sum_xy, dtype=np.float64)) - sx * sum_y / n
        if syy > 0:
            beta = np.linalg.lstsq(sxx, sxy, rcond=None)[0]
            r2 = float(np.clip(sxy @ beta / syy, 0.0, 1.0))
    return PrePeriodVariance(float(n), sum_y / n, float(variance), r2, float(variance) * (1.0 - r2))


# ---------------------------------------------------------------------------------------------------------------
# Analytic power


@dataclass(frozen=True)
class MetricDesign:
    """What power needs to know about a metric: baseline mean, per-unit variance, kind, CUPED factor.

    For proportions the variance is p(1-p) and, in the treatment arm, p'(1-p'); `variance` is then ignored.
    """

    mean: float
    variance: float
    kind: Kind = "mean"
    variance_reduction: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.variance_reduction <= 1:
            raise ValueError("variance_reduction (1 - R^2) must be in (0, 1]")
        if self.kind == "proportion" and not 0 < self.mean < 1:
            raise ValueError("a proportion's baseline must be in (0, 1)")
        if self.kind == "mean" and not self.variance > 0:
            raise ValueError("variance must be positive")

    @classmethod
    def proportion(cls, p: float, variance_reduction: float = 1.0) -> MetricDesign:
        return cls(p, p * (1.0 - p), "proportion", variance_reduction)

    @classmethod
    def from_preperiod(
        cls, pre: PrePeriodVariance, *, cuped: bool = True, kind: Kind = "mean"
    ) -> MetricDesign:
        return cls(pre.mean, pre.variance, kind, pre.variance_reduction if cuped else 1.0)

    def absolute(self, mde: float, relative: bool) -> float:
        return mde * self.mean if relative else mde

    def variances(self, effect: float) -> tuple[float, float]:
        """(V_control, V_treatment) per unit, after the CUPED factor, for an absolute effect."""
        if self.kind == "proportion":
            p2 = self.mean + effect
            if not 0 < p2 < 1:
                raise ValueError(f"treatment proportion {p2} is outside (0, 1)")
            return (
                self.mean * (1 - self.mean) * self.variance_reduction,
                p2 * (1 - p2) * self.variance_reduction,
            )
        v = self.variance * self.variance_reduction
        return v, v


def _crit(alpha: float, sides: int) -> float:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if sides not in (1, 2):
        raise ValueError("sides must be 1 or 2")
    return float(stats.norm.isf(alpha / sides))


def _power_z(drift: float, crit: float, sides: int) -> float:
    """Power of a z-test whose statistic is N(drift, 1)."""
    if sides == 2:
        return float(special.ndtr(abs(drift) - crit) + special.ndtr(-abs(drift) - crit))
    return float(special.ndtr(drift - crit))


@dataclass(frozen=True)
class PowerResult:
    """Power at given sizes, with the variances used (raw and CUPED) so the report can show both."""

    power: float
    effect: float
    relative_effect: float
    n_control: float
    n_treatment: float
    se: float
    variance_raw: float
    variance_control: float
    variance_treatment: float
    variance_reduction: float
    alpha: float
    sides: int
    method: str = "analytic: two-sample z-test, normal approximation"


def power_at(
    metric: MetricDesign,
    mde: float,
    n_control: float,
    *,
    relative: bool = False,
    ratio: float = 1.0,
    alpha: float = 0.05,
    sides: int = 2,
) -> PowerResult:
    """Power to detect `mde` (absolute, or relative to the baseline when `relative`) with n_control units in
    control and ratio * n_control in treatment. Also "the power reached at the current n" while a test runs."""
    crit = _crit(alpha, sides)
    d = metric.absolute(mde, relative)
    vc, vt = metric.variances(d)
    nt = ratio * n_control
    se = math.sqrt(vc / n_control + vt / nt)
    return PowerResult(
        _power_z(d / se, crit, sides),
        d,
        d / metric.mean if metric.mean else math.nan,
        n_control,
        nt,
        se,
        metric.variance if metric.kind == "mean" else metric.mean * (1 - metric.mean),
        vc,
        vt,
        metric.variance_reduction,
        alpha,
        sides,
    )


@dataclass(frozen=True)
class SampleSizeResult:
    """Units needed per arm (exact solution and rounded up) for the target power."""

    n_control: float
    n_treatment: float
    n_control_ceil: int
    n_treatment_ceil: int
    n_total_ceil: int
    target_power: float
    detail: PowerResult


def sample_size(
    metric: MetricDesign,
    mde: float,
    *,
    relative: bool = False,
    power: float = 0.8,
    ratio: float = 1.0,
    alpha: float = 0.05,
    sides: int = 2,
) -> SampleSizeResult:
    """Smallest n_control (n_treatment = ratio * n_control) at which `power_at` reaches `power`.

    Starts from the one-tail closed form n_c = (z_{1-alpha/sides} + z_power)^2 (V_c + V_t/ratio) / d^2 and solves
    the exact power (both tails) with Brent's method.
    """
    if not 0 < power < 1:
        raise ValueError("power must be in (0, 1)")
    crit = _crit(alpha, sides)
    d = metric.absolute(mde, relative)
    if d == 0:
        raise ValueError("mde must be non-zero")
    vc, vt = metric.variances(d)
    k = vc + vt / ratio  # se^2 * n_control

    def gap(nc: float) -> float:
        return _power_z(abs(d) / math.sqrt(k / nc), crit, sides) - power

    n0 = (crit + float(stats.norm.ppf(power))) ** 2 * k / (d * d)
    lo, hi = n0 * 0.5, n0 * 2.0
    while gap(lo) > 0:
        lo *= 0.5
    while gap(hi) < 0:
        hi *= 2.0
    nc = float(optimize.brentq(gap, lo, hi, xtol=1e-12, rtol=4 * np.finfo(float).eps))
    det = power_at(metric, mde, nc, relative=relative, ratio=ratio, alpha=alpha, sides=sides)
    ncc = math.ceil(nc - 1e-9)
    ntc = math.ceil(ratio * nc - 1e-9)
    return SampleSizeResult(nc, ratio * nc, ncc, ntc, ncc + ntc, power, det)


@dataclass(frozen=True)
class MdeResult:
    """Smallest effect detectable with the target power at the given sizes, absolute and relative."""

    mde_absolute: float
    mde_relative: float
    target_power: float
    detail: PowerResult


def minimum_detectable_effect(
    metric: MetricDesign,
    n_control: float,
    *,
    power: float = 0.8,
    ratio: float = 1.0,
    alpha: float = 0.05,
    sides: int = 2,
    direction: int = 1,
) -> MdeResult:
    """Smallest |d| (in `direction`, +1 up or -1 down; it matters for proportions) reaching `power`."""
    if not 0 < power < 1:
        raise ValueError("power must be in (0, 1)")
    crit = _crit(alpha, sides)
    sign = 1.0 if direction >= 0 else -1.0

    def gap(a: float) -> float:
        vc, vt = metric.variances(sign * a)
        return _power_z(a / math.sqrt(vc / n_control + vt / (ratio * n_control)), crit, sides) - power

    vc0, vt0 = metric.variances(0.0)
    a0 = (crit + float(stats.norm.ppf(power))) * math.sqrt(vc0 / n_control + vt0 / (ratio * n_control))
    hi = a0 * 2.0
    if metric.kind == "proportion":
        room = (1.0 - metric.mean) if sign > 0 else metric.mean
        hi = min(hi, room * (1 - 1e-12))
    lo = 0.0
    if gap(hi) < 0:
        while gap(hi) < 0 and metric.kind == "mean":
            hi *= 2.0
        if gap(hi) < 0:
            raise ValueError("no effect inside the proportion's range reaches that power at this n")
    a = float(optimize.brentq(gap, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps))
    d = sign * a
    det = power_at(metric, d, n_control, ratio=ratio, alpha=alpha, sides=sides)
    return MdeResult(d, d / metric.mean if metric.mean else math.nan, power, det)


@dataclass(frozen=True)
class Progress:
    """Where a running test stands: power now, units still needed, days to target at the current rate."""

    power_now: float
    n_total_now: float
    n_total_required: int
    units_remaining: float
    daily_units: float
    days_remaining: int
    days_remaining_exact: float


def progress(
    metric: MetricDesign,
    mde: float,
    n_control_now: float,
    n_treatment_now: float,
    daily_units: float,
    *,
    relative: bool = False,
    power: float = 0.8,
    alpha: float = 0.05,
    sides: int = 2,
) -> Progress:
    """Power reached at the current sizes and the days still needed to reach `power`.

    daily_units: new units per day in both arms together (e.g. the mean over the last days); the split is taken
    from the current sizes. Days = ceil(max(0, n_required - n_now) / daily_units).
    """
    if not daily_units > 0:
        raise ValueError("daily_units must be positive")
    ratio = n_treatment_now / n_control_now
    now = power_at(metric, mde, n_control_now, relative=relative, ratio=ratio, alpha=alpha, sides=sides)
    need = sample_size(metric, mde, relative=relative, power=power, ratio=ratio, alpha=alpha, sides=sides)
    n_now = n_control_now + n_treatment_now
    remaining = max(0.0, need.n_control + need.n_treatment - n_now)
    exact = remaining / daily_units
    return Progress(
        now.power, n_now, need.n_total_ceil, remaining, daily_units, math.ceil(exact - 1e-12), exact
    )


# ---------------------------------------------------------------------------------------------------------------
# Simulated power for sequential methods


@dataclass(frozen=True)
class SimulatedPower:
    """Power of a sequential procedure estimated by simulation (there is no closed form for all of them).

    simulated is always True; mc_se = sqrt(p (1 - p) / n_sims) is the Monte Carlo standard error.
    """

    method: str
    power: float
    mc_se: float
    n_sims: int
    seed: int
    fractions: tuple[float, ...]
    drift: float
    alpha: float
    simulated: bool = True
    note: str = "simulated: share of seeded Monte Carlo experiments that reject at some look"


def confidence_sequence_z_threshold(fractions: ArrayLike, alpha: float = 0.05) -> FloatArray:
    """|z| at which the confidence sequence excludes 0 at information fraction t = n / planned_n.

    Since se = sigma / sqrt(N) and N rho^2 = t c with c = -2 log alpha + log(-2 log alpha + 1), the rejection
    rule |effect| >= half-width becomes |z| >= sqrt(2 (tc + 1) / (tc) log(sqrt(tc + 1) / alpha)): only t matters.
    """
    t = np.asarray(fractions, dtype=np.float64)
    c = confidence_sequence_rho(1.0, alpha) ** 2
    a = t * c + 1.0
    return np.asarray(np.sqrt(2.0 * a / (t * c) * np.log(np.sqrt(a) / alpha)), dtype=np.float64)


def sequential_rejections(
    z: FloatArray, fractions: Sequence[float], method: SequentialMethod, alpha: float
) -> NDArray[np.bool_]:
    """Which simulated experiments (rows of z: experiments x looks, two-sided) reject under `method`."""
    t = np.asarray(fractions, dtype=np.float64)
    az = np.abs(z)
    if method == "fixed_single_look":
        return np.asarray(az[:, -1] >= stats.norm.isf(alpha / 2.0))
    if method == "fixed_every_look":
        return np.asarray((az >= stats.norm.isf(alpha / 2.0)).any(axis=1))
    if method == "confidence_sequence":
        return np.asarray((az >= confidence_sequence_z_threshold(t, alpha)).any(axis=1))
    if method in ("obrien_fleming", "pocock"):
        bounds = group_sequential_boundaries([float(x) for x in t], alpha, method)
        return np.asarray((az >= np.array(bounds.z)).any(axis=1))
    raise ValueError(f"unknown method {method!r}")


def simulated_sequential_power(
    drift: float,
    fractions: Sequence[float],
    method: SequentialMethod,
    *,
    alpha: float = 0.05,
    n_sims: int = 20_000,
    seed: int = 0,
) -> SimulatedPower:
    """Simulated power of `method` with looks at `fractions` against a standardized effect `drift`
    (effect / se at the planned n; e.g. z_{1-alpha/2} + z_{0.8} = 2.80 is 80% power for one final look).

    Each experiment is a Brownian motion on the information scale: S(t_k) = S(t_{k-1}) + N(drift dt, dt),
    Z_k = S(t_k) / sqrt(t_k); the same seed gives every method the same experiments.
    """
    t = np.asarray(fractions, dtype=np.float64)
    if t.ndim != 1 or t.size == 0 or t[0] <= 0 or np.any(np.diff(t) <= 0):
        raise ValueError("fractions must be positive and strictly increasing")
    rng = np.random.default_rng(seed)
    dt = np.diff(np.concatenate(([0.0], t)))
    s = np.cumsum(rng.standard_normal((n_sims, t.size)) * np.sqrt(dt) + drift * dt, axis=1)
    z = s / np.sqrt(t)
    p = float(sequential_rejections(z, t.tolist(), method, alpha).mean())
    return SimulatedPower(
        method, p, math.sqrt(p * (1 - p) / n_sims), n_sims, seed, tuple(t.tolist()), drift, alpha
    )
