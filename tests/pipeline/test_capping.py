"""Outlier capping (winsorization) in stage 1: exact against numpy on the raw per-unit values, and recorded.

A capped metric is declared twice, with and without ``cap``; the analysis table's capped column must
equal ``np.clip`` of the uncapped one at ``np.quantile(pooled values, q, method="linear")`` (percentile
limits, pooled over every cell) or at the declared values (absolute), the manifest must record those
limits, and a fit of the capped metric must equal scipy's Welch test on the clipped raw rows at
rtol 1e-8 and say what it was capped at. DuckDB and Spark must build the same table (``spark``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import sqlglot
from scipy import stats

from xpcompute.errors import InputError
from xpcompute.experiment import ExperimentSpec
from xpcompute.metrics.base import Cap, Metric, col
from xpcompute.models import fit_compressed
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.pipeline.stage1 import Stage1Result, run_stage1, stage1_sql
from xpcompute.pipeline.stage2 import compute_slice
from xpcompute.spec import FitSpec
from xpcompute.synthetic_ecommerce import generate

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("XPCOMPUTE_UPDATE_GOLDEN") == "1"
P_LOW, P_HIGH = 0.05, 0.99
ABSOLUTE_MAX = 3.0


def capped_spec(paths: dict[str, Path] | None = None) -> ExperimentSpec:
    """The e-commerce example's tables with revenue capped at p5/p99, orders at 3, and uncapped twins."""
    uri = {k: str(v) for k, v in (paths or {}).items()}
    completed = "status = 'completed'"
    return ExperimentSpec.parse({
        "id": "capping",
        "allocation": {"source": "assignments", "cell_column": "variant", "exposure_column": "exposed_at"},
        "users_source": "customers",
        "cells": ["control", "one_page"], "control": "control",
        "window": {"start": "2026-03-02", "end": "2026-03-15", "pre_days": 14},
        "sources": {
            "assignments": {"uri": uri.get("assignments", "a.parquet"), "user_column": "customer_id",
                            "date_column": "exposed_at"},
            "customers": {"uri": uri.get("customers", "c.parquet"), "user_column": "customer_id"},
            "orders": {"uri": uri.get("orders", "o.parquet"), "user_column": "customer_id", "date_column": "ordered_at"},
        },
        "dimensions": ["country"],
        "metrics": [
            {"name": "revenue", "source": "orders", "value": "amount_usd", "where": completed,
             "cap": {"upper": P_HIGH, "lower": P_LOW}},
            {"name": "revenue_raw", "source": "orders", "value": "amount_usd", "where": completed},
            {"name": "orders", "source": "orders", "aggregation": "count", "where": completed,
             "cap": {"upper": ABSOLUTE_MAX, "kind": "absolute"}},
            {"name": "orders_raw", "source": "orders", "aggregation": "count", "where": completed},
            {"name": "basket", "source": "orders", "value": "amount_usd", "aggregation": "mean", "where": completed,
             "cap": {"upper": 0.9}},
            {"name": "basket_raw", "source": "orders", "value": "amount_usd", "aggregation": "mean", "where": completed},
        ],
        "covariates": [{"name": "pre_revenue", "metric": "revenue"}],
        "daily": False,
    })


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate(tmp_path_factory.mktemp("capping") / "raw", customers=4000, seed=11)


