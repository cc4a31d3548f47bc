"""Trino, the production engine for stage 2, through the ``trino`` DB-API client.

Trino reads tables from its catalogs (Hive, Iceberg, memory, ...), not from
files handed to it, so ``register`` maps the pipeline's logical table name to
a catalog table (``tables={"analysis": "hive.xp.exp42_analysis"}``). The
connection comes from ``XPCOMPUTE_TRINO_URL``, e.g.
``http://analyst@trino.internal:8080/hive/xp`` (user, host, port, and optional
default catalog and schema). No Trino server runs on the development machine:
the SQL is checked against golden files, and a live test runs where the URL
is set.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
from sqlglot import exp

from xpcompute.errors import InputError, StorageError
from xpcompute.pipeline.engines.base import ParquetFiles
from xpcompute.sql.dialects import DIALECTS, Dialect, table

URL_ENV = "XPCOMPUTE_TRINO_URL"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")


def connect(url: str) -> Any:
    """A DB-API connection from ``http(s)://user@host:port[/catalog[/schema]]``."""
    import trino

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InputError(f"{URL_ENV}={url!r}: use http(s)://user@host:port/catalog/schema")
    parts = [p for p in parsed.path.split("/") if p]
    return trino.dbapi.connect(
        host=parsed.hostname,
        port=parsed.port or (443 if parsed.scheme == "https" else 8080),
        user=parsed.username or "xpcompute",
        http_scheme=parsed.scheme,
        catalog=parts[0] if parts else None,
        schema=parts[1] if len(parts) > 1 else None,
    )


class TrinoEngine:
    """Stage-2 queries on Trino; tables are catalog tables named in ``tables``."""

    def __init__(self, url: str | None = None, tables: Mapping[str, str] | None = None, connection: Any | None = None) -> None:
        self.url = url or os.environ.get(URL_ENV)
        if connection is None and not self.url:
            raise InputError(f"the Trino engine needs a server: set {URL_ENV}=http://user@host:port/catalog/schema")
        self._connection = connection
        self.tables: dict[str, str] = {}
        for name, target in (tables or {}).items():
            self.map_table(name, target)

    @property
    def dialect(self) -> Dialect:
        return DIALECTS["trino"]

    @property
    def connection(self) -> Any:
        if self._connection is None:
            assert self.url is not None
            self._connection = connect(self.url)
        return self._connection

    def map_table(self, name: str, target: str) -> None:
        """Point the logical table ``name`` at the catalog table ``target`` (``catalog.schema.table``)."""
        if not _NAME.match(target):
            raise InputError(f"Trino table {target!r} must be [catalog.][schema.]table with plain identifiers")
        self.tables[name] = target

    def register(self, name: str, files: ParquetFiles) -> None:
        if name not in self.tables:
            raise InputError(
                f"Trino reads catalog tables, not files: map {name!r} to the table over {files.uri}, "
                f"e.g. TrinoEngine(tables={{{name!r}: 'hive.xp.my_experiment_{name}'}})"
            )

    def table_ref(self, name: str) -> exp.Table:
        if name not in self.tables:
            raise InputError(f"no Trino table mapped for {name!r}")
        return table(self.tables[name])

    def fetch(self, sql: str) -> pa.Table:
        import trino

        cursor = self.connection.cursor()
        try:
            cursor.execute(sql)
            rows = cursor.fetchall()
            names = [d[0] for d in cursor.description]
        except trino.exceptions.TrinoUserError as exc:
            raise InputError(f"Trino refused the generated query: {exc.message}") from exc
        except (trino.exceptions.TrinoQueryError, trino.exceptions.HttpError, OSError) as exc:
            raise StorageError(f"Trino at {self.url} failed: {exc}") from exc
        finally:
            cursor.close()
        return pa.table({n: pa.array([r[i] for r in rows]) for i, n in enumerate(names)})

    def write(self, sql: str, filesystem: object, directory: str, steps: Sequence[tuple[str, str]] = ()) -> pa.Schema:
        raise InputError("stage 1 does not run on Trino here; use engine='duckdb' or 'spark'")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
