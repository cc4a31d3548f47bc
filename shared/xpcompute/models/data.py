"""What a model trains on: a compressed table plus the role of each of its columns.

``ModelData`` is the model-facing view of a ``CompressedTable``: the metric's
moment columns as float arrays, key columns as arrays of labels, the cells in
a fixed order (control first), and the sub-populations (segments, periods)
for CATE and DTE. It can be re-weighted (bootstrap) or restricted (a mask)
without touching the underlying table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from xpcompute.compression.schema import CompressedTable, MetricLayout
from xpcompute.compression.transform import ColumnTransform
from xpcompute.errors import CellError, InputError, MissingColumnError
from xpcompute.spec import FitSpec

F64 = NDArray[np.float64]


def label_array(column: pa.ChunkedArray | pa.Array) -> NDArray[np.object_]:
    """Key values as strings (the labels used in result records); nulls become ``"(null)"``."""
    return np.asarray(label_text(column).to_numpy(zero_copy_only=False), dtype=object)


def label_text(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Key values as an Arrow string array; nulls become ``"(null)"``."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return pc.fill_null(column.cast(pa.string()), "(null)")


def choose_control(cells: list[str], requested: str | None) -> str:
    """The control cell: the requested one, else ``control`` if present, else the first in sorted order."""
    if requested is not None:
        if requested not in cells:
            raise CellError(f"control cell {requested!r} not found; the cells are: {', '.join(cells)}")
        return requested
    return "control" if "control" in cells else sorted(cells)[0]


@dataclass(frozen=True)
class ModelData:
    """One metric's compressed rows with roles attached.

    ``scale`` multiplies every moment sum of every row: 1 for the data as
    given, Poisson(n)/n for a bootstrap replicate. ``mask`` selects rows.
    """

    compressed: CompressedTable
    spec: FitSpec
    discrete: tuple[str, ...] = ()
    continuous: tuple[str, ...] = ()
    scale: F64 | None = field(default=None, compare=False)

    # ---- layout -------------------------------------------------------
    @cached_property
    def layout(self) -> MetricLayout:
        try:
            return self.compressed.layout.metrics[self.spec.metric]
        except KeyError as exc:
            known = ", ".join(self.compressed.layout.metrics) or "none"
            raise MissingColumnError(
                f"metric {self.spec.metric!r} is not in the compressed data (it holds: {known})"
            ) from exc

    @cached_property
    def _raw_labels(self) -> dict[str, NDArray[np.object_]]:
        return {}

    def labels(self, column: str) -> NDArray[np.object_]:
        """String labels of a key column, one per compressed row."""
        cache = self._raw_labels
        if column not in cache:
            cache[column] = label_array(self._column(column))
        return cache[column]

    def _column(self, column: str) -> pa.ChunkedArray:
        if column not in self.compressed.table.column_names:
            raise MissingColumnError(
                f"column {column!r} is not a key of the compressed data (keys: {', '.join(self.compressed.layout.keys)})"
            )
        return self.compressed.table.column(column)

    def codes(self, column: str) -> tuple[tuple[str, ...], NDArray[np.int64]]:
        """Sorted distinct labels of a key column and each row's index into them (cached)."""
        cache = self._raw_codes
        if column not in cache:
            text = pa.array(self.labels(column), type=pa.string())
            levels = pc.unique(text)
            levels = levels.take(pc.sort_indices(levels))
            inverse = np.asarray(pc.index_in(text, value_set=levels).to_numpy(zero_copy_only=False), dtype=np.int64)
            cache[column] = (tuple(levels.to_pylist()), inverse)
        return cache[column]

    @cached_property
    def _raw_codes(self) -> dict[str, tuple[tuple[str, ...], NDArray[np.int64]]]:
        return {}

    def moment(self, *exponents: int) -> F64:
        """Sum over each row's group of ``zy**ey * zc1**e1 ...`` (scaled for bootstrap replicates).

        These are the stored sums: of the shifted and scaled variables
        ``z = (x - shift) / scale`` (``transform(j)``; the identity for data
        compressed without transforms), which is what keeps them precise.
        """
        name = self.layout.column(*exponents)
        values = np.asarray(self.compressed.table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
        return values if self.scale is None else values * self.scale

    def exponent(self, y: int = 0, **covariates: int) -> tuple[int, ...]:
        """Exponent vector from names: ``exponent(1, pre=1)`` = (1, 1)."""
        exps = [y] + [0] * len(self.layout.covariates)
        for name, e in covariates.items():
            exps[1 + self.layout.covariates.index(name)] = e
        return tuple(exps)

    @cached_property
    def base_counts(self) -> F64:
        return np.asarray(
            self.compressed.table.column(self.layout.count_column()).to_numpy(zero_copy_only=False), dtype=np.float64
        )

    @property
    def n(self) -> F64:
        """Rows (frequency-weighted) behind each compressed row, for this metric."""
        return self.base_counts if self.scale is None else self.base_counts * self.scale

    def transform(self, variable: int = 0) -> ColumnTransform:
        """Shift and scale of variable ``variable`` (0 = the metric, then the covariates) in the stored sums."""
        return self.layout.transform(variable)

    @property
    def y_transform(self) -> ColumnTransform:
        """Shift and scale of the metric: ``y = shift + scale * z``."""
        return self.layout.transform(0)

    @property
    def sum_z(self) -> F64:
        """Per-row sums of the stored (shifted, scaled) metric: what precise models read."""
        return self.moment(*self.exponent(1))

    @property
    def sum_z2(self) -> F64:
        return self.moment(*self.exponent(2))

    @property
    def sum_y(self) -> F64:
        """Per-row sums of the metric in its own units, ``shift * n + scale * sum z``.

        Exact when the metric is stored untransformed; otherwise rounded as any
        float sum of ``y`` would be. Models that subtract means (variances,
        regressions) read ``sum_z``/``moment`` instead and rescale their result.
        """
        return self.y_transform.sum_in_units(self.n, self.sum_z)

    @property
    def sum_y2(self) -> F64:
        """Per-row sums of the squared metric in its own units (may overflow to inf beyond 1e154)."""
        return self.y_transform.sum_of_squares_in_units(self.n, self.sum_z, self.sum_z2)

    # ---- cells --------------------------------------------------------
    @cached_property
    def cell_labels(self) -> NDArray[np.object_]:
        return self.labels(self.spec.treatment)

    @cached_property
    def cells(self) -> tuple[str, ...]:
        """All cells with data, control first, then the others sorted."""
        levels, inverse = self.codes(self.spec.treatment)
        present = [levels[i] for i in np.unique(inverse[self.base_counts > 0])]
        if len(present) < 2:
            raise CellError(
                f"metric {self.spec.metric!r}: need at least two cells with data in {self.spec.treatment!r}, "
                f"found {len(present)} ({', '.join(present) or 'none'})"
            )
        control = choose_control(present, self.spec.control)
        return (control, *[c for c in present if c != control])

    @property
    def control(self) -> str:
        return self.cells[0]

    @property
    def treatments(self) -> tuple[str, ...]:
        return self.cells[1:]

    def reweighted(self, scale: F64) -> ModelData:
        """The same rows with every sum multiplied by ``scale`` (a bootstrap replicate)."""
        return replace(self, scale=scale)

    def check_cells_nonempty(self, mask: NDArray[np.bool_] | None = None) -> None:
        """Refuse a requested control or treatment cell with no rows (explicitly requested but empty)."""
        n = self.n if mask is None else np.where(mask, self.n, 0.0)
        levels, inverse = self.codes(self.spec.treatment)
        present = {levels[i] for i in np.unique(inverse[n > 0])}
        for cell in self.cells:
            if cell not in present:
                raise CellError(f"metric {self.spec.metric!r}: cell {cell!r} has no rows")


@dataclass(frozen=True)
class Subgroup:
    """A sub-population an effect is averaged over: all rows, one segment (CATE) or one period (DTE)."""

    mask: NDArray[np.bool_]
    segment: str | None = None
    time: str | None = None


def subgroups(data: ModelData, include_overall: bool = True) -> list[Subgroup]:
    """All rows, then one subgroup per segment value (if the spec has a segment) or per period (if time)."""
    g = len(data.n)
    out: list[Subgroup] = []
    if include_overall or not (data.spec.segment or data.spec.time):
        out.append(Subgroup(mask=np.ones(g, dtype=bool)))
    if data.spec.segment:
        labels = data.labels(data.spec.segment)
        out += [Subgroup(mask=labels == s, segment=str(s)) for s in sorted(set(labels))]
    if data.spec.time:
        labels = data.labels(data.spec.time)
        out += [Subgroup(mask=labels == t, time=str(t)) for t in _sorted_periods(set(labels))]
    return out


def _sorted_periods(values: set[str]) -> list[str]:
    """Periods in numeric order when they are numbers, else lexical (ISO dates sort lexically)."""
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def require_positive(value: float, what: str) -> None:
    if not value > 0:
        raise InputError(f"{what} must be positive, got {value}")
