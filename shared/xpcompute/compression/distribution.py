"""Distribution compression of one metric: group rows by their keys *and* the metric value.

Why a second schema next to the moments one: rank tests and quantiles need the
metric's distribution, not only its sums. If every compressed row stands for
input rows that share one metric value, then

* the Mann–Whitney rank sum and tie term of the compressed rows (values with
  frequency weights) equal those of the raw rows exactly, and
* a Poisson bootstrap over compressed rows (row g gets Poisson(n_g) weight, the
  sum of n_g independent Poisson(1) draws) is the raw-row Poisson bootstrap.

Layout (``layout.kind == "distribution"``), one row per (keys..., value):

* the key columns (cell, then segment / period where the spec has them);
* ``{metric}__value``: the value these rows stand for (a key column, float64);
* ``_n`` and ``{metric}__m_0``: the (frequency-weighted) number of rows;
* ``{metric}__m_1``, ``{metric}__m_2``: sums of y and y^2 over those rows, so
  cell means and variances stay exact even when the value is lossy;
* ntile tables only: ``{metric}__lo``, ``{metric}__hi``, the value range of the
  row's bucket (equal for a single-valued bucket), which quantile estimates
  interpolate within (a value-only table would snap every quantile to a
  bucket mean, and with millions of rows per bucket the bootstrap would then
  see no variation at all).

Lossless (``compress=lossless``) groups by the exact value (its index in the
sorted dictionary of distinct values, ``encode.encode_key``), through the C++
hash group-by ``native.group_moments``. ``none`` keeps one row per input row
(same schema). Lossy ``ntile:N`` replaces the value by one of at most N
quantile buckets computed on the pooled data of all cells; a bucket's
representative value is the mean of all its rows (pooled over cells, so the
same bucket is a tie across cells, which is what keeps the rank test unbiased:
a per-cell mean would order cells inside a bucket artificially). A metric
with at most N distinct values (counts, ratings) is compressed exactly under
ntile:N (``layout.extra["lossy"]`` is then False); otherwise any value with a
pooled mass of at least 1/N (an atom, e.g. zeros) gets an exact bucket of its
own, and so does any bucket whose rows happen to share one value.

Rows with a null/NaN metric, a null key or a NaN weight are left out and
counted in ``layout.dropped[metric]``; rows with weight 0 stand for no input
row and are left out silently. ``_n`` therefore equals ``{metric}__m_0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

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
from xpcompute.errors import InputError, MissingValuesError
from xpcompute.spec import CompressSpec, FitSpec

F64 = NDArray[np.float64]

#: exponents of the stored sums: n, sum y, sum y^2 (the moments schema without covariates)
_EXPONENTS = np.array([[0], [1], [2]], dtype=np.int32)


def value_column(metric: str) -> str:
    """Name of the key column holding the (representative) metric value, e.g. ``revenue__value``."""
    return f"{metric}__value"


def lower_column(metric: str) -> str:
    """Name of the column with the lower end of an n-tile bucket's value range (ntile tables only)."""
    return f"{metric}__lo"


def upper_column(metric: str) -> str:
    """Name of the column with the upper end of an n-tile bucket's value range (ntile tables only)."""
    return f"{metric}__hi"


def fit_keys(spec: FitSpec) -> list[str]:
    """The grouping keys a distribution model needs: cell, then segment and period if the spec has them."""
    keys = [spec.treatment]
    for extra in (spec.segment, spec.time):
        if extra and extra not in keys:
            keys.append(extra)
    return keys


def compress_distribution(data: pa.Table | pa.RecordBatch, spec: FitSpec) -> CompressedTable:
    """Compress ``data`` for a distribution model (Mann–Whitney, quantile) as the spec asks.

    Keys are ``fit_keys(spec)``; ``spec.weights`` is the frequency weight and
    ``spec.compress`` selects lossless, none or ntile:N. Covariates are not
    kept (the distribution models do not adjust for them).
    """
    return compress_values(data, spec.metric, fit_keys(spec), weights=spec.weights, compress=spec.compress)


