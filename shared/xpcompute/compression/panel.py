"""Lossless compression of a user-by-period panel, keeping what a user-clustered regression needs.

A raw panel has one row per (user, period) with the user's treatment cell,
user-level discrete keys and a metric value. A regression of ``y_ut`` on
period and period-by-cell effects (plus user-level dummies) with standard
errors clustered by user needs, per user ``u``:

* ``y_u``: the user's metric per period (a vector over the ``P`` periods,
  zero where absent) and ``p_u``: how many rows the user has in each period
  (0 or 1 in a proper panel; duplicates are summed, which keeps the
  regression on the raw rows exact);
* a cluster's score is a linear map of its residual vector
  ``e_u = y_u - p_u * f`` (``f`` the fitted per-period values of its group),
  so the meat needs ``sum_u e_u e_u'``, which expands into the group sums of
  ``y y'``, ``y p'`` and ``p p'``.

So users are pivoted to vectors and then grouped by (cell, discrete keys) with
the C++ hash group-by (``native.group_moments``) over the ``2P`` columns
``y_0..y_{P-1}, p_0..p_{P-1}`` with every first- and second-order monomial.
This is how the compressed-regression literature (YOCO) keeps clustering
lossless. Per metric the compressed table holds (``s``, ``t`` index the sorted
period labels in ``layout.extra["periods"]``, starting at 0):

* ``{metric}__users``: frequency-weighted users with at least one value of the metric;
* ``{metric}__y_{s}``, ``{metric}__p_{s}``: sums of ``y_us`` and ``p_us``;
* ``{metric}__yy_{s}_{t}`` (``s <= t``), ``{metric}__yp_{s}_{t}`` (all ``s, t``),
  ``{metric}__pp_{s}_{t}`` (``s <= t``): sums of ``y_us y_ut``, ``y_us p_ut``, ``p_us p_ut``;

plus the key columns and ``_n`` (frequency-weighted users). A frequency
weight is a per-user replicate count: a user with weight 3 stands for three
users (three clusters) with the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from xpcompute import native
from xpcompute.compression.encode import (
    EncodedKey,
    decode_codes,
    encode_key,
    is_categorical,
    numeric_column,
    require_columns,
)
from xpcompute.compression.panel_gram import panel_moments
from xpcompute.compression.schema import COUNT_COLUMN, CompressedLayout, CompressedTable, MetricLayout
from xpcompute.compression.transform import ColumnTransform, column_transforms, transforms_for
from xpcompute.errors import CellError, ColumnTypeError, InputError
from xpcompute.spec import FitSpec

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
_G = TypeVar("_G", bound=np.generic)

#: Most periods a panel may have: each metric keeps 2P^2 + 3P sums per group.
MAX_PERIODS = 100

__all__ = [
    "MAX_PERIODS",
    "PanelSums",
    "compress_panel",
    "compress_user_periods",
    "panel_columns",
    "panel_sums",
    "users_column",
]


# ---- the schema -------------------------------------------------------------
def panel_columns(metric: str, n_periods: int) -> tuple[tuple[str, ...], NDArray[np.int32]]:
    """Column names of one metric's panel sums and their exponent rows over ``(y_0..y_{P-1}, p_0..p_{P-1})``.

    The order (users aside) is: ``y_s``, ``p_s``, ``yy_s_t`` (s<=t), ``yp_s_t`` (all), ``pp_s_t`` (s<=t).
    """
    p = n_periods
    names: list[str] = []
    rows: list[list[int]] = []

    def add(name: str, *cols: int) -> None:
        e = [0] * (2 * p)
        for c in cols:
            e[c] += 1
        names.append(f"{metric}__{name}")
        rows.append(e)

    for s in range(p):
        add(f"y_{s}", s)
    for s in range(p):
        add(f"p_{s}", p + s)
    for s in range(p):
        for t in range(s, p):
            add(f"yy_{s}_{t}", s, t)
    for s in range(p):
        for t in range(p):
            add(f"yp_{s}_{t}", s, p + t)
    for s in range(p):
        for t in range(s, p):
            add(f"pp_{s}_{t}", p + s, p + t)
    return tuple(names), np.asarray(rows, dtype=np.int32).reshape(len(rows), 2 * p)


def users_column(metric: str) -> str:
    """Column of the frequency-weighted number of users (clusters) with data on ``metric``."""
    return f"{metric}__users"


@dataclass(frozen=True)
class PanelSums:
    """One metric's panel sums as arrays, one leading row per compressed group.

    ``yy``, ``yp`` and ``pp`` are full ``[G, P, P]`` matrices (``yy`` and ``pp``
    symmetric; ``yp[g, s, t] = sum_u y_us p_ut``).
    """

    periods: tuple[str, ...]
    users: F64
    y: F64
    p: F64
    yy: F64
    yp: F64
    pp: F64

    def scaled(self, scale: F64 | None) -> PanelSums:
        """Every sum of group ``g`` multiplied by ``scale[g]`` (a bootstrap replicate), or self for None."""
        if scale is None:
            return self
        s1, s2 = scale[:, None], scale[:, None, None]
        return PanelSums(self.periods, self.users * scale, self.y * s1, self.p * s1, self.yy * s2, self.yp * s2,
                         self.pp * s2)


def panel_sums(compressed: CompressedTable, metric: str) -> PanelSums:
    """Read one metric's sums from a panel table (as written by ``compress_panel`` or read back from Parquet)."""
    layout = compressed.layout
    if layout.kind != "panel":
        raise InputError(
            f"compressed table has kind {layout.kind!r}, not 'panel'; compress the raw user-by-period rows "
            "with compress_panel (model 'dte')"
        )
    if metric not in layout.metrics:
        known = ", ".join(layout.metrics) or "none"
        raise InputError(f"metric {metric!r} is not in the compressed panel (it holds: {known})")
    periods = tuple(str(p) for p in layout.extra.get("periods", ()))
    p = len(periods)
    table = compressed.table
    names, _ = panel_columns(metric, p)
    have = set(table.column_names)  # once: the property builds a new list on every call (2P^2 + 3P names)
    missing = [n for n in (users_column(metric), *names) if n not in have]
    if missing:
        raise InputError(
            f"compressed panel lacks column(s) {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; "
            "recompress the raw rows with compress_panel"
        )

    def col(name: str) -> F64:
        return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)

    g = table.num_rows
    y = np.column_stack([col(f"{metric}__y_{s}") for s in range(p)]) if p else np.zeros((g, 0))
    pres = np.column_stack([col(f"{metric}__p_{s}") for s in range(p)]) if p else np.zeros((g, 0))
    yy = np.zeros((g, p, p))
    yp = np.zeros((g, p, p))
    pp = np.zeros((g, p, p))
    for s in range(p):
        for t in range(p):
            yp[:, s, t] = col(f"{metric}__yp_{s}_{t}")
            if s <= t:
                yy[:, s, t] = yy[:, t, s] = col(f"{metric}__yy_{s}_{t}")
                pp[:, s, t] = pp[:, t, s] = col(f"{metric}__pp_{s}_{t}")
    return PanelSums(periods=periods, users=col(users_column(metric)), y=y, p=pres, yy=yy, yp=yp, pp=pp)


