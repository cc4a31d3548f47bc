"""Distribution compression: exactness (lossless), the Parquet round trip, and the n-tile criterion.

The n-tile criterion (issue 2): p-values on ``ntile:N`` data agree with the
full data. Over 200 seeded experiments the Mann–Whitney p-values from
``ntile:1000`` are compared with the exact ones (max |Δp| and the share of
significance decisions at 0.05 that agree), and a small table shows how N
moves the p-value and the quantile-bootstrap standard error. Run with ``-s``
to see the printed figures.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from datagen import expand, make_experiment
from scipy import stats

from xpcompute.compression.distribution import (
    compress_distribution,
    compress_values,
    exact_value_key,
    value_column,
)
from xpcompute.compression.encode import encode_key
from xpcompute.compression.io import from_parquet_bytes, read_compressed, to_parquet_bytes, write_compressed
from xpcompute.compression.lossless import compress_moments
from xpcompute.errors import (
    CellError,
    ColumnTypeError,
    InputError,
    MissingColumnError,
    MissingValuesError,
    ZeroVarianceError,
)
from xpcompute.models import fit_compressed, fit_table
from xpcompute.models.mannwhitney import mann_whitney
from xpcompute.spec import CompressSpec, FitSpec

RTOL = 1e-8


def col(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False))


@pytest.mark.parametrize("compress", ["lossless", "none", "ntile:50", "ntile:1000"])
@pytest.mark.parametrize("metric", ["y", "sessions"])
def test_parquet_round_trip_is_unchanged(tmp_path, compress: str, metric: str) -> None:  # type: ignore[no-untyped-def]
    table = make_experiment(n=2000, seed=3)
    ct = compress_values(table, metric, ["cell", "country"], compress=CompressSpec.parse(compress))
    assert ct.layout.kind == "distribution"
    assert ct.layout.keys == ("cell", "country", value_column(metric))
    back = from_parquet_bytes(to_parquet_bytes(ct))
    assert back.table.equals(ct.table) and back.layout == ct.layout
    path = str(tmp_path / "d.parquet")
    write_compressed(ct, path)
    again = read_compressed(path)
    assert again.table.equals(ct.table) and again.layout == ct.layout


@pytest.mark.parametrize("compress", ["lossless", "none"])
def test_lossless_rows_stand_for_identical_values(compress: str) -> None:
    table = make_experiment(n=3000, seed=5)
    ct = compress_values(table, "sessions", ["cell", "device"], compress=CompressSpec.parse(compress))
    t = ct.table
    v, n, s1, s2 = (col(t, c) for c in ("sessions__value", "sessions__m_0", "sessions__m_1", "sessions__m_2"))
    np.testing.assert_allclose(s1, v * n, rtol=RTOL)
    np.testing.assert_allclose(s2, v * v * n, rtol=RTOL)
    np.testing.assert_array_equal(col(t, "_n"), n)
    assert n.sum() == table.num_rows
    # cell means and sums are exact
    y, cell = col(table, "sessions"), col(table, "cell")
    for c in ("control", "a", "b"):
        sel = col(t, "cell") == c
        np.testing.assert_allclose(s1[sel].sum(), y[cell == c].sum(), rtol=RTOL)
        np.testing.assert_allclose(s2[sel].sum(), (y[cell == c] ** 2).sum(), rtol=RTOL)
    if compress == "lossless":
        distinct = len(np.unique(np.column_stack([cell, col(table, "device"), y]).astype(str), axis=0))
        assert ct.n_groups == distinct
        assert ct.compression_ratio == pytest.approx(3000 / distinct)
        print(f"\nlossless distribution compression of 'sessions' by (cell, device): ratio {ct.compression_ratio:.1f}x")
    else:
        assert ct.n_groups == table.num_rows and ct.compression_ratio == 1.0


@pytest.mark.parametrize("n", [3_000, 60_000])  # hash path (few distinct values) and sort path (many)
def test_exact_value_key_equals_the_sorted_dictionary_encoding(n: int) -> None:
    rng = np.random.default_rng(n)
    y = rng.normal(size=n)
    y[rng.random(n) < 0.01] = np.nan
    y[:50] = 0.25  # ties
    missing = np.isnan(y)
    ours = exact_value_key(y, missing, "v")
    ref = encode_key(pa.array(y, mask=missing), "v")
    np.testing.assert_array_equal(ours.indices, ref.indices)
    assert ours.dictionary.equals(ref.dictionary)


def test_row_order_does_not_matter() -> None:
    table = make_experiment(n=1500, seed=8)
    perm = np.random.default_rng(0).permutation(table.num_rows)
    for compress in ("lossless", "ntile:40"):
        spec = CompressSpec.parse(compress)
        a = compress_values(table, "y", ["cell"], compress=spec)
        b = compress_values(table.take(pa.array(perm)), "y", ["cell"], compress=spec)
        assert a.layout == b.layout
        for name in a.table.column_names:
            if name.endswith(("__m_1", "__m_2", "__value")):  # float sums (bucket means): order of addition
                np.testing.assert_allclose(col(a.table, name), col(b.table, name), rtol=1e-12)
            else:
                assert a.table.column(name).equals(b.table.column(name)), name


def test_integer_weights_equal_repeated_rows() -> None:
    table = make_experiment(n=1200, seed=4, weights=True)
    for compress in ("lossless", "ntile:30"):
        spec = CompressSpec.parse(compress)
        weighted = compress_values(table, "y", ["cell"], weights="w", compress=spec)
        repeated = compress_values(expand(table), "y", ["cell"], compress=spec)
        assert weighted.n_groups == repeated.n_groups
        assert weighted.table.column("cell").equals(repeated.table.column("cell"))
        for name in weighted.table.column_names[1:]:
            np.testing.assert_allclose(col(weighted.table, name), col(repeated.table, name), rtol=1e-12)


def test_ntile_buckets_are_pooled_ties_with_exact_sums() -> None:
    table = make_experiment(n=5000, seed=11)
    ct = compress_values(table, "y", ["cell"], compress=CompressSpec(kind="ntile", buckets=20))
    t = ct.table
    assert ct.layout.extra["lossy"] is True and ct.layout.extra["buckets_used"] <= 20
    values, cells = col(t, "y__value"), col(t, "cell")
    # the same bucket carries the same representative value in every cell
    assert len(np.unique(values)) <= 20
    for c in ("control", "a", "b"):
        assert len(values[cells == c]) <= 20
    # about 1/N of the pooled rows per bucket, and each representative is the pooled bucket mean
    n, s1 = col(t, "y__m_0"), col(t, "y__m_1")
    for v in np.unique(values):
        sel = values == v
        assert n[sel].sum() == pytest.approx(5000 / 20, rel=0.05)
        np.testing.assert_allclose(s1[sel].sum() / n[sel].sum(), v, rtol=1e-10)
    # cell means stay exact
    y, cell = col(table, "y"), col(table, "cell")
    for c in ("control", "a", "b"):
        np.testing.assert_allclose(s1[cells == c].sum() / n[cells == c].sum(), y[cell == c].mean(), rtol=RTOL)
    assert ct.compression_ratio == pytest.approx(5000 / ct.n_groups)


def test_ntile_with_few_distinct_values_is_exact() -> None:
    table = make_experiment(n=4000, seed=2)  # sessions: Poisson counts, a dozen distinct values
    exact = compress_values(table, "sessions", ["cell"])
    nt = compress_values(table, "sessions", ["cell"], compress=CompressSpec(kind="ntile", buckets=100))
    assert nt.layout.extra["lossy"] is False
    assert nt.table.equals(exact.table)
    # a heavy atom gets its own exact bucket even when the metric is otherwise continuous,
    # at the bottom (zeros of a revenue metric) or in the middle (zero net revenue among refunds)
    rng = np.random.default_rng(1)
    for y in (
        np.where(rng.random(4000) < 0.3, 0.0, rng.lognormal(size=4000)),
        np.where(rng.random(4000) < 0.3, 0.0, rng.normal(size=4000)),
        np.where(rng.random(4000) < 0.05, 1.5, rng.normal(size=4000)),
    ):
        t2 = pa.table({"cell": col(table, "cell"), "y": y})
        ct = compress_values(t2, "y", ["cell"], compress=CompressSpec(kind="ntile", buckets=50))
        atom = 0.0 if (y == 0).sum() > 100 else 1.5
        at = col(ct.table, "y__value") == atom
        assert col(ct.table, "y__m_0")[at].sum() == (y == atom).sum()
        assert (col(ct.table, "y__lo")[at] == atom).all() and (col(ct.table, "y__hi")[at] == atom).all()
        # every other bucket lies on one side of the atom (the one just below is open at the atom)
        lo, hi = col(ct.table, "y__lo")[~at], col(ct.table, "y__hi")[~at]
        assert np.all((hi <= atom) | (lo >= atom))
        # and the bucket ranges contain their representative values, in order
        v = col(ct.table, "y__value")
        assert np.all((col(ct.table, "y__lo") <= v) & (v <= col(ct.table, "y__hi")))


def test_nulls_are_dropped_and_counted() -> None:
    table = make_experiment(n=1000, seed=6)
    y = col(table, "y").copy()
    y[:37] = np.nan
    t = table.set_column(table.schema.get_field_index("y"), "y", pa.array(y))
    ct = compress_values(t, "y", ["cell"])
    assert ct.layout.dropped == {"y": 37}
    assert col(ct.table, "_n").sum() == 963
    rec = fit_compressed(ct, FitSpec(metric="y", treatment="cell", model="mannwhitney"))
    assert any("dropped 37" in n for n in rec[0].notes)
    with pytest.raises(MissingValuesError, match="null_policy"):
        fit_compressed(ct, FitSpec(metric="y", treatment="cell", model="mannwhitney", null_policy="refuse"))


def test_compress_distribution_follows_the_spec() -> None:
    table = make_experiment(n=1000, seed=6, weights=True)
    spec = FitSpec(metric="y", treatment="cell", model="quantile", segment="country", weights="w",
                   compress=CompressSpec.parse("ntile:25"))
    ct = compress_distribution(table, spec)
    assert ct.layout.keys == ("cell", "country", "y__value")
    assert ct.layout.extra["compress"] == "ntile:25" and ct.layout.extra["weights"] == "w"
    assert col(ct.table, "_n").sum() == col(table, "w").sum()


def test_bad_input_gets_typed_errors() -> None:
    table = make_experiment(n=300, seed=1)
    with pytest.raises(ColumnTypeError, match="must be numeric"):
        compress_values(table, "country", ["cell"])
    with pytest.raises(MissingColumnError, match="revenue"):
        compress_values(table, "revenue", ["cell"])
    nan = table.append_column("allnan", pa.array(np.full(300, np.nan)))
    with pytest.raises(MissingValuesError, match="no non-null values"):
        compress_values(nan, "allnan", ["cell"])
    with pytest.raises(MissingValuesError):
        fit_table(nan, FitSpec(metric="allnan", treatment="cell", model="quantile"))
    inf = table.append_column("inf", pa.array(np.r_[np.inf, np.ones(299)]))
    with pytest.raises(InputError, match="infinite"):
        compress_values(inf, "inf", ["cell"])
    neg = table.append_column("w", pa.array(np.r_[-1.0, np.ones(299)]))
    with pytest.raises(InputError, match="negative"):
        compress_values(neg, "y", ["cell"], weights="w")
    with pytest.raises(InputError, match="grouping key"):
        compress_values(table, "y", ["cell", "y"])
    empty = table.slice(0, 0)
    with pytest.raises(MissingValuesError):
        compress_values(empty, "y", ["cell"])
    # cells: one cell only, or an explicitly requested control that has no rows
    one = table.filter(pa.compute.equal(table.column("cell"), "a"))
    for model in ("mannwhitney", "quantile"):
        with pytest.raises(CellError, match="at least two cells"):
            fit_table(one, FitSpec(metric="y", treatment="cell", model=model))
        with pytest.raises(CellError, match="not found"):
            fit_table(table, FitSpec(metric="y", treatment="cell", model=model, control="holdout"))
        const = table.append_column("const", pa.array(np.ones(300)))
        with pytest.raises(ZeroVarianceError, match=r"nothing to test|cannot"):
            fit_table(const, FitSpec(metric="const", treatment="cell", model=model))
        moments = compress_moments(table, ["cell"], {"y": ()})
        with pytest.raises(InputError, match="distribution-compressed"):
            fit_compressed(moments, FitSpec(metric="y", treatment="cell", model=model))


def _experiment(seed: int, n: int = 20_000) -> pa.Table:
    """Two cells of skewed data with ties at zero and a random (often null) shift, so p-values spread over [0, 1]."""
    rng = np.random.default_rng(50_000 + seed)
    cell = rng.choice(["control", "treatment"], size=n)
    shift = rng.choice([0.0, 0.01, 0.02, 0.03, 0.05])
    y = rng.lognormal(mean=shift * (cell == "treatment"), sigma=1.0, size=n)
    y = np.where(rng.random(n) < 0.15, 0.0, y)
    return pa.table({"cell": cell, "y": y})


def _mw_p(table: pa.Table, compress: str) -> float:
    spec = FitSpec(metric="y", treatment="cell", model="mannwhitney", compress=CompressSpec.parse(compress))
    (rec,) = fit_table(table, spec).records
    assert rec.p_value is not None
    return rec.p_value


def test_ntile_1000_p_values_agree_with_the_full_data() -> None:
    n_exp = 200
    full = np.empty(n_exp)
    lossy = np.empty(n_exp)
    for seed in range(n_exp):
        table = _experiment(seed)
        full[seed] = _mw_p(table, "lossless")
        lossy[seed] = _mw_p(table, "ntile:1000")
        y, cell = col(table, "y"), col(table, "cell")
        if seed < 20:  # the lossless path is scipy's test
            ref = stats.mannwhitneyu(y[cell == "treatment"], y[cell == "control"], method="asymptotic")
            np.testing.assert_allclose(full[seed], ref.pvalue, rtol=RTOL)
    dp = np.abs(full - lossy)
    ratio = compress_values(_experiment(0), "y", ["cell"], compress=CompressSpec.parse("ntile:1000")).compression_ratio
    agree = np.mean((full < 0.05) == (lossy < 0.05))
    print(
        f"\nntile:1000 vs full data, {n_exp} experiments x 20,000 rows: max |Δp| = {dp.max():.2e}, "
        f"median |Δp| = {np.median(dp):.2e}, significance at 0.05 agrees in {100 * agree:.1f}% "
        f"({int(np.sum(full < 0.05))} significant on the full data); ntile:1000 ratio {ratio:.1f}x"
    )
    assert dp.max() < 5e-3
    assert agree >= 0.995  # at most one borderline disagreement in 200; the seeded run has none
    assert 20 <= np.sum(full < 0.05) <= 180  # the experiments do span both decisions


def test_effect_of_buckets_on_p_value_and_se() -> None:
    """How N moves the Mann–Whitney p-value and the p50 QTE, its bootstrap SE and p-value (printed table)."""
    tables = [_experiment(seed) for seed in range(30)]
    full_p = np.array([_mw_p(t, "lossless") for t in tables])
    qspec = {"model": "quantile", "quantiles": (0.5,), "bootstrap_reps": 200, "seed": 7}

    def qte(t: pa.Table, c: str) -> tuple[float, float, float]:
        (r,) = fit_table(t, FitSpec(metric="y", treatment="cell", compress=CompressSpec.parse(c), **qspec)).records
        assert r.se is not None and r.p_value is not None
        return r.effect, r.se, r.p_value

    full_q = np.array([qte(t, "lossless") for t in tables[:10]])
    lines = [
        "| N | groups | MW mean |Δp| | MW max |Δp| | MW decisions agree | QTE p50 mean |Δ|/SE | SE(p50) / full | QTE max |Δp| (incl. bootstrap noise) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    max_dp = {}
    for n_b in (10, 30, 100, 300, 1000, 3000):
        c = f"ntile:{n_b}"
        p = np.array([_mw_p(t, c) for t in tables])
        qn = np.array([qte(t, c) for t in tables[:10]])
        groups = compress_values(tables[0], "y", ["cell"], compress=CompressSpec.parse(c)).n_groups
        dp = np.abs(p - full_p)
        max_dp[n_b] = dp.max()
        lines.append(
            f"| {n_b} | {groups} | {dp.mean():.1e} | {dp.max():.1e} | {100 * np.mean((p < 0.05) == (full_p < 0.05)):.0f}% "
            f"| {np.mean(np.abs(qn[:, 0] - full_q[:, 0]) / full_q[:, 1]):.3f} | {np.mean(qn[:, 1] / full_q[:, 1]):.3f} "
            f"| {np.max(np.abs(qn[:, 2] - full_q[:, 2])):.2f} |"
        )
    print("\nEffect of N (30 experiments x 20,000 rows; QTE over 10 of them, 200 reps):\n" + "\n".join(lines))
    assert max_dp[3000] <= max_dp[10]
    assert max_dp[1000] < 5e-3


def test_mann_whitney_helper_on_weighted_samples_equals_repeats() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 6, 40).astype(float), rng.integers(0, 6, 55).astype(float)
    wx, wy = rng.integers(1, 4, 40).astype(float), rng.integers(1, 4, 55).astype(float)
    res = mann_whitney(x, wx, y, wy)
    ref = stats.mannwhitneyu(np.repeat(x, wx.astype(int)), np.repeat(y, wy.astype(int)), method="asymptotic")
    np.testing.assert_allclose([res.u, res.p_value], [ref.statistic, ref.pvalue], rtol=RTOL)
