"""Readable NumPy specifications of the C++ primitives.

Each function here states, in plain NumPy, exactly what the matching function
in the compiled ``_core`` module computes. They are the oracles of the
property tests and the place a scientist reads to know what a primitive means.
They are never used silently in production: the facade only selects them when
``XPCOMPUTE_NATIVE=reference`` is set explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from xpcompute.native.types import GroupMoments, SolveResult

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


def combine_keys(keys: Sequence[NDArray[np.integer]], radices: Sequence[int]) -> tuple[I64, NDArray[np.bool_]]:
    """Mixed-radix code of several dictionary indices; a negative index (null key) marks the row invalid."""
    n = len(keys[0]) if keys else 0
    code = np.zeros(n, dtype=np.int64)
    valid = np.ones(n, dtype=bool)
    for idx, radix in zip(keys, radices, strict=True):
        idx64 = np.asarray(idx, dtype=np.int64)
        valid &= (idx64 >= 0) & (idx64 < radix)
        code = code * radix + np.where(idx64 >= 0, idx64, 0)
    return code, valid


def group_moments(
    keys: Sequence[NDArray[np.integer]],
    radices: Sequence[int],
    columns: Sequence[F64],
    exponents: NDArray[np.int32],
    weights: F64 | None = None,
    n_rows: int | None = None,
) -> GroupMoments:
    """Hash group-by of weighted monomials.

    For every group g (distinct combined key, sorted ascending) and every
    monomial j: ``sums[g, j] = sum_i w_i * prod_c columns[c][i] ** exponents[j, c]``
    and ``counts[g] = sum_i w_i``. Rows with a null key (negative index) or a
    NaN in any column are left out and counted in ``dropped``.
    """
    if n_rows is None:
        n_rows = len(columns[0]) if columns else (len(keys[0]) if keys else 0)
    code, valid = combine_keys(keys, radices) if keys else (np.zeros(n_rows, np.int64), np.ones(n_rows, bool))
    for col in columns:
        valid &= ~np.isnan(col)
    w = np.ones(n_rows) if weights is None else np.asarray(weights, dtype=np.float64)
    valid &= ~np.isnan(w)
    dropped = int(n_rows - valid.sum())
    code, w = code[valid], w[valid]
    cols = [np.asarray(c, dtype=np.float64)[valid] for c in columns]
    uniq, inverse = np.unique(code, return_inverse=True)
    counts = np.asarray(np.bincount(inverse, weights=w, minlength=len(uniq)), dtype=np.float64)
    exps = np.asarray(exponents, dtype=np.int32).reshape(-1, len(columns)) if len(columns) else np.zeros((0, 0), np.int32)
    sums = np.zeros((len(uniq), exps.shape[0]))
    for j, row in enumerate(exps):
        term = w.copy()
        for c, e in enumerate(row):
            if e:
                term = term * cols[c] ** int(e)
        sums[:, j] = np.bincount(inverse, weights=term, minlength=len(uniq))
    return GroupMoments(codes=uniq.astype(np.int64), counts=counts, sums=sums, dropped=dropped)


def gram_meat(x: F64, w: F64, wy: F64, e2: F64 | None = None) -> tuple[F64, F64, F64 | None]:
    """One pass over compressed rows: ``X'WX``, ``X'(wy)`` and, if given, the HC meat ``X' diag(e2) X``."""
    xtwx = x.T @ (x * w[:, None])
    xtwy = x.T @ wy
    meat = None if e2 is None else x.T @ (x * e2[:, None])
    return xtwx, xtwy, meat


def cluster_meat(scores: F64, clusters: I64) -> F64:
    """``sum_c s_c s_c'`` where ``s_c`` sums the score rows of cluster ``c``."""
    uniq, inverse = np.unique(clusters, return_inverse=True)
    summed = np.zeros((len(uniq), scores.shape[1]))
    np.add.at(summed, inverse, scores)
    return summed.T @ summed


