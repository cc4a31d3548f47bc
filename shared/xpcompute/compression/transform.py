"""Per-column shift and power-of-two scale, so compressed moments keep full precision on any data.

Moments are uncentered sums of ``y``, ``y^2``, ``y c`` ... A variance taken
from them, ``sum y^2 - n mean^2``, loses ``log10(mean^2 / var)`` digits: at a
mean/sd ratio of 1e5 half the float64 digits are gone, at 1e8 all of them.
Values near 1e160 overflow ``y^2``; near 1e-160 they underflow it.

So every variable ``x`` (a metric or a continuous covariate) is stored as

    z = (x - shift) * inv_scale,    inv_scale = 1 / scale,   scale = 2**k

with ``shift`` the midpoint of the column's range and ``scale`` the smallest
power of two at least half that range, so ``|z| <= 1`` on every row (at most
4 for a column spanning more than +-4e307, where the scale stops at 2**1022 so
that ``1 / scale`` stays a normal float): no power of ``z`` up to the fourth can overflow, and the mean of ``z`` is within the
column's range of zero, whatever the location and magnitude of ``x``.
``scale`` is a power of two, so multiplying by it is exact, and the models
turn their results back into the units of ``x`` exactly (``models/data.py``).

The constants are a function of the whole analysis table (its minimum and
maximum, which no engine rounds and no row order changes), fixed once per
table and recorded in the compressed layout, so every slice of one table,
compressed by SQL, by the C++ group-by or from the cube, holds the same
``z`` and slices stay comparable. They are never taken from a slice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from xpcompute.errors import ColumnTypeError, MissingColumnError
from xpcompute.lazy import lazy

if TYPE_CHECKING:
    import pyarrow.compute as pc
else:  # loaded on first use: transforms are computed when a slice is compressed, not when one is fitted
    pc = lazy("pyarrow.compute")

F64 = NDArray[np.float64]

#: smallest and largest exponent of a scale: keeps both ``scale`` and ``1 / scale`` normal floats
_MIN_EXP, _MAX_EXP = -1021, 1022


@dataclass(frozen=True)
class ColumnTransform:
    """``z = (x - shift) * inv_scale``; ``scale`` is a power of two (``inv_scale = 1 / scale`` exactly)."""

    shift: float = 0.0
    scale: float = 1.0

    @property
    def inv_scale(self) -> float:
        return 1.0 / self.scale

    @property
    def is_identity(self) -> bool:
        return self.shift == 0.0 and self.scale == 1.0

    @classmethod
    def from_range(cls, low: float, high: float) -> ColumnTransform:
        """The transform of a column whose finite values span ``[low, high]`` (NaN: an empty column)."""
        if not (math.isfinite(low) and math.isfinite(high)):
            return cls()
        # halves first: high - low overflows for a column spanning -1e308..1e308
        half = high * 0.5 - low * 0.5
        shift = low * 0.5 + high * 0.5
        if half <= 0.0:
            # a constant column: z = 0 on every row; scale 1 keeps it so
            return cls(shift=shift, scale=1.0)
        _, exponent = math.frexp(half)  # half = m * 2**exponent with m in [0.5, 1): 2**exponent >= half
        exponent = min(max(exponent, _MIN_EXP), _MAX_EXP)
        return cls(shift=shift, scale=math.ldexp(1.0, exponent))

    def apply(self, values: F64) -> F64:
        """``(values - shift) * inv_scale``, the exact operations (and order) the SQL route runs."""
        if self.is_identity:
            return values
        out: F64 = (values - self.shift) * self.inv_scale
        return out

    def sum_in_units(self, count: F64, sum_z: F64) -> F64:
        """Sums of ``x`` from sums of ``z``: ``shift * count + scale * sum_z`` (identity returns ``sum_z``)."""
        if self.is_identity:
            return sum_z
        with np.errstate(over="ignore", invalid="ignore"):
            out: F64 = self.shift * count + self.scale * sum_z
        return out

    def sum_of_squares_in_units(self, count: F64, sum_z: F64, sum_z2: F64) -> F64:
        """Sums of ``x**2`` from the sums of ``z`` and ``z**2`` (may overflow to inf beyond about 1e154)."""
        if self.is_identity:
            return sum_z2
        with np.errstate(over="ignore", invalid="ignore"):
            out: F64 = self.shift * self.shift * count + 2 * self.shift * self.scale * sum_z + self.scale * self.scale * sum_z2
        return out

    def to_json(self) -> list[float]:
        return [self.shift, self.scale]

    @classmethod
    def from_json(cls, raw: Iterable[float]) -> ColumnTransform:
        shift, scale = (float(v) for v in raw)
        if not (math.isfinite(shift) and scale > 0 and math.frexp(scale)[0] == 0.5):
            raise ColumnTypeError(f"compressed layout holds an invalid transform (shift={shift}, scale={scale})")
        return cls(shift=shift, scale=scale)


IDENTITY = ColumnTransform()


def float_column(table: pa.Table | pa.RecordBatch, name: str, role: str = "column") -> pa.Array:
    """A numeric column cast to float64 (bool as 0/1), refusing types and values float64 cannot hold."""
    if name not in table.schema.names:
        raise MissingColumnError(f"{role} {name!r} not found; the data has columns: {', '.join(table.schema.names)}")
    col = table.column(name)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    type_ = col.type
    if pa.types.is_boolean(type_):
        col = col.cast(pa.int8())
    elif not (pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_)):
        raise ColumnTypeError(f"{role} {name!r} has type {type_}; it must be numeric (int, float or bool)")
    try:
        return col.cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ColumnTypeError(
            f"{role} {name!r} has values outside the float64 range (about 1.8e308): {exc}; rescale the column"
        ) from exc


def column_transform(values: pa.Array | F64) -> ColumnTransform:
    """The transform of one float64 column from its finite minimum and maximum (nulls and NaN ignored)."""
    if isinstance(values, np.ndarray):
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return IDENTITY
        return ColumnTransform.from_range(float(finite.min()), float(finite.max()))
    arr = values
    if arr.null_count or len(arr) == 0:
        arr = arr.drop_null()
    np_values = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)
    return column_transform(np_values)


def column_transforms(
    table: pa.Table | pa.RecordBatch, columns: Iterable[str], role: str = "column"
) -> dict[str, ColumnTransform]:
    """One transform per named column of ``table``: compute these on the whole analysis table, never a slice.

    ``role`` names the columns in error messages ("metric", "covariate").
    """
    out: dict[str, ColumnTransform] = {}
    for name in dict.fromkeys(columns):
        arr = float_column(table, name, role)
        if pc.any(pc.is_inf(arr)).as_py():
            raise ColumnTypeError(f"{role} {name!r} has infinite values; replace or filter them before fitting")
        out[name] = column_transform(arr)
    return out


def transforms_for(
    transforms: Mapping[str, ColumnTransform] | None, variables: Iterable[str]
) -> tuple[ColumnTransform, ...]:
    """The transforms of ``variables`` in order; a column without one (or ``None``) is left as is."""
    return tuple((transforms or {}).get(v, IDENTITY) for v in variables)


#: transforms of published tables' columns by (table id, column): a published run never changes
_CACHED: dict[tuple[str, str], ColumnTransform] = {}
_CACHE_LIMIT = 4096


def cached_transforms(
    table_id: str, columns: Iterable[str], read: Callable[[list[str]], pa.Table]
) -> dict[str, ColumnTransform]:
    """Transforms of ``columns`` of the immutable table ``table_id`` (a URI and run id), computed once per process.

    ``read(names)`` returns those columns of the whole table. The constants are
    a function of the table's data alone, so every worker, and every slice
    job, computes the same ones; the cache only saves the pass.
    """
    names = list(dict.fromkeys(columns))
    missing = [c for c in names if (table_id, c) not in _CACHED]
    if missing:
        if len(_CACHED) > _CACHE_LIMIT:
            _CACHED.clear()
        for name in missing:  # one column at a time: the pass never holds more than one column of the table
            _CACHED[(table_id, name)] = column_transforms(read([name]), [name])[name]
    return {c: _CACHED[(table_id, c)] for c in names}
