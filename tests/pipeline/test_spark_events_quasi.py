"""Stage 1 on Spark (local mode) equals stage 1 on DuckDB for the two outputs only ever built on DuckDB before:
the events tables of event-level quantile metrics (``sql/events.py``) and a quasi-experiment's tables (``quasi.py``).

The raw tables are small and unlike the synthetic generators': string (and integer) unit ids, exposure
timestamps with events exactly on the window's edges, three cells of unequal size, a unit in two cells, units
exposed after the window or never, allocated units without any event, events of units never allocated, and
NULLs in the ids' dimensions, the values (NaN too) and the ``where`` column, a decimal value, and a value and a
``where`` dividing by a column that is often 0 (Spark used to fail the whole stage 1 on it and DuckDB wrote inf;
now x/0 is NULL everywhere: ``sql/stage1.zero_safe``). The events tables are also checked against a plain-Python
reading of the window rule, so the engines cannot agree on a wrong answer.

The quasi-experiment is ``synthetic_quasi``'s shop (few customers) plus customers with no, an unlisted or two
regions and orders on the change date's and the window's midnights; its golden SQL (Trino, and the other
dialects) lies under tests/pipeline/golden/stage1_quasi_*, and the Trino text, transpiled by sqlglot and run by
DuckDB, builds the same unit-by-week table as DuckDB's own. Regenerate after an intended change with
``XPCOMPUTE_UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlglot

from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline.stage1 import Stage1Result, run_stage1, stage1_sql
from xpcompute.pipeline.tables import PublishedTable
from xpcompute.sql.events import unit_clusters_py
from xpcompute.synthetic_quasi import QuasiConfig, draw

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("XPCOMPUTE_UPDATE_GOLDEN") == "1"
DIALECTS = ("duckdb", "spark", "trino")
START = datetime(2026, 3, 2)
END_NEXT = datetime(2026, 3, 9)  # the window is 2026-03-02 .. 2026-03-08; its last day counts until midnight
CELLS = ("control", "one_page", "two_page")


# --- comparing two engines' tables -----------------------------------------------------------------------------

def sort_keys(table: pa.Table) -> list[tuple[str, str]]:
    """Every column, key columns first: events have no key, so identical tables sort identically only by all."""
    first = [c for c in ("user_id", "day") if c in table.column_names]
    return [(c, "ascending") for c in first + [c for c in table.column_names if c not in first]]


def assert_same_table(duck: pa.Table, spark: pa.Table) -> None:
    """Same columns, types and rows: integers and strings exactly, doubles within 1e-12 relative (NaN = NaN)."""
    assert duck.column_names == spark.column_names
    for field in duck.schema:
        assert spark.schema.field(field.name).type == field.type, field.name
    assert duck.num_rows == spark.num_rows
    a, b = duck.sort_by(sort_keys(duck)), spark.sort_by(sort_keys(spark))
    for name in a.column_names:
        x, y = a.column(name).combine_chunks(), b.column(name).combine_chunks()
        if pa.types.is_floating(x.type):
            assert x.is_null().equals(y.is_null()), name
            np.testing.assert_allclose(np.asarray(pc.fill_null(y, 0.0)), np.asarray(pc.fill_null(x, 0.0)),
                                       rtol=1e-12, atol=0, equal_nan=True, err_msg=name)
        else:
            assert x.to_pylist() == y.to_pylist(), name


def read(table: PublishedTable | None) -> pa.Table:
    assert table is not None
    return table.read()


def run_both(spec: ExperimentSpec, root: Path, spark: Any) -> tuple[Stage1Result, Stage1Result]:
    from xpcompute.pipeline.engines.spark_engine import SparkEngine

    duck = run_stage1(spec, str(root / "duck"), engine="duckdb")
    engine = SparkEngine(spark)
    try:
        on_spark = run_stage1(spec, str(root / "spark"), engine=engine)
    finally:
        engine.close()
    assert on_spark.analysis.manifest["engine"] == "spark"
    return duck, on_spark


def golden_check(name: str, dialect: str, text: str) -> None:
    """The golden-file rule of test_golden_sql.py: the file holds the text, which parses back to itself."""
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text + "\n")
    assert path.exists(), f"{path} missing: run with XPCOMPUTE_UPDATE_GOLDEN=1 once"
    assert path.read_text() == text + "\n", f"{name} changed: review the diff, then XPCOMPUTE_UPDATE_GOLDEN=1"
    assert sqlglot.parse_one(text, read=dialect).sql(dialect=dialect, pretty=True, identify=True) == text


# --- (a) event-level quantile metrics ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Raw:
    root: Path
    raw: dict[str, Any]
    ids: str  # "string" | "integer"

    @property
    def spec(self) -> ExperimentSpec:
        return ExperimentSpec.parse(self.raw)


def _events_raw(root: Path, ids: str, exposure: bool, seed: int) -> Raw:
    """Three cells (about 60/30/10), 240 plain units and the odd ones named in the module docstring."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    n = 240

    def uid(i: int) -> Any:
        return f"u-{i:04d}-{'é' if i % 17 == 0 else 'x'}" if ids == "string" else (i * 7919 - 500) * (1 if i % 5 else -1)

    units = [uid(i) for i in range(n)]
    dup, late, never, ghost, holdout, quiet = uid(n), uid(n + 1), uid(n + 2), uid(n + 3), uid(n + 4), uid(n + 5)
    cells = rng.choice(CELLS, n, p=[0.6, 0.3, 0.1]).tolist()
    exposed = [START - timedelta(days=3) + timedelta(seconds=int(s)) for s in rng.integers(0, 9 * 86_400, n)]
    a_user = [*units, dup, dup, late, never, holdout, quiet, units[0]]
    a_cell = [*cells, "control", "one_page", "two_page", "control", "holdout", "two_page", cells[0]]
    a_exposed: list[datetime | None] = [*exposed, START, START, END_NEXT, None, START, START + timedelta(days=1),
                                        exposed[0] + timedelta(days=2)]  # units[0] exposed twice
    platform = [None if i % 11 == 0 else str(rng.choice(["web", "ios", "android"])) for i in range(len(a_user))]
    user_type = pa.string() if ids == "string" else pa.int64()
    pq.write_table(pa.table({
        "customer_id": pa.array(a_user, user_type), "variant": pa.array(a_cell, pa.string()),
        "exposed_at": pa.array(a_exposed, pa.timestamp("us")), "platform": pa.array(platform, pa.string()),
    }), root / "assignments.parquet")
    # customers: every 9th unit missing (NULL country), one listed twice with two countries, NULL countries
    c_user = [u for i, u in enumerate(units) if i % 9] + [units[1], quiet]
    country = [None if i % 13 == 0 else str(rng.choice(["US", "GB", "DE"])) for i in range(len(c_user) - 2)]
    pq.write_table(pa.table({"customer_id": pa.array(c_user, user_type),
                             "country": pa.array([*country, "ZZ", None], pa.string())}), root / "customers.parquet")
    # orders: random instants around the window, several per unit, plus the edges of each unit's window
    buyers = [u for i, u in enumerate(units) if i % 7]  # every 7th unit never orders
    k = 1_400
    o_user = [*rng.choice(np.asarray(buyers, dtype=object), k).tolist(), dup, late, ghost, holdout]
    o_time = [START - timedelta(days=6) + timedelta(microseconds=int(s)) for s in rng.integers(0, 16 * 86_400 * 10**6, k)]
    o_time += [START + timedelta(days=2)] * 4
    edge_units = [units[i] for i in range(1, 60, 7) if i % 7]
    first = {}
    for u, e in zip(a_user, a_exposed, strict=True):
        if e is not None:
            first[u] = min(first.get(u, e), e)
    for u in edge_units:  # exactly the unit's start, 1 us before it, the last microsecond, the next midnight
        start = max(first[u], START)
        for t in (start, start - timedelta(microseconds=1), END_NEXT - timedelta(microseconds=1), END_NEXT):
            o_user.append(u)
            o_time.append(t)
    m = len(o_user)
    amount = np.round(rng.lognormal(3.0, 1.2, m), 2)
    amount_list: list[float | None] = amount.tolist()
    for j in range(0, m, 23):
        amount_list[j] = None
    amount_list[5], amount_list[6], amount_list[7], amount_list[8] = -12.5, 0.0, float("nan"), 1e15 + 0.25
    status = rng.choice(["completed", "completed", "completed", "cancelled"], m).tolist()
    status_list: list[str | None] = [None if j % 31 == 0 else s for j, s in enumerate(status)]
    order = rng.permutation(m)
    pq.write_table(pa.table({
        "customer_id": pa.array([o_user[j] for j in order], user_type),
        "ordered_at": pa.array([o_time[j] for j in order], pa.timestamp("us")),
        "amount_usd": pa.array([amount_list[j] for j in order], pa.float64()),
        "items": pa.array(rng.integers(0, 5, m).astype(np.int32)[order]),
        "status": pa.array([status_list[j] for j in order], pa.string()),
        # a decimal value (NULLs included) and a column named like an output column (never read)
        "net_usd": pa.array([None if j % 29 == 0 else Decimal(int(c)).scaleb(-2) for j, c in enumerate(
            rng.integers(-10**6, 10**11, m)[order])], pa.decimal128(12, 2)),
        "cell": pa.array(rng.choice(["x", "y"], m).tolist(), pa.string()),
    }), root / "orders.parquet")
    # visits: a date column (compared as days) and an integer value with NULLs
    v = 900
    v_user = rng.choice(np.asarray([*units, ghost], dtype=object), v).tolist()
    v_day = [(START - timedelta(days=4) + timedelta(days=int(d))).date() for d in rng.integers(0, 14, v)]
    seconds: list[int | None] = rng.integers(-5, 4_000, v).tolist()
    for j in range(0, v, 17):
        seconds[j] = None
    pq.write_table(pa.table({"customer_id": pa.array(v_user, user_type), "visit_day": pa.array(v_day, pa.date32()),
                             "seconds": pa.array(seconds, pa.int32())}), root / "visits.parquet")

    raw: dict[str, Any] = {
        "id": f"checkout-{ids}",
        "allocation": {"source": "assignments", "cell_column": "variant",
                       **({"exposure_column": "exposed_at"} if exposure else {})},
        "users_source": "customers",
        "cells": list(CELLS), "control": "control", "shares": {"control": 0.6, "one_page": 0.3, "two_page": 0.1},
        "window": {"start": "2026-03-02", "end": "2026-03-08", "pre_days": 3},
        "sources": {
            "assignments": {"uri": str(root / "assignments.parquet"), "user_column": "customer_id",
                            "date_column": "exposed_at"},
            "customers": {"uri": str(root / "customers.parquet"), "user_column": "customer_id"},
            "orders": {"uri": str(root / "orders.parquet"), "user_column": "customer_id", "date_column": "ordered_at"},
            "visits": {"uri": str(root / "visits.parquet"), "user_column": "customer_id", "date_column": "visit_day"},
        },
        "dimensions": ["country", {"name": "platform", "source": "assignments"}],
        "metrics": [
            {"name": "revenue", "source": "orders", "value": "amount_usd", "where": "status = 'completed'"},
            {"name": "order_value", "source": "orders", "value": "amount_usd", "where": "status = 'completed'",
             "aggregation": "event_quantile", "quantiles": [0.5, 0.9]},
            {"name": "basket", "source": "orders", "value": "items * 2.5 + amount_usd / 3",
             "aggregation": "event_quantile"},
            {"name": "net", "source": "orders", "value": "net_usd", "aggregation": "event_quantile"},
            # divisions by zero (items is 0 in about a fifth of the orders): NULL, so left out, on every engine
            {"name": "per_item", "source": "orders", "value": "amount_usd / items", "where": "100 % items < 50",
             "aggregation": "event_quantile"},
            {"name": "item_revenue", "source": "orders", "value": "amount_usd / items"},
            {"name": "visit_seconds", "source": "visits", "value": "seconds", "where": "seconds > 0",
             "aggregation": "event_quantile", "quantiles": [0.25]},
        ],
        "daily": False,
    }
    return Raw(root, raw, ids)


