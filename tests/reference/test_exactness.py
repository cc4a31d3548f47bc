"""Exact on any data (issue 11): every moments model against scipy/statsmodels at rtol 1e-8, whatever the
location and magnitude of the metric and its covariates, and a typed error or a note on degenerate inputs.

The references run on the raw rows, changed only by operations that are exact in float64 and that the
estimators are equivariant to, because on the untouched rows the references themselves lose the digits
this issue is about: scipy's Welch degrees of freedom overflow beyond 1e150 and underflow below 1e-150
(``va**2``), and ``mean(a) - mean(b)`` of values near 1e9 * sd carries rounding of 1e9 * 1e-16 sd. So the
rows are multiplied by a power of two (exact), and, where every value lies within a factor of two of the
first one, that value is subtracted (exact by Sterbenz's lemma; asserted in ``exact_shift``). Effects and
SEs of the shifted rows are those of the raw rows (a shift moves only the means and the intercept).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import duckdb
import numpy as np
import pyarrow as pa
import pytest
import statsmodels.api as sm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import stats
from sqlglot import exp

from xpcompute.compression import compress_moments
from xpcompute.compression.io import from_parquet_bytes, to_parquet_bytes
from xpcompute.compression.transform import ColumnTransform, column_transforms
from xpcompute.errors import (
    CellError,
    CollinearityError,
    ColumnTypeError,
    MissingValuesError,
    NumericRangeError,
    ZeroVarianceError,
)
from xpcompute.models import fit_table
from xpcompute.records import ResultRecord
from xpcompute.spec import FitSpec
from xpcompute.sql.stage2 import MetricMoments, slice_query

RTOL = 1e-8
F64 = NDArray[np.float64]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: mean/sd ratios (the issue: up to 1e9) and sd magnitudes (1e-150 .. 1e150)
RATIOS = st.sampled_from([0.0, 1.0, -1e3, 1e5, 1e6, -1e8, 1e9])
MAGNITUDES = st.integers(min_value=-150, max_value=150)


def exact_shift(v: F64) -> F64:
    """``v - v[0]`` when that is exact for every value (all within a factor of two of ``v[0]``), else ``v``."""
    v0 = float(v[0])
    if v0 != 0 and np.all((v / v0 >= 0.5) & (v / v0 <= 2.0)):
        out = v - v0
        assert all(Fraction(float(a)) - Fraction(v0) == Fraction(float(b)) for a, b in zip(v, out, strict=True))
        return out
    return v


def pow2(v: F64) -> int:
    """An exponent ``k`` with ``v * 2**-k`` of order one (multiplying by ``2**-k`` is exact)."""
    top = float(np.max(np.abs(v)))
    return math.frexp(top)[1] if top > 0 else 0


def fixed(v: F64) -> tuple[F64, int]:
    """The rows, exactly shifted and scaled to order one, with the scale's exponent."""
    shifted = exact_shift(v)
    k = pow2(shifted)
    return np.ldexp(shifted, -k), k


def cells(n_control: int, n_treat: int) -> NDArray[np.str_]:
    return np.array(["control"] * n_control + ["b"] * n_treat)


def close(got: float | Sequence[float | None] | None, want: float | Sequence[float], rtol: float = RTOL, atol: float = 0.0) -> None:
    """``assert_allclose`` for record fields (a missing value is NaN, which never matches a number)."""
    values = [got] if got is None or isinstance(got, float | int) else list(got)
    actual = np.array([np.nan if v is None else float(v) for v in values])
    np.testing.assert_allclose(actual, np.atleast_1d(np.asarray(want, dtype=np.float64)), rtol=rtol, atol=atol)


def only(records: list[ResultRecord]) -> ResultRecord:
    assert len(records) == 1
    return records[0]


# ----------------------------------------------------------------------------- Welch t-test


