"""Write a compressed table to Parquet (zstd) and read it back ("decompress") unchanged.

Any ``pyarrow.fs.FileSystem`` works (local disk, or S3 through
``pyarrow.fs.S3FileSystem`` built by ``storage``); the layout travels in the
Parquet schema metadata.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from xpcompute.compression.schema import CompressedTable


def to_parquet_bytes(compressed: CompressedTable) -> bytes:
    """Serialise to Parquet bytes (for object stores that take a body)."""
    sink = io.BytesIO()
    pq.write_table(compressed.with_metadata(), sink, compression="zstd")
    return sink.getvalue()


def from_parquet_bytes(data: bytes) -> CompressedTable:
    """Inverse of ``to_parquet_bytes``."""
    return CompressedTable.from_arrow(pq.read_table(pa.BufferReader(data)))


def write_compressed(compressed: CompressedTable, path: str, filesystem: pafs.FileSystem | None = None) -> None:
    """Write one Parquet file at ``path``."""
    pq.write_table(compressed.with_metadata(), path, compression="zstd", filesystem=filesystem)


def read_compressed(path: str, filesystem: pafs.FileSystem | None = None) -> CompressedTable:
    """Read a file written by ``write_compressed`` or by stage 2."""
    return CompressedTable.from_arrow(pq.read_table(path, filesystem=filesystem))
