"""A/A simulations: the stated false-positive rate and 95% coverage for the t-test and OLS (CUPED)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from xpcompute.models import fit_table
from xpcompute.spec import FitSpec

N_SIM = 400
ALPHA = 0.05


def binomial_band(n: int, p: float, k: float = 3.0) -> tuple[float, float]:
    sd = np.sqrt(n * p * (1 - p))
    return n * p - k * sd, n * p + k * sd


@pytest.mark.parametrize("model,covariates", [("ttest", ()), ("ols", ("pre", "country"))])
def test_aa_false_positive_rate_and_coverage(model: str, covariates: tuple[str, ...]) -> None:
    rejections = covered = 0
    for seed in range(N_SIM):
        rng = np.random.default_rng(10_000 + seed)
        n = 400
        pre = rng.exponential(1.0, size=n)
        country = rng.choice(["US", "CA", "MX"], size=n)
        y = 2.0 + pre + rng.standard_t(5, size=n)  # heavy tails, no treatment effect
        cell = rng.choice(["control", "treatment"], size=n)
        table = pa.table({"cell": cell, "pre": pre, "country": country, "y": y})
        (rec,) = fit_table(table, FitSpec(metric="y", treatment="cell", model=model, covariates=covariates)).records
        rejections += rec.p_value < ALPHA
        covered += rec.ci_low <= 0.0 <= rec.ci_high
    lo, hi = binomial_band(N_SIM, ALPHA)
    assert lo <= rejections <= hi, f"{model}: {rejections}/{N_SIM} false positives, expected within [{lo:.0f}, {hi:.0f}]"
    lo_c, hi_c = binomial_band(N_SIM, 1 - ALPHA)
    assert lo_c <= covered <= hi_c, f"{model}: coverage {covered}/{N_SIM}"