@pytest.fixture(scope="module", params=[("string", True), ("integer", False)], ids=["string-ids-exposure",
                                                                                      "integer-ids-no-exposure"])
def events_raw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Raw:
    ids, exposure = request.param
    return _events_raw(tmp_path_factory.mktemp(f"events-{ids}"), ids, exposure, seed=31 if exposure else 5)


@pytest.mark.spark
def test_spark_builds_the_same_events_tables_as_duckdb(events_raw: Raw, tmp_path: Path, spark: Any) -> None:
    spec = events_raw.spec
    duck, on_spark = run_both(spec, tmp_path, spark)
    assert set(duck.events) == set(on_spark.events) == {"order_value", "basket", "net", "per_item", "visit_seconds"}
    assert_same_table(read(duck.analysis), read(on_spark.analysis))
    allocated = set(read(duck.analysis).column("user_id").to_pylist())
    for name in duck.events:
        d, s = read(duck.events[name]), read(on_spark.events[name])
        assert s.schema.field("_xp_cluster").type == pa.int16() and s.schema.field("_xp_cell").type == pa.int16()
        assert d.schema.field("value").type == pa.float64()
        assert d.column_names == ["user_id", "cell", "country", "platform", "value", "_xp_cell", "_xp_cluster"]
        assert_same_table(d, s)
        assert d.num_rows > 100, name
        # the unit cluster and cell index follow the documented rules on both engines
        for t in (d, s):
            assert t.column("_xp_cluster").to_pylist() == unit_clusters_py(t.column("user_id").to_pylist())
            assert t.column("_xp_cell").to_pylist() == [CELLS.index(c) for c in t.column("cell").to_pylist()]
        units = set(d.column("user_id").to_pylist())
        assert units < allocated  # only analysed units, and some analysed units have no event
        assert d.column("country").null_count > 0 and d.column("platform").null_count > 0
        assert on_spark.events[name].manifest["engine"] == "spark" and on_spark.events[name].manifest["metric"] == name
    # x / 0 is NULL (not inf, not an error) in the per-unit sum too
    item_revenue = read(duck.analysis).column("item_revenue")
    assert pc.sum(pc.is_inf(item_revenue)).as_py() == 0 and pc.max(item_revenue).as_py() > 0