def cholesky_solve(a: F64, b: F64, tol: float = 1e-10) -> SolveResult:
    """Solve the symmetric PSD system ``a x = b``, dropping collinear columns in order.

    Column k is dropped when, after eliminating the kept columns before it, its
    remaining diagonal is below ``tol`` times its original diagonal. Dropped
    coefficients are 0 and their rows/columns of ``inverse`` are 0.
    """
    k = a.shape[0]
    keep: list[int] = []
    dropped: list[int] = []
    for j in range(k):
        trial = [*keep, j]
        sub = a[np.ix_(trial, trial)]
        diag = a[j, j]
        if diag <= 0:
            dropped.append(j)
            continue
        if keep:
            s = a[np.ix_(keep, keep)]
            v = a[keep, j]
            resid = diag - v @ np.linalg.solve(s, v)
        else:
            resid = diag
        if resid <= tol * diag or not np.isfinite(sub).all():
            dropped.append(j)
        else:
            keep.append(j)
    inv = np.zeros_like(a)
    x = np.zeros_like(b, dtype=np.float64)
    if keep:
        ix = np.ix_(keep, keep)
        inv_k = np.linalg.inv(a[ix])
        inv[ix] = inv_k
        x[keep] = inv_k @ b[keep]
    return SolveResult(x=x, inverse=inv, rank=len(keep), dropped=np.asarray(dropped, dtype=np.int64))


def weighted_quantiles(values: F64, weights: F64, probs: F64) -> F64:
    """Inverted-CDF quantile: the smallest v with cumulative weight >= p * total (numpy 'inverted_cdf')."""
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    keep = w > 0
    v, w = v[keep], w[keep]
    cum = np.cumsum(w)
    total = cum[-1]
    idx = np.searchsorted(cum, np.asarray(probs) * total, side="left")
    # guard against rounding leaving the target a hair above the last cumulative weight
    return np.asarray(v[np.minimum(idx, len(v) - 1)], dtype=np.float64)


def rank_sums(values_a: F64, weights_a: F64, values_b: F64, weights_b: F64) -> tuple[float, float]:
    """Mid-rank sum of sample a in the pooled sample, and the tie term ``sum(t^3 - t)``.

    Weights are integer frequencies: a row with weight 3 counts as three equal values.
    """
    vals = np.concatenate([values_a, values_b])
    wts = np.concatenate([weights_a, weights_b])
    is_a = np.concatenate([np.ones(len(values_a), bool), np.zeros(len(values_b), bool)])
    uniq, inverse = np.unique(vals, return_inverse=True)
    tot = np.bincount(inverse, weights=wts, minlength=len(uniq))
    a_w = np.bincount(inverse[is_a], weights=wts[is_a], minlength=len(uniq))
    upper = np.cumsum(tot)
    mid = upper - (tot - 1) / 2.0
    return float(np.sum(a_w * mid)), float(np.sum(tot**3 - tot))


def poisson_weights(counts: F64, reps: int, seed: int, threads: int = 0) -> F64:
    """Poisson bootstrap replicate weights: ``out[b, g] ~ Poisson(counts[g])``, independent over b and g.

    A compressed row standing for ``counts[g]`` identical input rows gets the sum of that many
    Poisson(1) draws, which is Poisson(counts[g]). The compiled version seeds replicate ``b`` from
    ``(seed, b)`` alone, so results do not depend on ``threads``; this NumPy version draws from
    another generator, so it matches the compiled one in distribution, not draw for draw.
    """
    rng = np.random.default_rng(seed)
    return rng.poisson(np.asarray(counts, dtype=np.float64), size=(reps, len(counts))).astype(np.float64)


def bootstrap_quantiles(
    values: F64, counts: F64, groups: NDArray[np.int32], n_groups: int, probs: F64, reps: int, seed: int, threads: int = 0
) -> F64:
    """Weighted quantiles per group under each Poisson replicate: ``out[b, k, j]``.

    Equals ``weighted_quantiles(values[groups == k], poisson_weights(counts, reps, seed)[b][groups == k], probs)[j]``
    (NaN where a replicate leaves a group empty).
    """
    w = poisson_weights(counts, reps, seed, threads)
    out = np.full((reps, n_groups, len(probs)), np.nan)
    for b in range(reps):
        for k in range(n_groups):
            sel = groups == k
            if w[b, sel].sum() > 0:
                out[b, k] = weighted_quantiles(values[sel], w[b, sel], probs)
    return out


