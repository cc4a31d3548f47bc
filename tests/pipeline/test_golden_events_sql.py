"""Golden SQL of the stage-1 events table of an event-level quantile metric, per dialect (DuckDB, Spark, Trino).

The files under tests/pipeline/golden/ are what each engine receives; each must parse back in its dialect and
render to the same text. The Trino text, transpiled by sqlglot and run by DuckDB on a small table set, must
select the very events DuckDB's own text selects, with the same cell index and unit cluster, and those follow
the documented rule (``sql/events.CLUSTER_RULE``: MD5 of the unit id as text, computed here with hashlib). Regenerate after an intended change with
``XPCOMPUTE_UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot

from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline.events import events_sql
from xpcompute.sql.events import cluster_sql, digest_sql, unit_clusters_py

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("XPCOMPUTE_UPDATE_GOLDEN") == "1"
KINDS = {"orders": "timestamp"}
DIALECTS = ("duckdb", "spark", "trino")


def spec(folder: Path | None = None) -> ExperimentSpec:
    def uri(name: str) -> str:
        return str(folder / f"{name}.parquet") if folder is not None else f"{name}.parquet"

    return ExperimentSpec.parse({
        "id": "checkout",
        "allocation": {"source": "assignments", "cell_column": "variant", "exposure_column": "exposed_at"},
        "users_source": "customers",
        "cells": ["control", "one_page"], "control": "control",
        "window": {"start": "2026-03-02", "end": "2026-03-15", "pre_days": 14},
        "sources": {
            "assignments": {"uri": uri("assignments"), "user_column": "customer_id", "date_column": "exposed_at"},
            "customers": {"uri": uri("customers"), "user_column": "customer_id"},
            "orders": {"uri": uri("orders"), "user_column": "customer_id", "date_column": "ordered_at"},
        },
        "dimensions": ["country", {"name": "platform", "source": "assignments"}],
        "metrics": [{"name": "order_value", "source": "orders", "value": "amount_usd * 1.0",
                     "where": "status = 'completed'", "aggregation": "event_quantile", "quantiles": [0.5, 0.9]}],
        "daily": False,
    })


CASES = {f"stage1_events_order_value.{d}.sql": (d, events_sql(spec(), d, kinds=KINDS)["order_value"])  # type: ignore[arg-type]
         for d in DIALECTS}


@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_sql_matches_golden_file(name: str) -> None:
    dialect, text = CASES[name]
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text + "\n")
    assert path.exists(), f"{path} missing: run with XPCOMPUTE_UPDATE_GOLDEN=1 once"
    assert path.read_text() == text + "\n", f"{name} changed: review the diff, then XPCOMPUTE_UPDATE_GOLDEN=1"
    parsed = sqlglot.parse_one(text, read=dialect)
    assert parsed.sql(dialect=dialect, pretty=True, identify=True) == text


def test_trino_text_selects_the_same_events_as_duckdb(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    n = 200
    ids = [f"c{i}" for i in range(n)]
    t0 = datetime(2026, 2, 27)
    exposed = [t0 + (datetime(2026, 3, 18) - t0) * float(u) for u in rng.random(n)]
    pq.write_table(pa.table({"customer_id": ids, "variant": rng.choice(["control", "one_page"], n).tolist(),
                             "platform": rng.choice(["web", "ios"], n).tolist(),
                             "exposed_at": pa.array(exposed, pa.timestamp("us"))}), tmp_path / "assignments.parquet")
    pq.write_table(pa.table({"customer_id": ids, "country": rng.choice(["US", "GB"], n).tolist()}),
                   tmp_path / "customers.parquet")
    k = 1500
    when = [t0 + (datetime(2026, 3, 18) - t0) * float(u) for u in rng.random(k)]
    pq.write_table(pa.table({"customer_id": rng.choice(ids, k).tolist(), "ordered_at": pa.array(when, pa.timestamp("us")),
                             "amount_usd": np.round(rng.lognormal(3, 1, k), 2),
                             "status": rng.choice(["completed", "cancelled"], k).tolist()}), tmp_path / "orders.parquet")
    con = duckdb.connect()
    for name in ("assignments", "customers", "orders"):
        con.execute(f"CREATE VIEW xp_{name} AS SELECT * FROM read_parquet('{tmp_path / name}.parquet')")
    s = spec(tmp_path)
    own = con.sql(events_sql(s, "duckdb", kinds=KINDS)["order_value"]).fetchall()  # type: ignore[arg-type]
    trino = sqlglot.transpile(events_sql(s, "trino", kinds=KINDS)["order_value"], read="trino", write="duckdb")[0]  # type: ignore[arg-type]
    moved = con.sql(trino).fetchall()
    assert len(own) > 100
    assert sorted(own) == sorted(moved)
    # the stored cell index and unit cluster follow the documented rules (sql/events.py: CLUSTER_RULE)
    rows = con.sql(events_sql(s, "duckdb", kinds=KINDS)["order_value"]).to_arrow_table()  # type: ignore[arg-type]
    units = rows.column("user_id").to_pylist()
    assert rows.column("_xp_cluster").to_pylist() == unit_clusters_py(units)
    assert rows.column("_xp_cell").to_pylist() == [("control", "one_page").index(c) for c in rows.column("cell").to_pylist()]
    assert len(set(unit_clusters_py(ids))) > 150  # 200 units spread over the 1000 clusters


def test_cluster_rule_on_integer_and_string_ids() -> None:
    """``CLUSTER_RULE`` on DuckDB equals hashlib's MD5 of ``str(unit)`` for integer and string ids, and spreads
    sequential ids evenly over the clusters."""
    con = duckdb.connect()
    for ids in (pa.array(np.arange(-50, 20_000, dtype=np.int64)), pa.array([f"u{i}" for i in range(3000)])):
        con.register("units", pa.table({"u": ids}))
        query = sqlglot.exp.select(cluster_sql(digest_sql(sqlglot.exp.column("u")), 1000).as_("k")).from_("units")
        got = con.sql(query.sql("duckdb")).to_arrow_table().column("k").to_pylist()
        assert got == unit_clusters_py(ids.to_pylist())
        con.unregister("units")
    counts = np.bincount(unit_clusters_py(range(200_000)), minlength=1000)
    assert counts.min() > 120 and counts.max() < 290  # Poisson(200) spread: no empty or crowded cluster