# ---- compression -------------------------------------------------------------
def compress_panel(data: pa.Table | pa.RecordBatch, spec: FitSpec) -> CompressedTable:
    """Compress raw user-by-period rows the way ``spec`` (model ``dte``) needs them.

    ``spec.covariates`` must be discrete (string, dictionary or bool) and
    constant within a user; ``spec.weights`` is a per-user frequency weight;
    ``--compress none`` keeps one compressed row per user (same code path).
    """
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if not spec.time or not spec.cluster:
        raise InputError("the panel (model 'dte') needs a time column and a cluster (user) column: --time COL --cluster COL")
    if spec.compress.kind == "ntile":
        raise InputError("ntile compression is lossy and does not apply to the panel (model 'dte'); use lossless or none")
    if spec.segment:
        raise InputError(
            f"model 'dte' reports effects per period, not per segment; drop --segment {spec.segment} "
            "(use model 'cate' for segments) or add it as a discrete covariate"
        )
    require_columns(data, list(spec.covariates), "covariate")
    numeric = [c for c in spec.covariates if not is_categorical(data.schema.field(c).type)]
    if numeric:
        raise ColumnTypeError(
            f"model 'dte' adjusts only for discrete user-level covariates; {', '.join(numeric)} is numeric. "
            "Cast it to string to dummy-code it, or drop it"
        )
    keys = [c for c in spec.covariates if c != spec.treatment]
    return compress_user_periods(
        data,
        metrics=(spec.metric,),
        treatment=spec.treatment,
        time=spec.time,
        cluster=spec.cluster,
        keys=keys,
        weights=spec.weights,
        row_level=spec.compress.kind == "none",
        transforms=column_transforms(data, [spec.metric], "metric"),
    )