@pytest.mark.spark
def test_nanosecond_timestamps_written_by_pandas_read_the_same_on_spark(
    events_raw: Raw, tmp_path: Path, spark: Any
) -> None:
    """pyarrow (and pandas) write nanosecond timestamps by default; Spark refuses them as they are and the engine
    reads them as microseconds (``spark_engine._as_micros``): the tables equal DuckDB's, which reads them natively."""
    import copy

    raw = copy.deepcopy(events_raw.raw)
    nanos = tmp_path / "nanos"
    nanos.mkdir()
    converted = 0
    for source in raw["sources"].values():
        table = pq.read_table(source["uri"])
        fields = [pa.field(f.name, pa.timestamp("ns", f.type.tz)) if pa.types.is_timestamp(f.type) else f
                  for f in table.schema]
        converted += sum(pa.types.is_timestamp(f.type) for f in table.schema)
        source["uri"] = str(nanos / Path(source["uri"]).name)
        pq.write_table(table.cast(pa.schema(fields)), source["uri"])  # pyarrow's default: ns stays ns
    assert converted >= 2 and pq.read_schema(raw["sources"]["assignments"]["uri"]).field("exposed_at").type.unit == "ns"
    duck, on_spark = run_both(ExperimentSpec.parse(raw), tmp_path, spark)
    assert_same_table(read(duck.analysis), read(on_spark.analysis))
    for name in duck.events:
        assert_same_table(read(duck.events[name]), read(on_spark.events[name]))
    assert_same_table(read(duck.analysis), read(run_both(events_raw.spec, tmp_path / "micros", spark)[0].analysis))


