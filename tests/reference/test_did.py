"""Difference in differences (event study, errors clustered by unit) against statsmodels and linearmodels at 1e-8.

The raw data is an unbalanced unit-by-period panel (some unit-periods missing)
with a comparison group and treated groups of unequal size, unit and period
effects, a group level difference, and a planted effect only after the change
(none before). The reference is statsmodels OLS on the raw rows with
``cov_type='cluster'`` grouped by unit and the same design (period dummies,
group dummies, group x period dummies except the reference period), and
linearmodels ``PanelOLS`` clustered by entity.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import statsmodels.api as sm

from xpcompute.cli import main
from xpcompute.compression.panel import compress_panel
from xpcompute.errors import InputError
from xpcompute.models import fit_compressed, fit_table
from xpcompute.models.did import PRE_TREND, DiDModel
from xpcompute.models.panel_data import PanelData
from xpcompute.records import ResultRecord
from xpcompute.spec import CompressSpec, FitSpec

RTOL = 1e-8
CHANGE = 3  # first post-change period; the reference is the last pre-change period, CHANGE - 1
EFFECT = 1.0


def make_panel(n_units: int = 1200, n_periods: int = 6, seed: int = 0, groups: tuple[str, ...] = ("comparison", "treated"),
               probs: tuple[float, ...] = (0.65, 0.35), presence: float = 0.8) -> pa.Table:
    """Unbalanced unit-by-period rows; treated groups get ``EFFECT`` (growing) from period ``CHANGE`` on."""
    rng = np.random.default_rng(seed)
    g_u = rng.choice(len(groups), size=n_units, p=list(probs))
    unit_effect = rng.normal(size=n_units) + 0.4 * g_u
    uu, tt = np.meshgrid(np.arange(n_units), np.arange(n_periods), indexing="ij")
    keep = rng.random(uu.shape) < presence
    u, t = uu[keep], tt[keep]
    treated = g_u[u] > 0
    y = (
        2.0 + 0.3 * np.sin(t) + unit_effect[u] + EFFECT * treated * (t >= CHANGE) * (1 + 0.2 * (t - CHANGE))
        + rng.normal(size=len(u)) * (1 + 0.5 * treated)
    )
    cols: dict[str, Any] = {
        "unit": (u * 13 + 5).astype(np.int64),
        "period": t.astype(np.int64),
        "group": pa.array(np.asarray(groups)[g_u[u]].tolist(), pa.string()),
        "y": y,
    }
    order = rng.permutation(len(u))
    return pa.table(cols).take(pa.array(order))


def did_spec(**kw: Any) -> FitSpec:
    base: dict[str, Any] = dict(metric="y", treatment="group", model="did", time="period", cluster="unit",
                                control="comparison")
    base.update(kw)
    return FitSpec(**base)


class Reference:
    """statsmodels OLS on the raw rows: period FE, group FE, group x period except the reference period."""

    def __init__(self, table: pa.Table, ref: int) -> None:
        df = table.to_pandas()
        self.df = df
        self.periods = sorted(df["period"].unique())
        self.cells = sorted(c for c in df["group"].unique() if c != "comparison")
        cols = [(df["period"] == p).to_numpy(float) for p in self.periods]
        cols += [(df["group"] == c).to_numpy(float) for c in self.cells]
        self.index: dict[tuple[str, str], int] = {}
        for c in self.cells:
            for i, p in enumerate(self.periods):
                if i == ref:
                    continue
                self.index[(c, str(p))] = len(cols)
                cols.append(((df["group"] == c) & (df["period"] == p)).to_numpy(float))
        self.x = np.column_stack(cols)
        self.y = df["y"].to_numpy()
        groups = np.unique(df["unit"].to_numpy(), return_inverse=True)[1]
        self.res = sm.OLS(self.y, self.x).fit(cov_type="cluster", cov_kwds={"groups": groups})
        self.pre = [j for (c, p), j in self.index.items() if int(p) < ref]

    def pre_trend(self) -> tuple[float, float, int]:
        r = np.zeros((len(self.pre), self.x.shape[1]))
        r[np.arange(len(self.pre)), self.pre] = 1.0
        w = self.res.wald_test(r, use_f=False, scalar=True)
        return float(w.statistic), float(w.pvalue), len(self.pre)


def fit_with_reference(table: pa.Table, reference: str | None, **kw: Any) -> list[ResultRecord]:
    spec = did_spec(**kw)
    return DiDModel(reference=reference).estimate(PanelData(compressed=compress_panel(table, spec), spec=spec))


def max_rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def check_against(records: list[ResultRecord], ref: Reference) -> float:
    """Effects and SEs per (cell, period) equal statsmodels'; returns the largest relative error."""
    per_period = {(r.cell, r.time): r for r in records if r.segment is None and r.time is not None}
    assert set(per_period) == set(ref.index)
    worst = 0.0
    for key, j in ref.index.items():
        r = per_period[key]
        assert r.se is not None and r.p_value is not None
        np.testing.assert_allclose([r.effect, r.se], [ref.res.params[j], ref.res.bse[j]], rtol=RTOL)
        np.testing.assert_allclose(r.p_value, ref.res.pvalues[j], rtol=1e-7)
        worst = max(worst, max_rel(r.effect, ref.res.params[j]), max_rel(r.se, ref.res.bse[j]))
    return worst


