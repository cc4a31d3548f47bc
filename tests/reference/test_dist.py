"""models.dist (plain-Python normal and Student-t tails and quantiles) against scipy.stats."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from scipy import stats

from xpcompute.models import dist

DFS = [1, 1.5, 2, 2.7, 5, 29.7, 100, 999.5, 1e4, 1e5, 1e6, 5e6, 9.9e6, 2e7]
XS = [0.0, 1e-3, 0.1, 0.5, 1.0, 1.7, 1.96, 2.5, 3.0, 6.0, 10.0, 40.0, 300.0, -0.5, -2.0, -10.0]
PS = [0.5, 0.5000001, 0.6, 0.9, 0.95, 0.975, 0.995, 0.9995, 1 - 1e-8, 1 - 1e-12, 0.1, 0.025, 1e-10]


@pytest.mark.parametrize("df", DFS)
def test_t_tail_and_quantile_equal_scipy(df: float) -> None:
    for x in XS:
        assert dist.t_sf(x, df) == pytest.approx(float(stats.t(df).sf(x)), rel=1e-9, abs=0.0), x
    for p in PS:
        assert dist.t_ppf(p, df) == pytest.approx(float(stats.t(df).ppf(p)), rel=1e-9), p


def test_normal_and_edges_equal_scipy() -> None:
    for x in [0.0, 0.3, 1.96, 5.0, 10.0, 38.0, -3.0]:
        assert dist.norm_sf(x) == pytest.approx(float(stats.norm.sf(x)), rel=1e-12)
    for p in [0.5, 0.975, 1 - 1e-10, 1e-12, 0.3]:
        assert dist.norm_ppf(p) == pytest.approx(float(stats.norm.ppf(p)), rel=1e-12)
    assert dist.t_sf(math.inf, 3) == 0.0 and dist.t_sf(-math.inf, 3) == 1.0 and dist.t_sf(2.0, math.inf) == dist.norm_sf(2.0)
    assert dist.t_ppf(1.0, 3) == math.inf and dist.t_ppf(0.0, 3) == -math.inf and dist.t_ppf(0.5, 3) == 0.0
    assert math.isnan(dist.t_sf(1.0, 0.0)) and math.isnan(dist.t_ppf(1.2, 5)) and math.isnan(dist.norm_ppf(-0.1))


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 7, 10, 29, 30, 59, 120])
def test_chi_square_tail_equals_scipy(df: int) -> None:
    for x in [1e-8, 1e-3, 0.1, 0.5, 1.0, 2.0, 3.84, 7.8, 15.0, float(df), 2.0 * df, 60.0, 150.0, 400.0, 1400.0]:
        want = float(stats.chi2(df).sf(x))
        assert dist.chi2_sf(x, df) == pytest.approx(want, rel=1e-12, abs=1e-300), x
    assert dist.chi2_sf(0.0, df) == 1.0 and dist.chi2_sf(math.inf, df) == 0.0
    assert math.isnan(dist.chi2_sf(1.0, 0)) and math.isnan(dist.chi2_sf(1.0, 2.5))  # type: ignore[arg-type]


def test_a_fit_imports_no_scipy_below_df_max() -> None:
    """The point of the module: p-values and intervals without importing scipy (the cold start)."""
    code = ("import sys; from xpcompute.models import dist; "
            "[(dist.t_ppf(0.975, d), dist.t_sf(2.1, d), dist.norm_ppf(0.975)) for d in (1, 7.5, 3e4, 4e6)]; "
            "[dist.chi2_sf(9.0, k) for k in (1, 2, 11)]; "
            "print(sorted(m for m in sys.modules if m.startswith('scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
