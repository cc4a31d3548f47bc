"""Seeded simulation of segment discovery (``xpcompute.segments.simulation``).

Stated properties, each checked as a one-sided binomial test at level 0.001 over independent seeded replications:

* power: with 100,000 users and an extra effect of 0.35 (about 0.12 standard deviations of the metric) in
  ``country = US and device = tv`` (about 16% of the users), the honest tree discovers the planted segment
  (``simulation.found``: precision >= 0.8, recall >= 0.5) in at least 85% of replications;
* A/A (no effect anywhere) and a homogeneous effect (0.3 everywhere, no heterogeneity): every hypothesis is
  null, so Benjamini–Hochberg at q = 0.05 makes any discovery in at most 5% of replications; the number of
  replications with a discovery must not exceed the binomial(reps, 0.05) 99.9% quantile.

The default run takes about 30 s; XPCOMPUTE_SLOW=1 runs five times as many replications.
"""

from __future__ import annotations

import os

from scipy import stats

from xpcompute.segments.discovery import SegmentSettings
from xpcompute.segments.simulation import run

SLOW = os.environ.get("XPCOMPUTE_SLOW") == "1"
SCALE = 5 if SLOW else 1
STATED_POWER = 0.85
FDR = SegmentSettings().fdr
LEVEL = 0.001


def test_planted_heterogeneity_is_found_with_the_stated_power() -> None:
    reps = 40 * SCALE
    results = run(users=100_000, reps=reps, planted_effect=0.35, base_effect=0.1, seed=1)
    found = sum(r.found for r in results)
    least = int(stats.binom.ppf(LEVEL, reps, STATED_POWER))
    assert found >= least, f"found the planted segment in {found} of {reps} replications (at least {least} expected)"
    # the per-dimension Wald tests see the two planted dimensions too
    both = sum({"country", "device"} <= set(r.wald_rejected) for r in results)
    assert both >= int(stats.binom.ppf(LEVEL, reps, 0.8)), f"country and device both rejected in {both} of {reps}"


def test_aa_data_makes_no_more_discoveries_than_the_error_rate_allows() -> None:
    reps = 100 * SCALE
    results = run(users=50_000, reps=reps, planted_effect=0.0, base_effect=0.0, seed=10_000)
    runs = sum(r.discoveries > 0 for r in results)
    bound = int(stats.binom.ppf(1 - LEVEL, reps, FDR))
    assert runs <= bound, f"{runs} of {reps} A/A replications made a discovery (binomial bound {bound})"


def test_a_homogeneous_effect_is_not_reported_as_heterogeneity() -> None:
    reps = 50 * SCALE
    results = run(users=50_000, reps=reps, planted_effect=0.0, base_effect=0.3, seed=20_000)
    runs = sum(r.discoveries > 0 for r in results)
    bound = int(stats.binom.ppf(1 - LEVEL, reps, FDR))
    assert runs <= bound, f"{runs} of {reps} replications without heterogeneity made a discovery (bound {bound})"