def _kept(transforms: tuple[ColumnTransform, ...]) -> tuple[ColumnTransform, ...]:
    """The transforms to record: none when all are the identity (as ``MetricLayout.build`` records them)."""
    return () if all(t.is_identity for t in transforms) else transforms


def compress_user_periods(
    data: pa.Table | pa.RecordBatch,
    *,
    metrics: Sequence[str],
    treatment: str,
    time: str,
    cluster: str,
    keys: Sequence[str] = (),
    weights: str | None = None,
    row_level: bool = False,
    transforms: Mapping[str, ColumnTransform] | None = None,
) -> CompressedTable:
    """Pivot each user to per-period vectors and group users by (treatment, keys) into panel sums.

    ``transforms`` (``transform.py``) shift and scale each metric's rows before
    they are pivoted, so ``yy`` keeps its digits at any location: a user's
    period sum is then ``(y_us - shift p_us) / scale``, and with one intercept
    per period the regression on it is the regression on ``y`` (``models/dte.py``).

    Rows with a null user, period, cell, key or weight are dropped from every
    metric, rows with a null metric from that metric; both are counted in
    ``layout.dropped``. A user must have one cell, one value of each key and
    one weight across its rows; otherwise a typed error names an offending user.
    ``row_level=True`` keeps one compressed row per user (``--compress none``).
    """
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    metrics = tuple(metrics)
    if not metrics:
        raise InputError("nothing to compress: name at least one metric")
    require_columns(data, [time], "time column (--time)")
    require_columns(data, [cluster], "cluster column (--cluster, the user id)")
    require_columns(data, [treatment], "treatment column")
    require_columns(data, list(keys), "key column")
    require_columns(data, list(metrics), "metric")
    if time == cluster:
        raise InputError(f"the time and cluster columns are both {time!r}; name the period column and the user id")
    for name, role in ((time, "time"), (cluster, "cluster")):
        if name == treatment or name in keys or name in metrics:
            raise InputError(
                f"the {role} column {name!r} is also the treatment, a key or a metric; name a different column"
            )
    n_rows = data.num_rows
    rows = _user_rows(data, treatment=treatment, time=time, cluster=cluster, keys=keys, weights=weights,
                      row_level=row_level)
    n_users, n_periods = rows.n_users, len(rows.periods)

    names_by_metric: dict[str, tuple[str, ...]] = {}
    results: list[tuple[str, native.GroupMoments]] = []
    dropped: dict[str, int] = {}
    for metric in metrics:
        y = transforms_for(transforms, (metric,))[0].apply(numeric_column(data, metric, "metric"))
        if rows.valid is not None:
            y = y[rows.valid]
        ok = ~np.isnan(y)
        flat, yv = (rows.flat, y) if ok.all() else (rows.flat[ok], y[ok])
        del y, ok
        dropped[metric] = int(n_rows - len(yv))
        z = _pivot(flat, yv, n_periods, n_users)
        del flat, yv
        has = z[:, n_periods:].any(axis=1) if n_periods else np.zeros(n_users, bool)
        mkeys = [np.where(has, k, -1).astype(np.int32) for k in rows.user_keys]
        names, exps = panel_columns(metric, n_periods)
        names_by_metric[metric] = names
        res = panel_moments(mkeys, rows.radices, z, exps, rows.user_w, n_users)  # Gram matrices when few groups
        results.append((metric, res))
        del z

    no_exps = np.zeros((0, 0), np.int32)
    counts = native.group_moments(rows.user_keys, rows.radices, [], no_exps, rows.user_w, n_users)
    all_codes = np.unique(np.concatenate([counts.codes, *[r.codes for _, r in results]]))
    columns_out: dict[str, pa.Array] = {}
    for key, arr in zip(rows.out_keys, decode_codes(all_codes, rows.out_keys), strict=True):
        if not (row_level and key.name == cluster):
            columns_out[key.name] = arr
    columns_out[COUNT_COLUMN] = pa.array(_align(all_codes, counts.codes, counts.counts[:, None])[:, 0])
    for metric, res in results:
        columns_out[users_column(metric)] = pa.array(_align(all_codes, res.codes, res.counts[:, None])[:, 0])
        sums = _align(all_codes, res.codes, res.sums)
        for j, name in enumerate(names_by_metric[metric]):
            columns_out[name] = pa.array(sums[:, j])
    layout = CompressedLayout(
        kind="panel",
        keys=(treatment, *keys),
        metrics={m: MetricLayout(metric=m, transforms=_kept(transforms_for(transforms, (m,)))) for m in metrics},
        n_rows=n_rows,
        dropped=dropped,
        extra={
            "periods": list(rows.periods),
            "time": time,
            "cluster": cluster,
            "treatment": treatment,
            "weights": weights,
            "row_level": row_level,
            "n_users": n_users,
        },
    )
    return CompressedTable(table=pa.table(columns_out), layout=layout)


