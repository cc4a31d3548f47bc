"""Quantile treatment effects: point estimates against numpy's inverted-CDF quantiles at 1e-8, and the bootstrap."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from datagen import expand, make_experiment
from scipy import stats

from xpcompute import native
from xpcompute.models import fit_table, model_data
from xpcompute.models.quantile import ESTIMAND_NOTE, QuantileModel, grouped_quantiles, quantile_label
from xpcompute.spec import CompressSpec, FitSpec

RTOL = 1e-8
PROBS = (0.1, 0.5, 0.9, 0.99)


def col(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False))


def num(values: list[float | None]) -> np.ndarray:
    """Record fields as floats (None would be a bug here: fail loudly)."""
    assert all(v is not None for v in values), values
    return np.asarray(values, dtype=np.float64)


def q(values: np.ndarray, p: float) -> float:
    return float(np.quantile(values, p, method="inverted_cdf"))


def check_points(records, y: np.ndarray, cell: np.ndarray, control: str = "control") -> None:  # type: ignore[no-untyped-def]
    for r in records:
        a, b = y[cell == r.cell], y[cell == control]
        qa, qb = q(a, r.quantile), q(b, r.quantile)
        np.testing.assert_allclose(r.effect, qa - qb, rtol=RTOL, atol=1e-12)
        if qb != 0:
            np.testing.assert_allclose(r.relative_effect, qa / qb - 1, rtol=RTOL, atol=1e-12)
        np.testing.assert_allclose([r.n_cell, r.n_control, r.mean_cell, r.mean_control], [len(a), len(b), a.mean(), b.mean()], rtol=RTOL)
        assert r.model == "quantile" and ESTIMAND_NOTE in r.notes


@pytest.mark.parametrize("compress", ["lossless", "none"])
@pytest.mark.parametrize("metric", ["y", "sessions"])  # continuous; integer with heavy ties
def test_points_match_numpy_inverted_cdf(compress: str, metric: str) -> None:
    table = make_experiment(n=3000, seed=41)
    spec = FitSpec(metric=metric, treatment="cell", model="quantile", quantiles=PROBS, bootstrap_reps=100,
                   compress=CompressSpec.parse(compress))
    out = fit_table(table, spec)
    assert [(r.cell, r.quantile) for r in out.records] == [(c, p) for c in ("a", "b") for p in PROBS]
    check_points(out.records, col(table, metric), col(table, "cell"))


def test_weights_equal_repeated_rows() -> None:
    table = make_experiment(n=1500, seed=7, weights=True)
    out = fit_table(table, FitSpec(metric="y", treatment="cell", model="quantile", weights="w", bootstrap_reps=100))
    full = expand(table)
    check_points(out.records, col(full, "y"), col(full, "cell"))


def test_segments_and_summaries_match_numpy() -> None:
    table = make_experiment(n=3000, seed=17)
    spec = FitSpec(metric="y", treatment="cell", model="quantile", segment="device", quantiles=(0.25, 0.5), bootstrap_reps=60)
    out = fit_table(table, spec)
    y, cell, dev = col(table, "y"), col(table, "cell"), col(table, "device")
    check_points([r for r in out.records if r.segment is None], y, cell)
    for s in ("android", "ios", "tv"):
        sel = dev == s
        recs = [r for r in out.records if r.segment == s]
        assert len(recs) == 4
        check_points(recs, y[sel], cell[sel])
    summaries = QuantileModel().summaries(model_data(out.compressed, spec))
    assert len(summaries) == 4 * 3
    for sm in summaries:
        sel = (cell == sm.cell) & (dev == sm.segment if sm.segment else True)
        v = y[sel]
        np.testing.assert_allclose(num([sm.count, sm.mean, sm.variance]), [len(v), v.mean(), v.var(ddof=1)], rtol=RTOL)
        assert sm.quantiles == {quantile_label(p): pytest.approx(q(v, p), rel=RTOL) for p in (0.25, 0.5)}
    assert quantile_label(0.999) == "p99.9" and quantile_label(0.1) == "p10"


def test_bootstrap_interval_is_the_percentile_interval_of_poisson_replicates() -> None:
    """Rebuild the replicates from ``native.poisson_weights`` (the weights ``bootstrap_quantiles`` is specified by)."""
    table = make_experiment(n=1200, seed=23)
    spec = FitSpec(metric="sessions", treatment="cell", model="quantile", quantiles=(0.5, 0.9), bootstrap_reps=300, seed=5)
    out = fit_table(table, spec)
    data = model_data(out.compressed, spec)
    model = QuantileModel()
    model.train(data)
    cells = tuple(model.samples)
    values = np.concatenate([model.samples[c].values for c in cells])
    counts = np.concatenate([model.samples[c].counts for c in cells])
    group = np.concatenate([np.full(len(model.samples[c].values), k) for k, c in enumerate(cells)])
    w = native.poisson_weights(counts, spec.bootstrap_reps, spec.seed)
    reps = np.array(
        [[native.weighted_quantiles(values[group == k], w[b, group == k], np.array(spec.quantiles)) for k in range(len(cells))]
         for b in range(spec.bootstrap_reps)]
    )
    for r in out.records:
        j = spec.quantiles.index(r.quantile)
        qc, q0 = reps[:, cells.index(r.cell), j], reps[:, 0, j]
        diff = qc - q0
        lo, hi = np.quantile(diff, [0.025, 0.975])
        se = diff.std(ddof=1)
        np.testing.assert_allclose(num([r.ci_low, r.ci_high, r.se]), [lo, hi, se], rtol=RTOL, atol=1e-12)
        if se > 0:
            np.testing.assert_allclose(num([r.p_value]), 2 * stats.norm.sf(abs(r.effect) / se), rtol=RTOL)
            c = np.cov(np.vstack([qc, q0]), ddof=1)
            m1, m0 = float(model.quantiles[r.cell][j]), float(model.quantiles["control"][j])
            grad = np.array([1 / m0, -m1 / m0**2])
            np.testing.assert_allclose(num([r.relative_se]), np.sqrt(grad @ c @ grad), rtol=RTOL)


def test_compressed_bootstrap_matches_raw_row_bootstrap_in_distribution() -> None:
    """Lossless rows get Poisson(n) weights, raw rows Poisson(1) each: the same bootstrap, other draws."""
    table = make_experiment(n=4000, seed=29)
    base = {"metric": "sessions", "treatment": "cell", "model": "quantile", "quantiles": (0.5, 0.9), "bootstrap_reps": 1000}
    lossless = fit_table(table, FitSpec(**base)).records
    raw = fit_table(table, FitSpec(compress=CompressSpec(kind="none"), **base)).records
    assert fit_table(table, FitSpec(**base)).compressed.compression_ratio > 100
    for a, b in zip(lossless, raw, strict=True):
        assert a.effect == b.effect
        assert a.se == pytest.approx(b.se, rel=0.15)


def test_bootstrap_is_seeded() -> None:
    table = make_experiment(n=1000, seed=1)
    spec = FitSpec(metric="y", treatment="cell", model="quantile", bootstrap_reps=80, seed=11)
    a = fit_table(table, spec).records
    b = fit_table(table, spec).records
    assert [r.model_dump() for r in a] == [r.model_dump() for r in b]


def test_ci_covers_and_se_is_plausible() -> None:
    # the median of N(mu, 1) has sd ~ 1.2533 / sqrt(n); the QTE sd adds two such terms
    rng = np.random.default_rng(0)
    n = 4000
    cell = np.repeat(["control", "t"], n)
    y = rng.normal(size=2 * n) + 0.5 * (cell == "t")
    (r,) = fit_table(pa.table({"cell": cell, "y": y}),
                     FitSpec(metric="y", treatment="cell", model="quantile", quantiles=(0.5,), bootstrap_reps=400)).records
    assert r.se == pytest.approx(1.2533 * np.sqrt(2 / n), rel=0.2)
    lo, hi, p = num([r.ci_low, r.ci_high, r.p_value])
    assert lo < 0.5 < hi and p < 1e-6


def test_ntile_quantiles_are_close_to_exact() -> None:
    table = make_experiment(n=20000, seed=3)
    spec = FitSpec(metric="y", treatment="cell", model="quantile", bootstrap_reps=100, compress=CompressSpec.parse("ntile:1000"))
    out = fit_table(table, spec)
    y, cell = col(table, "y"), col(table, "cell")
    spread = np.quantile(y, 0.99) - np.quantile(y, 0.01)
    for r in out.records:
        p = num([r.quantile])[0]
        exact = q(y[cell == r.cell], p) - q(y[cell == "control"], p)
        assert abs(r.effect - exact) < 0.02 * spread
        assert any("interpolate linearly inside n-tile buckets" in n for n in r.notes)
    assert out.compressed.compression_ratio > 5


def test_atom_gives_no_p_value() -> None:
    table = make_experiment(n=2000, seed=4)  # 'converted' is 0/1 with P(1) ~ 0.2: the median sits on 0
    out = fit_table(table, FitSpec(metric="converted", treatment="cell", model="quantile", quantiles=(0.5, 0.9),
                                   bootstrap_reps=100))
    med = [r for r in out.records if r.quantile == 0.5]
    assert all(r.effect == 0 and r.se == 0 and r.p_value is None for r in med)
    assert all(any("no p-value" in n for n in r.notes) for r in med)


def test_grouped_quantiles_reduce_to_inverted_cdf_on_exact_rows() -> None:
    rng = np.random.default_rng(8)
    values = rng.integers(0, 50, 300).astype(float)
    weights = rng.integers(0, 4, 300).astype(float)
    probs = np.array([0.01, 0.1, 0.25, 0.5, 0.9, 0.99])
    ours = grouped_quantiles(values, values, values, weights, probs)[0]
    expanded = np.repeat(values, weights.astype(int))
    np.testing.assert_array_equal(ours, np.quantile(expanded, probs, method="inverted_cdf"))
    # one bucket of width 1 holding all the mass: the quantile is linear in p
    np.testing.assert_allclose(grouped_quantiles(np.array([0.5]), np.array([0.0]), np.array([1.0]), np.array([7.0]), probs)[0], probs)
    # replicate weightings at once, with an all-zero replicate giving NaN
    reps = np.vstack([weights, np.zeros(300), 2 * weights])
    out = grouped_quantiles(values, values, values, reps, probs)
    np.testing.assert_array_equal(out[0], out[2])
    assert np.isnan(out[1]).all()


def test_ntile_qte_and_bootstrap_se_track_the_exact_ones_at_scale() -> None:
    """Many rows per bucket: the interpolated quantiles stay within a fraction of a SE, and SEs agree."""
    rng = np.random.default_rng(12)
    n = 200_000
    cell = rng.integers(0, 2, n)
    y = rng.lognormal(0.05 * cell, 1.0, n)
    y[rng.random(n) < 0.2] = 0.0
    table = pa.table({"cell": np.where(cell == 1, "t", "control"), "y": y})
    base = {"metric": "y", "treatment": "cell", "model": "quantile", "quantiles": (0.5, 0.9, 0.99), "bootstrap_reps": 200}
    exact = fit_table(table, FitSpec(**base)).records
    out = fit_table(table, FitSpec(compress=CompressSpec.parse("ntile:1000"), **base))
    assert out.compressed.compression_ratio > 50
    for e, r in zip(exact, out.records, strict=True):
        se_e, se_r = num([e.se])[0], num([r.se])[0]
        assert abs(r.effect - e.effect) < 0.25 * se_e, (r.quantile, r.effect, e.effect, se_e)
        assert se_r == pytest.approx(se_e, rel=0.25)
        lo, hi = num([r.ci_low, r.ci_high])
        assert lo < r.effect < hi