@pytest.fixture(scope="module")
def duck(raw: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Stage1Result:
    return run_stage1(capped_spec(raw), str(tmp_path_factory.mktemp("capping") / "duck"), engine="duckdb")


def column(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


def winsorized(values: np.ndarray, lower_q: float | None, upper_q: float | None) -> tuple[np.ndarray, float | None, float | None]:
    """numpy's winsorization: limits pooled over every unit with a value (NaN = no value stays NaN)."""
    present = values[~np.isnan(values)]
    lo = None if lower_q is None else float(np.quantile(present, lower_q, method="linear"))
    hi = None if upper_q is None else float(np.quantile(present, upper_q, method="linear"))
    return np.clip(values, lo, hi), lo, hi


def test_capped_columns_equal_numpy_winsorization_of_the_raw_values(duck: Stage1Result) -> None:
    table = duck.analysis.read()
    caps = duck.analysis.manifest["caps"]
    assert set(caps) == {"revenue", "orders", "basket"}
    for name, lo_q, hi_q in (("revenue", P_LOW, P_HIGH), ("basket", None, 0.9)):
        raw_values = column(table, f"{name}_raw")
        want, lo, hi = winsorized(raw_values, lo_q, hi_q)
        got = column(table, name)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(raw_values))
        np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
        assert caps[name]["kind"] == "percentile" and caps[name]["pooled"] is True
        np.testing.assert_allclose([np.nan if caps[name]["lower"] is None else caps[name]["lower"], caps[name]["upper"]],
                                   [np.nan if lo is None else lo, hi], rtol=1e-12)
        assert caps[name]["units_at_upper"] == int((got == caps[name]["upper"]).sum()) > 0
        assert (got < raw_values).sum() > 0  # something was capped
    orders = column(table, "orders")
    np.testing.assert_array_equal(orders, np.minimum(column(table, "orders_raw"), ABSOLUTE_MAX))
    assert caps["orders"] == {"kind": "absolute", "pooled": True, "lower_q": None, "upper_q": None, "lower": None,
                              "upper": ABSOLUTE_MAX, "units_at_upper": int((orders == ABSOLUTE_MAX).sum())}
    assert table.schema.field("orders").type == pa.float64() and table.schema.field("orders_raw").type == pa.int64()
    # the covariate of a capped metric is its uncapped pre-period value (capping applies to the metric's column)
    assert column(table, "pre_revenue").max() > caps["revenue"]["upper"]


def test_capped_fit_equals_welch_on_the_clipped_raw_rows_and_says_so(duck: Stage1Result) -> None:
    table = duck.analysis.read()
    spec = capped_spec()
    compressed = compute_slice(duck.analysis, spec, SliceFilter.everyone(), ["revenue", "orders"])
    assert set(compressed.layout.extra["caps"]) == {"revenue", "orders"}
    cells = np.asarray(table.column("cell").to_pylist())
    for name, (lo_q, hi_q) in {"revenue": (P_LOW, P_HIGH), "orders": (None, None)}.items():
        if name == "revenue":
            clipped, lo, hi = winsorized(column(table, "revenue_raw"), lo_q, hi_q)
        else:
            clipped = np.minimum(column(table, "orders_raw"), ABSOLUTE_MAX)
        (rec,) = fit_compressed(compressed, FitSpec(metric=name, treatment="cell", model="ttest"))
        a, b = clipped[cells == "one_page"], clipped[cells == "control"]
        res = stats.ttest_ind(a, b, equal_var=False)
        np.testing.assert_allclose([rec.effect, rec.p_value, rec.df], [a.mean() - b.mean(), res.pvalue, res.df],
                                   rtol=1e-8)
        (note,) = [n for n in rec.notes if "capped" in n]
        if name == "revenue":
            assert note.startswith(f"revenue: capped at p99 = {hi:.10g}") and f"below at p5 = {lo:.10g}" in note
            assert "percentiles pooled over all cells" in note
        else:
            assert note.startswith("orders: capped at 3 (") and "absolute limits" in note


def test_capped_plan_golden_files_render_and_parse_in_every_dialect() -> None:
    """The capped stage-1 query per dialect (checked in; XPCOMPUTE_UPDATE_GOLDEN=1 rewrites): it parses back alike."""
    for dialect in ("duckdb", "spark", "trino"):
        text = stage1_sql(capped_spec(), dialect)["analysis"]
        path = GOLDEN / f"stage1_capped_analysis.{dialect}.sql"
        if UPDATE:
            path.write_text(text + "\n")
        assert path.read_text() == text + "\n", f"{path.name} changed: review the diff, then XPCOMPUTE_UPDATE_GOLDEN=1"
        assert sqlglot.parse_one(text, read=dialect).sql(dialect=dialect, pretty=True, identify=True) == text
        assert "ROW_NUMBER() OVER" in text and "PERCENTILE" not in text.upper() and "APPROX" not in text.upper()
        assert "9.89999999999999991e-01" in text  # the probability is a DOUBLE literal, not text from the spec


def test_cap_declarations_are_checked() -> None:
    for bad, match in (
        ({"upper": 1.5}, "strictly between 0 and 1"),
        ({"lower": 0.9, "upper": 0.1}, "must be below upper"),
        ({}, "upper or a lower limit"),
        ({"upper": 10, "kind": "winsor"}, "kind"),
    ):
        with pytest.raises((InputError, ValueError), match=match):
            Cap(**bad)  # type: ignore[arg-type]
    assert Cap(upper=500.0, kind="absolute").side_label("upper") == "500"
    with pytest.raises(InputError, match="cap applies to per-unit values of a simple metric"):
        from xpcompute.metrics.base import Part, RatioMetric

        class _Capped(RatioMetric):
            name = "capped_ratio"
            cap = Cap(upper=0.99)

            def numerator(self) -> Part:
                raise NotImplementedError

            def denominator(self) -> Part:
                raise NotImplementedError

    class Spend(Metric):
        name = "spend_capped"
        source = "orders"
        cap = Cap(upper=0.95)

        def value(self) -> Any:
            return col("amount_usd")

    assert Spend.cap == Cap(upper=0.95)


@pytest.mark.spark
def test_spark_builds_the_same_capped_table(raw: dict[str, Path], duck: Stage1Result, tmp_path: Path,
                                            spark: Any) -> None:
    from xpcompute.pipeline.engines.spark_engine import SparkEngine

    engine = SparkEngine(spark)
    try:
        result = run_stage1(capped_spec(raw), str(tmp_path / "spark"), engine=engine)
    finally:
        engine.close()
    got = result.analysis.read().sort_by("user_id")
    want = duck.analysis.read().sort_by("user_id")
    for name in ("revenue", "orders", "basket"):
        np.testing.assert_allclose(column(got, name), column(want, name), rtol=1e-12, equal_nan=True, err_msg=name)
    for name, limits in duck.analysis.manifest["caps"].items():
        for key, value in limits.items():
            if isinstance(value, float):
                np.testing.assert_allclose(result.analysis.manifest["caps"][name][key], value, rtol=1e-12)
            else:
                assert result.analysis.manifest["caps"][name][key] == value, (name, key)
