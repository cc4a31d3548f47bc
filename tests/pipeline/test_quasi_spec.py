"""The quasi-experiment YAML: what it implies, how it round-trips, what stage 1 builds, and every refusal's message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xpcompute.errors import XPError
from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline.stage1 import run_stage1, validate_sources
from xpcompute.pipeline.tables import open_table
from xpcompute.quasi import event_times
from xpcompute.storage import keys
from xpcompute.storage.objects import LocalObjectStore


def raw_spec(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "id": "price-change",
        "design": "quasi",
        "quasi": {"group_column": "region", "treated": ["north"], "change_date": "2026-03-16", "period": "week"},
        "users_source": "customers",
        "window": {"start": "2026-03-02", "end": "2026-03-29"},
        "sources": {"customers": {"uri": "customers.parquet", "user_column": "customer_id"},
                    "orders": {"uri": "orders.parquet", "user_column": "customer_id", "date_column": "day"}},
        "metrics": [{"name": "orders", "source": "orders", "aggregation": "count"}],
    }
    spec.update(over)
    return spec


def test_design_quasi_implies_cells_allocation_and_daily_and_round_trips() -> None:
    spec = ExperimentSpec.parse(raw_spec())
    assert spec.cells == ("comparison", "treated") and spec.control == "comparison" and spec.daily
    assert spec.allocation.source == "customers" and spec.allocation.cell_column == "region"
    assert event_times(spec) == [-2, -1, 0, 1]
    assert ExperimentSpec.parse(spec.canonical()) == spec
    assert ExperimentSpec.parse(spec.model_dump(mode="json")) == spec
    assert [s.model for m in spec.metrics for s in spec.fit_specs_for(m)] == ["did"]
    assert spec.fit_specs_for("orders")[0].reference_period == "-1"
    first = ExperimentSpec.parse(raw_spec(quasi={**raw_spec()["quasi"], "reference_period": -2}))
    assert first.fit_specs_for("orders")[0].reference_period == "-2"
    daily = ExperimentSpec.parse(raw_spec(quasi={**raw_spec()["quasi"], "period": "day"}))
    assert event_times(daily) == list(range(-14, 14))


@pytest.mark.parametrize("over,message", [
    ({"quasi": None}, "design: quasi needs a quasi block"),
    ({"design": "randomized", "cells": ["a", "b"], "control": "a"}, "only a quasi-experiment has a quasi block"),
    ({"quasi": {"group_column": "region", "treated": [], "change_date": "2026-03-16"}}, "quasi.treated"),
    ({"quasi": {"group_column": "region", "treated": ["north"], "comparison": ["north", "south"],
                "change_date": "2026-03-16"}}, "both treated and comparison"),
    ({"quasi": {"group_column": "Region!", "treated": ["north"], "change_date": "2026-03-16"}},
     "group_column 'Region!' must be a lowercase identifier"),
    ({"quasi": {"group_column": "region", "treated": ["north"], "change_date": "2026-03-02"}},
     "must be after window.start"),
    ({"quasi": {"group_column": "region", "treated": ["north"], "change_date": "2026-04-01"}},
     "on or before window.end"),
    ({"quasi": {"group_column": "region", "treated": ["north"], "change_date": "2026-03-17", "period": "week"}},
     "must be a whole number of weeks before it"),
    ({"window": {"start": "2026-03-02", "end": "2026-03-30"}}, "not a whole number of weeks"),
    ({"quasi": {"group_column": "region", "treated": ["north"], "change_date": "2026-03-16", "period": "month"}},
     "quasi.period"),
    ({"cells": ["control", "b"]}, "a quasi-experiment implies cells"),
    ({"allocation": {"source": "customers", "cell_column": "cell"}}, "a quasi-experiment implies allocation"),
    ({"allocation": {"source": "customers", "cell_column": "region", "exposure_column": "seen"}},
     "a quasi-experiment has no exposure"),
    ({"shares": {"comparison": 1, "treated": 1}}, "a quasi-experiment has no planned shares"),
    ({"daily": False}, "a quasi-experiment implies daily"),
    ({"quasi": {"group_column": "region", "treated": ["north"], "change_date": "2026-03-16", "period": "week",
                "reference_period": 2}}, "quasi.reference_period 2 is not a period of the window: its event times "
     "run from -2 to 1 (weeks relative to the change)"),
    ({"covariates": [{"name": "pre_orders", "metric": "orders"}]}, "covariates: model did on a quasi-experiment"),
])
def test_bad_quasi_specs_name_the_field(over: dict[str, Any], message: str) -> None:
    with pytest.raises(XPError) as info:
        ExperimentSpec.parse(raw_spec(**over))
    assert message in str(info.value)


def _write(root: Path) -> dict[str, Any]:
    pq.write_table(pa.table({"customer_id": ["a", "b", "c", "d", "e"],
                             "region": ["north", "south", "north", None, "east"]}), root / "customers.parquet")
    days = pa.array(["2026-03-01", "2026-03-02", "2026-03-15", "2026-03-16", "2026-03-29", "2026-03-30",
                     "2026-03-09"]).cast(pa.date32())
    pq.write_table(pa.table({"customer_id": ["a", "a", "a", "b", "b", "c", "e"], "day": days}),
                   root / "orders.parquet")
    out = raw_spec()
    for src in out["sources"].values():
        src["uri"] = str(root / src["uri"])
    return out


def test_stage1_builds_the_unit_by_event_week_panel(tmp_path: Path) -> None:
    spec = ExperimentSpec.parse(_write(tmp_path))
    validate_sources(spec)
    store = LocalObjectStore(tmp_path / "objects")
    run_stage1(spec, store)
    panel = open_table(keys.user_day_table(spec.id), store).read().to_pylist()
    got = {(r["user_id"], r["day"]): (r["cell"], r["orders"]) for r in panel}
    # d has no region (left out); the order on 03-01 and 03-30 are outside the window
    assert {u for u, _ in got} == {"a", "b", "c", "e"}
    assert set(got) == {(u, t) for u in "abce" for t in (-2, -1, 0, 1)}
    assert got["a", -2] == ("treated", 1) and got["a", -1] == ("treated", 1) and got["a", 0] == ("treated", 0)
    assert got["b", 0] == ("comparison", 1) and got["b", 1] == ("comparison", 1)
    assert got["e", -1] == ("comparison", 1) and got["e", -2] == ("comparison", 0) and got["c", 1] == ("treated", 0)


def test_a_missing_group_column_is_named(tmp_path: Path) -> None:
    raw = _write(tmp_path)
    raw["quasi"] = {**raw["quasi"], "group_column": "territory"}
    with pytest.raises(XPError, match="territory"):
        validate_sources(ExperimentSpec.parse(raw))


@pytest.mark.parametrize("dialect", ["duckdb", "spark", "trino"])
def test_stage1_sql_of_a_quasi_experiment_in_every_dialect(dialect: str) -> None:
    """The group mapping, the event-week index and the event times render in each engine's SQL, and the statement
    parses back in that dialect (only DuckDB runs here)."""
    import sqlglot

    from xpcompute.pipeline.stage1 import stage1_sql

    sql = stage1_sql(ExperimentSpec.parse(raw_spec()), dialect, kinds={"orders": "date"})["user_day"]
    flat = " ".join(sql.split())
    assert "THEN 'treated'" in flat and "THEN 'comparison'" in flat and "IN ('north')" in flat
    assert "FLOOR(" in flat and "/ CAST(7 AS DOUBLE)" in flat
    assert all(f"({t})" in flat for t in (-2, -1, 0, 1))
    assert sqlglot.parse_one(sql, read={"duckdb": "duckdb", "spark": "spark", "trino": "trino"}[dialect]) is not None
