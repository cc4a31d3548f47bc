"""Seeded summary statistics shared by the gbstats reference tests (sequential and Bayesian)."""

from __future__ import annotations

import numpy as np


def _mean_stat(rng: np.random.Generator, n: int, mu: float, sd: float) -> dict[str, float]:
    y = rng.normal(mu, sd, n)
    return {"n": n, "sum": float(y.sum()), "sum_squares": float((y * y).sum())}


def _prop_stat(rng: np.random.Generator, n: int, p: float) -> dict[str, float]:
    return {"n": n, "sum": float(rng.binomial(n, p))}


def arm_moments(stat: dict[str, float]) -> tuple[float, float, float]:
    n, s = stat["n"], stat["sum"]
    m = s / n
    if "sum_squares" in stat:
        return m, (stat["sum_squares"] - s * s / n) / (n - 1), n
    return m, m * (1 - m), n  # gbstats' proportion variance p(1-p)


def _ratio_stat(rng: np.random.Generator, n: int, lift: float) -> dict[str, object]:
    d = rng.poisson(3.0, n) + 1.0
    m = rng.binomial(d.astype(int), 0.3 * (1 + lift)).astype(float)
    mom = lambda v: {"n": n, "sum": float(v.sum()), "sum_squares": float((v * v).sum())}  # noqa: E731
    return {"n": n, "m": mom(m), "d": mom(d), "m_d": float((m * d).sum())}


def _cuped_stat(rng: np.random.Generator, n: int, lift: float) -> dict[str, object]:
    pre = rng.gamma(2.0, 5.0, n)
    post = 0.8 * pre + rng.normal(2.0 + lift, 3.0, n)
    mom = lambda v: {"n": n, "sum": float(v.sum()), "sum_squares": float((v * v).sum())}  # noqa: E731
    return {"n": n, "post": mom(post), "pre": mom(pre), "post_pre": float((post * pre).sum())}


def make_cases(seed: int = 11) -> list[dict[str, object]]:
    """Seeded summary statistics: means, proportions, ratio and CUPED metrics; both scales; several alphas,
    tuning parameters (planned n) and priors."""
    rng = np.random.default_rng(seed)
    cases: list[dict[str, object]] = []
    for i in range(6):
        na, nb = int(rng.integers(500, 20_000)), int(rng.integers(500, 20_000))
        kinds = {
            "mean": (_mean_stat(rng, na, 10.0, 4.0), _mean_stat(rng, nb, 10.0 + 0.1 * i, 4.0)),
            "proportion": (_prop_stat(rng, na, 0.1), _prop_stat(rng, nb, 0.1 + 0.002 * i)),
            "ratio": (_ratio_stat(rng, na, 0.0), _ratio_stat(rng, nb, 0.02 * i)),
            "cuped": (_cuped_stat(rng, na, 0.0), _cuped_stat(rng, nb, 0.1 * i)),
        }
        for kind, (a, b) in kinds.items():
            for relative in (False, True):
                prior = None
                if i % 2 == 1:
                    prior = {
                        "mean": 0.01 * (i - 3),
                        "variance": 0.05**2 * i,
                        "type": "relative" if i % 3 else "absolute",
                    }
                cases.append(
                    {
                        "stat": kind,
                        "a": a,
                        "b": b,
                        "relative": relative,
                        "alpha": [0.05, 0.1, 0.01][i % 3],
                        "tuning": float([5000, 20_000, na + nb, 100_000, 1000, 40_000][i]),
                        "prior": prior,
                        "inverse": i % 4 == 3,
                    }
                )
    return cases