@pytest.mark.parametrize("groups,probs", [(("comparison", "treated"), (0.65, 0.35)),
                                          (("comparison", "t1", "t2"), (0.5, 0.3, 0.2))])
@pytest.mark.parametrize("seed", [0, 1])
def test_did_matches_statsmodels_cluster(groups: tuple[str, ...], probs: tuple[float, ...], seed: int) -> None:
    table = make_panel(seed=seed, groups=groups, probs=probs)
    records = fit_with_reference(table, str(CHANGE - 1))
    ref = Reference(table, CHANGE - 1)
    check_against(records, ref)
    # the pre-trend test: one dedicated record, the joint clustered Wald test of the pre-period interactions
    pre = [r for r in records if r.segment == PRE_TREND]
    assert len(pre) == 1 and records[-1] is pre[0]
    stat, p, dof = ref.pre_trend()
    assert pre[0].statistic is not None and pre[0].p_value is not None and pre[0].df == dof
    np.testing.assert_allclose([pre[0].statistic, pre[0].p_value], [stat, p], rtol=RTOL)
    # the planted effect shows after the change and not before
    post = [r for r in records if r.segment is None and int(r.time or 0) >= CHANGE]
    assert all(abs(r.effect - EFFECT * (1 + 0.2 * (int(r.time or 0) - CHANGE))) < 5 * (r.se or 0) for r in post)
    assert all(r.p_value is not None and r.p_value < 1e-4 for r in post)
    assert p > 1e-3


def test_did_matches_linearmodels_panelols() -> None:
    pd = pytest.importorskip("pandas")
    from linearmodels import PanelOLS

    table = make_panel(seed=4, groups=("comparison", "t1", "t2"), probs=(0.5, 0.3, 0.2))
    records = fit_with_reference(table, str(CHANGE - 1))
    ref = Reference(table, CHANGE - 1)
    df = ref.df
    index = pd.MultiIndex.from_arrays([df["unit"], df["period"]])
    exog = pd.DataFrame(ref.x, index=index, columns=[f"x{j}" for j in range(ref.x.shape[1])])
    lm = PanelOLS(pd.Series(ref.y, index=index), exog).fit(
        cov_type="clustered", cluster_entity=True, debiased=True, group_debias=True
    )
    per_period = {(r.cell, r.time): r for r in records if r.segment is None}
    for key, j in ref.index.items():
        np.testing.assert_allclose([per_period[key].effect, per_period[key].se],
                                   [lm.params.iloc[j], lm.std_errors.iloc[j]], rtol=RTOL)


def test_default_reference_is_first_period_without_pre_trend() -> None:
    table = make_panel(seed=2)
    records = fit_table(table, did_spec()).records
    check_against(records, Reference(table, 0))
    assert [r.time for r in records] == ["1", "2", "3", "4", "5", None]  # the periods, then their average
    assert all(r.segment is None for r in records)
    assert "reference period '0'" in records[0].notes[0]