@SETTINGS
@given(ratio=RATIOS, magnitude=MAGNITUDES, n0=st.integers(3, 60), n1=st.integers(3, 60), seed=st.integers(0, 2**31))
def test_welch_matches_scipy_at_any_location_and_magnitude(ratio: float, magnitude: int, n0: int, n1: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sd = 10.0**magnitude
    cell = cells(n0, n1)
    y = ratio * sd + sd * (rng.normal(0, 1, n0 + n1) + 0.4 * (cell == "b"))
    r = only(fit_table(pa.table({"cell": cell, "y": y}), FitSpec(metric="y", treatment="cell")).records)
    z, k = fixed(y)
    a, b = z[cell == "b"], z[cell == "control"]
    ref = stats.ttest_ind(a, b, equal_var=False)
    se = math.ldexp(math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)), k)
    effect = math.ldexp(a.mean() - b.mean(), k)
    ci = ref.confidence_interval(0.95)
    close(r.effect, effect, rtol=RTOL)
    close(r.se, se, rtol=RTOL)
    close(r.df, ref.df, rtol=RTOL)
    close(r.statistic, ref.statistic, rtol=RTOL)
    close(r.p_value, ref.pvalue, rtol=RTOL, atol=1e-300)
    close([r.ci_low, r.ci_high], [math.ldexp(ci.low, k), math.ldexp(ci.high, k)], rtol=RTOL)
    close([r.mean_cell, r.mean_control], [y[cell == "b"].mean(), y[cell == "control"].mean()], rtol=RTOL)
    assert r.notes == []


# ----------------------------------------------------------------------------- OLS (HC1) with a covariate


def ols_reference(y: F64, cell: NDArray[np.str_], covs: list[F64]) -> tuple[float, float]:
    """statsmodels OLS with HC1 on the exactly shifted and scaled rows: (effect, SE) in the units of ``y``."""
    zy, k = fixed(y)
    x = np.column_stack([np.ones(len(y)), (cell == "b").astype(float), *(fixed(c)[0] for c in covs)])
    fit = sm.OLS(zy, x).fit(cov_type="HC1")
    return math.ldexp(float(fit.params[1]), k), math.ldexp(float(fit.bse[1]), k)


