"""DuckDB, the embedded default: local Parquet natively, S3 through pyarrow datasets.

Files on S3 are a pyarrow dataset on ``pyarrow.fs.S3FileSystem`` registered in
the connection, so DuckDB pushes filters and projections into pyarrow's
scanner (DuckDB's httpfs extension downloads at run time and cannot be used
here). Local files go to DuckDB's own Parquet reader (``read_parquet``), which
also pushes filters and projections down and decodes in parallel: on 10M rows
it is 3-4x faster than the same scan through a pyarrow dataset
(``benchmarks/bench_pipeline.py``). ``local_reader="arrow"`` forces the
pyarrow path for local files too. Stage-1 results stream out as Arrow record
batches into ``pyarrow.dataset.write_dataset`` on the target filesystem.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Literal

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from sqlglot import exp

from xpcompute.errors import InputError, XPError
from xpcompute.pipeline.engines.base import ParquetFiles
from xpcompute.sql.dialects import DIALECTS, Dialect
from xpcompute.storage.objects import storage_errors

MEMORY_ENV = "XPCOMPUTE_DUCKDB_MEMORY_LIMIT"
SPILL_ENV = "XPCOMPUTE_DUCKDB_TEMP_DIRECTORY"
ROWS_PER_FILE = 4_000_000
ROWS_PER_GROUP = 1_000_000
BATCH_ROWS = 1_000_000


class DuckDBEngine:
    """One in-memory DuckDB connection per engine."""

    def __init__(
        self,
        threads: int | None = None,
        memory_limit: str | None = None,
        local_reader: Literal["duckdb", "arrow"] = "duckdb",
    ) -> None:
        """``memory_limit`` (e.g. ``"8GB"``; default ``$XPCOMPUTE_DUCKDB_MEMORY_LIMIT`` or DuckDB's 80% of RAM)
        makes big joins spill to ``$XPCOMPUTE_DUCKDB_TEMP_DIRECTORY`` instead of taking the machine's memory."""
        config: dict[str, str | bool | int | float | list[str]] = {
            "threads": threads or os.cpu_count() or 1,
            # results are sorted where order matters (stage 2 sorts its groups); not keeping insertion
            # order lets big stage-1 results stream out instead of being buffered
            "preserve_insertion_order": False,
        }
        memory_limit = memory_limit or os.environ.get(MEMORY_ENV)
        if memory_limit:
            config["memory_limit"] = memory_limit
            config["temp_directory"] = os.environ.get(SPILL_ENV, os.path.join(tempfile.gettempdir(), "xp-duckdb-spill"))
        self.con = duckdb.connect(database=":memory:", config=config)
        # timestamps with a time zone are compared as UTC instants whatever the machine's zone
        # (docs/experiment-yaml.md); Spark sets spark.sql.session.timeZone the same way
        with contextlib.suppress(duckdb.Error):
            self.con.execute("SET TimeZone = 'UTC'")
        self.local_reader = local_reader

    @property
    def dialect(self) -> Dialect:
        return DIALECTS["duckdb"]

    def register(self, name: str, files: ParquetFiles) -> None:
        if files.is_local and self.local_reader == "duckdb":
            with storage_errors(f"opening {files.uri}"), _engine_errors():
                self.con.read_parquet(list(files.paths)).create_view(_view(name), replace=True)
        else:
            self.con.register(_view(name), files.dataset())

    def table_ref(self, name: str) -> exp.Table:
        return exp.to_table(_view(name))

    def fetch(self, sql: str) -> pa.Table:
        with storage_errors("DuckDB reading its inputs"), _engine_errors():
            return self.con.sql(sql).to_arrow_table()

    def write(
        self, sql: str, filesystem: pafs.FileSystem, directory: str, steps: Sequence[tuple[str, str]] = ()
    ) -> pa.Schema:
        try:
            with storage_errors(f"DuckDB writing {directory}"), _engine_errors():
                for name, step in steps:
                    self.con.execute(f"CREATE OR REPLACE TEMP TABLE {_quote(name)} AS {step}")
                return self._write(sql, filesystem, directory)
        finally:
            for name, _ in steps:
                self.con.execute(f"DROP TABLE IF EXISTS {_quote(name)}")

    def _write(self, sql: str, filesystem: pafs.FileSystem, directory: str) -> pa.Schema:
        reader = self.con.sql(sql).to_arrow_reader(BATCH_ROWS)
        options = ds.ParquetFileFormat().make_write_options(compression="zstd")
        ds.write_dataset(
            reader,
            directory,
            format="parquet",
            filesystem=filesystem,
            file_options=options,
            basename_template="part-{i}.parquet",
            max_rows_per_file=ROWS_PER_FILE,
            # DuckDB hands over small batches; buffer them into large row groups, or S3 readers pay
            # one request per tiny column chunk (a 10M-row table in 32k-row groups read 30x slower)
            min_rows_per_group=ROWS_PER_GROUP,
            max_rows_per_group=ROWS_PER_GROUP,
            existing_data_behavior="error",
            create_dir=True,
        )
        return reader.schema

    def close(self) -> None:
        self.con.close()


def _view(name: str) -> str:
    return f"xp_{name}"


def _quote(name: str) -> str:
    """A step name as a DuckDB identifier (names come from ``sql.stage1``, never from users)."""
    return exp.to_identifier(name, quoted=True).sql("duckdb")


@contextlib.contextmanager
def _engine_errors() -> Iterator[None]:
    """DuckDB's I/O errors become ``OSError`` (then ``StorageError``); its other errors ``InputError``."""
    try:
        yield
    except duckdb.OutOfMemoryException as exc:
        raise XPError(
            f"DuckDB ran out of memory: {str(exc).splitlines()[0]}; raise ${MEMORY_ENV} (e.g. 12GB) or use Spark"
        ) from exc
    except duckdb.Error as exc:
        text = str(exc)
        # a failed read of a registered Arrow dataset (S3 down) arrives as an invalid-input error naming IOError
        if isinstance(exc, duckdb.IOException) or "IOError:" in text:
            raise OSError(text) from exc
        raise InputError(f"DuckDB could not run the generated query: {text}") from exc
