"""Empirical-Bayes shrinkage across the metrics and segments of one analysis.

Why: an analysis reports many noisy estimates at once (metrics x segments). The largest raw effects are
partly noise, so taking them at face value overstates them (the winner's curse). A normal-normal hierarchical
model with its prior estimated from the same analysis shrinks each estimate toward the common mean by how noisy
it is, which lowers the total mean squared error (James-Stein / Efron-Morris) without any peer's prior.

Model (random effects, known sampling variances):
    y_i | theta_i ~ N(theta_i, s_i^2),   theta_i ~ N(mu, tau^2),   i = 1..k.
Estimator (default, `method="reml"`): tau^2 maximises the restricted (REML) likelihood
    l_R(tau^2) = -1/2 [ sum log v_i + log sum 1/v_i + sum (y_i - mu_hat)^2 / v_i ],  v_i = s_i^2 + tau^2,
with mu_hat = sum(y_i / v_i) / sum(1 / v_i) the GLS mean; the maximiser is the root of the REML score
(Harville 1977; Viechtbauer 2005), found by Brent's method, or 0 when the score is negative at 0.
`method="dl"` uses the DerSimonian-Laird method of moments, tau^2 = max(0, (Q - (k-1)) / (S1 - S2/S1)) with
Q = sum w_i (y_i - ybar_w)^2, w_i = 1/s_i^2, S1 = sum w_i, S2 = sum w_i^2 (checked against statsmodels).
With a fixed prior mean (e.g. 0: shrink effects toward no effect) tau^2 is the plain ML estimate given mu.

Posterior of each theta_i given tau^2 (Morris 1983; Raudenbush & Bryk 2002, eq. 3.57):
    B_i = s_i^2 / v_i                             (shrinkage factor: 0 = keep raw, 1 = all the way to mu)
    E[theta_i | y, tau] = B_i mu_hat + (1 - B_i) y_i
    Var[theta_i | y, tau] = (1 - B_i) s_i^2 + B_i^2 Var(mu_hat),   Var(mu_hat) = 1 / sum(1 / v_i)
(the second term carries the uncertainty of the estimated mean).

Intervals. Plugging in tau^2_hat (`intervals="plugin"`) ignores that tau^2 is itself estimated; with 40
estimates whose se vary 6-fold the 95% plug-in intervals cover only ~87% (they are far too short whenever
tau^2_hat lands low). The default, `intervals="integrated"`, averages over tau instead, as in Gelman et al.,
"Bayesian Data Analysis", 3rd ed., §5.4-5.5: with a flat prior on mu and a uniform prior on tau, the marginal
posterior p(tau | y) is proportional to the restricted likelihood exp(l_R(tau^2)), evaluated on a grid of tau.
The reported posterior mean and sd are the mixture's (E over tau of the conditional mean; E of the conditional
variance plus the variance of the conditional means) and the interval is the mixture's exact alpha/2 and
1 - alpha/2 quantiles. tau^2 itself is still reported as the REML / DL point estimate. In the seeded simulation
(tests/inference/test_shrinkage.py; 40 estimates, se 0.05-0.3) the integrated 95% intervals cover 93% at
tau = 0.1, 98% at tau = 0.03 and 99.9% at tau = 0: close to nominal when the effects differ, conservative when
they barely do (the uniform prior on tau keeps some mass away from 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special, stats

Method = Literal["reml", "dl"]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ShrinkageResult:
    """Raw and shrunken estimates side by side, with the fitted prior."""

    estimates: FloatArray
    ses: FloatArray
    prior_mean: float
    prior_mean_se: float
    prior_variance: float
    method: str
    shrinkage: FloatArray  # B_i
    posterior_mean: FloatArray
    posterior_sd: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    alpha: float
    intervals: str = "integrated"
    labels: tuple[str, ...] = field(default=())

    def rows(self) -> list[dict[str, float | str]]:
        """One dict per estimate: label, raw estimate and se, shrunken estimate, sd and interval."""
        labels = self.labels or tuple(str(i) for i in range(self.estimates.size))
        return [
            {
                "label": labels[i],
                "estimate": float(self.estimates[i]),
                "se": float(self.ses[i]),
                "shrinkage": float(self.shrinkage[i]),
                "posterior_mean": float(self.posterior_mean[i]),
                "posterior_sd": float(self.posterior_sd[i]),
                "ci_low": float(self.ci_low[i]),
                "ci_high": float(self.ci_high[i]),
            }
            for i in range(self.estimates.size)
        ]


def _gls_mean(y: FloatArray, v: FloatArray) -> tuple[float, float]:
    w = 1.0 / v
    sw = float(w.sum())
    return float(w @ y) / sw, 1.0 / sw


def reml_score(tau2: float, y: FloatArray, s2: FloatArray) -> float:
    """d l_R / d tau^2 (times 2): -sum 1/v + sum(1/v^2)/sum(1/v) + sum (y - mu_hat)^2 / v^2."""
    v = s2 + tau2
    mu, _ = _gls_mean(y, v)
    w = 1.0 / v
    return float(-w.sum() + (w * w).sum() / w.sum() + ((y - mu) ** 2 * w * w).sum())


def _ml_score_known_mean(tau2: float, y: FloatArray, s2: FloatArray, mu: float) -> float:
    w = 1.0 / (s2 + tau2)
    return float(-w.sum() + ((y - mu) ** 2 * w * w).sum())


def _root_tau2(score: object, y: FloatArray, s2: FloatArray) -> float:
    f = score  # callable tau2 -> score, decreasing past its root
    assert callable(f)
    if f(0.0) <= 0:
        return 0.0
    hi = max(float(np.var(y)), float(s2.max()), 1e-300)
    while f(hi) > 0:
        hi *= 4.0
    return float(optimize.brentq(f, 0.0, hi, xtol=1e-14 * hi, rtol=4 * np.finfo(float).eps, maxiter=500))


def dersimonian_laird(y: FloatArray, s2: FloatArray) -> float:
    """Method-of-moments tau^2 (DerSimonian & Laird 1986)."""
    w = 1.0 / s2
    sw = w.sum()
    ybar = float(w @ y) / sw
    q = float((w * (y - ybar) ** 2).sum())
    return max(0.0, (q - (y.size - 1)) / float(sw - (w * w).sum() / sw))


def empirical_bayes_shrinkage(
    estimates: ArrayLike,
    ses: ArrayLike,
    *,
    labels: Sequence[str] = (),
    method: Method = "reml",
    prior_mean: float | None = None,
    alpha: float = 0.05,
    intervals: Literal["integrated", "plugin"] = "integrated",
    grid_size: int = 200,
) -> ShrinkageResult:
    """Shrink `estimates` (with standard errors `ses`) toward a prior fitted to them; see module docstring.

    prior_mean: None estimates it (GLS mean); a number fixes it (then tau^2 is ML given that mean, and the
    posterior variance has no mean-uncertainty term). intervals: "integrated" (default) averages the posterior
    over p(tau | y); "plugin" uses tau^2_hat as if known (shorter, under-covers).
    """
    y = np.asarray(estimates, dtype=np.float64).ravel()
    s = np.asarray(ses, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError("estimates and ses must have the same length")
    if y.size < 3:
        raise ValueError("shrinkage needs at least 3 estimates to estimate a prior")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError("estimates must be finite and ses positive and finite")
    if labels and len(labels) != y.size:
        raise ValueError("one label per estimate")
    s2 = s * s
    if prior_mean is None:
        if method == "reml":
            tau2 = _root_tau2(lambda t: reml_score(t, y, s2), y, s2)
        elif method == "dl":
            tau2 = dersimonian_laird(y, s2)
        else:
            raise ValueError(f"unknown method {method!r}")
        mu, var_mu = _gls_mean(y, s2 + tau2)
        name: str = method
    else:
        mu, var_mu = float(prior_mean), 0.0
        tau2 = _root_tau2(lambda t: _ml_score_known_mean(t, y, s2, mu), y, s2)
        name = "ml (fixed prior mean)"
    v = s2 + tau2
    b = s2 / v
    if intervals == "plugin":
        post_mean = b * mu + (1.0 - b) * y
        post_sd = np.sqrt((1.0 - b) * s2 + b * b * var_mu)
        z = float(stats.norm.isf(alpha / 2.0))
        lo, hi = post_mean - z * post_sd, post_mean + z * post_sd
    elif intervals == "integrated":
        post_mean, post_sd, lo, hi = _integrated_posterior(y, s2, prior_mean, tau2, alpha, grid_size)
    else:
        raise ValueError(f"unknown intervals {intervals!r}")
    return ShrinkageResult(
        y,
        s,
        mu,
        math.sqrt(var_mu),
        tau2,
        name,
        b,
        post_mean,
        post_sd,
        lo,
        hi,
        alpha,
        intervals,
        tuple(labels),
    )


def _integrated_posterior(
    y: FloatArray, s2: FloatArray, prior_mean: float | None, tau2_hat: float, alpha: float, grid_size: int
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Posterior of each theta_i averaged over p(tau | y) on a grid (uniform prior on tau; see module docstring).

    Returns the mixture's mean, sd and equal-tailed (alpha/2, 1 - alpha/2) quantiles.
    """
    # grid: 0 .. well past where the restricted likelihood has any mass
    top = 6.0 * math.sqrt(max(tau2_hat, float(np.var(y)), float(np.median(s2)) / y.size))
    tau = np.linspace(0.0, top, grid_size)
    v = s2[None, :] + (tau * tau)[:, None]  # grid x k
    w = 1.0 / v
    if prior_mean is None:
        mu = (w * y).sum(axis=1) / w.sum(axis=1)
        var_mu = 1.0 / w.sum(axis=1)
        loglik = -0.5 * (
            np.log(v).sum(axis=1) + np.log(w.sum(axis=1)) + ((y - mu[:, None]) ** 2 * w).sum(axis=1)
        )
    else:
        mu = np.full(tau.size, float(prior_mean))
        var_mu = np.zeros(tau.size)
        loglik = -0.5 * (np.log(v).sum(axis=1) + ((y - mu[:, None]) ** 2 * w).sum(axis=1))
    p = np.exp(loglik - loglik.max())
    keep = p > 1e-12 * p.max()  # drop grid points without posterior mass
    p, tau, v, w, mu, var_mu = p[keep], tau[keep], v[keep], w[keep], mu[keep], var_mu[keep]
    p /= p.sum()
    b = s2[None, :] * w
    m = b * mu[:, None] + (1.0 - b) * y  # conditional means, grid x k
    sd = np.sqrt((1.0 - b) * s2 + b * b * var_mu[:, None])
    sd = np.maximum(sd, 1e-300)
    mean = p @ m
    var = p @ (sd * sd + m * m) - mean * mean
    total_sd = np.sqrt(np.maximum(var, 0.0))

    def quantile(q: float) -> FloatArray:
        lo = (m - 12.0 * sd).min(axis=0)
        hi = (m + 12.0 * sd).max(axis=0)
        for _ in range(64):  # bisection on the mixture cdf, all estimates at once
            mid = 0.5 * (lo + hi)
            below = p @ special.ndtr((mid[None, :] - m) / sd) < q
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        return np.asarray(0.5 * (lo + hi), dtype=np.float64)

    return mean, total_sd, quantile(alpha / 2.0), quantile(1.0 - alpha / 2.0)