def grouped_quantiles(values: F64, lower: F64, upper: F64, weights: F64, probs: F64) -> F64:
    """Quantiles of n-tile data by linear interpolation of the CDF inside each bucket (the grouped-data ogive).

    ``weights`` is ``[G]`` or ``[R, G]`` (R weightings of the same G rows, e.g.
    bootstrap replicates); rows with the same value are one bucket and are
    merged. For prob p the bucket j is the first whose cumulative weight reaches
    ``p * total`` (as in the inverted CDF), and the quantile is
    ``lower_j + (p * total - F_{j-1}) / w_j * (upper_j - lower_j)``. A
    single-valued bucket (``lower == upper``) returns its value, so on exact
    rows this is the inverted-CDF quantile. Returns ``[R, P]`` (NaN where a
    weighting is all zero).
    """
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if len(values) == 0 or len(w) == 0:
        return np.full((len(w), len(probs)), np.nan)
    order = np.argsort(values, kind="stable")
    v_sorted = values[order]
    starts = np.flatnonzero(np.r_[True, v_sorted[1:] != v_sorted[:-1]])
    merged = np.add.reduceat(w[:, order], starts, axis=1)
    lo, hi = lower[order][starts], upper[order][starts]
    n_reps, n_b = merged.shape
    out = np.full((n_reps, len(probs)), np.nan)
    cum = np.cumsum(merged, axis=1)
    total = cum[:, -1]
    target = total[:, None] * probs[None, :]
    j = np.minimum((cum[:, :, None] < target[:, None, :]).sum(axis=1), n_b - 1)
    rows = np.arange(n_reps)[:, None]
    prev = np.where(j > 0, cum[rows, np.maximum(j - 1, 0)], 0.0)
    mass = merged[rows, j]
    frac = np.clip(np.divide(target - prev, mass, out=np.ones_like(target), where=mass > 0), 0.0, 1.0)
    q = lo[j] + frac * (hi[j] - lo[j])
    ok = total > 0
    out[ok] = q[ok]
    return out


def bootstrap_grouped_quantiles(
    values: F64,
    lower: F64,
    upper: F64,
    counts: F64,
    groups: NDArray[np.int32],
    n_groups: int,
    probs: F64,
    reps: int,
    seed: int,
    threads: int = 0,
    window_sd: float = 0.0,
) -> F64:
    """Grouped-data (n-tile) quantiles per group under each Poisson replicate: ``out[b, k, j]``.

    ``window_sd`` selects the compiled version's windowed draws (the same bootstrap in law); this
    specification always draws every bucket.

    Equals ``grouped_quantiles(values[sel], lower[sel], upper[sel], poisson_weights(counts, reps, seed)[:, sel],
    probs)`` with ``sel = groups == k`` (NaN where a replicate leaves a group without weight). Rows
    whose group is outside ``[0, n_groups)`` belong to no group.
    """
    w = poisson_weights(counts, reps, seed, threads)
    out = np.full((reps, n_groups, len(probs)), np.nan)
    if reps == 0:
        return out
    for k in range(n_groups):
        sel = groups == k
        out[:, k, :] = grouped_quantiles(values[sel], lower[sel], upper[sel], w[:, sel], probs)
    return out


