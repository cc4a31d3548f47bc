"""A/A simulations for the distribution models: false-positive rate at alpha and 95% coverage of the truth (0).

400 seeded A/A experiments of 300 skewed rows per cell (log-normal with an
atom at zero, so ties are present). For the quantile model the p50 effect is
tested with a 200-replicate Poisson bootstrap on the compressed rows; for
Mann–Whitney the rank test's p-value and the mean-difference interval. Counts
must lie within 3 binomial standard errors of 400 * alpha (rejections) and
400 * 0.95 (coverage).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from xpcompute.compression.distribution import compress_values
from xpcompute.models import fit_compressed
from xpcompute.spec import FitSpec

N_SIM = 400
N_PER_CELL = 300
ALPHA = 0.05


def binomial_band(n: int, p: float, k: float = 3.0) -> tuple[float, float]:
    sd = np.sqrt(n * p * (1 - p))
    return n * p - k * sd, n * p + k * sd


def aa_table(seed: int) -> pa.Table:
    rng = np.random.default_rng(20_000 + seed)
    y = rng.lognormal(0.0, 1.0, size=2 * N_PER_CELL)
    y = np.where(rng.random(2 * N_PER_CELL) < 0.1, 0.0, np.round(y, 2))
    cell = np.repeat(["control", "treatment"], N_PER_CELL)
    return pa.table({"cell": cell, "y": y})


def run(model: str) -> tuple[int, int, list[float]]:
    rejections = covered = 0
    p_values = []
    for seed in range(N_SIM):
        spec = FitSpec(metric="y", treatment="cell", model=model, quantiles=(0.5,), bootstrap_reps=200, seed=seed)
        (rec,) = fit_compressed(compress_values(aa_table(seed), "y", ["cell"]), spec)
        assert rec.p_value is not None and rec.ci_low is not None and rec.ci_high is not None
        rejections += rec.p_value < ALPHA
        covered += rec.ci_low <= 0.0 <= rec.ci_high
        p_values.append(rec.p_value)
    return rejections, covered, p_values


def check(model: str) -> None:
    rejections, covered, p_values = run(model)
    print(f"\n{model}: {rejections}/{N_SIM} false positives at alpha={ALPHA}, 95% CI covers 0 in {covered}/{N_SIM}")
    lo, hi = binomial_band(N_SIM, ALPHA)
    assert lo <= rejections <= hi, f"{model}: {rejections}/{N_SIM} false positives, expected within [{lo:.0f}, {hi:.0f}]"
    lo_c, hi_c = binomial_band(N_SIM, 1 - ALPHA)
    assert lo_c <= covered <= hi_c, f"{model}: coverage {covered}/{N_SIM}, expected within [{lo_c:.0f}, {hi_c:.0f}]"
    # calibrated beyond alpha too: about 20% of A/A p-values fall below 0.2
    below = int(np.sum(np.asarray(p_values) < 0.2))
    lo_p, hi_p = binomial_band(N_SIM, 0.2)
    assert lo_p <= below <= hi_p, f"{model}: {below}/{N_SIM} p-values below 0.2"


def test_aa_quantile_bootstrap_p50() -> None:
    check("quantile")


def test_aa_mann_whitney() -> None:
    check("mannwhitney")
