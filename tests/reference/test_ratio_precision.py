"""Ratio metrics whose numerator is nearly proportional to the denominator keep every digit of their variance.

Average order value with orders of $100.00 +- 0.01 is a ratio whose per-unit numerator is about 100 x the
denominator: the delta method's ``var(y) - 2 R cov(y, d) + R^2 var(d)`` then cancels eight digits of its terms
(all sixteen at a spread of 1e-8 of the mean). The reference is the delta method evaluated exactly, in rationals,
on the same per-unit values; the library must equal it to 1e-8 at every spread, through ``fit_table`` (which adds
the residual column ``y - c d`` as stage 1 does) and with the data compressed losslessly or kept row by row.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pytest

from xpcompute.models import fit_table
from xpcompute.spec import CompressSpec, FitSpec

RTOL = 1e-8


def exact_delta(y: np.ndarray, d: np.ndarray) -> tuple[Fraction, Fraction]:
    """(sum y / sum d, its delta-method variance), in exact rational arithmetic on the float64 values."""
    ys, ds = [Fraction(float(v)) for v in y], [Fraction(float(v)) for v in d]
    n = len(ys)
    ratio = sum(ys) / sum(ds)
    resid = [a - ratio * b for a, b in zip(ys, ds, strict=True)]
    mean = sum(resid) / n
    mean_d = sum(ds) / n
    return ratio, sum((e - mean) ** 2 for e in resid) / (n - 1) / (n * mean_d * mean_d)


def orders(mean: float, spread: float, n: int, seed: int) -> pa.Table:
    """``n`` units with 1-6 orders each, prices ``mean +- spread``; cell b's orders ``spread / 2`` dearer."""
    rng = np.random.default_rng(seed)
    cell = np.where(rng.random(n) < 0.4, "b", "control")
    count = rng.integers(1, 7, n).astype(float)
    revenue = np.array([float(np.sum(mean + spread * rng.normal(0, 1, int(k)))) for k in count])
    revenue += np.where(cell == "b", 0.5 * spread * count, 0.0)
    return pa.table({"cell": cell, "revenue": revenue, "orders": count})


@pytest.mark.parametrize("compress", ["lossless", "none"])
@pytest.mark.parametrize(("mean", "spread"), [(100.0, 1.0), (100.0, 0.01), (100.0, 1e-4), (-5e3, 1e-3), (1e9, 1e-3),
                                              (3e-7, 1e-16)])
def test_the_ratio_variance_is_the_exact_delta_method_at_any_spread(mean: float, spread: float, compress: str) -> None:
    table = orders(mean, spread, 400, seed=int(abs(math.log10(abs(mean) / spread)) * 10))
    spec = FitSpec(metric="revenue", treatment="cell", model="ratio", denominator="orders",
                   compress=CompressSpec(kind=compress))
    (record,) = fit_table(table, spec).records
    y, d, cell = (table.column(c).to_numpy() for c in ("revenue", "orders", "cell"))
    r1, v1 = exact_delta(y[cell == "b"], d[cell == "b"])
    r0, v0 = exact_delta(y[cell == "control"], d[cell == "control"])
    assert record.se == pytest.approx(math.sqrt(float(v1 + v0)), rel=RTOL)
    # the effect is the difference of the residuals' ratios: exact however small against the ratio (a +0.0005
    # effect on a ratio near 1e9 came out 1.6e-4 off when it was the difference of the two ratios)
    assert record.effect == pytest.approx(float(r1 - r0), rel=RTOL)
    assert record.mean_cell == pytest.approx(float(r1), rel=1e-15)
    assert record.mean_control == pytest.approx(float(r0), rel=1e-15)


def test_a_numerator_exactly_proportional_to_its_denominator_has_no_variance() -> None:
    """Every order at exactly $9.99 in both cells: the ratio is 9.99 everywhere, and says so, instead of a
    standard error made of rounding noise."""
    count = np.arange(1, 201, dtype=float) % 7 + 1
    table = pa.table({"cell": np.where(np.arange(200) % 2 == 0, "b", "control"), "revenue": 9.99 * count,
                      "orders": count})
    (record,) = fit_table(table, FitSpec(metric="revenue", treatment="cell", model="ratio",
                                         denominator="orders")).records
    assert record.effect == pytest.approx(0.0, abs=1e-14)
    assert record.se < 1e-12 * 9.99  # a few rounding units of 9.99 * count, not a spread


@pytest.mark.parametrize("spread", [1.0, 1e-2, 1e-4])
def test_ratio_cuped_keeps_its_digits_when_both_ratios_are_nearly_proportional(spread: float) -> None:
    """CUPED on both parts, orders and pre-period orders at $100 +- spread with a per-unit level that persists:
    the adjusted SE equals the raw-row reference of ``test_ratio_cuped`` (per-unit linearizations, which keep
    their digits) at 1e-8; from the moments alone it was off by 4e-8 at a spread of 0.01 and 7e-4 at 1e-4."""
    from test_ratio_cuped import cuped_spec, reference

    rng = np.random.default_rng(5)
    n = 3000
    cell = rng.choice(np.array(["control", "a"]), size=n)
    level = rng.normal(0, 1, n)
    w, d = rng.poisson(3.0, n) + 1.0, rng.poisson(3.0, n) + 1.0
    x = w * (100 + spread * (level + 0.5 * rng.normal(0, 1, n)))
    y = d * (100 + spread * (level + 0.5 * rng.normal(0, 1, n))) + np.where(cell == "a", 0.1 * spread * d, 0.0)
    table = pa.table({"cell": cell, "y": y, "d": d, "x": x, "w": w})
    ref = reference(table, "a")
    (record,) = [r for r in fit_table(table, cuped_spec()).records if r.cell == "a"]
    assert record.se == pytest.approx(ref["se"], rel=RTOL)
    assert record.effect == pytest.approx(ref["effect"], rel=RTOL, abs=1e-14 * 100)