def _order_value(row: dict[str, Any]) -> float | None:
    return row["amount_usd"] if row["status"] == "completed" else None


def _per_item(row: dict[str, Any]) -> float | None:
    items = row["items"]
    if not items or row["amount_usd"] is None or not 100 % items < 50:
        return None
    return float(row["amount_usd"] / items)


def _expected_events(r: Raw, exposure: bool, value: Any) -> list[tuple[Any, str, float]]:
    """The events of one metric (``value``: the row's value, None when it does not count) by the rule of
    sql/events.py, read off the raw files in Python."""
    a = pq.read_table(r.root / "assignments.parquet").to_pylist()
    cells: dict[Any, set[str]] = {}
    first: dict[Any, datetime | None] = {}
    for row in a:
        u = row["customer_id"]
        if row["variant"] in CELLS:
            cells.setdefault(u, set()).add(row["variant"])
            e = row["exposed_at"]
            if e is not None:
                first[u] = e if first.get(u) is None else min(first[u], e)  # type: ignore[type-var]
            else:
                first.setdefault(u, None)
    out = []
    for row in pq.read_table(r.root / "orders.parquet").to_pylist():
        u, t, v = row["customer_id"], row["ordered_at"], value(row)
        if len(cells.get(u, ())) != 1 or v is None:
            continue
        if exposure:
            f = first.get(u)
            if f is None or f >= END_NEXT:
                continue
            start = max(f, START)
        else:
            start = START
        if start <= t < END_NEXT:
            out.append((u, next(iter(cells[u])), v))
    return out


