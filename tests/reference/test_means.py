"""Welch t-test, two-proportion z-test and ratio metrics against scipy/statsmodels at 1e-8."""

from __future__ import annotations

import numpy as np
import pytest
from datagen import expand, make_experiment
from scipy import stats
from statsmodels.stats._delta_method import NonlinearDeltaCov
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from xpcompute.models import fit_table
from xpcompute.spec import CompressSpec, FitSpec

RTOL = 1e-8


def column(table, name):  # type: ignore[no-untyped-def]
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False))


@pytest.mark.parametrize("compress", ["lossless", "none"])
def test_welch_matches_scipy(compress: str) -> None:
    table = make_experiment(n=2500, seed=21)
    out = fit_table(table, FitSpec(metric="y", treatment="cell", model="ttest", compress=CompressSpec.parse(compress)))
    y, cell = column(table, "y"), column(table, "cell")
    assert len(out.records) == 2
    for r in out.records:
        a, b = y[cell == r.cell], y[cell == "control"]
        res = stats.ttest_ind(a, b, equal_var=False)
        ci = res.confidence_interval(0.95)
        np.testing.assert_allclose([r.effect, r.p_value, r.statistic, r.df], [a.mean() - b.mean(), res.pvalue, res.statistic, res.df], rtol=RTOL)
        np.testing.assert_allclose([r.ci_low, r.ci_high], [ci.low, ci.high], rtol=RTOL)
        np.testing.assert_allclose([r.mean_cell, r.mean_control, r.n_cell, r.n_control], [a.mean(), b.mean(), len(a), len(b)], rtol=RTOL)
        # relative lift: delta method with independent means
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        rel_se = np.sqrt(va / b.mean() ** 2 + a.mean() ** 2 * vb / b.mean() ** 4)
        np.testing.assert_allclose([r.relative_effect, r.relative_se], [a.mean() / b.mean() - 1, rel_se], rtol=RTOL)


def test_welch_with_weights_equals_repeated_rows() -> None:
    table = make_experiment(n=1500, seed=4, weights=True)
    out = fit_table(table, FitSpec(metric="y", treatment="cell", model="ttest", weights="w"))
    full = expand(table)
    y, cell = column(full, "y"), column(full, "cell")
    for r in out.records:
        res = stats.ttest_ind(y[cell == r.cell], y[cell == "control"], equal_var=False)
        np.testing.assert_allclose([r.p_value, r.df], [res.pvalue, res.df], rtol=RTOL)


@pytest.mark.parametrize("compress", ["lossless", "none"])
def test_two_proportions_match_statsmodels(compress: str) -> None:
    table = make_experiment(n=5000, seed=9)
    out = fit_table(table, FitSpec(metric="converted", treatment="cell", model="proportion", compress=CompressSpec.parse(compress)))
    y, cell = column(table, "converted"), column(table, "cell")
    for r in out.records:
        count = np.array([y[cell == r.cell].sum(), y[cell == "control"].sum()])
        nobs = np.array([(cell == r.cell).sum(), (cell == "control").sum()])
        z, p = proportions_ztest(count, nobs)
        lo, hi = confint_proportions_2indep(count[0], nobs[0], count[1], nobs[1], method="wald")
        np.testing.assert_allclose([r.statistic, r.p_value], [z, p], rtol=RTOL)
        np.testing.assert_allclose([r.ci_low, r.ci_high], [lo, hi], rtol=RTOL)


def test_proportion_refuses_non_binary_metric() -> None:
    from xpcompute.errors import ColumnTypeError

    with pytest.raises(ColumnTypeError, match="not binary"):
        fit_table(make_experiment(n=500), FitSpec(metric="y", treatment="cell", model="proportion"))


@pytest.mark.parametrize("compress", ["lossless", "none"])
def test_ratio_matches_statsmodels_delta_method(compress: str) -> None:
    table = make_experiment(n=3000, seed=13)
    spec = FitSpec(metric="hours", treatment="cell", model="ratio", denominator="sessions", compress=CompressSpec.parse(compress))
    out = fit_table(table, spec)
    h, s, cell = column(table, "hours"), column(table, "sessions"), column(table, "cell")
    for r in out.records:
        means, covs = [], []
        for c in (r.cell, "control"):
            sel = cell == c
            data = np.column_stack([h[sel], s[sel]])
            means.append(data.mean(axis=0))
            covs.append(np.cov(data.T, ddof=1) / sel.sum())
        params = np.concatenate(means)
        cov = np.zeros((4, 4))
        cov[:2, :2], cov[2:, 2:] = covs
        dm = NonlinearDeltaCov(lambda p: np.array([p[0] / p[1] - p[2] / p[3]]), params, cov)
        np.testing.assert_allclose(r.effect, dm.predicted()[0], rtol=RTOL)
        np.testing.assert_allclose(r.se, dm.se_vectorized()[0], rtol=1e-6)  # numerical derivative in statsmodels
        np.testing.assert_allclose(r.mean_cell, means[0][0] / means[0][1], rtol=RTOL)
        # exact analytic delta method
        def var_ratio(m: np.ndarray, c: np.ndarray) -> float:
            g = np.array([1 / m[1], -m[0] / m[1] ** 2])
            return float(g @ c @ g)
        np.testing.assert_allclose(r.se, np.sqrt(var_ratio(means[0], covs[0]) + var_ratio(means[1], covs[1])), rtol=RTOL)
