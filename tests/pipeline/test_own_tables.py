"""Stage 1 on a team's own tables: string ids, exposure timestamps, timestamp and date event columns.

Each unit below is built to hit one rule of the window (``docs/experiment-yaml.md``),
so a regression names the rule it broke: events before a unit's exposure do
not count, the window's last day counts until midnight, the pre-period is the
days before the unit's own exposure, units exposed after the window or in two
cells are left out, and dimensions come from the users or the allocation table.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xpcompute.errors import ColumnTypeError, InputError
from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline import run_stage1
from xpcompute.pipeline.stage1 import validate_sources


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def write(folder: Path, name: str, columns: dict[str, list[object]], types: dict[str, pa.DataType] | None = None) -> str:
    arrays = {k: pa.array(v, type=(types or {}).get(k)) for k, v in columns.items()}
    path = folder / f"{name}.parquet"
    pq.write_table(pa.table(arrays), path)
    return str(path)


def spec_for(folder: Path, exposure: bool = True, **changes: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "id": "checkout",
        "allocation": {"source": "assignments", "cell_column": "variant",
                       **({"exposure_column": "exposed_at"} if exposure else {})},
        "users_source": "customers",
        "cells": ["control", "treat"], "control": "control",
        "window": {"start": "2026-03-02", "end": "2026-03-08", "pre_days": 3},
        "sources": {
            "assignments": {"uri": str(folder / "assignments.parquet"), "user_column": "customer_id",
                            "date_column": "exposed_at"},
            "customers": {"uri": str(folder / "customers.parquet"), "user_column": "customer_id"},
            "orders": {"uri": str(folder / "orders.parquet"), "user_column": "customer_id", "date_column": "ordered_at"},
            "visits": {"uri": str(folder / "visits.parquet"), "user_column": "customer_id", "date_column": "day"},
        },
        "dimensions": ["country", {"name": "platform", "source": "assignments"}],
        "metrics": [
            {"name": "revenue", "source": "orders", "value": "amount", "where": "status = 'ok'"},
            {"name": "visit_days", "source": "visits", "value": "day", "aggregation": "count_distinct"},
        ],
        "covariates": [{"name": "pre_revenue", "metric": "revenue"}],
        "daily": True,
    }
    raw.update(changes)
    return raw


@pytest.fixture()
def tables(tmp_path: Path) -> Path:
    write(tmp_path, "assignments", {
        "customer_id": ["a", "b", "c", "d", "d", "e", "e"],
        "variant": ["control", "treat", "treat", "control", "control", "control", "treat"],
        "exposed_at": [ts("2026-03-04 15:00"), ts("2026-02-20 09:00"), ts("2026-03-09 00:30"),
                       ts("2026-03-06 10:00"), ts("2026-03-05 10:00"), ts("2026-03-03 00:00"), ts("2026-03-03 00:00")],
        "platform": ["ios", "web", "web", "android", "android", "ios", "ios"],
    })
    write(tmp_path, "customers", {"customer_id": ["a", "b", "c", "d", "e"], "country": ["US", "DE", "US", "FR", "US"]})
    write(tmp_path, "orders", {
        "customer_id": ["a", "a", "a", "a", "a", "b", "b", "d", "d"],
        "ordered_at": [ts("2026-03-04 14:59"),   # before a's exposure: pre-period
                       ts("2026-03-04 15:00"),   # at exposure: counts
                       ts("2026-03-08 23:59"),   # last day, late evening: counts
                       ts("2026-03-09 00:00"),   # after the window
                       ts("2026-03-01 16:00"),   # 3 days before exposure day: pre-period
                       ts("2026-02-27 12:00"),   # before the window start; b started at the window start: pre
                       ts("2026-03-02 00:00"),
                       ts("2026-03-05 09:59"),   # d's first exposure is 03-05 10:00: pre
                       ts("2026-03-05 10:00")],
        "amount": [1.0, 10.0, 100.0, 1000.0, 10000.0, 2.0, 20.0, 3.0, 30.0],
        "status": ["ok"] * 9,
    })
    write(tmp_path, "visits", {
        "customer_id": ["a", "a", "a", "b"],
        "day": [datetime(2026, 3, 3).date(), datetime(2026, 3, 4).date(), datetime(2026, 3, 4).date(),
                datetime(2026, 3, 8).date()],
    })
    return tmp_path


def rows(table: pa.Table) -> dict[str, dict[str, object]]:
    return {r["user_id"]: r for r in table.to_pylist()}


def test_each_unit_is_analysed_from_its_first_exposure(tables: Path, tmp_path: Path) -> None:
    spec = ExperimentSpec.parse(spec_for(tables))
    out = run_stage1(spec, str(tmp_path / "out"))
    got = rows(out.analysis.read())
    assert set(got) == {"a", "b", "d"}  # c exposed after the window, e in two cells
    assert got["a"]["revenue"] == 110.0 and got["a"]["pre_revenue"] == 10001.0
    assert got["b"]["revenue"] == 20.0 and got["b"]["pre_revenue"] == 2.0
    assert got["d"]["revenue"] == 30.0 and got["d"]["pre_revenue"] == 3.0
    # a date column counts from the exposure's day: 03-04 (twice) is one day, 03-03 is before
    assert got["a"]["visit_days"] == 1 and got["b"]["visit_days"] == 1
    assert got["a"]["platform"] == "ios" and got["a"]["country"] == "US" and got["d"]["platform"] == "android"
    assert out.analysis.read().schema.field("user_id").type == pa.string()


def test_user_day_rows_start_on_each_units_first_day(tables: Path, tmp_path: Path) -> None:
    spec = ExperimentSpec.parse(spec_for(tables))
    daily = run_stage1(spec, str(tmp_path / "out")).user_day
    assert daily is not None
    by_unit: dict[str, list[int]] = {}
    revenue: dict[tuple[str, int], float] = {}
    for r in daily.read().to_pylist():
        by_unit.setdefault(r["user_id"], []).append(r["day"])
        revenue[(r["user_id"], r["day"])] = r["revenue"]
    assert sorted(by_unit["a"]) == [2, 3, 4, 5, 6] and sorted(by_unit["b"]) == list(range(7))
    assert revenue[("a", 2)] == 10.0 and revenue[("a", 6)] == 100.0


def test_without_exposure_the_window_is_the_same_for_everyone(tables: Path, tmp_path: Path) -> None:
    spec = ExperimentSpec.parse(spec_for(tables, exposure=False, covariates=[]))
    got = rows(run_stage1(spec, str(tmp_path / "out")).analysis.read())
    assert set(got) == {"a", "b", "c", "d"}
    assert got["a"]["revenue"] == 111.0  # the last day counts until midnight even without exposure


def test_sources_are_checked_with_messages_that_say_what_to_fix(tables: Path) -> None:
    write(tables, "customers", {"customer_id": [1, 2], "country": ["US", "DE"]})
    spec = ExperimentSpec.parse(spec_for(tables))
    with pytest.raises(ColumnTypeError, match="unit id columns must all be integers or all be strings"):
        validate_sources(spec)
    bad = spec_for(tables, metrics=[{"name": "revenue", "source": "orders", "value": "price"}], covariates=[])
    write(tables, "customers", {"customer_id": ["a"], "country": ["US"]})
    with pytest.raises(InputError, match=r"source 'orders' .* has no column 'price'"):
        validate_sources(ExperimentSpec.parse(bad))


@pytest.mark.spark
def test_spark_computes_the_same_table(tables: Path, tmp_path: Path) -> None:
    spec = ExperimentSpec.parse(spec_for(tables))
    duck = run_stage1(spec, str(tmp_path / "duck"))
    spark = run_stage1(spec, str(tmp_path / "spark"), engine="spark")
    for a, b in ((duck.analysis, spark.analysis), (duck.user_day, spark.user_day)):
        assert a is not None and b is not None
        key = [("user_id", "ascending")] + ([("day", "ascending")] if "day" in a.read().schema.names else [])
        assert a.read().sort_by(key).to_pylist() == b.read().sort_by(key).to_pylist()
