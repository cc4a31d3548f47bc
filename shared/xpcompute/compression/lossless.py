"""Lossless compression of raw rows into the moments schema, through the C++ hash group-by.

``compress_moments`` is the C++ counterpart of stage 2's SQL ``GROUP BY``: both
produce the same ``CompressedTable`` (see ``schema.py``). Given the analysis
table's per-column ``transforms`` (``transform.py``), each variable is summed
as ``z = (x - shift) * inv_scale``, computed with the same two operations the
SQL route runs, so both routes hold the same ``z`` on every row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from xpcompute import native
from xpcompute.compression.encode import (
    EncodedKey,
    decode_codes,
    encode_key,
    numeric_column,
    require_columns,
)
from xpcompute.compression.schema import (
    COUNT_COLUMN,
    ROW_KEY,
    CompressedLayout,
    CompressedTable,
    MetricLayout,
)
from xpcompute.compression.transform import ColumnTransform, transforms_for
from xpcompute.errors import InputError, MissingValuesError


def compress_moments(
    data: pa.Table | pa.RecordBatch,
    keys: Sequence[str],
    metrics: Mapping[str, Sequence[str]],
    weights: str | None = None,
    row_level: bool = False,
    transforms: Mapping[str, ColumnTransform] | None = None,
) -> CompressedTable:
    """Group ``data`` by ``keys`` into the moments of each metric.

    ``metrics`` maps each metric column to its continuous covariates.
    ``row_level=True`` keeps one group per input row (``--compress none``):
    the same schema and code path, without the compression.
    ``transforms`` maps column names to their shift and scale (from
    ``column_transforms`` on the whole analysis table, so every slice of it
    shares them); a column without one is summed as it is. The models need
    them for full precision: ``models.prepare`` always passes them.
    """
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if not metrics:
        raise InputError("nothing to compress: name at least one metric")
    require_columns(data, list(keys), "key column")
    n_rows = data.num_rows
    encoded: list[EncodedKey] = [encode_key(data.column(k), k) for k in keys]
    if row_level:
        encoded.append(
            EncodedKey(ROW_KEY, np.arange(n_rows, dtype=np.int32), pa.array(np.arange(n_rows, dtype=np.int64)))
        )
    radix_product = 1
    for key in encoded:
        radix_product *= key.radix
    if radix_product >= 2**62:
        raise InputError(
            f"too many distinct key combinations ({radix_product}) to compress; drop a high-cardinality key "
            f"from {', '.join(keys)}"
        )
    w = None if weights is None else numeric_column(data, weights, "weight")
    if w is not None and (np.nanmin(w) < 0 if len(w) else False):
        raise InputError(f"weight column {weights!r} has negative values; frequency weights must be >= 0")
    key_idx = [k.indices for k in encoded]
    radices = [k.radix for k in encoded]

    per_metric = []
    dropped: dict[str, int] = {}
    layouts: dict[str, MetricLayout] = {}
    for metric, covariates in metrics.items():
        variables = (metric, *covariates)
        layout = MetricLayout.build(metric, tuple(covariates), transforms_for(transforms, variables))
        cols = [numeric_column(data, metric, "metric")] + [numeric_column(data, c, "covariate") for c in covariates]
        cols = [t.apply(c) for t, c in zip(transforms_for(transforms, variables), cols, strict=True)]
        exps = np.asarray(layout.exponents, dtype=np.int32)
        res = native.group_moments(key_idx, radices, cols, exps, w, n_rows)
        per_metric.append((layout, res))
        dropped[metric] = int(res.dropped)
        layouts[metric] = layout

    # metrics may drop different rows; align every metric on the union of groups
    all_codes = np.unique(np.concatenate([res.codes for _, res in per_metric]))
    if all_codes.size == 0 and n_rows > 0:  # (no rows at all: an empty table, refused by the models' cell checks)
        raise MissingValuesError(
            f"no row has a value for {', '.join(repr(m) for m in metrics)} (with its covariates) and non-null keys "
            f"{', '.join(keys)}; check the metric definitions or fill the missing values"
        )
    if not any(dropped.values()):
        # no row was left out of any metric: the first metric's count is every group's row count
        first_layout, first = per_metric[0]
        counts_codes, counts_values = first.codes, first.sums[:, first_layout.exponents.index((0,) * len(first_layout.exponents[0]))]
    else:
        counts = native.group_moments(key_idx, radices, [], np.zeros((0, 0), np.int32), w, n_rows)
        counts_codes, counts_values = counts.codes, counts.counts
    columns: dict[str, pa.Array] = {}
    for key, arr in zip(encoded, decode_codes(all_codes, encoded), strict=True):
        if key.name != ROW_KEY:
            columns[key.name] = arr
    columns[COUNT_COLUMN] = pa.array(_align(all_codes, counts_codes, counts_values[:, None])[:, 0])
    for layout, res in per_metric:
        sums = _align(all_codes, res.codes, res.sums)
        for j, name in enumerate(layout.columns):
            columns[name] = pa.array(sums[:, j])
    table = pa.table(columns)
    layout_all = CompressedLayout(
        kind="moments",
        keys=tuple(keys),
        metrics=layouts,
        n_rows=n_rows,
        dropped=dropped,
        extra={"row_level": row_level, "weights": weights},
    )
    return CompressedTable(table=table, layout=layout_all)


def _align(target: np.ndarray, codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Rows of ``values`` (keyed by sorted ``codes``) placed on the sorted ``target`` codes, zeros elsewhere."""
    if len(codes) == len(target):
        return values
    out = np.zeros((len(target), values.shape[1]))
    # groups outside ``target`` (rows whose every metric is missing) are not part of the table
    inside = np.isin(codes, target)
    out[np.searchsorted(target, codes[inside])] = values[inside]
    return out
