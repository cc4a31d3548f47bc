"""The event_quantile model against NumPy on the raw event rows.

* point estimates: exact ``numpy.quantile(events, p, method="inverted_cdf")`` per cell when the buckets are
  lossless (at most 500 distinct values), and within the range of the bucket that holds the raw quantile when
  they are quantile-spaced;
* uncertainty: the SE and the percentile interval of the effect against a Poisson bootstrap clustered by unit on
  the raw rows (``event_quantile_helpers.raw_cluster_bootstrap``), within Monte-Carlo error. Tolerance: the SE of
  a bootstrap with R replicates has relative sd about ``1/sqrt(2R)`` (1.6% at R = 2000, for each of the two
  bootstraps) and the random grouping of units into M = 1000 clusters adds about ``1/sqrt(2M)`` (2.2%), so the
  ratio of the two SEs has sd about 3.2%: 12.5% is four of those. A percentile endpoint at R = 2000 has sd about
  0.06 SE per bootstrap (binomial error of the 2.5% order statistic over the normal density): 0.4 SE is four
  sds of the difference including the grouping noise.
* the clustering matters: on these data (correlated events within a unit) a bootstrap of events as if
  independent gives an SE well below both, so the test would see a bootstrap that ignored the units.
"""

from __future__ import annotations

import numpy as np
import pytest
from event_quantile_helpers import clustered_events, raw_cluster_bootstrap
from scipy import stats

from xpcompute.compression.events import compress_events
from xpcompute.models import fit_table
from xpcompute.models.fit import fit_compressed
from xpcompute.spec import FitSpec

PROBS = (0.5, 0.9)


def _spec(reps: int = 1000, seed: int = 0) -> FitSpec:
    return FitSpec(metric="amount", treatment="cell", model="event_quantile", cluster="user_id", quantiles=PROBS,
                   bootstrap_reps=reps, seed=seed)


def test_point_estimates_are_exact_on_lossless_buckets() -> None:
    table = clustered_events(3000, seed=1, digits=0)  # whole numbers: well under 500 distinct values
    out = fit_table(table, _spec(reps=100))
    assert out.compressed.layout.extra["event_quantile"]["lossless"] is True
    cell = table.column("cell").to_numpy(zero_copy_only=False)
    values = table.column("amount").to_numpy()
    for r in out.records:
        assert r.quantile is not None
        assert r.mean_cell == np.quantile(values[cell == "treatment"], r.quantile, method="inverted_cdf")
        assert r.mean_control == np.quantile(values[cell == "control"], r.quantile, method="inverted_cdf")
        assert r.effect == r.mean_cell - r.mean_control
        assert r.n_cell == (cell == "treatment").sum() and r.n_control == (cell == "control").sum()


def test_point_estimates_lie_in_the_bucket_of_the_raw_quantile() -> None:
    table = clustered_events(20000, seed=2, digits=None)  # continuous values: quantile-spaced buckets
    compressed = compress_events(table, "amount", "user_id", "cell")
    info = compressed.layout.extra["event_quantile"]
    assert info["lossless"] is False and info["buckets"] == 500
    records = fit_compressed(compressed, _spec(reps=100))
    t = compressed.table
    cell = table.column("cell").to_numpy(zero_copy_only=False)
    values = table.column("amount").to_numpy()
    rows_cell = t.column("cell").to_numpy(zero_copy_only=False)
    for r in records:
        for name, estimate in (("treatment", r.mean_cell), ("control", r.mean_control)):
            raw = np.quantile(values[cell == name], r.quantile, method="inverted_cdf")
            sel = rows_cell == name
            lo, hi = t.column("lo").to_numpy()[sel], t.column("hi").to_numpy()[sel]
            holding = (lo <= raw) & (raw <= hi)
            assert holding.any()
            width = float((hi[holding] - lo[holding]).max())
            assert abs(estimate - raw) <= width
            assert width < 0.02 * raw  # a 1/500 equal-frequency bucket is narrow where the events are dense


def test_se_and_interval_match_a_raw_clustered_bootstrap() -> None:
    reps = 2000
    table = clustered_events(20000, seed=3, digits=None)
    records = fit_table(table, _spec(reps=reps, seed=4)).records
    raw = raw_cluster_bootstrap(table, np.asarray(PROBS), reps, seed=5)
    naive = raw_cluster_bootstrap(table, np.asarray(PROBS), 400, seed=6, clustered=False)
    for j, r in enumerate(records):
        assert r.se is not None and r.ci_low is not None and r.ci_high is not None
        diff = raw[:, 1, j] - raw[:, 0, j]
        se_raw = float(np.std(diff, ddof=1))
        lo, hi = np.quantile(diff, [0.025, 0.975])
        print(f"p{r.quantile}: se {r.se:.4f} vs raw {se_raw:.4f} (ratio {r.se / se_raw:.3f}); "
              f"ci [{r.ci_low:.3f}, {r.ci_high:.3f}] vs raw [{r.effect + lo - diff.mean():.3f}, "
              f"{r.effect + hi - diff.mean():.3f}] around the estimate")
        assert r.se / se_raw == pytest.approx(1.0, abs=0.125)
        # compare the intervals' offsets from each bootstrap's centre (the model's is its estimate, on buckets)
        centre = float(np.mean([r.ci_low, r.ci_high]))
        assert abs((r.ci_low - centre) - (lo - (lo + hi) / 2)) < 0.4 * se_raw
        assert abs((r.ci_high - centre) - (hi - (lo + hi) / 2)) < 0.4 * se_raw
        se_naive = float(np.std(naive[:, 1, j] - naive[:, 0, j], ddof=1))
        assert se_naive < 0.8 * se_raw, "the data must make clustering matter for this test to have teeth"


def test_p_value_relative_effect_and_notes() -> None:
    table = clustered_events(4000, seed=8, effect=0.1, digits=None)
    records = fit_table(table, _spec(reps=300)).records
    for r in records:
        assert r.se is not None and r.p_value is not None
        assert r.p_value == pytest.approx(2 * stats.norm.sf(abs(r.effect / r.se)), rel=1e-9)
        assert r.relative_effect == pytest.approx(r.mean_cell / r.mean_control - 1, rel=1e-12)
        assert r.relative_ci_low is not None and r.relative_ci_low < r.relative_effect < r.relative_ci_high
        text = " ".join(r.notes)
        assert "M = 1000 unit clusters" in text and "B = 500 value buckets" in text and "300 replicates" in text
        assert "over events" in text
