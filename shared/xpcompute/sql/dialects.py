"""Per-dialect differences in one small table, and the one function that renders SQL text.

Queries are sqlglot expression trees built once (``sql/stage1.py``,
``sql/stage2.py``); sqlglot renders them per dialect (``DATE_DIFF('DAY', a, b)``
on DuckDB and Trino, ``DATEDIFF(DAY, a, b)`` on Spark; ``'it''s'`` against
``'it\\'s'``; ``"col"`` against ```col```). What sqlglot cannot know (how a
table is made visible to the engine, whether division by zero raises, how
results come back) lives in ``DIALECTS`` below, and the engines read it from
there rather than branching on names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlglot import exp

from xpcompute.errors import InputError

DialectName = Literal["duckdb", "spark", "trino"]


@dataclass(frozen=True)
class Dialect:
    """What differs between engines beyond what sqlglot renders."""

    name: DialectName
    sqlglot: str
    tables: Literal["registered", "temp_view", "catalog"]
    """How a Parquet table becomes queryable: an Arrow dataset registered in the
    connection (DuckDB), a session temporary view (Spark), or a table that must
    already exist in a catalog such as Hive or Iceberg (Trino)."""
    division_by_zero_raises: bool
    """Spark (ANSI mode, the default in 4.x) and Trino raise on x/0; DuckDB returns inf or NaN for ``/`` (and
    raises on ``//`` and integer ``%``). The builders therefore wrap every denominator in NULLIF(d, 0) for all
    dialects, their own and those of a team's expressions alike (``sql/stage1.zero_safe``)."""
    integer_division_truncates: bool
    """Trino's 7/2 is 3; sqlglot renders float division with a CAST there, and the
    builders cast integer sums to DOUBLE before dividing on every dialect."""
    results: Literal["arrow", "rows"]
    """How a stage-2 result comes back: an Arrow table (DuckDB, Spark 4 ``toArrow``) or DB-API rows (Trino)."""
    writes_tables: bool
    """Whether stage 1 can run on the engine here (Trino writes need a writable catalog)."""
    stage1_steps: Literal["materialize", "inline"]
    """How the engine runs a ``sql.stage1.Stage1Plan``: each step as a temporary table
    in turn (DuckDB, bounded memory) or as CTEs of one statement (Spark and Trino plan it whole)."""


DIALECTS: dict[str, Dialect] = {
    "duckdb": Dialect("duckdb", "duckdb", "registered", False, False, "arrow", True, "materialize"),
    "spark": Dialect("spark", "spark", "temp_view", True, False, "arrow", True, "inline"),
    "trino": Dialect("trino", "trino", "catalog", True, True, "rows", False, "inline"),
}


def dialect(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except KeyError:
        raise InputError(f"unknown SQL dialect {name!r}; use one of: {', '.join(DIALECTS)}") from None


def render(query: exp.Expr, name: str, pretty: bool = False) -> str:
    """SQL text of ``query`` in dialect ``name``, every identifier quoted."""
    return query.sql(dialect=dialect(name).sqlglot, pretty=pretty, identify=True)


def table(name: str) -> exp.Table:
    """A table reference from a dotted name (``analysis`` or ``catalog.schema.table``)."""
    parts = name.split(".")
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise InputError(f"table name {name!r} must be NAME, SCHEMA.NAME or CATALOG.SCHEMA.NAME")
    return exp.table_(parts[-1], db=parts[-2] if len(parts) > 1 else None, catalog=parts[-3] if len(parts) > 2 else None)
