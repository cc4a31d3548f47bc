"""A/A simulation of the event_quantile model: false-positive rate at alpha = 0.05 and 95% coverage of 0.

Seeded A/A experiments of 1,500 units with about 3 correlated events each (a unit's events share a log-normal
unit effect, so an analysis that treated events as independent would reject far too often), p50 and p90 of the
event values, 300-replicate clustered bootstrap. For each quantile the count of rejections (p < 0.05) must lie
within 3 binomial standard errors of ``N_SIM * 0.05``, and the count of percentile intervals that contain 0
within 3 binomial standard errors of ``N_SIM * 0.95``. 200 simulations by default (about 10 s);
``XPCOMPUTE_SLOW=1`` runs 1,000.
"""

from __future__ import annotations

import os

import numpy as np
from event_quantile_helpers import clustered_events

from xpcompute.models import fit_table
from xpcompute.spec import FitSpec

N_SIM = 1000 if os.environ.get("XPCOMPUTE_SLOW") == "1" else 200
ALPHA = 0.05
PROBS = (0.5, 0.9)


def binomial_band(n: int, p: float, k: float = 3.0) -> tuple[float, float]:
    sd = float(np.sqrt(n * p * (1 - p)))
    return n * p - k * sd, n * p + k * sd


def test_aa_rejection_rate_and_coverage() -> None:
    spec = FitSpec(metric="amount", treatment="cell", model="event_quantile", cluster="user_id", quantiles=PROBS,
                   bootstrap_reps=300)
    rejections = np.zeros(len(PROBS), dtype=int)
    covered = np.zeros(len(PROBS), dtype=int)
    for s in range(N_SIM):
        table = clustered_events(1500, seed=50_000 + s, digits=2)
        records = fit_table(table, spec.model_copy(update={"seed": s})).records
        for j, r in enumerate(records):
            assert r.quantile == PROBS[j] and r.p_value is not None and r.ci_low is not None and r.ci_high is not None
            rejections[j] += r.p_value < ALPHA
            covered[j] += r.ci_low <= 0.0 <= r.ci_high
    lo, hi = binomial_band(N_SIM, ALPHA)
    clo, chi = binomial_band(N_SIM, 1 - ALPHA)
    print(f"A/A, {N_SIM} simulations: rejection rate at 0.05 {dict(zip(PROBS, (rejections / N_SIM).round(4), strict=True))}, "
          f"coverage {dict(zip(PROBS, (covered / N_SIM).round(4), strict=True))}")
    for j, p in enumerate(PROBS):
        assert lo <= rejections[j] <= hi, (p, rejections[j], (lo, hi))
        assert clo <= covered[j] <= chi, (p, covered[j], (clo, chi))
