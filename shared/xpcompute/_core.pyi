"""Typed stub of the compiled module ``xpcompute._core`` (built from cpp/bindings/*.cpp).

The module itself installs as ``xpcompute/_core*.so``; this stub documents its
functions. Call them through ``xpcompute.native``, which converts inputs and
turns the module's ``ValueError`` (C++ ``std::invalid_argument``) into
``NativeError``. Float arrays that are C-contiguous float64 (int32/int64 keys,
int64 clusters, int32 groups) are read in place; anything else is converted.
"""

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from xpcompute.native.types import GroupMoments, SolveResult

F64 = NDArray[np.float64]

def group_moments(
    keys: Sequence[NDArray[np.integer]],
    radices: Sequence[int],
    columns: Sequence[F64],
    exponents: NDArray[np.int32],
    weights: F64 | None = None,
    n_rows: int | None = None,
) -> GroupMoments:
    """Hash group-by of weighted monomials; groups sorted by mixed-radix code.

    ``exponents`` has shape ``[n_monomials, len(columns)]`` (ignored without columns).
    Dense direct-indexed accumulator up to 2**22 codes, open addressing above.
    """

def gram_meat(x: F64, w: F64, wy: F64, e2: F64 | None = None) -> tuple[F64, F64, F64 | None]:
    """``(X'diag(w)X, X'wy, X'diag(e2)X or None)`` for ``x [G, K]``, ``w, wy, e2 [G]``."""

def cluster_meat(scores: F64, clusters: NDArray[np.int64]) -> F64:
    """``sum_c s_c s_c'`` for ``scores [G, K]`` and ``clusters [G]``; returns ``[K, K]``."""

def cholesky_solve(a: F64, b: F64, tol: float = 1e-10) -> SolveResult:
    """Rank-revealing Cholesky solve of ``a [K, K] x = b [K] or [K, m]``."""

def weighted_quantiles(values: F64, weights: F64, probs: F64) -> F64:
    """Inverted-CDF weighted quantiles; the result has the shape of ``probs``."""

def rank_sums(values_a: F64, weights_a: F64, values_b: F64, weights_b: F64) -> tuple[float, float]:
    """``(mid-rank sum of sample a in the pooled sample, sum over ties of t**3 - t)``."""

def poisson_weights(counts: F64, reps: int, seed: int, threads: int = 0) -> F64:
    """``[reps, G]`` with ``out[b, g] ~ Poisson(counts[g])``; row b depends on ``(seed, b)`` only."""

def bootstrap_quantiles(
    values: F64,
    counts: F64,
    groups: NDArray[np.int32],
    n_groups: int,
    probs: F64,
    reps: int,
    seed: int,
    threads: int = 0,
) -> F64:
    """``[reps, n_groups, n_probs]`` weighted quantiles per group under ``poisson_weights(counts, reps, seed)``."""

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
    """``[reps, n_groups, n_probs]`` n-tile quantiles (linear inside a bucket) per group under Poisson weights.

    ``window_sd = 0``: ``poisson_weights``' draws; ``> 0``: windowed draws, the same bootstrap in law."""

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
    """``[reps, n_groups, n_probs]`` event-level quantiles per group under Poisson(1) weights of (group, cluster) pairs."""

def event_histogram(
    cells: NDArray[np.integer],
    clusters: NDArray[np.integer],
    values: F64,
    edges: F64,
    n_cells: int,
    n_clusters: int,
    counts: NDArray[np.int64],
    lower: F64,
    upper: F64,
    threads: int = 0,
) -> None:
    """Adds events to counts [n_cells * n_clusters * B] and lower/upper [n_cells * B] in place (B = len(edges) + 1)."""
