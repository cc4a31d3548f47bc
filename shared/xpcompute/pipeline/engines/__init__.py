"""SQL engines behind one protocol: DuckDB (embedded default), Spark, Trino.

``make_engine`` builds one by name; ``engine_scope`` lends a caller's engine
or builds (and afterwards closes) a named one, so drivers accept either.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from xpcompute.errors import InputError
from xpcompute.pipeline.engines.base import Engine, ParquetFiles, resolve_parquet

EngineLike = str | Engine
ENGINE_NAMES = ("duckdb", "spark", "trino")


def make_engine(name: str) -> Engine:
    """A fresh engine: ``duckdb`` (in-memory), ``spark`` (the shared local session) or ``trino`` (from env)."""
    if name == "duckdb":
        from xpcompute.pipeline.engines.duckdb_engine import DuckDBEngine

        return DuckDBEngine()
    if name == "spark":
        from xpcompute.pipeline.engines.spark_engine import SparkEngine

        return SparkEngine()
    if name == "trino":
        from xpcompute.pipeline.engines.trino_engine import TrinoEngine

        return TrinoEngine()
    raise InputError(f"unknown engine {name!r}; use one of: {', '.join(ENGINE_NAMES)}")


@contextlib.contextmanager
def engine_scope(engine: EngineLike) -> Iterator[Engine]:
    """Yield ``engine`` itself, or a new engine of that name that is closed afterwards."""
    if isinstance(engine, str):
        owned = make_engine(engine)
        try:
            yield owned
        finally:
            owned.close()
    else:
        yield engine


__all__ = ["ENGINE_NAMES", "Engine", "EngineLike", "ParquetFiles", "engine_scope", "make_engine", "resolve_parquet"]
