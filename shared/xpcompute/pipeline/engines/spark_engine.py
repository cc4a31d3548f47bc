"""Spark: the distributed engine for stage 1 (and an alternative for stage 2), local or on a cluster.

Locally Spark has no S3 filesystem (no hadoop-aws for pyspark 4 is reachable;
see PLATFORM.md), so with ``s3="stage"`` (the default) S3 inputs are copied to
a local scratch folder and S3 outputs are written locally and then uploaded
through ``pyarrow.fs``. On a cluster that ships hadoop-aws (EMR, Databricks,
Glue) ``s3="native"`` hands ``s3a://`` paths to Spark directly.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import sys
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from sqlglot import exp

from xpcompute.errors import InputError
from xpcompute.pipeline.engines.base import ParquetFiles
from xpcompute.sql.dialects import DIALECTS, Dialect
from xpcompute.storage.objects import new_token, storage_errors

MASTER_ENV = "XPCOMPUTE_SPARK_MASTER"


def local_spark(master: str | None = None, driver_memory: str = "4g", shuffle_partitions: int = 8) -> Any:
    """The process's SparkSession, created with loopback-only networking and no UI if none exists yet.

    ``master`` defaults to ``$XPCOMPUTE_SPARK_MASTER`` or ``local[*]``; Python
    workers use this interpreter, so they find pyarrow. An active session is
    returned as it is: in a driver that ``spark-submit`` started
    (``pipeline/spark_app.py``) the master and ``--conf`` settings are the
    submitter's, and rebuilding would override them.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = (
        SparkSession.builder.master(master or os.environ.get(MASTER_ENV, "local[*]"))
        .appName("xpcompute")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.parquet.compression.codec", "zstd")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def _as_micros(frame: Any, columns: list[str]) -> Any:
    """Nanosecond timestamp columns as Spark timestamps (microseconds, floored).

    Why: pyarrow writes nanosecond timestamps by default when a table has them (anything written from pandas),
    DuckDB reads them, and Spark refuses the whole file (``PARQUET_TYPE_ILLEGAL: TIMESTAMP(NANOS,false)``).
    Read as longs (``spark.sql.legacy.parquet.nanosAsLong``, which changes nothing else), they are converted
    here; the session's time zone is UTC, so a timestamp without a zone keeps its wall time, as on DuckDB.
    Sub-microsecond digits are dropped: an event a few nanoseconds past a window's end counts on Spark only.
    """
    from pyspark.sql import functions as F

    return frame.withColumns({c: F.timestamp_micros(F.floor(F.col(c) / 1000)) for c in columns})


class SparkEngine:
    """Spark SQL over temporary views of Parquet files."""

    def __init__(self, spark: Any | None = None, s3: Literal["stage", "native"] = "stage") -> None:
        self.spark = spark if spark is not None else local_spark()
        self.s3 = s3
        self._views: dict[str, str] = {}
        self._scratch: list[str] = []

    @property
    def dialect(self) -> Dialect:
        return DIALECTS["spark"]

    def register(self, name: str, files: ParquetFiles) -> None:
        if files.is_local:
            paths = list(files.paths)
        elif self.s3 == "native":
            paths = files.s3_uris()
        else:
            paths = self._download(files)
        view = f"xp_{name}_{new_token()}"
        nanos = [f.name for f in files.schema if pa.types.is_timestamp(f.type) and f.type.unit == "ns"]
        with _spark_errors():
            if nanos:  # see _as_micros
                self.spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
            frame = self.spark.read.parquet(*paths)
            if nanos:
                frame = _as_micros(frame, nanos)
            frame.createOrReplaceTempView(view)
        self._views[name] = view

    def table_ref(self, name: str) -> exp.Table:
        if name not in self._views:
            raise InputError(f"table {name!r} is not registered with this Spark engine")
        return exp.to_table(self._views[name])

    def fetch(self, sql: str) -> pa.Table:
        with _spark_errors():
            return self.spark.sql(sql).toArrow()

    def write(
        self, sql: str, filesystem: pafs.FileSystem, directory: str, steps: Sequence[tuple[str, str]] = ()
    ) -> pa.Schema:
        try:
            with _spark_errors():
                for name, step in steps:
                    self.spark.sql(step).createOrReplaceTempView(name)
            return self._write(sql, filesystem, directory)
        finally:
            for name, _ in steps:
                self.spark.catalog.dropTempView(name)

    def _write(self, sql: str, filesystem: pafs.FileSystem, directory: str) -> pa.Schema:
        local = isinstance(filesystem, pafs.LocalFileSystem)
        scratch: str | None = None
        if not local and self.s3 == "native":
            target = f"s3a://{directory}"
        elif local:
            target = directory
        else:
            scratch = tempfile.mkdtemp(prefix="xp-spark-out-")
            target = os.path.join(scratch, "out")
        with _spark_errors():
            self.spark.sql(sql).write.mode("errorifexists").option("compression", "zstd").parquet(target)
        if not local and self.s3 == "native":
            with storage_errors(f"reading the schema Spark wrote to {target}"):
                files = [i.path for i in filesystem.get_file_info(pafs.FileSelector(directory)) if _is_part(i.path)]
                return pq.read_schema(files[0], filesystem=filesystem)
        try:
            parts = sorted(os.path.join(target, f) for f in os.listdir(target) if _is_part(f))
            schema = pq.read_schema(parts[0])
            if scratch is not None:
                with storage_errors(f"uploading Spark output to {directory}"):
                    for path in parts:
                        pafs.copy_files(
                            path,
                            posixpath.join(directory, os.path.basename(path)),
                            source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=filesystem,
                        )
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        return schema

    def close(self) -> None:
        for view in self._views.values():
            self.spark.catalog.dropTempView(view)
        self._views.clear()
        for d in self._scratch:
            shutil.rmtree(d, ignore_errors=True)
        self._scratch.clear()

    def _scratch_dir(self) -> str:
        """A local folder for staged S3 inputs, removed by ``close`` or, failing that, when the engine is collected."""
        d = tempfile.mkdtemp(prefix="xp-spark-")
        self._scratch.append(d)
        weakref.finalize(self, shutil.rmtree, d, True)
        return d

    def _download(self, files: ParquetFiles) -> list[str]:
        """Copy S3 inputs to local scratch (local Spark cannot read s3a here)."""
        d = self._scratch_dir()
        out = []
        with storage_errors(f"staging {files.uri} for Spark"):
            for i, path in enumerate(files.paths):
                local = os.path.join(d, f"part-{i:05d}.parquet")
                pafs.copy_files(path, local, source_filesystem=files.filesystem, destination_filesystem=pafs.LocalFileSystem())
                out.append(local)
        return out


def _is_part(path: str) -> bool:
    name = os.path.basename(path)
    return name.startswith("part-") and name.endswith(".parquet")


@contextlib.contextmanager
def _spark_errors() -> Iterator[None]:
    """Spark's analysis and runtime errors (unknown column, type mismatch) become ``InputError``."""
    from pyspark.errors import PySparkException

    try:
        yield
    except PySparkException as exc:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise InputError(f"Spark could not run the generated query: {first}") from exc
