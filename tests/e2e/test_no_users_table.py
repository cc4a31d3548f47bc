"""A team's experiment with no users table, three unequal cells, UUID ids, a metric whose spread is a
millionth of a millionth of its mean, and a ratio whose numerator is nearly proportional to its denominator
(orders of $100 +- 0.002), run end to end through the service (stage 1 on DuckDB, slices, fits).

Why: a team often has only an assignment log and event tables. The allocation source then is the table with a
row per unit, so ``users_source`` defaults to it when no source is named ``users``. And a scorecard is only
trusted if a 0.001 difference on values near 1e9 comes out as scipy computes it on the same units, if the
average order value's standard error is the delta method's to 1e-8 (its textbook formula keeps 6 or 7 digits
here), and if a metric with no variance fails alone, saying so, and leaves the others standing.
"""

from __future__ import annotations

import io
import math
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from scipy import stats

from xpcompute.experiment import ExperimentSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))

from test_ratio_cuped import reference as ratio_cuped_reference
from test_ratio_precision import exact_delta

RTOL = 1e-8
BIG = 1e9
STEP = 2.0**-20  # values BIG + k * STEP are exact doubles (the spacing of doubles near 1e9 is 2**-23)
SHARES = {"a": 0.04, "b": 0.48, "c": 0.48}


def _spec(folder: Path, **changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": "no-users-table",
        "allocation": {"source": "assign", "cell_column": "arm", "exposure_column": "seen_at"},
        "cells": list(SHARES), "control": "b", "shares": SHARES,
        "window": {"start": "2026-05-01", "end": "2026-05-10", "pre_days": 7},
        "sources": {
            "assign": {"uri": str(folder / "assign.parquet"), "user_column": "uid", "date_column": "seen_at"},
            "readings": {"uri": str(folder / "readings.parquet"), "user_column": "uid", "date_column": "at"},
            "orders": {"uri": str(folder / "orders.parquet"), "user_column": "uid", "date_column": "at"},
        },
        "dimensions": ["platform"],  # a column of the allocation source, now the users source
        "metrics": [
            {"name": "reading", "source": "readings", "value": "big", "aggregation": "sum"},
            {"name": "flat", "source": "readings", "value": "one", "aggregation": "mean"},
            {"name": "n_readings", "source": "readings", "aggregation": "count"},
            {"name": "per_reading", "numerator": "reading", "denominator": "n_readings"},
            {"name": "revenue", "source": "orders", "value": "price", "aggregation": "sum"},
            {"name": "orders", "source": "orders", "aggregation": "count"},
            {"name": "aov", "numerator": "revenue", "denominator": "orders"},
            {"name": "aov_cuped", "numerator": "revenue", "denominator": "orders",
             "covariates": ["pre_revenue", "pre_orders"]},
        ],
        "covariates": [{"name": "pre_revenue", "metric": "revenue", "adjusts": ["aov_cuped"]},
                       {"name": "pre_orders", "metric": "orders", "adjusts": ["aov_cuped"]}],
        "daily": False,
    }
    raw.update(changes)
    return raw


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """3,000 units, each exposed once and with one reading in the window; returns the folder and, per cell, the
    readings less 1e9 (exact: the readings are exact multiples of 2**-20 away from 1e9)."""
    folder = tmp_path_factory.mktemp("no_users")
    rng = np.random.default_rng(11)
    n = 3000
    ids = [str(uuid.UUID(int=int(x))) for x in rng.integers(0, 2**62, n)]
    arm = rng.choice(list(SHARES), size=n, p=list(SHARES.values()))
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    seen = [t0 + timedelta(seconds=int(s)) for s in rng.integers(0, 5 * 86400, n)]
    k = np.round(rng.normal(0, 1000, n)) + np.where(arm == "c", 1000, 0)  # c: +1000 steps (about +0.001)
    readings = BIG + k * STEP
    pq.write_table(pa.table({"uid": ids, "arm": arm, "seen_at": seen,
                             "platform": rng.choice(["ios", "web"], size=n)}), folder / "assign.parquet")
    pq.write_table(pa.table({"uid": ids, "at": [s + timedelta(hours=2) for s in seen], "big": readings,
                             "one": np.full(n, 5.0)}), folder / "readings.parquet")
    # 1-4 orders per unit at $100 + j / 1024 (j about +-2: a spread of 0.002), c's orders 1/1024 dearer; sums of
    # multiples of 2**-10 below 2**40 are exact, so every engine's per-unit revenue is the same number
    # each unit's own price level (+-2/1024) persists from its pre-period orders (3 days before exposure) to its
    # orders after, so the pre-period ratio predicts the ratio (CUPED has something to remove)
    level = np.round(rng.normal(0, 2, n))
    n_orders, n_pre = rng.integers(1, 5, n), rng.integers(1, 4, n)
    unit, pre_unit = np.repeat(np.arange(n), n_orders), np.repeat(np.arange(n), n_pre)
    cents = level[unit] + np.round(rng.normal(0, 1, unit.size)) + np.where(arm[unit] == "c", 1, 0)
    pre_cents = level[pre_unit] + np.round(rng.normal(0, 1, pre_unit.size))
    price, pre_price = 100.0 + cents / 1024, 100.0 + pre_cents / 1024
    pq.write_table(pa.table({
        "uid": [ids[i] for i in np.concatenate([unit, pre_unit])],
        "at": [seen[i] + timedelta(hours=3) for i in unit] + [seen[i] - timedelta(days=3) for i in pre_unit],
        "price": np.concatenate([price, pre_price]),
    }), folder / "orders.parquet")
    per_unit = pa.table({"cell": arm, "y": np.bincount(unit, weights=price, minlength=n),
                         "d": n_orders.astype(float), "x": np.bincount(pre_unit, weights=pre_price, minlength=n),
                         "w": n_pre.astype(float)})
    orders_by_cell = {c: (per_unit.column("y").to_numpy()[arm == c], n_orders[arm == c].astype(float))
                      for c in SHARES}
    return folder, {**{c: k[arm == c] * STEP for c in SHARES}, **{f"aov:{c}": v for c, v in orders_by_cell.items()},
                    "units": per_unit}


