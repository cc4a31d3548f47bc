"""Stage 2 of an event-quantile metric: the SQL route (DuckDB buckets through a guide table) equals the NumPy route.

Both read the same events table and use the same pooled edges and DuckDB's unit clusters, so they must give the
same (cell, cluster, bucket) counts, the same per-(cell, bucket) value ranges and therefore the same records,
on quantile-spaced buckets (continuous values with negative ones and zeros, and a heavy tail) and on lossless
ones (few distinct values), with and without a slice filter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xpcompute.compression.events import Guide
from xpcompute.experiment import ExperimentSpec
from xpcompute.models import fit_compressed
from xpcompute.pipeline.events import event_histogram
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.pipeline.tables import publish_table
from xpcompute.spec import FitSpec
from xpcompute.storage import keys
from xpcompute.storage.objects import open_store


def _experiment() -> ExperimentSpec:
    return ExperimentSpec.parse({
        "id": "routes", "allocation": {"source": "alloc", "cell_column": "cell"}, "users_source": "alloc",
        "cells": ["control", "treatment"], "control": "control",
        "window": {"start": "2026-01-01", "end": "2026-01-14", "pre_days": 7},
        "sources": {"alloc": {"uri": "a.parquet", "user_column": "user_id"},
                    "ev": {"uri": "e.parquet", "user_column": "user_id", "date_column": "t"}},
        "dimensions": ["platform"],
        "metrics": [{"name": "x", "source": "ev", "value": "x", "aggregation": "event_quantile"}],
        "daily": False,
    })


def _publish(tmp_path: Path, values: np.ndarray, units: np.ndarray, seed: int) -> object:
    rng = np.random.default_rng(seed)
    cell = np.where(rng.random(units.max() + 1) < 0.5, "control", "treatment")[units]
    table = pa.table({"user_id": [f"id-{u}" for u in units], "cell": cell,
                      "platform": np.where(units % 3 == 0, "tv", "web"), "value": values})
    store = open_store(str(tmp_path))

    def write(fs: object, directory: str) -> pa.Schema:
        Path(directory).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, f"{directory}/part-0.parquet")
        return table.schema

    publish_table(store, keys.events_table("routes", "x"), write, {})
    return store


@pytest.mark.parametrize("kind", ["continuous", "lossless", "extreme"])
@pytest.mark.parametrize("slice_filter", [SliceFilter(), SliceFilter.where(platform="tv")])
def test_sql_route_equals_numpy_route(tmp_path: Path, kind: str, slice_filter: SliceFilter) -> None:
    rng = np.random.default_rng(4)
    n = 300_000
    units = rng.integers(0, 40_000, n)
    if kind == "continuous":
        values = np.exp(rng.normal(2, 1.5, n)) * np.where(rng.random(n) < 0.1, -1, 1)
        values[rng.random(n) < 0.05] = 0.0
    elif kind == "lossless":
        values = rng.integers(0, 120, n).astype(np.float64)
    else:  # a spread over 30 orders of magnitude: the guide may be off, the check sends it to NumPy
        values = np.exp(rng.normal(0, 12, n))
    store = _publish(tmp_path, values, units, 5)
    exp = _experiment()
    key = keys.events_table("routes", "x")
    sql = event_histogram(key, exp, "x", slice_filter, store, route="sql")
    ref = event_histogram(key, exp, "x", slice_filter, store, route="numpy")
    route = sql.layout.extra["event_quantile"]["route"]
    assert route == "sql" or kind == "extreme"  # the guide is exact on ordinary data: no fallback
    assert sql.layout.extra["event_quantile"]["lossless"] is (kind == "lossless")
    assert sql.layout.n_rows == ref.layout.n_rows

    def rows(t: pa.Table) -> list[tuple[object, ...]]:
        return sorted(zip(*(t.column(c).to_pylist() for c in ("cell", "cluster", "bucket", "n")), strict=True))

    assert rows(sql.table) == rows(ref.table)
    spec = FitSpec(metric="x", treatment="cell", model="event_quantile", quantiles=(0.1, 0.5, 0.9, 0.99),
                   bootstrap_reps=200)
    got = [r.model_dump(exclude={"notes"}) for r in fit_compressed(sql, spec)]
    want = [r.model_dump(exclude={"notes"}) for r in fit_compressed(ref, spec)]
    assert got == want


@pytest.mark.parametrize("sd", [0.5, 3.0, 12.0])
def test_bit_guide_equals_searchsorted(sd: float) -> None:
    """The NumPy route's bucketing (``BitGuide``) is exactly ``searchsorted(edges, v, side="right")``, negative
    values, zeros and infinities included."""
    from xpcompute.compression.events import BitGuide

    rng = np.random.default_rng(int(sd * 10))
    values = np.concatenate([np.exp(rng.normal(2, sd, 100_000)), -np.exp(rng.normal(0, sd, 10_000)), np.zeros(500),
                             [np.inf, -np.inf, 5e-324, -5e-324]])
    for n_edges in (0, 1, 7, 499):
        edges = np.unique(np.quantile(values[np.isfinite(values)], np.linspace(0, 1, n_edges + 2)[1:-1]))
        np.testing.assert_array_equal(BitGuide.of(edges).buckets(values), np.searchsorted(edges, values, side="right"))


def test_guide_is_exact_on_skewed_data_and_its_misses_break_the_check() -> None:
    """Where at most one edge shares a grid cell the guide equals searchsorted; a miss is a value outside its
    bucket's edges, which ``buckets_hold_their_values`` reports (so the SQL route never keeps a wrong bucket)."""
    from xpcompute.compression.events import buckets_hold_their_values

    rng = np.random.default_rng(9)
    for sd, exact in ((1.0, True), (12.0, False)):
        values = np.concatenate([np.exp(rng.normal(3, sd, 200_000)), -np.exp(rng.normal(0, 1, 5000)), np.zeros(100)])
        edges = np.unique(np.quantile(values, np.arange(1, 500) / 500, method="inverted_cdf"))
        g = Guide.of(edges)
        t = np.sign(values) * np.log1p(np.abs(values) / g.scale)
        cell = np.clip(np.floor((t - g.start) * g.inverse), 0, g.cells - 1).astype(np.int64)
        bucket = g.first[cell] - (values < g.below[cell]) + (values >= g.above[cell])
        truth = np.searchsorted(edges, values, side="right")
        if exact:
            np.testing.assert_array_equal(bucket, truth)
        miss = bucket != truth
        assert miss.any() or exact
        if miss.any():
            assert not buckets_hold_their_values(edges, bucket[miss], values[miss], values[miss])
            assert all(not buckets_hold_their_values(edges, bucket[i:i + 1], values[i:i + 1], values[i:i + 1])
                       for i in np.flatnonzero(miss)[:50])
