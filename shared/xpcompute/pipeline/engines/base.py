"""The ``Engine`` protocol every SQL engine implements, and the Parquet inputs engines register.

An engine makes Parquet files queryable under a logical name, runs SQL text
rendered in its dialect, and either returns a small result as Arrow (stage 2)
or writes a large one as Parquet files into a directory (stage 1). The stage
drivers build the SQL; engines never see a metric or a slice.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.fs as pafs
from sqlglot import exp

from xpcompute.errors import NotFoundError
from xpcompute.sql.dialects import Dialect
from xpcompute.storage import keys
from xpcompute.storage.objects import split_uri, storage_errors

if TYPE_CHECKING:  # pyarrow.dataset imports pandas: only the paths that scan a table load it
    import pyarrow.dataset as ds


@dataclass(frozen=True)
class ParquetFiles:
    """Parquet files on one filesystem, read together as one table."""

    filesystem: pafs.FileSystem
    paths: tuple[str, ...]
    uri: str
    schema: pa.Schema

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def dataset(self) -> ds.Dataset:
        with storage_errors(f"opening {self.uri}"):
            import pyarrow.dataset as ds

            return ds.dataset(list(self.paths), schema=self.schema, format="parquet", filesystem=self.filesystem)

    def s3_uris(self) -> list[str]:
        """``s3a://bucket/key`` URIs for engines with a native S3 filesystem (a cluster's hadoop-aws)."""
        return [f"s3a://{p}" for p in self.paths]


@runtime_checkable
class Engine(Protocol):
    """A SQL engine the pipeline can run on."""

    @property
    def dialect(self) -> Dialect: ...

    def register(self, name: str, files: ParquetFiles) -> None:
        """Make ``files`` queryable as the table ``table_ref(name)``."""
        ...

    def table_ref(self, name: str) -> exp.Table:
        """How SQL in this engine's dialect refers to the table registered as ``name``."""
        ...

    def fetch(self, sql: str) -> pa.Table:
        """Run a query whose result is small and return it as Arrow."""
        ...

    def write(
        self, sql: str, filesystem: pafs.FileSystem, directory: str, steps: Sequence[tuple[str, str]] = ()
    ) -> pa.Schema:
        """Run a query and write its rows as zstd Parquet files into the fresh ``directory``.

        ``steps`` (name, query) are computed first, in order, as temporary tables
        the query (and later steps) read by name, and dropped afterwards.
        """
        ...

    def close(self) -> None:
        """Release what ``register`` and the queries held (not a shared session)."""
        ...


def resolve_parquet(uri: str, role: str) -> ParquetFiles:
    """The Parquet files at ``uri``: one file, a folder of files, or a published table (its manifest's files).

    A missing location raises ``NotFoundError`` naming ``role`` (e.g. ``source 'playback'``).
    """
    store, key = split_uri(uri)
    fs, _ = store.filesystem()
    base = store.path(key)
    with storage_errors(f"{role} at {uri}"):
        info = fs.get_file_info(base)
        if info.type == pafs.FileType.NotFound:
            raise NotFoundError(f"{role} not found at {uri}; check the path or generate the data first")
        if info.type == pafs.FileType.File:
            paths = [base]
        elif store.exists(keys.manifest(key)):
            from xpcompute.pipeline.tables import open_table

            table = open_table(key, store)
            return ParquetFiles(fs, tuple(table.paths()), uri, table.schema)
        else:
            selector = pafs.FileSelector(base, recursive=True)
            paths = sorted(
                i.path
                for i in fs.get_file_info(selector)
                if i.type == pafs.FileType.File
                and i.path.endswith(".parquet")
                and not posixpath.basename(i.path).startswith(("_", "."))
            )
        if not paths:
            raise NotFoundError(f"{role} at {uri} holds no Parquet files")
        import pyarrow.dataset as ds

        schema = ds.dataset(paths[:1], format="parquet", filesystem=fs).schema
    return ParquetFiles(fs, tuple(paths), uri, schema)