def compress_values(
    data: pa.Table | pa.RecordBatch,
    metric: str,
    keys: Sequence[str],
    *,
    weights: str | None = None,
    compress: CompressSpec | None = None,
) -> CompressedTable:
    """Group ``data`` by ``keys`` and the value of ``metric`` (exact, per row, or n-tile bucket).

    Returns a ``CompressedTable`` of kind ``"distribution"`` (see the module
    docstring); ``compression_ratio`` is input rows per compressed row, and
    ``layout.extra`` records the compression used and the number of distinct
    values (lossless) or buckets actually used (ntile).
    """
    compress = compress or CompressSpec()
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    keys = list(keys)
    vcol = value_column(metric)
    if vcol in keys or metric in keys:
        raise InputError(f"metric {metric!r} cannot also be a grouping key; remove it from the keys")
    require_columns(data, [*keys, metric], "column")
    n_rows = data.num_rows
    y = numeric_column(data, metric, "metric")
    if np.isinf(y).any():
        raise InputError(
            f"metric {metric!r} has {int(np.isinf(y).sum())} infinite values; drop or cap them before fitting"
        )
    if np.signbit(y[y == 0.0]).any():
        y = y + 0.0  # -0.0 -> 0.0 so that equal values share one dictionary entry (copy only when needed)
    w = None if weights is None else numeric_column(data, weights, "weight")
    if w is not None and len(w) and np.nanmin(w) < 0:
        raise InputError(f"weight column {weights!r} has negative values; frequency weights must be >= 0")
    missing = np.isnan(y)
    if n_rows == 0 or missing.all():
        raise MissingValuesError(
            f"metric {metric!r} has no non-null values ({n_rows} rows); check the column, the slice or the join"
        )

    encoded: list[EncodedKey] = [encode_key(data.column(k), k) for k in keys]
    if compress.kind == "none":
        encoded.append(
            EncodedKey(ROW_KEY, np.arange(n_rows, dtype=np.int32), pa.array(np.arange(n_rows, dtype=np.int64)))
        )
    extra: dict[str, object] = {
        "compress": compress.label(),
        "value_column": vcol,
        "weights": weights,
        "row_level": compress.kind == "none",
        "lossy": compress.kind == "ntile",
    }
    value_key: EncodedKey | None = None
    ntile: NtileBuckets | None = None
    if compress.kind == "ntile":
        assert compress.buckets is not None
        extra["buckets"] = compress.buckets
        if at_most_distinct(y[~missing], compress.buckets):
            extra["lossy"] = False  # few distinct values: the exact values are no more rows than N buckets
        else:
            ntile = _ntile_key(y, w, encoded, compress.buckets, vcol)
            value_key = ntile.key
            extra["buckets_used"] = ntile.used
            extra["quantile_method"] = "grouped_linear"
    if value_key is None:
        value_key = exact_value_key(y, missing, vcol)
        extra["distinct_values"] = len(value_key.dictionary)
    encoded.append(value_key)

    radix_product = 1
    for key in encoded:
        radix_product *= key.radix
    if radix_product >= 2**62:
        raise InputError(
            f"too many distinct (key, value) combinations ({radix_product}) to compress; use --compress ntile:N "
            f"or drop a high-cardinality key from {', '.join(keys)}"
        )
    res = native.group_moments(
        [k.indices for k in encoded], [k.radix for k in encoded], [y], _EXPONENTS, w, n_rows
    )
    keep = res.counts > 0
    codes = res.codes[keep]
    sums = res.sums[keep]
    if not len(codes):
        raise MissingValuesError(
            f"metric {metric!r}: no row has a non-null metric, non-null keys ({', '.join(keys)}) and a positive "
            "weight; check the columns or the slice"
        )
    layout = MetricLayout.build(metric)
    columns: dict[str, pa.Array] = {}
    for key, arr in zip(encoded, decode_codes(codes, encoded), strict=True):
        if key.name != ROW_KEY:
            columns[key.name] = arr.cast(pa.float64()) if key.name == vcol else arr
    if ntile is not None:  # the value key is the last key: its index is the code's last digit
        bucket = codes % value_key.radix
        columns[lower_column(metric)] = pa.array(ntile.lower[bucket])
        columns[upper_column(metric)] = pa.array(ntile.upper[bucket])
    columns[COUNT_COLUMN] = pa.array(sums[:, 0])
    for j, name in enumerate(layout.columns):
        columns[name] = pa.array(sums[:, j])
    return CompressedTable(
        table=pa.table(columns),
        layout=CompressedLayout(
            kind="distribution",
            keys=(*keys, vcol),
            metrics={metric: layout},
            n_rows=n_rows,
            dropped={metric: int(res.dropped)},
            extra=extra,
        ),
    )