@SETTINGS
@given(
    ratio=RATIOS,
    magnitude=MAGNITUDES,
    cov_offset=st.sampled_from([0.0, 1e3, -1e6, 1e6, 1e9]),
    cov_magnitude=MAGNITUDES,
    n0=st.integers(4, 50),
    n1=st.integers(4, 50),
    seed=st.integers(0, 2**31),
)
def test_ols_matches_statsmodels_with_offset_covariates(
    ratio: float, magnitude: int, cov_offset: float, cov_magnitude: int, n0: int, n1: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    sd, csd = 10.0**magnitude, 10.0**cov_magnitude
    cell = cells(n0, n1)
    u = rng.normal(0, 1, n0 + n1)
    c = cov_offset * csd + csd * u
    y = ratio * sd + sd * (0.7 * u + rng.normal(0, 1, n0 + n1) + 0.3 * (cell == "b"))
    table = pa.table({"cell": cell, "y": y, "c": c})
    r = only(fit_table(table, FitSpec(metric="y", treatment="cell", model="ols", covariates=("c",))).records)
    effect, se = ols_reference(y, cell, [c])
    close(r.effect, effect, rtol=RTOL)
    close(r.se, se, rtol=RTOL)
    close(r.p_value, 2 * stats.norm.sf(abs(effect / se)), rtol=RTOL, atol=1e-300)
    assert not any("collinear" in note for note in r.notes)


@pytest.mark.parametrize("offset", [1e4, 1e5, 3e5, 1e6])
def test_issue_offsets_keep_the_covariate_and_the_p_value(offset: float) -> None:
    """The issue's cases: at offsets 1e5..1e6 the SE was 15x off, or the covariate was dropped as collinear."""
    rng = np.random.default_rng(11)
    n = 2000
    cell = np.where(np.arange(n) % 2 == 0, "control", "b")
    c = offset + rng.normal(0, 1, n)
    y = offset + 0.8 * (c - offset) + 0.6 * rng.normal(0, 1, n) + 0.05 * (cell == "b")
    r = only(fit_table(pa.table({"cell": cell, "y": y, "c": c}), FitSpec(metric="y", treatment="cell", model="ols", covariates=("c",))).records)
    effect, se = ols_reference(y, cell, [c])
    close([r.effect, r.se], [effect, se], rtol=RTOL)
    assert r.notes == []


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ratio=RATIOS, magnitude=MAGNITUDES, cov_offset=st.sampled_from([0.0, 1e6, -1e9]), n=st.integers(4, 30), seed=st.integers(0, 2**31))
def test_cate_matches_a_saturated_statsmodels_fit(ratio: float, magnitude: int, cov_offset: float, n: int, seed: int) -> None:
    """CATE per segment = the cell coefficient plus its segment interaction of one HC1 fit (covariate terms cancel)."""
    rng = np.random.default_rng(seed)
    sd = 10.0**magnitude
    cell = np.tile(cells(n, n), 2)
    seg = np.repeat(np.array(["s0", "s1"]), 2 * n)
    d, s1 = (cell == "b").astype(float), (seg == "s1").astype(float)
    u = rng.normal(0, 1, 4 * n)
    c = cov_offset + u
    y = ratio * sd + sd * (0.5 * u + rng.normal(0, 1, 4 * n) + 0.3 * d + 0.4 * d * s1)
    table = pa.table({"cell": cell, "seg": seg, "y": y, "c": c})
    records = fit_table(table, FitSpec(metric="y", treatment="cell", model="cate", segment="seg", covariates=("c",))).records
    zy, k = fixed(y)
    x = np.column_stack([np.ones(4 * n), s1, d, d * s1, fixed(c)[0]])
    fit = sm.OLS(zy, x).fit(cov_type="HC1")
    for r in records:
        contrast = np.array([0, 0, 1, 0, 0.0])
        if r.segment == "s1":
            contrast[3] = 1.0
        elif r.segment is None:  # the overall ATE: interactions weighted by the segments' shares of rows
            contrast[3] = s1.mean()
        effect = math.ldexp(float(contrast @ fit.params), k)
        se = math.ldexp(float(np.sqrt(contrast @ fit.cov_params() @ contrast)), k)
        close([r.effect, r.se], [effect, se])


# ----------------------------------------------------------------------------- ratio metrics


@SETTINGS
@given(ratio=RATIOS, magnitude=MAGNITUDES, den_magnitude=MAGNITUDES, n0=st.integers(3, 50), n1=st.integers(3, 50), seed=st.integers(0, 2**31))
def test_ratio_matches_the_delta_method_on_raw_rows(
    ratio: float, magnitude: int, den_magnitude: int, n0: int, n1: int, seed: int
) -> None:
    """Ratios are not shift-invariant: the reference scales by powers of two only (its variances are two-pass)."""
    rng = np.random.default_rng(seed)
    sd, dsd = 10.0**magnitude, 10.0**den_magnitude
    cell = cells(n0, n1)
    d = dsd * rng.uniform(1.0, 3.0, n0 + n1)
    y = ratio * sd + sd * rng.normal(0, 1, n0 + n1) + 0.5 * sd * d / dsd
    r = only(fit_table(pa.table({"cell": cell, "y": y, "d": d}), FitSpec(metric="y", treatment="cell", model="ratio", denominator="d")).records)
    ky, kd = pow2(y), pow2(d)
    zy, zd = np.ldexp(y, -ky), np.ldexp(d, -kd)
    out = []
    for c in ("b", "control"):
        sel = cell == c
        m = np.array([zy[sel].mean(), zd[sel].mean()])
        cov = np.cov(np.vstack([zy[sel], zd[sel]]), ddof=1) / sel.sum()
        g = np.array([1 / m[1], -m[0] / m[1] ** 2])
        out.append((m[0] / m[1], float(g @ cov @ g)))
    unit = math.ldexp(1.0, ky - kd)
    effect = unit * (out[0][0] - out[1][0])
    se = unit * math.sqrt(out[0][1] + out[1][1])
    # R1 - R0 is a difference of two ratios, each rounded to 1e-16 of itself (in both computations)
    close(r.effect, effect, rtol=RTOL, atol=1e-14 * unit * abs(out[1][0]))
    close(r.se, se, rtol=RTOL)


