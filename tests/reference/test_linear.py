"""OLS/HC1, CUPED and CATE against statsmodels at 1e-8, compressed and raw, with weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import statsmodels.formula.api as smf
from datagen import expand, make_experiment

from xpcompute.models import fit_table
from xpcompute.spec import CompressSpec, FitSpec

RTOL = 1e-8
CELL = "C(cell, Treatment('control'))"


def sm_fit(df: pd.DataFrame, formula: str) -> object:
    return smf.ols(formula, df).fit(cov_type="HC1", use_t=False)


@pytest.mark.parametrize("compress", ["lossless", "none"])
@pytest.mark.parametrize(
    "covariates,formula_tail",
    [((), ""), (("pre",), " + pre"), (("country", "device", "pre"), " + C(country) + C(device) + pre"),
     (("country", "pre", "sessions"), " + C(country) + pre + sessions")],
)
def test_ols_matches_statsmodels(compress: str, covariates: tuple[str, ...], formula_tail: str) -> None:
    table = make_experiment(n=3000, seed=11)
    spec = FitSpec(metric="y", treatment="cell", model="ols", covariates=covariates, compress=CompressSpec.parse(compress))
    out = fit_table(table, spec)
    ref = sm_fit(table.to_pandas(), f"y ~ {CELL}{formula_tail}")
    assert {r.cell for r in out.records} == {"a", "b"}
    for r in out.records:
        name = f"{CELL}[T.{r.cell}]"
        np.testing.assert_allclose(r.effect, ref.params[name], rtol=RTOL)
        np.testing.assert_allclose(r.se, ref.bse[name], rtol=RTOL)
        np.testing.assert_allclose(r.p_value, ref.pvalues[name], rtol=RTOL)
        lo, hi = ref.conf_int().loc[name]
        np.testing.assert_allclose([r.ci_low, r.ci_high], [lo, hi], rtol=RTOL)
    if compress == "lossless" and "sessions" not in covariates:
        assert out.compressed.n_groups < table.num_rows / 50


def test_ols_with_frequency_weights_equals_repeated_rows() -> None:
    table = make_experiment(n=2000, seed=3, weights=True)
    spec = FitSpec(metric="y", treatment="cell", model="ols", covariates=("country", "pre"), weights="w")
    out = fit_table(table, spec)
    ref = sm_fit(expand(table).to_pandas(), f"y ~ {CELL} + C(country) + pre")
    for r in out.records:
        name = f"{CELL}[T.{r.cell}]"
        np.testing.assert_allclose([r.effect, r.se], [ref.params[name], ref.bse[name]], rtol=RTOL)
        assert r.n_cell == pytest.approx(float(np.sum(expand(table).column("cell").to_numpy(zero_copy_only=False) == r.cell)))


def test_relative_effect_delta_method_matches_statsmodels() -> None:
    """Relative lift = b / adjusted control mean; its SE by the delta method on the coefficient covariance."""
    table = make_experiment(n=3000, seed=5)
    out = fit_table(table, FitSpec(metric="y", treatment="cell", model="ols", covariates=("pre",)))
    df = table.to_pandas()
    ref = sm_fit(df, f"y ~ {CELL} + pre")
    names = list(ref.params.index)
    for r in out.records:
        g0 = np.zeros(len(names))
        g0[names.index("Intercept")] = 1
        g0[names.index("pre")] = df["pre"].mean()
        g1 = g0.copy()
        g1[names.index(f"{CELL}[T.{r.cell}]")] = 1
        b, v = ref.params.to_numpy(), ref.cov_params().to_numpy()
        mu1, mu0 = g1 @ b, g0 @ b
        grad = g1 / mu0 - mu1 * g0 / mu0**2
        np.testing.assert_allclose(r.relative_effect, mu1 / mu0 - 1, rtol=RTOL)
        np.testing.assert_allclose(r.relative_se, np.sqrt(grad @ v @ grad), rtol=RTOL)


@pytest.mark.parametrize("compress", ["lossless", "none"])
def test_cate_matches_saturated_statsmodels(compress: str) -> None:
    table = make_experiment(n=4000, seed=8)
    spec = FitSpec(metric="y", treatment="cell", model="cate", segment="country", covariates=("device", "pre"),
                   compress=CompressSpec.parse(compress))
    out = fit_table(table, spec)
    df = table.to_pandas()
    ref = sm_fit(df, f"y ~ C(country) * {CELL} + C(device) + pre")
    names = list(ref.params.index)
    b, v = ref.params.to_numpy(), ref.cov_params().to_numpy()
    seg = [r for r in out.records if r.segment is not None]
    assert len(seg) == 4 * 2
    for r in seg:
        g = np.zeros(len(names))
        g[names.index(f"{CELL}[T.{r.cell}]")] = 1
        if r.segment != "BR":  # BR is the baseline level
            g[names.index(f"C(country)[T.{r.segment}]:{CELL}[T.{r.cell}]")] = 1
        np.testing.assert_allclose(r.effect, g @ b, rtol=RTOL)
        np.testing.assert_allclose(r.se, np.sqrt(g @ v @ g), rtol=RTOL)
    overall = [r for r in out.records if r.segment is None]
    assert len(overall) == 2


def test_cate_hundreds_of_segments_and_heterogeneity_test() -> None:
    from xpcompute.models import model_data, prepare
    from xpcompute.models.ols import CATEModel

    rng = np.random.default_rng(2)
    n = 40_000
    seg = rng.integers(0, 120, size=n)
    cell = rng.choice(["control", "t"], size=n)
    y = rng.normal(size=n) + (cell == "t") * (seg % 3) * 0.5
    table = pa.table({"cell": cell, "seg": pa.array([f"s{s:03d}" for s in seg]), "y": y})
    spec = FitSpec(metric="y", treatment="cell", model="cate", segment="seg")
    data = model_data(prepare(table, spec), spec)
    model = CATEModel()
    records = model.estimate(data)
    assert len([r for r in records if r.segment]) == 120
    _chi2, dof, p = model.heterogeneity_test(data, "t")
    assert dof == 119 and p < 1e-10
    # per-segment effects equal the within-segment difference in means (saturated model, no covariates)
    r = next(r for r in records if r.segment == "s005")
    sel = np.asarray(table.column("seg").to_pylist()) == "s005"
    diff = y[sel & (cell == "t")].mean() - y[sel & (cell == "control")].mean()
    np.testing.assert_allclose(r.effect, diff, rtol=1e-10)