@pytest.mark.parametrize("metric", ["order_value", "per_item"])
def test_duckdb_events_table_follows_the_window_rule(events_raw: Raw, tmp_path: Path, metric: str) -> None:
    """The engines are compared with each other above; here DuckDB's events with plain Python."""
    exposure = events_raw.raw["allocation"].get("exposure_column") is not None
    got = read(run_stage1(events_raw.spec, str(tmp_path), engine="duckdb").events[metric])
    rows = list(zip(got.column("user_id").to_pylist(), got.column("cell").to_pylist(),
                    got.column("value").to_pylist(), strict=True))

    def key(r: tuple[Any, str, float]) -> tuple[str, str, float]:
        return (str(r[0]), r[1], -math.inf if math.isnan(r[2]) else r[2])

    want = _expected_events(events_raw, exposure, {"order_value": _order_value, "per_item": _per_item}[metric])
    assert len(want) > 100
    assert sorted(map(key, rows)) == sorted(map(key, want))
    assert not any(math.isinf(v) for _, _, v in rows)


# --- (b) a quasi-experiment ---------------------------------------------------------------------------------------

QUASI_CONFIG = QuasiConfig(customers=300, weeks_before=2, weeks_after=2, seed=3)


def quasi_raw(root: Path, period: str = "week", comparison: list[str] | None = None) -> dict[str, Any]:
    cfg = QUASI_CONFIG
    return {
        "id": f"price-change-{period}",
        "design": "quasi",
        "quasi": {"group_column": "region", "treated": ["north", "west"], "change_date": cfg.change_date.isoformat(),
                  "period": period, **({"comparison": comparison} if comparison else {})},
        "users_source": "customers",
        "window": {"start": cfg.start.isoformat(), "end": cfg.end.isoformat()},
        "sources": {"customers": {"uri": str(root / "customers.parquet"), "user_column": "customer_id"},
                    "orders": {"uri": str(root / "orders.parquet"), "user_column": "customer_id",
                               "date_column": "ordered_at"}},
        "dimensions": ["tier"],
        "metrics": [
            {"name": "revenue", "source": "orders", "value": "amount"},
            {"name": "orders", "source": "orders", "aggregation": "count"},
            {"name": "big_orders", "source": "orders", "aggregation": "count", "where": "items >= 3"},
            {"name": "buyer", "source": "orders", "aggregation": "any"},
            {"name": "per_item", "source": "orders", "value": "amount / items", "where": "100 % items < 50"},
            {"name": "order_value", "source": "orders", "value": "amount", "aggregation": "event_quantile"},
        ],
    }


@pytest.fixture(scope="module")
def quasi_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """synthetic_quasi's shop, few customers, plus the odd customers and orders of the module docstring."""
    root = tmp_path_factory.mktemp("quasi")
    data = draw(QUASI_CONFIG)
    cfg = QUASI_CONFIG
    ids = data.customers.column("customer_id").to_pylist()
    regions = data.customers.column("region").to_pylist()
    extra_ids = ["x-null", "x-mars", "x-two", "x-two", "x-quiet"]
    extra_regions = [None, "mars", "north", "south", "west"]
    tiers = [None if i % 10 == 0 else ("gold" if i % 3 else "basic") for i in range(len(ids) + len(extra_ids))]
    pq.write_table(pa.table({"customer_id": pa.array(ids + extra_ids, pa.string()),
                             "region": pa.array(regions + extra_regions, pa.string()),
                             "tier": pa.array(tiers, pa.string())}), root / "customers.parquet")
    utc = data.orders.schema.field("ordered_at").type
    start = datetime(cfg.start.year, cfg.start.month, cfg.start.day)
    change = datetime(cfg.change_date.year, cfg.change_date.month, cfg.change_date.day)
    end_next = datetime(cfg.end.year, cfg.end.month, cfg.end.day) + timedelta(days=1)
    edges = [start, start - timedelta(microseconds=1), change, change - timedelta(microseconds=1),
             end_next - timedelta(microseconds=1), end_next]
    who = [ids[0], ids[1], ids[2], "x-null", "x-mars", "x-two", "ghost"]
    extra = pa.table({
        "order_id": pa.array(range(10**6, 10**6 + len(edges) * len(who)), pa.int64()),
        "customer_id": pa.array([u for u in who for _ in edges], pa.string()),
        "ordered_at": pa.array([t for _ in who for t in edges], pa.timestamp("us")).cast(utc),
        "amount": pa.array([None if j % 5 == 0 else 10.0 + j for j in range(len(edges) * len(who))], pa.float64()),
        "items": pa.array([j % 4 for j in range(len(edges) * len(who))], pa.int64()),
    })
    pq.write_table(pa.concat_tables([data.orders, extra]), root / "orders.parquet")
    return root