def test_compressed_equals_raw_rows() -> None:
    """The lossless panel (one row per group) gives what the one-row-per-unit table gives."""
    table = make_panel(seed=3, groups=("comparison", "t1", "t2"), probs=(0.5, 0.3, 0.2))
    a = fit_with_reference(table, "2")
    spec = did_spec(compress=CompressSpec(kind="none"))
    raw_table = compress_panel(table, spec)
    assert raw_table.n_groups == len(np.unique(table.column("unit").to_numpy()))
    b = DiDModel(reference="2").estimate(PanelData(compressed=raw_table, spec=spec))
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        assert (ra.cell, ra.time, ra.segment) == (rb.cell, rb.time, rb.segment)
        np.testing.assert_allclose([ra.effect, ra.se or 0, ra.p_value, ra.statistic],
                                   [rb.effect, rb.se or 0, rb.p_value, rb.statistic], rtol=1e-10)
    assert [r.model_dump() for r in fit_compressed(compress_panel(table, did_spec()), did_spec())] == [
        r.model_dump() for r in fit_table(table, did_spec()).records
    ]


def test_cli_fit_did(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = make_panel(seed=5)
    path = tmp_path / "data.parquet"
    pq.write_table(table, path)
    assert main(["fit", str(path), "--metric", "y", "--treatment", "group", "--model", "did", "--time", "period",
          "--cluster", "unit", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # control defaults to the first group in sorted order: 'comparison'
    check_against([ResultRecord.model_validate(r) for r in out], Reference(table, 0))
    assert all(r["model"] == "did" and r["control"] == "comparison" for r in out)


def test_bad_inputs() -> None:
    table = make_panel(n_units=80, seed=6)
    with pytest.raises(InputError, match="reference period '9' is not a period"):
        fit_with_reference(table, "9")
    with pytest.raises(ValueError, match="model 'did' needs a time column and a cluster"):
        FitSpec(metric="y", treatment="group", model="did", time="period")
    one = table.filter(pa.compute.equal(table.column("period"), 0))
    with pytest.raises(InputError, match="at least two periods"):
        fit_table(one, did_spec())


@pytest.mark.parametrize("ref", [CHANGE - 1, 0])
def test_average_after_the_reference_matches_statsmodels_t_test(ref: int) -> None:
    """The per-cell average of the effects after the reference is statsmodels' t_test of that contrast."""
    table = make_panel(seed=7, groups=("comparison", "t1", "t2"), probs=(0.5, 0.3, 0.2))
    records = fit_with_reference(table, str(ref))
    ref_fit = Reference(table, ref)
    averages = {r.cell: r for r in records if r.segment is None and r.time is None}
    assert set(averages) == set(ref_fit.cells)
    assert [r.time for r in records if r.segment is None][-2:] == [None, None]  # after the per-period records
    for cell in ref_fit.cells:
        cols = [j for (c, p), j in ref_fit.index.items() if c == cell and int(p) > ref]
        contrast = np.zeros(ref_fit.x.shape[1])
        contrast[cols] = 1.0 / len(cols)
        t = ref_fit.res.t_test(contrast)
        r = averages[cell]
        np.testing.assert_allclose([r.effect, r.se or 0.0, r.p_value or 0.0],
                                   [float(t.effect[0]), float(t.sd[0, 0]), float(t.pvalue)], rtol=RTOL)
        assert r.ci_low is not None and r.ci_high is not None
        np.testing.assert_allclose([r.ci_low, r.ci_high], np.asarray(t.conf_int(alpha=0.05))[0], rtol=RTOL)
        df = ref_fit.df
        assert r.n_cell == df.loc[df["group"] == cell, "unit"].nunique()
        assert r.n_control == df.loc[df["group"] == "comparison", "unit"].nunique()
        post = df[(df["period"] > ref) & (df["group"] == cell)]
        np.testing.assert_allclose(r.mean_cell or 0.0, post["y"].mean(), rtol=1e-10)
    # the reference as the last period leaves nothing after it: no average
    last = fit_with_reference(table, "5")
    assert not any(r.segment is None and r.time is None for r in last)
