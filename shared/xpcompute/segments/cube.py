"""The segment cube: moments by (cell, every declared dimension, half), where the half is a hash of the unit id.

Segment discovery (``segments.discovery``) needs no raw rows: an honest tree
chooses its splits on one half of the units and estimates on the other, so
the cube that the cube engine keeps (``coordinator/slicing.py``: moments by
cell x every dimension) gains one more key, ``_half``, fixed per unit by a
deterministic hash of its id:

    half = 1 if the last hex digit of MD5(CAST(unit AS VARCHAR)) is odd, else 0

i.e. the lowest bit of the unit id's MD5 digest (``HALF_SQL``, a sqlglot
expression, so DuckDB, Spark and Trino compute the same halves: MD5 is the
same function everywhere, unlike engine-specific ``hash()`` functions whose
values change between versions). The same unit is in the same half in
every analysis, every slice and every engine, and the halves are
independent of the treatment assignment (a hash of the id, not of the cell).
The cube is stored with the slicing cubes (``keys.cube``, put-if-absent, one
job builds it: ``slicing._cube``), so it is built once per analysis table run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from xpcompute.compression.encode import is_categorical
from xpcompute.compression.lossless import compress_moments
from xpcompute.compression.schema import CompressedTable
from xpcompute.compression.transform import ColumnTransform
from xpcompute.errors import MissingColumnError
from xpcompute.lazy import lazy
from xpcompute.segments.report import HALF_RULE
from xpcompute.storage.objects import ObjectStore

if TYPE_CHECKING:
    from sqlglot import exp
else:  # sqlglot loads when the cube's SQL is composed: the api (which reads segment reports) skips its import
    exp = lazy("sqlglot", "exp")

#: the cube key that holds each unit's half (0: the split half, 1: the estimation half)
HALF_COLUMN = "_half"
_ODD = ("1", "3", "5", "7", "9", "b", "d", "f")


def half_sql(unit: str) -> exp.Expression:
    """``CASE WHEN SUBSTRING(MD5(CAST(unit AS VARCHAR)), 32, 1) IN (odd hex digits) THEN 1 ELSE 0 END``."""
    digest = exp.func("MD5", exp.cast(exp.column(unit), "VARCHAR"))
    last = exp.Substring(this=digest, start=exp.Literal.number(32), length=exp.Literal.number(1))
    odd = last.isin(*[exp.Literal.string(d) for d in _ODD])
    return exp.Case(ifs=[exp.If(this=odd, true=exp.Literal.number(1))], default=exp.Literal.number(0))


def half_query(unit: str, table: str = "units", dialect: str = "duckdb") -> str:
    """``SELECT <half_sql> AS _half FROM table`` in ``dialect``."""
    from sqlglot import parse_one

    select = exp.select(half_sql(unit).as_(HALF_COLUMN)).from_(table)
    return str(parse_one(select.sql("duckdb"), read="duckdb").sql(dialect))


def assign_halves(units: pa.ChunkedArray | pa.Array, name: str = "unit") -> pa.Array:
    """Each unit's half, computed by DuckDB with ``half_sql`` (in row order)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET preserve_insertion_order = true")
        con.register("units", pa.table({name: units}))
        result = con.sql(half_query(name)).to_arrow_table()
    finally:
        con.close()
    return result.column(HALF_COLUMN).combine_chunks().cast(pa.int8())


def build_cube(
    table: pa.Table,
    unit: str,
    treatment: str,
    dimensions: Sequence[str],
    metrics: Mapping[str, Sequence[str]],
    transforms: Mapping[str, ColumnTransform] | None = None,
) -> CompressedTable:
    """Group ``table`` by (treatment, dimensions, half) into the moments of each metric (nulls a group of their own)."""
    from xpcompute.coordinator.slicing import _restore_nulls, _with_null_groups

    missing = [c for c in (unit, treatment, *dimensions) if c not in table.column_names]
    if missing:
        raise MissingColumnError(f"the segment cube needs column(s) {', '.join(missing)} in the analysis table")
    table = table.append_column(HALF_COLUMN, assign_halves(table.column(unit), unit))
    table = _with_null_groups(table, dimensions)
    cube = compress_moments(table, [treatment, *dimensions, HALF_COLUMN], {m: list(c) for m, c in metrics.items()},
                            transforms=transforms)
    return _restore_nulls(cube, dimensions)


def segment_cube(
    store: ObjectStore,
    analysis_id: str,
    table_prefix: str,
    treatment: str,
    dimensions: Sequence[str],
    metrics: Sequence[str],
    covariates: Mapping[str, Sequence[str]] | None = None,
    unit: str = "user_id",
) -> CompressedTable:
    """The analysis's segment cube: read from the store, or built from the published table and stored.

    ``covariates``: per metric, the continuous covariates whose moments the cube keeps (the CATE model's
    CUPED adjustment in the heterogeneity tests); categorical ones and columns not in the table are skipped.
    """
    from xpcompute.coordinator.slicing import _cube, _read_cached, _signature, table_transforms
    from xpcompute.pipeline.tables import open_table

    published = open_table(table_prefix, store)
    schema = published.schema
    names = set(schema.names)
    plan = {m: [c for c in (covariates or {}).get(m, ()) if c in names and not is_categorical(schema.field(c).type)]
            for m in metrics if m in names}
    if not plan:
        raise MissingColumnError(f"none of the metrics {', '.join(metrics)} is a column of {table_prefix}")
    dims = [d for d in dimensions if d in names]

    def build() -> CompressedTable:
        needed = sorted({unit, treatment, *dims, *plan, *(c for cs in plan.values() for c in cs)})
        table = _read_cached(published, needed)
        return build_cube(table, unit, treatment, dims, plan, transforms=table_transforms(published, plan, table))

    signature = _signature("segments", HALF_RULE, published.run_id, unit, treatment, dims, plan)
    cube = _cube(store, analysis_id, signature, build)
    return cube if cube is not None else build()  # another job is building it: build here without storing
