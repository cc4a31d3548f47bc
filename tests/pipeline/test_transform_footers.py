"""The per-column shift and scale of a published table come from its Parquet footers, and equal a pass over the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from xpcompute.compression.transform import column_transforms
from xpcompute.errors import ColumnTypeError
from xpcompute.pipeline.stage2 import footer_ranges, table_transforms
from xpcompute.pipeline.tables import publish_table
from xpcompute.storage.objects import open_store


def publish(tmp_path: Path, table: pa.Table, rows_per_group: int = 1000) -> object:
    import pyarrow.parquet as pq

    store = open_store(str(tmp_path / "objects"))

    def write(fs: object, directory: str) -> pa.Schema:
        fs.create_dir(directory, recursive=True)  # type: ignore[attr-defined]
        for i, start in enumerate(range(0, table.num_rows, 2500)):
            pq.write_table(table.slice(start, 2500), f"{directory}/part-{i}.parquet", filesystem=fs,
                           row_group_size=rows_per_group)
        return table.schema

    return publish_table(store, "exp/analysis", write, {})


def test_footer_constants_equal_a_pass_over_the_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 10_000
    y = 1e9 + rng.normal(size=n)
    y[rng.integers(0, n, 50)] = np.nan
    mostly_null = pa.array([None] * (n - 3) + [1.5, -2.0, 7.0], pa.float64())
    table = pa.table({"y": y, "k": rng.integers(-5, 1_000_000, n), "sparse": mostly_null,
                      "cell": ["control", "treatment"] * (n // 2)})
    published = publish(tmp_path, table)
    names = ["y", "k", "sparse"]
    assert footer_ranges(published, names) is not None  # type: ignore[arg-type]
    from_footers = table_transforms(published, names)  # type: ignore[arg-type]
    assert from_footers == column_transforms(table, names)


def test_infinite_values_are_refused_either_way(tmp_path: Path) -> None:
    table = pa.table({"y": [1.0, 2.0, float("inf")] * 10})
    published = publish(tmp_path, table)
    with pytest.raises(ColumnTypeError, match="infinite"):
        table_transforms(published, ["y"])  # type: ignore[arg-type]