def exact_value_key(y: F64, missing: NDArray[np.bool_], name: str) -> EncodedKey:
    """The exact value of every row as a sorted-dictionary key (NaN rows get -1), like ``encode.encode_key``.

    Few distinct values (the usual lossless case: counts, ratings, binary):
    Arrow's hash dictionary encoding. Many (a continuous metric): one argsort,
    which is several times faster than hashing millions of distinct floats
    and then sorting the dictionary. Both give the same key.
    """
    sample = y[:: max(1, len(y) // 65_536)]
    if pc.count_distinct(pa.array(sample, mask=np.isnan(sample))).as_py() < 16_384:
        return encode_key(pa.array(y, mask=missing), name)
    valid_idx = np.flatnonzero(~missing) if missing.any() else None
    yv = y if valid_idx is None else y[valid_idx]
    order = np.argsort(yv)
    ordered = yv[order]
    first = np.empty(len(ordered), dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    codes_sorted = (np.cumsum(first) - 1).astype(np.int32)
    codes = np.empty(len(yv), dtype=np.int32)
    codes[order] = codes_sorted
    if valid_idx is not None:
        full = np.full(len(y), -1, dtype=np.int32)
        full[valid_idx] = codes
        codes = full
    return EncodedKey(name=name, indices=codes, dictionary=pa.array(ordered[first], pa.float64()))


def at_most_distinct(values: F64, limit: int) -> bool:
    """Whether ``values`` hold at most ``limit`` distinct numbers, cheaply for continuous data.

    A strided sample of about 8 * limit values settles the usual continuous
    case (far more than ``limit`` distinct values) without hashing every row;
    only when the sample has few distinct values is the full column counted.
    """
    step = max(1, len(values) // (8 * limit))
    if step > 1 and pc.count_distinct(pa.array(values[::step])).as_py() > limit:
        return False
    return bool(pc.count_distinct(pa.array(values)).as_py() <= limit)


@dataclass(frozen=True)
class NtileBuckets:
    """The n-tile bucketing of one metric: a key per row plus each bucket's value range."""

    key: EncodedKey
    lower: F64
    upper: F64
    used: int


def pooled_cuts(values: F64, weights: F64 | None, buckets: int) -> F64:
    """Inverted-CDF quantiles of the pooled values at k/N (k = 1..N-1), made unique.

    Unweighted data takes order statistics from one NumPy sort (numpy's SIMD
    sort is several times faster than a general weighted-quantile pass on 10M
    rows); weighted data uses ``native.weighted_quantiles``. Both give exactly
    ``numpy.quantile(expanded, k/N, method="inverted_cdf")``.
    """
    probs = np.arange(1, buckets, dtype=np.float64) / buckets
    if weights is None or bool(np.all(weights == 1.0)):
        ordered = np.sort(values)
        n = len(ordered)
        idx = np.clip(np.ceil(probs * float(n)).astype(np.int64) - 1, 0, n - 1)
        return np.unique(ordered[idx])
    return np.unique(native.weighted_quantiles(values, weights, probs))


def _ntile_key(y: F64, w: F64 | None, keys: Sequence[EncodedKey], buckets: int, name: str) -> NtileBuckets:
    """The n-tile bucket of every row as a key whose dictionary holds each bucket's representative value.

    Cut points are the pooled inverted-CDF quantiles at k/N (unique). Bucket
    ``2i`` holds the values in (cut[i-1], cut[i]]; a cut value that is an atom
    (pooled mass of at least a tenth of a bucket's 1/N share and of two rows, e.g. a run of
    zeros in the middle of the distribution) is split off as its own bucket
    ``2i+1``, so that it is neither smeared over its neighbours' range by the
    interpolated quantiles nor averaged with them. A bucket's representative
    value is its pooled mean; its range ``[lower, upper]`` is (cut[i-1], cut[i]]
    (the data's min / max at the ends), collapsed to the value when all its
    rows are equal. Rows that the group-by will drop (NaN metric or weight,
    null key, weight 0) do not shape the cuts.
    """
    valid = ~np.isnan(y)
    if w is not None:
        valid &= ~np.isnan(w) & (w > 0)
    for key in keys:
        valid &= key.indices >= 0
    if not valid.any():
        raise MissingValuesError(
            f"{name}: no row has a non-null metric, non-null keys and a positive weight; check the columns"
        )
    all_valid = bool(valid.all())
    yv = y if all_valid else y[valid]  # no copy in the common case (10M rows = 80 MB per copy)
    wv = None if w is None else (w if all_valid else w[valid])
    cuts = pooled_cuts(yv, wv, buckets)
    n_cuts = len(cuts)
    pos = np.searchsorted(cuts, yv, side="left")
    on_cut = yv == cuts[np.minimum(pos, n_cuts - 1)]  # pos == n_cuts is above every cut: never equal there
    n_labels = 2 * n_cuts + 1
    label = 2 * pos + on_cut
    del pos, on_cut
    point_mass = np.bincount(label, weights=wv, minlength=n_labels)[1::2]
    total_mass = float(len(yv)) if wv is None else float(wv.sum())
    atom = point_mass >= max(total_mass / buckets / 10, 2.0)  # a lone row is no atom
    if not atom.all():  # light cut values stay in the bucket below them
        remap = np.arange(n_labels)
        remap[1::2][~atom] -= 1
        label = remap[label]

    mass = np.bincount(label, weights=wv, minlength=n_labels).astype(np.float64)
    total = np.bincount(label, weights=yv if wv is None else wv * yv, minlength=n_labels)
    rep = np.divide(total, mass, out=np.full(n_labels, np.nan), where=mass > 0)
    lower = np.empty(n_labels)
    upper = np.empty(n_labels)
    lower[0::2] = np.concatenate([[float(yv.min())], cuts])
    upper[0::2] = np.concatenate([cuts, [float(yv.max())]])
    lower[1::2] = upper[1::2] = cuts
    # single-valued buckets keep their exact value and no width (order-independent: any member will do)
    member = np.zeros(n_labels)
    member[label] = yv
    gap = np.abs(yv - member[label])
    spread = np.bincount(label, weights=gap if wv is None else wv * gap, minlength=n_labels)
    del gap
    exact = (mass > 0) & (spread == 0)
    rep[exact] = lower[exact] = upper[exact] = member[exact]
    if all_valid:
        indices = label.astype(np.int32)
    else:
        indices = np.full(len(y), -1, dtype=np.int32)
        indices[valid] = label
    key = EncodedKey(name=name, indices=indices, dictionary=pa.array(rep, pa.float64()))
    return NtileBuckets(key=key, lower=lower, upper=upper, used=int((mass > 0).sum()))


@dataclass(frozen=True)
class DistributionView:
    """The metric values of a distribution table, checked, for the rank and quantile models.

    Counts are not held here: a model takes them from ``ModelData.n`` so that
    bootstrap re-weighting and subgroup masks apply.
    """

    metric: str
    values: F64
    lossy: bool
    label: str
    lower: F64 | None = None
    upper: F64 | None = None

    @classmethod
    def of(cls, compressed: CompressedTable, metric: str, model: str) -> DistributionView:
        """Validate that ``compressed`` is a distribution table of ``metric`` and read its value column."""
        layout = compressed.layout
        if layout.kind != "distribution":
            raise InputError(
                f"model {model!r} needs distribution-compressed data (one row per cell and metric value, "
                f"compression.distribution.compress_distribution); got a {layout.kind!r} table"
            )
        vcol = value_column(metric)
        if metric not in layout.metrics or vcol not in compressed.table.column_names:
            raise InputError(
                f"model {model!r}: the distribution table holds {', '.join(layout.metrics) or 'no metric'}, "
                f"not {metric!r}; compress the metric the spec names"
            )
        def floats(name: str) -> F64:
            return np.asarray(compressed.table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)

        names = compressed.table.column_names
        ranged = lower_column(metric) in names and upper_column(metric) in names
        return cls(
            metric=metric,
            values=floats(vcol),
            lossy=bool(layout.extra.get("lossy", False)),
            label=str(layout.extra.get("compress", "lossless")),
            lower=floats(lower_column(metric)) if ranged else None,
            upper=floats(upper_column(metric)) if ranged else None,
        )

    @property
    def grouped(self) -> bool:
        """True when rows are n-tile buckets with value ranges (quantiles interpolate within a bucket)."""
        return self.lower is not None

    def sample(self, counts: F64, mask: NDArray[np.bool_]) -> Sample:
        """The rows selected by ``mask`` that carry positive weight."""
        sel = mask & (counts > 0)
        return Sample(
            values=self.values[sel],
            counts=counts[sel],
            lower=None if self.lower is None else self.lower[sel],
            upper=None if self.upper is None else self.upper[sel],
        )


@dataclass(frozen=True)
class Sample:
    """Values with frequency counts (and, for n-tile rows, each bucket's value range)."""

    values: F64
    counts: F64
    lower: F64 | None = None
    upper: F64 | None = None
