"""Typed Python face of the C++ primitives (the private ``_core`` module).

Models and compressors call only these functions. The compiled module is the
default; ``XPCOMPUTE_NATIVE=reference`` selects the NumPy specifications in
``reference.py`` explicitly (for debugging a primitive, never as a silent
fallback). A missing build raises ``NativeError`` telling how to build it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from xpcompute.errors import NativeError
from xpcompute.native.types import GroupMoments, SolveResult

__all__ = [
    "GroupMoments",
    "SolveResult",
    "backend",
    "bootstrap_cluster_quantiles",
    "bootstrap_grouped_quantiles",
    "bootstrap_quantiles",
    "cholesky_solve",
    "cluster_meat",
    "event_histogram",
    "gram_meat",
    "group_moments",
    "poisson_weights",
    "rank_sums",
    "weighted_quantiles",
]

F64 = NDArray[np.float64]


def _load() -> ModuleType:
    if os.environ.get("XPCOMPUTE_NATIVE") == "reference":
        from xpcompute.native import reference

        return reference
    try:
        core = importlib.import_module("xpcompute._core")
    except ImportError as exc:  # pragma: no cover - exercised only on a broken install
        raise NativeError(
            "xpcompute's C++ module (_core) is not built. Run ./scripts/test or "
            "`.venv/bin/pip install -e .` (needs libeigen3-dev and a C++17 compiler)."
        ) from exc
    return core


_impl = _load()


def backend() -> str:
    """``"native"`` for the compiled module, ``"reference"`` for the NumPy specs."""
    return "reference" if _impl.__name__.endswith("reference") else "native"


def _call(fn: Callable[..., Any], *args: object) -> Any:
    """Run a primitive, turning its argument errors (C++ std::invalid_argument) into ``NativeError``."""
    try:
        return fn(*args)
    except (ValueError, RuntimeError) as exc:
        raise NativeError(str(exc)) from exc


def _f64(a: object) -> F64:
    return np.ascontiguousarray(a, dtype=np.float64)


def group_moments(
    keys: Sequence[NDArray[np.integer]],
    radices: Sequence[int],
    columns: Sequence[F64],
    exponents: NDArray[np.int32],
    weights: F64 | None = None,
    n_rows: int | None = None,
) -> GroupMoments:
    """Hash group-by of weighted monomials; see ``reference.group_moments``."""
    return _call(_impl.group_moments, keys, radices, columns, exponents, weights, n_rows)


def gram_meat(x: F64, w: F64, wy: F64, e2: F64 | None = None) -> tuple[F64, F64, F64 | None]:
    """``X'WX``, ``X'(wy)`` and the HC meat in one pass; see ``reference.gram_meat``."""
    return _call(_impl.gram_meat, _f64(x), _f64(w), _f64(wy), None if e2 is None else _f64(e2))


def cluster_meat(scores: F64, clusters: NDArray[np.int64]) -> F64:
    """Cluster-robust meat from per-row scores; see ``reference.cluster_meat``."""
    return _call(_impl.cluster_meat, _f64(scores), np.ascontiguousarray(clusters, dtype=np.int64))


def cholesky_solve(a: F64, b: F64, tol: float = 1e-10) -> SolveResult:
    """Solve ``a x = b`` reporting rank deficiency; see ``reference.cholesky_solve``."""
    return _call(_impl.cholesky_solve, _f64(a), _f64(b), tol)


def weighted_quantiles(values: F64, weights: F64, probs: F64) -> F64:
    """Inverted-CDF weighted quantiles; see ``reference.weighted_quantiles``."""
    return _call(_impl.weighted_quantiles, _f64(values), _f64(weights), _f64(probs))


def rank_sums(values_a: F64, weights_a: F64, values_b: F64, weights_b: F64) -> tuple[float, float]:
    """Weighted mid-rank sum of sample a and the tie term; see ``reference.rank_sums``."""
    return _call(_impl.rank_sums, _f64(values_a), _f64(weights_a), _f64(values_b), _f64(weights_b))


def poisson_weights(counts: F64, reps: int, seed: int, threads: int = 0) -> F64:
    """Seeded, multi-threaded Poisson bootstrap weights ``[reps, G]``; see ``reference.poisson_weights``."""
    return _call(_impl.poisson_weights, _f64(counts), int(reps), int(seed), int(threads))


def bootstrap_quantiles(
    values: F64, counts: F64, groups: NDArray[np.int32], n_groups: int, probs: F64, reps: int, seed: int, threads: int = 0
) -> F64:
    """Per-group weighted quantiles under each Poisson replicate ``[reps, n_groups, n_probs]``."""
    return _call(
        _impl.bootstrap_quantiles,
        _f64(values), _f64(counts), np.ascontiguousarray(groups, dtype=np.int32), int(n_groups), _f64(probs),
        int(reps), int(seed), int(threads),
    )


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
    """Per-group n-tile quantiles (linear inside a bucket) under each Poisson replicate ``[reps, n_groups, n_probs]``.

    See ``reference.bootstrap_grouped_quantiles``. ``window_sd = 0``: the weights are
    ``poisson_weights(counts, reps, seed)``, draw for draw. ``window_sd > 0`` (the quantile model
    uses 10): the same bootstrap in law, drawing buckets one by one only within +-window_sd
    standard deviations of each quantile and every gap between as one Poisson draw
    (``cpp/include/xpcompute/grouped_bootstrap.hpp``); 10-20x fewer draws at 1000 buckets.
    """
    return _call(
        _impl.bootstrap_grouped_quantiles,
        _f64(values), _f64(lower), _f64(upper), _f64(counts), np.ascontiguousarray(groups, dtype=np.int32),
        int(n_groups), _f64(probs), int(reps), int(seed), int(threads), float(window_sd),
    )


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
    """Event-level quantiles per group under a Poisson(1) bootstrap clustered by unit ``[reps, n_groups, n_probs]``.

    Rows are (group, value bucket, unit cluster) event counts with the events' smallest and largest
    value; every (group, cluster) pair gets one Poisson(1) weight per replicate, the weights of
    ``poisson_weights(ones(n_groups * n_clusters), reps, seed)`` draw for draw, and the quantile
    interpolates linearly inside the bucket that holds it (``reference.cluster_quantiles``;
    ``cpp/include/xpcompute/cluster_quantiles.hpp``).
    """
    i32 = np.int32
    return _call(
        _impl.bootstrap_cluster_quantiles,
        np.ascontiguousarray(groups, dtype=i32), np.ascontiguousarray(buckets, dtype=i32),
        np.ascontiguousarray(clusters, dtype=i32), _f64(counts), _f64(lower), _f64(upper), int(n_groups),
        int(n_buckets), int(n_clusters), _f64(probs), int(reps), int(seed), int(threads),
    )


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
    """Adds events (cell code, unit cluster, value) to an event histogram, in place, in one multi-threaded pass.

    ``counts`` ``[n_cells * n_clusters * B]`` (int64) by (cell, cluster, bucket) and ``lower``/``upper``
    ``[n_cells * B]`` (float64) the smallest/largest value per (cell, bucket), ``B = len(edges) + 1``, bucket =
    ``searchsorted(edges, value, side="right")``; non-finite values do not count (``reference.event_histogram``;
    ``cpp/include/xpcompute/event_histogram.hpp``). int16 codes are read without a copy.
    """
    if not (cells.dtype == np.int16 and clusters.dtype == np.int16):
        cells = np.ascontiguousarray(cells, dtype=np.int32)
        clusters = np.ascontiguousarray(clusters, dtype=np.int32)
    _call(_impl.event_histogram, cells, clusters, _f64(values), _f64(edges), int(n_cells), int(n_clusters), counts,
          lower, upper, int(threads))