# ---- helpers -------------------------------------------------------------------
@dataclass(frozen=True)
class _UserRows:
    """What the pivot needs from the row-level key columns, which can then be freed.

    ``flat`` is ``user * 2P + period`` for every kept row (``valid`` selects
    them from the input, None when all are kept); ``user_keys`` holds each user's
    cell and key codes (-1 for users without kept rows), ``out_keys`` the
    dictionaries to decode group codes with.
    """

    flat: I64
    valid: NDArray[np.bool_] | None
    n_users: int
    periods: tuple[str, ...]
    user_keys: list[NDArray[np.int32]]
    radices: list[int]
    out_keys: list[EncodedKey]
    user_w: F64 | None


def _user_rows(
    data: pa.Table, *, treatment: str, time: str, cluster: str, keys: Sequence[str], weights: str | None,
    row_level: bool,
) -> _UserRows:
    """Encode the user, period, cell and key columns and reduce them to per-user values and pivot indices.

    Key columns are encoded one at a time and reduced to one value per user at
    once, so at most one row-level key column is alive besides the user codes
    (peak memory stays close to the input's size).
    """
    valid = np.ones(data.num_rows, dtype=bool)
    for name in (cluster, time, treatment, *keys):
        column = data.column(name)
        if column.null_count:
            valid &= np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False), dtype=bool)
    w_rows = None if weights is None else numeric_column(data, weights, "weight")
    if w_rows is not None:
        valid &= ~np.isnan(w_rows)
        if np.any(w_rows[valid] < 0):
            raise InputError(f"weight column {weights!r} has negative values; frequency weights must be >= 0")
    all_valid = bool(valid.all())

    def kept(values: NDArray[_G]) -> NDArray[_G]:
        return values if all_valid else values[valid]

    user_all, user_dict = _hash_codes(data.column(cluster))
    user = kept(user_all)
    del user_all
    n_users = len(user_dict)
    user_keys: list[NDArray[np.int32]] = []
    out_keys: list[EncodedKey] = []
    for name in (treatment, *keys):
        key = encode_key(data.column(name), name)
        user_keys.append(_user_constant(user, kept(key.indices), n_users, key, user_dict, treatment))
        out_keys.append(EncodedKey(name, np.zeros(0, np.int32), key.dictionary))
        del key
    user_w = None if w_rows is None else _user_weight(user, kept(w_rows), n_users, weights or "", user_dict)
    del w_rows
    radices = [k.radix for k in out_keys]
    if row_level:
        user_keys.append(np.where(user_keys[0] >= 0, np.arange(n_users), -1).astype(np.int32))
        radices.append(max(n_users, 1))
        out_keys.append(EncodedKey(cluster, np.zeros(0, np.int32), user_dict))
    prod = 1
    for r in radices:
        prod *= r
    if prod >= 2**62:
        raise InputError(f"too many distinct (cell, key) combinations ({prod}); drop a high-cardinality key from {keys}")
    period_key = encode_key(data.column(time), time)
    if len(period_key.dictionary) > MAX_PERIODS:
        raise InputError(
            f"time column {time!r} has {len(period_key.dictionary)} distinct periods; the panel keeps O(P^2) sums "
            f"per group and allows at most {MAX_PERIODS}: coarsen it (e.g. days to weeks) or filter the date range"
        )
    flat = user.astype(np.int64)
    flat *= 2 * len(period_key.dictionary)
    flat += kept(period_key.indices)
    periods = tuple(str(v) for v in period_key.dictionary.to_pylist())
    return _UserRows(flat=flat, valid=None if all_valid else valid, n_users=n_users, periods=periods,
                     user_keys=user_keys, radices=radices, out_keys=out_keys, user_w=user_w)


