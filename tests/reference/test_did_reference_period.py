"""The did reference period chosen through ``FitSpec.reference_period`` and ``xpcompute fit --reference-period``,
against statsmodels OLS with errors clustered by unit on the raw panel at 1e-8, and refused when it is no period.

The panel has string unit ids and integer event times from -3 to 2 (the change at 0), groups of unequal size,
unit effects, a group level difference and a common trend, with an effect only from event time 0 on.
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
from xpcompute.errors import InputError
from xpcompute.models import fit_table
from xpcompute.records import ResultRecord
from xpcompute.spec import FitSpec

RTOL = 1e-8


def close(actual: list[float | None], expected: list[float]) -> None:
    np.testing.assert_allclose(np.array(actual, dtype=float), np.array(expected, dtype=float), rtol=RTOL)
TIMES = range(-3, 3)


def make_panel(n_units: int = 900, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    treated = rng.random(n_units) < 0.3
    level = rng.normal(size=n_units) + 0.5 * treated
    u, t = np.meshgrid(np.arange(n_units), np.asarray(TIMES), indexing="ij")
    keep = rng.random(u.shape) < 0.9  # a few unit-periods missing: unbalanced
    u, t = u[keep], t[keep]
    y = 1.0 + 0.2 * t + level[u] + 0.8 * treated[u] * (t >= 0) + rng.normal(size=len(u))
    return pa.table({
        "unit": pa.array([f"u-{i:05d}" for i in u], pa.string()),
        "t": pa.array(t.astype(np.int64)),
        "group": pa.array(np.where(treated[u], "treated", "comparison").tolist(), pa.string()),
        "y": y,
    })


def reference_fit(table: pa.Table, ref: int) -> tuple[Any, dict[str, int], list[int]]:
    """statsmodels OLS: period dummies, treated dummy, treated x period except ``ref``; clustered by unit."""
    df = table.to_pandas()
    treated = (df["group"] == "treated").to_numpy(float)
    cols = [(df["t"] == p).to_numpy(float) for p in TIMES] + [treated]
    index: dict[str, int] = {}
    for p in TIMES:
        if p != ref:
            index[str(p)] = len(cols)
            cols.append(treated * (df["t"] == p).to_numpy(float))
    groups = np.unique(df["unit"].to_numpy(), return_inverse=True)[1]
    res = sm.OLS(df["y"].to_numpy(), np.column_stack(cols)).fit(cov_type="cluster", cov_kwds={"groups": groups})
    return res, index, [j for p, j in index.items() if int(p) < ref]


def check(records: list[ResultRecord], table: pa.Table, ref: int) -> None:
    res, index, pre = reference_fit(table, ref)
    effects = {r.time: r for r in records if r.segment is None and r.time is not None}
    assert set(effects) == set(index)
    for label, j in index.items():
        close([effects[label].effect, effects[label].se], [res.params[j], res.bse[j]])
        assert f"reference period '{ref}'" in effects[label].notes[0]
    tests = [r for r in records if r.segment == "pre-trend"]
    if not pre:
        assert tests == []
        return
    r_mat = np.zeros((len(pre), len(res.params)))
    r_mat[np.arange(len(pre)), pre] = 1.0
    wald = res.wald_test(r_mat, use_f=False, scalar=True)
    (test,) = tests
    assert test.df == len(pre)
    close([test.statistic, test.p_value], [float(wald.statistic), float(wald.pvalue)])


def spec(**kw: Any) -> FitSpec:
    return FitSpec(metric="y", treatment="group", model="did", time="t", cluster="unit", control="comparison", **kw)


@pytest.mark.parametrize("ref", [-1, -3, 2, 0])
def test_reference_period_in_the_fit_spec_matches_statsmodels(ref: int) -> None:
    table = make_panel(seed=ref + 10)
    check(fit_table(table, spec(reference_period=str(ref))).records, table, ref)


def test_cli_reference_period(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = make_panel(seed=3)
    path = tmp_path / "panel.parquet"
    pq.write_table(table, path)
    args = ["fit", str(path), "--metric", "y", "--treatment", "group", "--model", "did", "--time", "t",
            "--cluster", "unit", "--control", "comparison", "--json"]
    assert main([*args, "--reference-period", "-1"]) == 0
    check([ResultRecord.model_validate(r) for r in json.loads(capsys.readouterr().out)], table, -1)
    assert main([*args, "--reference-period", "5"]) == 2
    err = capsys.readouterr().err
    assert "reference period '5' is not a period of the panel (-3, -2, -1, 0, 1, 2)" in err
    assert main(["fit", str(path), "--metric", "y", "--treatment", "group", "--reference-period", "-1"]) == 2
    assert "--reference-period does not apply to model 'ttest'" in capsys.readouterr().err


def test_bad_reference_periods_are_refused() -> None:
    table = make_panel(n_units=60, seed=4)
    with pytest.raises(InputError, match="reference period '-4' is not a period"):
        fit_table(table, spec(reference_period="-4"))
    with pytest.raises(ValueError, match="--reference-period does not apply to model 'dte'"):
        FitSpec(metric="y", treatment="group", model="dte", time="t", cluster="unit", reference_period="0")