@pytest.mark.spark
@pytest.mark.parametrize("period,comparison", [("week", None), ("day", ["south", "east", "central"])])
def test_spark_builds_the_same_quasi_tables_as_duckdb(quasi_root: Path, tmp_path: Path, spark: Any, period: str,
                                                      comparison: list[str] | None) -> None:
    spec = ExperimentSpec.parse(quasi_raw(quasi_root, period, comparison))
    duck, on_spark = run_both(spec, tmp_path, spark)
    analysis, panel = read(duck.analysis), read(duck.user_day)
    assert_same_table(analysis, read(on_spark.analysis))
    assert_same_table(panel, read(on_spark.user_day))
    assert_same_table(read(duck.events["order_value"]), read(on_spark.events["order_value"]))
    assert panel.schema.field("day").type == pa.int32()
    from xpcompute.quasi import event_times

    times = event_times(spec)
    assert sorted(set(panel.column("day").to_pylist())) == times == list(
        range(-2, 2) if period == "week" else range(-14, 14))
    units = set(analysis.column("user_id").to_pylist())
    assert panel.num_rows == len(units) * len(times)
    # no region, or regions of both groups: left out; an unlisted region is comparison unless comparison is listed
    assert {"x-null", "x-two"}.isdisjoint(units) and "x-quiet" in units
    cells = dict(zip(analysis.column("user_id").to_pylist(), analysis.column("cell").to_pylist(), strict=True))
    assert cells["x-quiet"] == "treated" and set(cells.values()) == {"treated", "comparison"}
    assert cells.get("x-mars") == (None if comparison else "comparison")
    coast = {u for u, r in zip(*(pq.read_table(quasi_root / "customers.parquet").column(c).to_pylist()
                                 for c in ("customer_id", "region")), strict=True) if r == "coast"}
    assert coast and coast.isdisjoint(units) == bool(comparison)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_quasi_stage1_sql_matches_golden_files(dialect: str) -> None:
    spec = ExperimentSpec.parse(quasi_raw(Path("data")))
    texts = stage1_sql(spec, dialect, kinds={"orders": "timestamp"})
    assert set(texts) == {"analysis", "user_day", "events.order_value"}
    for table, text in texts.items():
        golden_check(f"stage1_quasi_{table.replace('.', '_')}.{dialect}.sql", dialect, text)


@pytest.fixture
def quasi_duck(quasi_root: Path, tmp_path: Path) -> Iterator[tuple[ExperimentSpec, Stage1Result]]:
    spec = ExperimentSpec.parse(quasi_raw(quasi_root))
    yield spec, run_stage1(spec, str(tmp_path), engine="duckdb")


def test_trino_quasi_golden_sql_builds_duckdbs_tables(quasi_root: Path,
                                                      quasi_duck: tuple[ExperimentSpec, Stage1Result]) -> None:
    """The Trino golden text (read from a catalog's tables ``xp_customers``, ``xp_orders``), transpiled by sqlglot
    and run by DuckDB, gives the tables DuckDB's own run published."""
    _, duck = quasi_duck
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name in ("customers", "orders"):
        con.execute(f"CREATE VIEW xp_{name} AS SELECT * FROM read_parquet('{quasi_root / name}.parquet')")
    published = {"analysis": duck.analysis, "user_day": duck.user_day, "events_order_value": duck.events["order_value"]}
    for table, want in published.items():
        text = (GOLDEN / f"stage1_quasi_{table}.trino.sql").read_text()
        got = con.sql(sqlglot.transpile(text, read="trino", write="duckdb")[0]).to_arrow_table()
        assert_same_table(read(want), got.cast(read(want).schema))