def _pivot(flat: I64, y: F64, n_periods: int, n_users: int) -> F64:
    """Each user's period vector ``[y_0..y_{P-1}, p_0..p_{P-1}]`` (sums of ``y`` and row counts) as a row of a
    C-contiguous ``[U, 2P]`` matrix, so a block of users is a block of rows for the Gram product.

    ``flat`` indexes the ``y`` half (``user * 2P + period``); presence is scattered
    into a byte array (8x smaller than ``z``) and copied into the ``p`` half, and the
    pivot falls back to counting only when some user has two rows in one period.
    """
    k = 2 * n_periods
    size = n_users * k
    if k == 0:
        return np.zeros((n_users, 0))
    seen = np.zeros(size, dtype=np.uint8)  # 1/8 of z's bytes: the presence scatter stays in cache far more
    seen[flat] = 1
    if np.count_nonzero(seen) != len(flat):  # duplicate (user, period) rows: sum them and count them
        del seen
        z = np.bincount(flat, weights=y, minlength=size).astype(np.float64, copy=False)
        z[n_periods:] += np.bincount(flat, minlength=size)[: size - n_periods]
        return z.reshape(n_users, k)
    z = np.zeros(size)
    z[flat] = y + 0.0  # what the summing pivot stores (0.0 + y: a -0.0 becomes 0.0)
    z = z.reshape(n_users, k)
    z[:, n_periods:] = seen.reshape(n_users, k)[:, :n_periods]
    return z