# ----------------------------------------------------------------------------- the whole float64 range


@pytest.mark.parametrize("magnitude", [1e-300, 1e-150, 1e100, 1e150, 1e300])
def test_extreme_magnitudes_match_the_scaled_references(magnitude: float) -> None:
    """Near 1e100 Welch's df overflowed (OverflowError); near 1e300 ttest and ols answered "zero variance"."""
    rng = np.random.default_rng(5)
    n = 400
    cell = np.where(np.arange(n) % 2 == 0, "control", "b")
    u = rng.normal(0, 1, n)
    y = magnitude * (1 + 0.1 * (0.6 * u + rng.normal(0, 1, n)))
    c = magnitude * (1 + 0.1 * u)
    table = pa.table({"cell": cell, "y": y, "c": c})
    t = only(fit_table(table, FitSpec(metric="y", treatment="cell")).records)
    z, _ = fixed(y)
    ref = stats.ttest_ind(z[cell == "b"], z[cell == "control"], equal_var=False)
    close([t.statistic, t.df, t.p_value], [ref.statistic, ref.df, ref.pvalue], rtol=RTOL)
    o = only(fit_table(table, FitSpec(metric="y", treatment="cell", model="ols", covariates=("c",))).records)
    close([o.effect, o.se], ols_reference(y, cell, [c]), rtol=RTOL)


def test_a_result_beyond_float64_is_a_numeric_range_error() -> None:
    """Cell means at -1.5e308 and 1.5e308: the effect, 3e308, does not exist in float64."""
    cell = np.array(["control"] * 3 + ["b"] * 3)
    y = np.array([-1.5e308, -1.4e308, -1.6e308, 1.5e308, 1.4e308, 1.6e308])
    with pytest.raises(NumericRangeError, match="outside the float64 range"):
        fit_table(pa.table({"cell": cell, "y": y}), FitSpec(metric="y", treatment="cell"))


def test_infinite_values_are_column_type_errors() -> None:
    """Arrow holds no finite number beyond float64 (decimal256 stops at 1e76), so inf is the one way in."""
    cell = ["control", "control", "b", "b"]
    with pytest.raises(ColumnTypeError, match="infinite"):
        fit_table(pa.table({"cell": cell, "y": [1.0, np.inf, 2.0, 3.0]}), FitSpec(metric="y", treatment="cell"))


def test_a_constant_metric_far_from_zero_is_zero_variance_and_a_tiny_spread_is_not() -> None:
    cell = np.array(["control", "b"] * 50)
    with pytest.raises(ZeroVarianceError):
        fit_table(pa.table({"cell": cell, "y": np.full(100, 1e6)}), FitSpec(metric="y", treatment="cell"))
    y = 1e6 + 1e-3 * np.random.default_rng(1).normal(0, 1, 100)  # mean/sd = 1e9: the issue's "zero variance"
    r = only(fit_table(pa.table({"cell": cell, "y": y}), FitSpec(metric="y", treatment="cell")).records)
    z, _ = fixed(y)
    ref = stats.ttest_ind(z[cell == "b"], z[cell == "control"], equal_var=False)
    close([r.statistic, r.p_value], [ref.statistic, ref.pvalue], rtol=RTOL)


# ----------------------------------------------------------------------------- degenerate inputs: refused or noted


def test_all_missing_metric_is_a_missing_values_error() -> None:
    table = pa.table({"cell": ["control", "b"] * 5, "y": pa.array([None] * 10, pa.float64())})
    with pytest.raises(MissingValuesError, match="no row has a value"):
        fit_table(table, FitSpec(metric="y", treatment="cell"))


