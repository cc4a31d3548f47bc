"""The panel's per-group sums of degree-2 monomials as grouped Gram matrices, for few groups of many users.

``compress_user_periods`` needs, per group of users (cell x keys), the sums of
``y_s``, ``p_s`` and every product ``y_s y_t``, ``y_s p_t``, ``p_s p_t`` of a
user's period vectors: ``2P^2 + 3P`` monomials of ``2P`` columns, about 1,900
at 30 periods. ``native.group_moments`` evaluates each monomial for each user
(a general product of powers); for a panel every monomial has degree at most
two, so the sums are the entries of ``Z' W Z`` and ``Z' w`` for the group's
rows of ``Z = [y_1 .. y_P, p_1 .. p_P]``: one weighted Gram matrix per group
(``native.gram_meat``, single-threaded C++ like the rest of ``_core``; BLAS's
own threads thrash when worker processes already use every core), several
times faster than evaluating each monomial. The users are sorted by group once and
multiplied in blocks of ``BLOCK`` users, so memory stays at one block of ``Z``.
``columns`` may also be ``Z`` itself, a C-contiguous ``[n_rows, k]`` matrix (the
panel pivot writes one): a block is then a gather of whole rows (or a view, for
consecutive rows) instead of ``k`` column gathers and a stack, with the same values.

It computes what ``native.group_moments`` computes (the same groups, sorted
codes, counts and sums, up to rounding: sums are added in a different order),
and applies only when every monomial has degree at most two and there are at
most ``MAX_GROUPS`` groups; otherwise ``panel_moments`` calls the native
routine (one group per user, with ``row_level``, is its case).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from xpcompute import native
from xpcompute.native.reference import combine_keys
from xpcompute.native.types import GroupMoments

F64 = NDArray[np.float64]

#: most groups for the Gram path (each group is one product per block; more, smaller groups suit the hash path)
MAX_GROUPS = 256
#: users per block of the product (2P x BLOCK doubles: 31 MiB at 30 periods)
BLOCK = 1 << 16

__all__ = ["BLOCK", "MAX_GROUPS", "gram_moments", "panel_moments"]


def panel_moments(
    keys: Sequence[NDArray[np.integer]],
    radices: Sequence[int],
    columns: Sequence[F64] | F64,
    exponents: NDArray[np.int32],
    weights: F64 | None,
    n_rows: int,
) -> GroupMoments:
    """``native.group_moments`` for a panel: by grouped Gram matrices when that applies, else natively.

    ``columns`` is a sequence of ``k`` columns or one ``[n_rows, k]`` matrix of them.
    """
    out = gram_moments(keys, radices, columns, exponents, weights, n_rows)
    if out is None:
        return native.group_moments(keys, radices, _column_list(columns), exponents, weights, n_rows)
    return out


def _column_list(columns: Sequence[F64] | F64) -> Sequence[F64]:
    """The columns of a ``[n_rows, k]`` matrix (any ndarray) as contiguous arrays; a sequence as it is."""
    if isinstance(columns, np.ndarray):
        return [np.ascontiguousarray(columns[:, j]) for j in range(columns.shape[1])]
    return columns


def gram_moments(
    keys: Sequence[NDArray[np.integer]],
    radices: Sequence[int],
    columns: Sequence[F64] | F64,
    exponents: NDArray[np.int32],
    weights: F64 | None,
    n_rows: int,
    max_groups: int = MAX_GROUPS,
) -> GroupMoments | None:
    """The grouped sums of ``native.group_moments`` by ``Z' W Z`` per group; ``None`` when it does not apply
    (a monomial of degree above two, or more than ``max_groups`` groups). ``columns``: ``k`` columns or one
    ``[n_rows, k]`` matrix of them."""
    matrix = np.ascontiguousarray(columns, dtype=np.float64) if isinstance(columns, np.ndarray) else None
    k = matrix.shape[1] if matrix is not None else len(columns)
    exps = np.asarray(exponents, dtype=np.int64).reshape(-1, k) if k else np.zeros((0, 0), np.int64)
    if k == 0 or (exps < 0).any() or (exps.sum(axis=1) > 2).any():
        return None
    if keys:
        code, valid = combine_keys(keys, radices)
    else:
        code, valid = np.zeros(n_rows, np.int64), np.ones(n_rows, bool)
    w = np.ones(n_rows) if weights is None else np.asarray(weights, dtype=np.float64)
    valid &= ~np.isnan(w)
    if matrix is not None:
        valid &= ~np.isnan(matrix).any(axis=1)
    else:
        for col in columns:
            valid &= ~np.isnan(col)
    rows = np.flatnonzero(valid)
    uniq, inverse = np.unique(code[rows], return_inverse=True)
    if len(uniq) > max_groups:
        return None
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))
    rows = rows[order]
    del order, inverse
    gram = np.zeros((len(uniq), k, k))
    first = np.zeros((len(uniq), k))
    counts = np.zeros(len(uniq))
    for g in range(len(uniq)):
        for start in range(int(bounds[g]), int(bounds[g + 1]), BLOCK):
            idx = rows[start: min(start + BLOCK, int(bounds[g + 1]))]
            if matrix is None:
                z = np.stack([np.asarray(c, dtype=np.float64)[idx] for c in columns], axis=1)  # (block, k), row-major
            elif int(idx[-1]) - int(idx[0]) == len(idx) - 1:  # consecutive rows (idx ascends): a view
                z = matrix[int(idx[0]): int(idx[-1]) + 1]
            else:
                z = matrix[idx]
            wb = np.ascontiguousarray(w[idx])
            xtwx, xtw, _ = native.gram_meat(z, wb, wb)  # Z'WZ and Z'w in one pass
            gram[g] += xtwx
            first[g] += xtw
            counts[g] += wb.sum()
    sums = np.zeros((len(uniq), len(exps)))
    for j, row in enumerate(exps):
        nz = np.flatnonzero(row)
        if len(nz) == 0:
            sums[:, j] = counts
        elif len(nz) == 1 and row[nz[0]] == 1:
            sums[:, j] = first[:, nz[0]]
        elif len(nz) == 1:
            sums[:, j] = gram[:, nz[0], nz[0]]
        else:
            sums[:, j] = gram[:, nz[0], nz[1]]
    return GroupMoments(codes=uniq.astype(np.int64), counts=counts, sums=sums, dropped=int(n_rows - len(rows)))
