"""CUPED for ratio metrics against an independent computation on the raw per-user rows.

The reference is written from the estimator's formula (tea-tasting's ``RatioOfMeans`` with numerator
and denominator covariates; models/ratio.py): per-unit delta-method linearizations L of y / d and M
of x / w over all units, the slope theta of L on M from statsmodels OLS, the adjusted ratio
``y_bar / d_bar - theta (x_bar / w_bar - X / W)`` per cell and its variance
``(var L_c - 2 theta cov(L_c, M_c) + theta^2 var M_c) / n_c`` with each cell's own linearizations
(numpy, ddof=1). The fit must equal it at rtol 1e-8 on lossless and row-level compression, at
any location of the data, and an A/A simulation must reject at its nominal rate.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import statsmodels.api as sm
from scipy import stats

from xpcompute.errors import InputError
from xpcompute.models import fit_table
from xpcompute.spec import CompressSpec, FitSpec

RTOL = 1e-8
CELLS = ("control", "a", "b")


def make_users(n: int, seed: int, lift: float = 0.0, cells: tuple[str, ...] = CELLS, location: float = 0.0) -> pa.Table:
    """Per-user numerator y (e.g. revenue), denominator d (orders) and their pre-period values x, w."""
    rng = np.random.default_rng(seed)
    cell = rng.choice(np.asarray(cells), size=n)
    spend = rng.gamma(3.0, 10.0, n)  # each user's typical order value: persists across periods
    w = rng.poisson(3.0, n).astype(np.float64) + 1.0 + location  # pre-period orders
    x = (w - location) * spend * rng.lognormal(0.0, 0.3, n)  # pre-period revenue
    d = rng.poisson(0.5 * (w - location) + 1.0).astype(np.float64) + 1.0  # orders: persist from the pre-period
    y = d * spend * rng.lognormal(0.0, 0.3, n) * (1 + lift * (cell != "control"))
    return pa.table({"cell": cell, "y": y, "d": d, "x": x, "w": w})


def _linearized(a: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray]:
    """Ratio of means and the per-unit delta-method linearization (a - R b) / mean(b)."""
    r = a.mean() / b.mean()
    return r, (a - r * b) / b.mean()


def reference(table: pa.Table, cell: str, control: str = "control") -> dict[str, float]:
    """Effect, SE, p-value and ratios from the raw rows (numpy + statsmodels), from the formula alone."""
    cols = {k: np.asarray(table.column(k).to_numpy(zero_copy_only=False)) for k in ("cell", "y", "d", "x", "w")}
    _, big_l = _linearized(cols["y"], cols["d"])
    centre, big_m = _linearized(cols["x"], cols["w"])
    theta = sm.OLS(big_l, sm.add_constant(big_m)).fit().params[1]  # cov(L, M) / var(M) over every unit
    out: dict[str, float] = {"theta": theta}
    var = 0.0
    for role, c in (("cell", cell), ("control", control)):
        sel = cols["cell"] == c
        r, lin = _linearized(cols["y"][sel], cols["d"][sel])
        rx, lin_x = _linearized(cols["x"][sel], cols["w"][sel])
        out[f"ratio_{role}"] = r - theta * (rx - centre)
        out[f"raw_{role}"] = r
        var += float(np.var(lin - theta * lin_x, ddof=1)) / sel.sum()
    out["effect"] = out["ratio_cell"] - out["ratio_control"]
    out["se"] = np.sqrt(var)
    out["p"] = 2 * stats.norm.sf(abs(out["effect"]) / out["se"])
    return out


def cuped_spec(compress: str = "lossless") -> FitSpec:
    return FitSpec(metric="y", treatment="cell", model="ratio", denominator="d", covariates=("x", "w"),
                   compress=CompressSpec.parse(compress))


@pytest.mark.parametrize("compress", ["lossless", "none"])
@pytest.mark.parametrize("location", [0.0, 1e6])
def test_ratio_cuped_matches_raw_row_reference(compress: str, location: float) -> None:
    table = make_users(6000, seed=3, lift=0.03, location=location)
    records = fit_table(table, cuped_spec(compress)).records
    assert {r.cell for r in records} == {"a", "b"}
    for r in records:
        ref = reference(table, r.cell)
        np.testing.assert_allclose([r.effect, r.se, r.p_value], [ref["effect"], ref["se"], ref["p"]], rtol=RTOL)
        np.testing.assert_allclose([r.mean_cell, r.mean_control], [ref["raw_cell"], ref["raw_control"]], rtol=RTOL)
        rel = ref["ratio_cell"] / ref["ratio_control"] - 1
        np.testing.assert_allclose(r.relative_effect, rel, rtol=RTOL)
        assert any(n.startswith("ratio CUPED: adjusted by the pre-period ratio x / w") for n in r.notes)


def test_cuped_cuts_the_standard_error_and_keeps_the_estimand() -> None:
    table = make_users(20_000, seed=8, lift=0.05)
    plain = {r.cell: r for r in fit_table(table, FitSpec(metric="y", treatment="cell", model="ratio",
                                                         denominator="d")).records}
    cuped = {r.cell: r for r in fit_table(table, cuped_spec()).records}
    for c in ("a", "b"):
        assert cuped[c].se is not None and plain[c].se is not None
        assert cuped[c].se < 0.9 * plain[c].se
        assert abs(cuped[c].effect - plain[c].effect) < 3 * plain[c].se


def test_aa_false_positive_rate() -> None:
    """400 seeded A/A experiments: the rejection rate at alpha = 0.05 is within 3 binomial SEs of 0.05."""
    runs, alpha = 400, 0.05
    rejected = 0
    for seed in range(runs):
        table = make_users(1500, seed=10_000 + seed, cells=("control", "a"))
        (r,) = fit_table(table, cuped_spec()).records
        assert r.p_value is not None
        rejected += r.p_value < alpha
    rate = rejected / runs
    se = np.sqrt(alpha * (1 - alpha) / runs)
    print(f"ratio CUPED A/A: {rejected}/{runs} rejected at alpha={alpha} (rate {rate:.4f}, 3 SE = {3 * se:.4f})")
    assert abs(rate - alpha) <= 3 * se, f"A/A rejection rate {rate:.4f} is not within 3 SE of {alpha}"


def test_covariates_must_be_the_two_parts() -> None:
    table = make_users(500, seed=1)
    with pytest.raises(InputError, match="numerator's pre-period value and the denominator's"):
        fit_table(table, FitSpec(metric="y", treatment="cell", model="ratio", denominator="d", covariates=("x",)))


def test_sql_and_cpp_compression_keep_the_cross_moments_ratio_cuped_needs() -> None:
    """Stage 2's SQL (DuckDB) and the C++ group-by compress (y; d, x, w) to the same sums, and both fit the reference."""
    import duckdb

    from xpcompute.compression import compress_moments
    from xpcompute.compression.transform import column_transforms
    from xpcompute.models import fit_compressed
    from xpcompute.pipeline.slices import SliceFilter
    from xpcompute.pipeline.stage2 import SlicePlan, shape_result
    from xpcompute.sql import stage2 as q
    from xpcompute.sql.dialects import render, table

    users = make_users(4000, seed=12, lift=0.02, location=5e5)
    variables = ("y", "d", "x", "w")
    transforms = {**column_transforms(users, variables[1:], "covariate"), **column_transforms(users, ["y"], "metric")}
    cpp = compress_moments(users, ["cell"], {"y": variables[1:]}, transforms=transforms)
    plan = SlicePlan(slice=SliceFilter.everyone(), keys=("cell",),
                     moments=(q.MetricMoments("y", variables[1:], tuple(transforms[v] for v in variables)),))
    con = duckdb.connect()
    con.register("analysis", users)
    raw = con.sql(render(plan.query(table("analysis")), "duckdb")).to_arrow_table()
    sql = shape_result(raw, plan, users.schema)
    layout = cpp.layout.metrics["y"]
    assert sql.layout.metrics["y"].covariates == layout.covariates == variables[1:]
    cross = [c for c in layout.columns if c.startswith("y__m_")]
    assert "y__m_0_1_1_0" in cross and "y__m_1_0_0_1" in cross and "y__m_0_0_1_1" in cross  # d x, y w, x w
    for name in cross:
        np.testing.assert_allclose(np.asarray(sql.table.column(name)), np.asarray(cpp.table.column(name)), rtol=1e-9,
                                   atol=1e-6, err_msg=name)
    for compressed in (sql, cpp):
        for r in fit_compressed(compressed, cuped_spec()):
            ref = reference(users, r.cell)
            np.testing.assert_allclose([r.effect, r.se, r.p_value], [ref["effect"], ref["se"], ref["p"]], rtol=RTOL)