@pytest.mark.parametrize("model", ["ttest", "ols", "ratio"])
def test_a_cell_below_min_cell_count_is_refused(model: str) -> None:
    rng = np.random.default_rng(2)
    cell = np.array(["control"] * 30 + ["b"])
    table = pa.table({"cell": cell, "y": rng.normal(5, 1, 31), "d": rng.uniform(1, 2, 31), "c": rng.normal(0, 1, 31)})
    extra: dict[str, object] = {"ratio": {"denominator": "d"}, "ols": {"covariates": ("c",)}}.get(model, {})  # type: ignore[assignment]
    with pytest.raises(CellError, match="min_cell_count=2"):
        fit_table(table, FitSpec(metric="y", treatment="cell", model=model, **extra))
    big = pa.table({"cell": np.array(["control"] * 30 + ["b"] * 3), "y": rng.normal(5, 1, 33), "d": rng.uniform(1, 2, 33), "c": rng.normal(0, 1, 33)})
    with pytest.raises(CellError, match="fewer than min_cell_count=5"):
        fit_table(big, FitSpec(metric="y", treatment="cell", model=model, min_cell_count=5, **extra))


def test_a_segment_cell_below_min_cell_count_gets_a_note_and_no_se() -> None:
    rng = np.random.default_rng(4)
    n = 200
    cell = np.where(np.arange(n) % 2 == 0, "control", "b")
    segment = np.where(np.arange(n) < 190, "big", "small")
    cell[190:] = "control"
    cell[199] = "b"  # the small segment has one treated unit
    table = pa.table({"cell": cell, "seg": segment, "y": rng.normal(0, 1, n)})
    records = fit_table(table, FitSpec(metric="y", treatment="cell", model="cate", segment="seg")).records
    (small,) = [r for r in records if r.segment == "small"]
    assert small.se is None or math.isnan(small.se)
    assert small.p_value is None or math.isnan(small.p_value)
    assert any("min_cell_count" in note for note in small.notes)
    big = next(r for r in records if r.segment == "big")
    assert big.se is not None and big.se > 0 and not any("min_cell_count" in note for note in big.notes)


@pytest.mark.parametrize("policy", ["drop", "refuse"])
@pytest.mark.parametrize("relation", ["equal", "affine"])
def test_a_covariate_that_reproduces_the_metric_is_refused(policy: str, relation: str) -> None:
    """It used to give effect 0, SE 0 and no note."""
    rng = np.random.default_rng(6)
    y = rng.normal(10, 1, 100)
    c = y.copy() if relation == "equal" else 3.0 * y - 7.0
    table = pa.table({"cell": ["control", "b"] * 50, "y": y, "c": c})
    with pytest.raises(CollinearityError, match="exact linear function"):
        fit_table(table, FitSpec(metric="y", treatment="cell", model="ols", covariates=("c",), collinear_policy=policy))


# ----------------------------------------------------------------------------- the compressed tables


def test_transforms_are_powers_of_two_and_keep_every_z_within_one() -> None:
    rng = np.random.default_rng(8)
    for v in (1e9 + rng.normal(0, 1, 50), 1e-300 * rng.normal(0, 1, 50), np.array([-1.7e308, 1.7e308]), np.full(4, 3.0)):
        (t,) = column_transforms(pa.table({"v": v}), ["v"]).values()
        assert math.frexp(t.scale)[0] == 0.5
        assert np.all(np.abs(t.apply(v)) <= (1.0 if np.abs(v).max() < 4e307 else 4.0))
    assert column_transforms(pa.table({"v": pa.array([None, None], pa.float64())}), ["v"])["v"] == ColumnTransform()


def test_layout_carries_the_transforms_through_parquet() -> None:
    rng = np.random.default_rng(9)
    table = pa.table({"cell": ["control", "b"] * 20, "y": 1e9 + rng.normal(0, 1, 40), "c": -1e6 + rng.normal(0, 1, 40)})
    got = compress_moments(table, ["cell"], {"y": ["c"]}, transforms=column_transforms(table, ["y", "c"]))
    back = from_parquet_bytes(to_parquet_bytes(got))
    assert back.layout == got.layout and back.table.equals(got.table)
    assert [t.shift for t in back.layout.metrics["y"].transforms] != [0.0, 0.0]