def cluster_quantiles(
    groups: NDArray[np.int32],
    buckets: NDArray[np.int32],
    clusters: NDArray[np.int32],
    counts: F64,
    lower: F64,
    upper: F64,
    n_groups: int,
    n_buckets: int,
    n_clusters: int,
    weights: F64,
    probs: F64,
) -> F64:
    """Event-level quantiles per group of (group, bucket, cluster) histograms under cluster weightings.

    ``weights`` is ``[R, n_groups * n_clusters]``: weighting r gives events of group k in cluster c
    the weight ``weights[r, k * n_clusters + c]``. Per group, a bucket's mass is its weighted count
    and its range is the smallest ``lower`` and largest ``upper`` of its rows; the quantile is the
    grouped-data ogive of ``grouped_quantiles`` over the group's non-empty buckets in bucket order
    (the first bucket whose cumulative mass reaches ``p * total``, linear inside it). Returns
    ``[R, n_groups, P]``, NaN where a weighting leaves a group without weight.
    """
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    probs = np.asarray(probs, dtype=np.float64)
    out = np.full((len(w), n_groups, len(probs)), np.nan)
    for k in range(n_groups):
        sel = (groups == k) & (counts > 0)
        if not sel.any():
            continue
        b, c, n = buckets[sel], clusters[sel], counts[sel]
        dense = np.zeros((n_buckets, n_clusters))
        np.add.at(dense, (b, c), n)
        lo = np.full(n_buckets, np.inf)
        hi = np.full(n_buckets, -np.inf)
        np.minimum.at(lo, b, lower[sel])
        np.maximum.at(hi, b, upper[sel])
        keep = dense.sum(axis=1) > 0
        cum = np.cumsum(dense[keep], axis=0)  # [nb, M]
        mass_by_rep = w[:, k * n_clusters:(k + 1) * n_clusters] @ cum.T  # [R, nb] cumulative weighted counts
        merged = np.diff(mass_by_rep, axis=1, prepend=0.0)
        out[:, k, :] = grouped_quantiles(np.arange(keep.sum(), dtype=np.float64), lo[keep], hi[keep], merged, probs)
    return out


def bootstrap_cluster_quantiles(
    groups: NDArray[np.int32],
    buckets: NDArray[np.int32],
    clusters: NDArray[np.int32],
    counts: F64,
    lower: F64,
    upper: F64,
    n_groups: int,
    n_buckets: int,
    n_clusters: int,
    probs: F64,
    reps: int,
    seed: int,
    threads: int = 0,
) -> F64:
    """Event-level quantiles per group under a Poisson(1) bootstrap of (group, cluster) pairs: ``[reps, n_groups, P]``.

    Equals ``cluster_quantiles(..., poisson_weights(ones(n_groups * n_clusters), reps, seed), probs)``;
    the compiled version draws those weights from its own generator (row b from ``(seed, b)``).
    """
    w = poisson_weights(np.ones(n_groups * n_clusters), reps, seed, threads)
    return cluster_quantiles(groups, buckets, clusters, counts, lower, upper, n_groups, n_buckets, n_clusters, w, probs)


def event_histogram(
    cells: NDArray[np.integer],
    clusters: NDArray[np.integer],
    values: F64,
    edges: F64,
    n_cells: int,
    n_clusters: int,
    counts: I64,
    lower: F64,
    upper: F64,
    threads: int = 0,
) -> None:
    """Adds events to an event histogram in place (``compression/events.py``): ``counts`` ``[n_cells *
    n_clusters * B]`` by (cell, cluster, bucket), ``lower``/``upper`` ``[n_cells * B]`` the smallest/largest
    value per (cell, bucket); ``B = len(edges) + 1``, bucket = ``searchsorted(edges, value, side="right")``.
    Non-finite values do not count; a cell or cluster out of range is a ValueError."""
    values = np.asarray(values, dtype=np.float64)
    c = np.asarray(cells, dtype=np.int64)
    k = np.asarray(clusters, dtype=np.int64)
    if len(c) and (c.min() < 0 or c.max() >= n_cells or k.min() < 0 or k.max() >= n_clusters):
        raise ValueError("event_histogram: a cell code outside [0, n_cells) or a cluster outside [0, n_clusters)")
    keep = np.isfinite(values)
    c, k, v = c[keep], k[keep], values[keep]
    nb = len(edges) + 1
    b = np.searchsorted(np.asarray(edges, dtype=np.float64), v, side="right")
    counts += np.bincount((c * n_clusters + k) * nb + b, minlength=len(counts))
    np.minimum.at(lower, c * nb + b, v)
    np.maximum.at(upper, c * nb + b, v)