def test_declared_ratio_names_its_part_covariates() -> None:
    """YAML ``covariates: [pre_num, pre_den]`` on a ratio: the compressed layout and the ratio fit carry them."""
    from xpcompute.metrics.declared import DeclaredMetric, DeclaredRatio, build_metric, build_ratio

    revenue = build_metric(DeclaredMetric(name="revenue", source="orders", value="amount"))
    orders = build_metric(DeclaredMetric(name="orders", source="orders", aggregation="count"))
    aov = build_ratio(DeclaredRatio(name="aov", numerator="revenue", denominator="orders",
                                    covariates=("pre_revenue", "pre_orders")), revenue, orders)
    adjusting = ("pre_revenue", "pre_orders", "pre_sessions")
    assert aov.compressed_covariates(adjusting) == ("aov__den", "aov__res", "pre_revenue", "pre_orders", "aov__xres")
    (spec,) = aov.fit_specs(adjusting)
    assert spec.model == "ratio" and spec.covariates == ("pre_revenue", "pre_orders")
    with pytest.raises(InputError, match="adjusts: \\[aov\\]"):
        aov.compressed_covariates(("pre_revenue",))
    plain = build_ratio(DeclaredRatio(name="aov", numerator="revenue", denominator="orders"), revenue, orders)
    assert plain.compressed_covariates(adjusting) == ("aov__den", "aov__res")
    assert plain.fit_specs(adjusting)[0].covariates == ()