def test_users_source_defaults_to_the_allocation_source_only_without_a_users_table(tmp_path: Path) -> None:
    assert ExperimentSpec.model_validate(_spec(tmp_path)).users_source == "assign"
    with_users = _spec(tmp_path)
    with_users["sources"]["users"] = {"uri": str(tmp_path / "users.parquet"), "user_column": "uid"}
    assert ExperimentSpec.model_validate(with_users).users_source == "users"
    named = _spec(tmp_path, users_source="readings")
    assert ExperimentSpec.model_validate(named).users_source == "readings"
    spec = ExperimentSpec.model_validate(_spec(tmp_path))
    assert ExperimentSpec.model_validate(spec.model_dump()) == spec  # the stored form reads back the same


def test_a_tiny_difference_on_a_huge_mean_equals_scipy_and_a_flat_metric_fails_alone(
    data: tuple[Path, dict[str, Any]], tmp_path: Path,
) -> None:
    from xpcompute.runner import run_experiment

    folder, shifted = data
    spec = ExperimentSpec.model_validate(_spec(folder))
    out = io.StringIO()
    result = run_experiment(spec, home=tmp_path / "home", workers=1, console=Console(file=out, width=200))
    card = result.scorecard
    assert card.complete and not result.ok  # every job ran; one failed
    records = {(r.metric, r.cell): r for r in card.records if r.segment is None and r.model == "ttest"}
    for cell in ("a", "c"):
        r = records[("reading", cell)]
        ref = stats.ttest_ind(shifted[cell], shifted["b"], equal_var=False)
        effect = shifted[cell].mean() - shifted["b"].mean()
        se = math.sqrt(shifted[cell].var(ddof=1) / len(shifted[cell]) + shifted["b"].var(ddof=1) / len(shifted["b"]))
        assert r.effect == pytest.approx(effect, rel=RTOL)
        assert r.se == pytest.approx(se, rel=RTOL)
        assert r.p_value == pytest.approx(ref.pvalue, rel=RTOL)
        assert r.n_cell == len(shifted[cell]) and r.n_control == len(shifted["b"])
        assert r.mean_control == pytest.approx(BIG + shifted["b"].mean(), rel=1e-15)
    assert records[("reading", "c")].effect == pytest.approx(1000 * STEP, rel=0.1)  # the planted +0.001
    assert not any(r.metric == "flat" for r in card.records)
    # the flat metric, and the readings' count (one reading per unit), fail alone with their reason
    assert {f.metric for f in card.failures} == {"flat", "n_readings"}
    assert all("zero variance" in f.error for f in card.failures)
    (failure,) = [f for f in card.failures if f.metric == "flat"]
    line = failure.describe()
    assert line.startswith("flat (ttest) on all users: ZeroVarianceError") and failure.job_id in line
    assert "failed: flat (ttest) on all users" in out.getvalue()  # the terminal says what, where and why
    assert not any(s.mismatch for s in card.srm)  # the 4/48/48 split is the planned one

    # a ratio near 1e9 whose effect is 1e-12 of it: the difference of the residuals' ratios, to the last digit
    per_reading = {r.cell: r for r in card.records if r.metric == "per_reading" and r.segment is None}
    for cell in ("a", "c"):
        ones = np.ones(len(shifted[cell]))
        ratio, var = exact_delta(BIG + shifted[cell], ones)
        control_ratio, control_var = exact_delta(BIG + shifted["b"], np.ones(len(shifted["b"])))
        assert per_reading[cell].effect == pytest.approx(float(ratio - control_ratio), rel=RTOL)
        assert per_reading[cell].se == pytest.approx(math.sqrt(float(var + control_var)), rel=RTOL)
        assert per_reading[cell].mean_control == pytest.approx(float(control_ratio), rel=1e-15)

    ratios = {r.cell: r for r in card.records if r.metric == "aov" and r.segment is None}
    control_ratio, control_var = exact_delta(*shifted["aov:b"])
    for cell in ("a", "c"):
        ratio, var = exact_delta(*shifted[f"aov:{cell}"])
        r = ratios[cell]
        assert r.se == pytest.approx(math.sqrt(float(var + control_var)), rel=RTOL)
        assert r.effect == pytest.approx(float(ratio - control_ratio), rel=RTOL)
        assert r.mean_cell == pytest.approx(float(ratio), rel=1e-15)
    # CUPED on both parts (pre-period revenue and orders): the raw-row reference of tests/reference
    cuped = {r.cell: r for r in card.records if r.metric == "aov_cuped" and r.segment is None}
    for cell in ("a", "c"):
        ref = ratio_cuped_reference(shifted["units"], cell, control="b")
        assert ref["theta"] > 0.3  # the pre-period ratio does predict the ratio
        assert cuped[cell].se == pytest.approx(ref["se"], rel=RTOL)
        assert cuped[cell].effect == pytest.approx(ref["effect"], rel=RTOL, abs=1e-14 * 100)
        assert cuped[cell].se < 0.9 * ratios[cell].se
    # segment discovery: cell a's 4% leaves no platform value with enough units in every cell, and it says so
    # (before, the fit ran on nothing and answered that no cell had data)
    notes = {t["note"] for t in card.segments["tests"]}
    assert notes == {"fewer than two values of platform with 200 units in every cell (the smallest cell is 'a')"}
    # the test has teeth: the textbook formula on the same per-unit values is off by far more than 1e-8
    y, d = shifted["aov:c"]
    cov = np.cov(np.vstack([y, d]), ddof=1)
    ratio = y.mean() / d.mean()
    textbook = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]) / (len(y) * d.mean() ** 2)
    exact = float(exact_delta(y, d)[1])
    assert abs(textbook / exact - 1) > 10 * RTOL
