"""Compression: raw rows to sufficient statistics (lossless) or n-tile buckets (lossy)."""

from xpcompute.compression.lossless import compress_moments
from xpcompute.compression.schema import (
    COUNT_COLUMN,
    CompressedLayout,
    CompressedTable,
    MetricLayout,
    moment_column,
    monomials,
)

__all__ = [
    "COUNT_COLUMN",
    "CompressedLayout",
    "CompressedTable",
    "MetricLayout",
    "compress_moments",
    "moment_column",
    "monomials",
]