def test_sql_route_with_the_constants_equals_compress_moments() -> None:
    """The same z on every row: SQL (DuckDB) and the C++ group-by agree to the last bits of a sum's order."""
    rng = np.random.default_rng(10)
    n = 300
    table = pa.table({
        "cell": rng.choice(["control", "b"], n), "y": 1e9 + rng.normal(0, 1, n), "c": 1e-200 * rng.normal(5, 1, n),
    })
    transforms = column_transforms(table, ["y", "c"])
    want = compress_moments(table, ["cell"], {"y": ["c"]}, transforms=transforms).table
    moments = MetricMoments("y", ("c",), (transforms["y"], transforms["c"]))
    con = duckdb.connect()
    con.register("analysis", table)
    got = con.sql(slice_query(exp.to_table("analysis"), ["cell"], [moments], None).sql("duckdb")).to_arrow_table()
    for name in want.column_names[1:]:
        np.testing.assert_allclose(np.asarray(got.column(name)), np.asarray(want.column(name)), rtol=1e-12, atol=1e-12, err_msg=name)


# ----------------------------------------------------------------------------- degenerate shapes at any location


DEGENERATE = {
    "constant": (ZeroVarianceError, "zero variance"),
    "constant_per_cell": (ZeroVarianceError, "zero variance"),
    "one_unit_cell": (CellError, "min_cell_count"),
    "all_missing": (MissingValuesError, "no row has a value"),
    "covariate_reproduces_metric": (CollinearityError, "exact linear function"),
}


@SETTINGS
@given(
    shape=st.sampled_from(sorted(DEGENERATE)),
    model=st.sampled_from(["ttest", "ols"]),
    ratio=RATIOS,
    magnitude=MAGNITUDES,
    n=st.integers(4, 40),
    seed=st.integers(0, 2**31),
)
def test_degenerate_shapes_are_typed_errors_at_any_location(
    shape: str, model: str, ratio: float, magnitude: int, n: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    sd = 10.0**magnitude
    loc = ratio * sd if ratio else sd
    cell = cells(n, n)
    y = loc + sd * rng.normal(0, 1, 2 * n)
    c = loc + sd * rng.normal(0, 1, 2 * n)
    if shape == "constant":
        y = np.full(2 * n, loc)
    elif shape == "constant_per_cell":
        y = np.where(cell == "b", loc + sd, loc)
    elif shape == "one_unit_cell":
        cell = cells(2 * n - 1, 1)
    elif shape == "all_missing":
        y = np.full(2 * n, np.nan)
    else:
        model = "ols"
        c = y * 0.5 + loc
    table = pa.table({"cell": cell, "y": y, "c": c})
    error, message = DEGENERATE[shape]
    spec = FitSpec(metric="y", treatment="cell", model=model, covariates=("c",) if model == "ols" else ())
    with pytest.raises(error, match=message):
        fit_table(table, spec)


# ----------------------------------------------------------------------------- rank test: its mean difference


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ratio=RATIOS, magnitude=MAGNITUDES, n0=st.integers(3, 40), n1=st.integers(3, 40), seed=st.integers(0, 2**31))
def test_mannwhitney_matches_scipy_and_its_mean_difference_is_exact(
    ratio: float, magnitude: int, n0: int, n1: int, seed: int
) -> None:
    """The rank test is location-free; the reported difference in means and its SE must be too."""
    rng = np.random.default_rng(seed)
    sd = 10.0**magnitude
    cell = cells(n0, n1)
    y = ratio * sd + sd * (rng.normal(0, 1, n0 + n1) + 0.5 * (cell == "b"))
    r = only(fit_table(pa.table({"cell": cell, "y": y}), FitSpec(metric="y", treatment="cell", model="mannwhitney")).records)
    z, k = fixed(y)
    a, b = z[cell == "b"], z[cell == "control"]
    close(r.effect, math.ldexp(a.mean() - b.mean(), k))
    close(r.se, math.ldexp(math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)), k))
    close(r.p_value, stats.mannwhitneyu(y[cell == "b"], y[cell == "control"], method="asymptotic").pvalue, atol=1e-300)
