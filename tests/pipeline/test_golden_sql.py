"""Golden SQL: the generated text of every query, per dialect, checked in under tests/pipeline/golden/.

The Trino files cover every catalog metric and every slice shape; they are
what a Trino server would receive (none runs here). Each file must also parse
back in its dialect and render to the same text, and the Trino queries are run
by DuckDB (transpiled by sqlglot) to check that they compute the slice.
Regenerate after an intended change with ``XPCOMPUTE_UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
import sqlglot
from pipeline_helpers import Experiment

from xpcompute.compression import compress_moments
from xpcompute.experiment import ExperimentSpec
from xpcompute.metrics import metric_names
from xpcompute.pipeline.slices import Condition, SliceFilter
from xpcompute.pipeline.stage1 import Stage1Result, stage1_sql
from xpcompute.pipeline.stage2 import distribution_sql, slice_sql

GOLDEN = Path(__file__).parent / "golden"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "streaming_experiment.yaml"
UPDATE = os.environ.get("XPCOMPUTE_UPDATE_GOLDEN") == "1"

SHAPES: dict[str, tuple[SliceFilter, list[str]]] = {
    "all_users": (SliceFilter.everyone(), []),
    "conjunction": (SliceFilter.where(country="US", device="ios"), []),
    "disjunction": (SliceFilter.either(country=["US", "CA"]), []),
    "disjunction_across_columns": (SliceFilter.either(country="US", device="tv"), ["plan"]),
    "negated_and_mixed": (
        SliceFilter(
            all_of=(Condition(column="plan", values=("basic",), negate=True),),
            any_of=(Condition(column="country", values=("US", "IN")), Condition(column="tenure_bucket", values=("0-3m",))),
        ),
        ["device", "tenure_bucket"],
    ),
}


def spec() -> ExperimentSpec:
    return ExperimentSpec.from_yaml(EXAMPLE)


def exposure_spec() -> ExperimentSpec:
    """A team's own tables: string ids, an exposure timestamp, declared metrics and column dimensions."""
    return ExperimentSpec.parse({
        "id": "checkout",
        "allocation": {"source": "assignments", "cell_column": "variant", "exposure_column": "exposed_at"},
        "users_source": "customers",
        "cells": ["control", "one_page"], "control": "control", "shares": {"control": 0.6, "one_page": 0.4},
        "window": {"start": "2026-03-02", "end": "2026-03-15", "pre_days": 14},
        "sources": {
            "assignments": {"uri": "a.parquet", "user_column": "customer_id", "date_column": "exposed_at"},
            "customers": {"uri": "c.parquet", "user_column": "customer_id"},
            "orders": {"uri": "o.parquet", "user_column": "customer_id", "date_column": "ordered_at"},
            "visits": {"uri": "v.parquet", "user_column": "customer_id", "date_column": "visit_date"},
        },
        "dimensions": ["country", {"name": "platform", "source": "assignments"}],
        "metrics": [
            {"name": "revenue", "source": "orders", "value": "amount_usd", "where": "status = 'completed'"},
            {"name": "orders", "source": "orders", "aggregation": "count", "where": "status = 'completed'"},
            {"name": "purchaser", "source": "orders", "aggregation": "any", "where": "status = 'completed'"},
            {"name": "aov", "numerator": "revenue", "denominator": "orders"},
            {"name": "visit_days", "source": "visits", "value": "visit_date", "aggregation": "count_distinct"},
        ],
        "covariates": [{"name": "pre_revenue", "metric": "revenue"}],
    })


EXPOSURE_KINDS = {"orders": "timestamp", "visits": "date"}


def golden_cases() -> dict[str, tuple[str, str]]:
    """File name -> (dialect, generated SQL)."""
    s = spec()
    cases: dict[str, tuple[str, str]] = {}
    for shape, (filt, keys) in SHAPES.items():
        cases[f"stage2_{shape}.trino.sql"] = ("trino", slice_sql(s, filt, list(s.metrics), keys, "trino", "hive.xp.analysis"))
    filt, keys = SHAPES["disjunction"]
    cases["stage2_distribution_sessions.trino.sql"] = (
        "trino", distribution_sql(s, filt, "sessions", ["device"], "trino", "hive.xp.analysis")
    )
    filt, keys = SHAPES["conjunction"]
    for dialect in ("duckdb", "spark"):
        cases[f"stage2_conjunction.{dialect}.sql"] = (dialect, slice_sql(s, filt, list(s.metrics), keys, dialect))
    for dialect in ("duckdb", "spark", "trino"):
        for table, text in stage1_sql(s, dialect).items():
            cases[f"stage1_{table}.{dialect}.sql"] = (dialect, text)
        for table, text in stage1_sql(exposure_spec(), dialect, kinds=EXPOSURE_KINDS).items():  # type: ignore[arg-type]
            cases[f"stage1_exposure_{table}.{dialect}.sql"] = (dialect, text)
    return cases


CASES = golden_cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_sql_matches_golden_file(name: str) -> None:
    dialect, text = CASES[name]
    path = GOLDEN / name
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text + "\n")
    assert path.exists(), f"{path} missing: run with XPCOMPUTE_UPDATE_GOLDEN=1 once"
    assert path.read_text() == text + "\n", f"{name} changed: review the diff, then XPCOMPUTE_UPDATE_GOLDEN=1"
    parsed = sqlglot.parse_one(text, read=dialect)
    assert parsed.sql(dialect=dialect, pretty=True, identify=True) == text


def test_trino_golden_files_cover_every_metric_and_shape() -> None:
    trino = {n: t for n, (d, t) in CASES.items() if d == "trino" and n.startswith("stage2_") and "distribution" not in n}
    assert len(trino) == len(SHAPES) == 5
    for name, text in trino.items():
        for metric in metric_names(builtin_only=True):  # a plugin loaded by another test is not in the example
            assert f'"{metric}__m_0' in text, (name, metric)
    assert "NOT (" in trino["stage2_negated_and_mixed.trino.sql"]
    assert " OR " in trino["stage2_disjunction_across_columns.trino.sql"]
    assert "IN ('US', 'CA')" in trino["stage2_disjunction.trino.sql"]
    assert "WHERE" not in trino["stage2_all_users.trino.sql"]


@pytest.mark.parametrize("shape", list(SHAPES))
def test_trino_golden_queries_compute_the_slice(shape: str, synth: Experiment, duck_stage1: Stage1Result) -> None:
    """Run each Trino golden query (transpiled to DuckDB) and compare with compress_moments on the raw rows."""
    text = (GOLDEN / f"stage2_{shape}.trino.sql").read_text()
    analysis = duck_stage1.analysis.read()
    con = duckdb.connect()
    con.register("arrow_analysis", analysis)
    con.execute("ATTACH ':memory:' AS hive")
    con.execute("CREATE SCHEMA hive.xp")
    con.execute("CREATE TABLE hive.xp.analysis AS SELECT * FROM arrow_analysis")
    result = con.sql(sqlglot.transpile(text, read="trino", write="duckdb")[0]).to_arrow_table()
    filt, keys = SHAPES[shape]
    rows = analysis.filter(filt.to_arrow_mask(analysis))
    s = spec()
    want = compress_moments(rows, ["cell", *keys], {m: s.compressed_covariates(m) for m in s.metrics}).table
    assert result.num_rows == want.num_rows
    for name in want.column_names:
        got = result.column(name)
        if pa.types.is_floating(want.schema.field(name).type):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want.column(name)), rtol=1e-9, err_msg=name)
        else:
            assert got.to_pylist() == want.column(name).to_pylist(), name