def _hash_codes(column: pa.ChunkedArray | pa.Array) -> tuple[NDArray[np.integer], pa.Array]:
    """Hash-encode a column (user ids) without sorting: dense codes in first-seen order; null = -1.

    User order never reaches the output (users are summed into groups), so
    the sort that ``encode_key`` pays for is not needed here. Integer ids
    without nulls in a range not much wider than the rows take ``_int_codes``
    (the same codes and dictionary, several times faster than Arrow's hash).
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    fast = _int_codes(column)
    if fast is not None:
        return fast
    encoded = pc.dictionary_encode(column)
    indices = encoded.indices
    if indices.null_count:
        indices = pc.fill_null(indices, -1)
    return np.asarray(indices.to_numpy(zero_copy_only=False)), encoded.dictionary


#: rows per chunk of the first-seen scan in ``_int_codes``
_CHUNK = 1 << 20


def _int_range(column: pa.Array) -> tuple[NDArray[np.integer], int, int] | None:
    """An integer column without nulls as NumPy, its minimum and its range, when a direct-address table over
    the range costs at most a few bytes per row; None otherwise."""
    if not pa.types.is_integer(column.type) or pa.types.is_uint64(column.type) or column.null_count or not len(column):
        return None
    mm = pc.min_max(column)
    lo, hi = int(mm["min"].as_py()), int(mm["max"].as_py())
    span = hi - lo + 1
    if span > 4 * len(column) + 1024:
        return None
    return np.asarray(column.to_numpy(zero_copy_only=False)), lo, span


def _int_codes(column: pa.Array) -> tuple[NDArray[np.int32], pa.Array] | None:
    """``pc.dictionary_encode``'s codes (first-seen order) and dictionary of an integer column, by a
    direct-address table over its range scanned in chunks; None when ``_int_range`` refuses the column."""
    found = _int_range(column)
    if found is None:
        return None
    values, lo, span = found
    rank = np.full(span, -1, dtype=np.int32)
    first = np.full(span, _CHUNK, dtype=np.int32)  # scratch: a new value's first row in the chunk
    codes = np.empty(len(values), dtype=np.int32)
    seen: list[NDArray[np.int64]] = []
    n_seen = 0
    for start in range(0, len(values), _CHUNK):
        slot = values[start: start + _CHUNK].astype(np.int64)
        slot -= lo
        got = rank[slot]
        new = got < 0
        if new.any():
            unseen = slot[new]
            at = np.flatnonzero(new).astype(np.int32)
            np.minimum.at(first, unseen, at)  # no sort: each new value's first row
            fresh = unseen[first[unseen] == at]  # first occurrences, in order of appearance
            first[fresh] = _CHUNK
            rank[fresh] = np.arange(n_seen, n_seen + len(fresh), dtype=np.int32)
            n_seen += len(fresh)
            seen.append(fresh)
            got[new] = rank[unseen]
        codes[start: start + len(slot)] = got
    order = np.concatenate(seen) + lo
    return codes, pa.array(order, type=pa.int64()).cast(column.type)


def _user_constant(
    user: NDArray[np.integer], values: NDArray[np.int32], n_users: int, key: EncodedKey, user_dict: pa.Array,
    treatment: str,
) -> NDArray[np.int32]:
    """Each user's single code of ``key`` (-1 for users without rows); refuses users with two codes."""
    out = np.full(n_users, -1, dtype=np.int32)
    out[user] = values
    bad = np.flatnonzero(out[user] != values)
    if len(bad):
        i = int(bad[0])
        who = user_dict[int(user[i])].as_py()
        first = key.dictionary[int(out[user[i]])].as_py()
        second = key.dictionary[int(values[i])].as_py()
        n_bad = len(np.unique(user[bad]))
        if key.name == treatment:
            raise CellError(
                f"user {who!r} appears in cells {first!r} and {second!r} ({n_bad} user(s) in more than one cell); "
                "each user must stay in one cell: remove users exposed to several cells before the analysis"
            )
        raise InputError(
            f"key {key.name!r} changes within user {who!r} ({first!r} and {second!r}; {n_bad} user(s) affected); "
            "the panel needs user-level keys: use the value at assignment, or drop the covariate"
        )
    return out


def _user_weight(user: NDArray[np.integer], w: F64, n_users: int, name: str, user_dict: pa.Array) -> F64:
    """Each user's frequency weight (NaN for users without rows, which the group-by then drops)."""
    out = np.full(n_users, np.nan)
    out[user] = w
    bad = np.flatnonzero(out[user] != w)
    if len(bad):
        who = user_dict[int(user[bad[0]])].as_py()
        raise InputError(
            f"weight {name!r} changes within user {who!r}; a panel weight is one replicate count per user: "
            "repeat it on every row of the user"
        )
    return out


def _align(target: I64, codes: I64, values: F64) -> F64:
    """Rows of ``values`` (keyed by sorted ``codes``) placed on the sorted ``target`` codes, zeros elsewhere."""
    if len(codes) == len(target):
        return values
    out = np.zeros((len(target), values.shape[1]))
    out[np.searchsorted(target, codes)] = values
    return out
