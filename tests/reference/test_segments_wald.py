"""Segment discovery's heterogeneity tests against statsmodels at 1e-8.

The Wald test that a treatment cell's CATEs are equal across a dimension's values, computed by the CATE model
from the segment cube (compressed moments by cell x dimensions x half), equals statsmodels' chi-square Wald test
that every cell x value interaction is zero in ``y ~ C(dim) * C(cell) [+ pre]`` with HC1 errors on the raw rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import statsmodels.formula.api as smf

from xpcompute.segments.cube import build_cube
from xpcompute.segments.discovery import SegmentSettings, heterogeneity_tests
from xpcompute.segments.simulate import DIMENSIONS, Planted


def num(*values: float | None) -> np.ndarray:
    """Reported numbers as an array (a missing one, None, fails the comparison as NaN)."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

RTOL = 1e-8
CELL = "C(cell, Treatment('control'))"


def three_cells(table: pa.Table, seed: int) -> pa.Table:
    """The same rows with a second treatment cell (a third of the units)."""
    rng = np.random.default_rng(seed)
    cells = np.asarray(table.column("cell").to_pylist(), dtype=object)
    cells[rng.random(len(cells)) < 1 / 3] = "other"
    return table.set_column(table.schema.get_field_index("cell"), "cell", pa.array(cells.astype(str)))


def reference(df: object, dimension: str, cell: str, covariates: tuple[str, ...]) -> tuple[float, int, float]:
    tail = "".join(f" + {c}" for c in covariates)
    fit = smf.ols(f"y ~ C({dimension}) * {CELL}{tail}", df).fit(cov_type="HC1")
    names = list(fit.params.index)
    tested = [i for i, nm in enumerate(names) if ":" in nm and nm.endswith(f"[T.{cell}]")]
    restriction = np.zeros((len(tested), len(names)))
    restriction[np.arange(len(tested)), tested] = 1.0
    wald = fit.wald_test(restriction, use_f=False, scalar=True)
    return float(wald.statistic), len(tested), float(wald.pvalue)


@pytest.mark.parametrize("covariates", [(), ("pre",)])
@pytest.mark.parametrize("cells", [2, 3])
def test_wald_per_dimension_matches_statsmodels(covariates: tuple[str, ...], cells: int) -> None:
    table = Planted(users=12_000, seed=7, base_effect=0.2, planted_effect=0.5).table()
    table = table.set_column(table.schema.get_field_index("cell"), "cell", table.column("cell").cast(pa.string()))
    if cells == 3:
        table = three_cells(table, 8)
    cube = build_cube(table, "user_id", "cell", list(DIMENSIONS), {"y": list(covariates)})
    df = table.to_pandas()
    for dim in DIMENSIONS:
        df[dim] = df[dim].astype(str)
    settings = SegmentSettings(min_units=2)
    checked = 0
    for dim in DIMENSIONS:
        for test in heterogeneity_tests(cube, "y", "cell", dim, "control", settings):
            chi2, dof, p = reference(df, dim, test.cell, covariates)
            assert test.df == dof == len(DIMENSIONS[dim]) - 1
            np.testing.assert_allclose(num(test.chi2), chi2, rtol=RTOL)
            np.testing.assert_allclose(num(test.p_value), p, rtol=RTOL, atol=1e-300)
            checked += 1
    assert checked == len(DIMENSIONS) * (cells - 1)


def test_values_below_min_units_are_left_out_and_the_test_matches_statsmodels_without_them() -> None:
    table = Planted(users=6_000, seed=3, base_effect=0.1, planted_effect=0.4).table()
    table = table.set_column(table.schema.get_field_index("cell"), "cell", table.column("cell").cast(pa.string()))
    cube = build_cube(table, "user_id", "cell", list(DIMENSIONS), {"y": []})
    df = table.to_pandas()
    df["country"] = df["country"].astype(str)
    counts = df.groupby(["country", "cell"]).size().unstack()
    least = int(counts.min(axis=1).sort_values().iloc[2]) + 1  # the two smallest countries fall below it
    (test,) = heterogeneity_tests(cube, "y", "cell", "country", "control", SegmentSettings(min_units=least))
    small = sorted(counts.index[counts.min(axis=1) < least])
    assert sorted(test.left_out) == small and len(small) >= 2
    chi2, dof, p = reference(df[~df["country"].isin(small)], "country", "treatment", ())
    assert test.df == dof
    np.testing.assert_allclose(num(test.chi2, test.p_value), num(chi2, p), rtol=RTOL)
