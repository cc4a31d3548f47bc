"""Turn Arrow key columns into sorted dictionary indices, and numeric columns into float64 buffers.

Dictionaries are sorted so that codes, and therefore the order of compressed
groups, do not depend on the order of the input rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from xpcompute.compression.transform import float_column
from xpcompute.errors import ColumnTypeError, MissingColumnError
from xpcompute.lazy import lazy

if TYPE_CHECKING:
    import pyarrow.compute as pc
else:  # loaded on first use: column checks and conversions use it; decoding a stored slice for a fit does not
    pc = lazy("pyarrow.compute")


@dataclass(frozen=True)
class EncodedKey:
    """One key column as int32 indices into a sorted dictionary; nulls are -1."""

    name: str
    indices: NDArray[np.int32]
    dictionary: pa.Array

    @property
    def radix(self) -> int:
        return max(len(self.dictionary), 1)


def require_columns(table: pa.Table | pa.RecordBatch, names: list[str] | tuple[str, ...], role: str = "column") -> None:
    """Raise a ``MissingColumnError`` naming every absent column and the ones that exist."""
    missing = [n for n in names if n not in table.schema.names]
    if missing:
        raise MissingColumnError(
            f"{role} {', '.join(repr(m) for m in missing)} not found; the data has columns: {', '.join(table.schema.names)}"
        )


def is_categorical(type_: pa.DataType) -> bool:
    """String, dictionary and boolean columns are categorical; numeric ones are continuous."""
    return bool(
        pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_dictionary(type_)
        or pa.types.is_boolean(type_)
    )


def encode_key(column: pa.ChunkedArray | pa.Array, name: str) -> EncodedKey:
    """Dictionary-encode a column with its dictionary sorted ascending (nulls become -1).

    Only int32 temporaries are made, so a 10M-row key costs 40 MB of scratch.
    """
    if isinstance(column, pa.ChunkedArray):
        if pa.types.is_dictionary(column.type):
            column = column.unify_dictionaries()
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        return _encode_dictionary(column, name)
    encoded = pc.dictionary_encode(column)
    indices = encoded.indices
    if indices.null_count:
        indices = pc.fill_null(indices, -1)
    raw = np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int32)
    order = np.asarray(pc.sort_indices(encoded.dictionary), dtype=np.int64)
    rank = np.empty(len(order) + 1, dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    rank[-1] = -1  # a null (raw index -1) stays -1
    return EncodedKey(name=name, indices=rank[raw], dictionary=encoded.dictionary.take(pa.array(order)))


def _encode_dictionary(column: pa.DictionaryArray, name: str) -> EncodedKey:
    """An already dictionary-encoded column: reuse its indices, remapped onto the sorted distinct values.

    This skips decoding the values (a 10M-row string cast costs ~0.2 s); the
    dictionary itself is small. Duplicate or unused dictionary entries are
    harmless: duplicates map to one code, unused codes make no group.
    """
    dictionary = column.dictionary
    distinct = pc.unique(dictionary)
    distinct = distinct.take(pc.sort_indices(distinct))
    position = np.asarray(pc.index_in(dictionary, value_set=distinct).to_numpy(zero_copy_only=False), dtype=np.int32)
    rank = np.empty(len(position) + 1, dtype=np.int32)
    rank[: len(position)] = position
    rank[-1] = -1  # a null index stays -1
    indices = column.indices
    if indices.null_count:
        indices = pc.fill_null(indices, -1)
    raw = np.asarray(indices.to_numpy(zero_copy_only=False))
    if raw.dtype != np.int32:
        raw = raw.astype(np.int32)
    return EncodedKey(name=name, indices=rank[raw], dictionary=distinct)


def numeric_column(table: pa.Table | pa.RecordBatch, name: str, role: str = "metric") -> NDArray[np.float64]:
    """A numeric column as float64 with nulls as NaN; refuses non-numeric columns with a clear message."""
    require_columns(table, [name], role)
    type_ = table.schema.field(name).type
    if not (pa.types.is_boolean(type_) or pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_)):
        raise ColumnTypeError(f"{role} {name!r} has type {type_}; it must be numeric (int, float or bool)")
    arr = np.ascontiguousarray(float_column(table, name, role).to_numpy(zero_copy_only=False), dtype=np.float64)
    if np.isinf(arr).any():
        raise ColumnTypeError(f"{role} {name!r} has infinite values; replace or filter them before fitting")
    return arr


def decode_codes(codes: NDArray[np.int64], keys: list[EncodedKey]) -> list[pa.Array]:
    """Invert the mixed-radix combination: one Arrow array of original values per key."""
    out: list[pa.Array] = []
    rest = codes.copy()
    parts: list[NDArray[np.int64]] = []
    for key in reversed(keys):
        parts.append(rest % key.radix)
        rest = rest // key.radix
    for key, idx in zip(keys, reversed(parts), strict=True):
        out.append(key.dictionary.take(pa.array(idx)))
    return out
