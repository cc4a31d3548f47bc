"""event_histogram (C++) against its NumPy spec ``reference.event_histogram``.

Counts are integers and value ranges are min/max, so the C++ pass (a bit-pattern guide for the bucket, threads
owning cluster ranges) must equal the spec exactly, whatever the number of threads, the code dtype (int16 read
as is, other integers as int32) and the values (negative, zero, subnormal, infinite, NaN, on an edge).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xpcompute import native
from xpcompute.errors import NativeError
from xpcompute.native import reference

pytestmark = pytest.mark.skipif(native.backend() != "native", reason="tests the compiled module against its spec")

SPECIAL = [0.0, -0.0, 1.0, -1.0, 5e-324, -5e-324, 1e300, -1e300, np.inf, -np.inf, np.nan, 2.5, 3.0]


def _empty(g: int, m: int, nb: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(g * m * nb, np.int64), np.full(g * nb, np.inf), np.full(g * nb, -np.inf)


def _both(cells: np.ndarray, clusters: np.ndarray, values: np.ndarray, edges: np.ndarray, g: int, m: int,
          threads: int, batches: int = 1) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    got, want = _empty(g, m, len(edges) + 1), _empty(g, m, len(edges) + 1)
    for part in np.array_split(np.arange(len(values)), batches):
        native.event_histogram(cells[part], clusters[part], values[part], edges, g, m, *got, threads=threads)
        reference.event_histogram(cells[part], clusters[part], values[part], edges, g, m, *want)
    return got, want


@st.composite
def events(draw: st.DrawFn) -> tuple[object, ...]:
    n = draw(st.integers(0, 80))
    g = draw(st.integers(1, 3))
    m = draw(st.integers(1, 7))
    pool = SPECIAL + draw(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), max_size=6))
    values = np.array(draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n)), dtype=np.float64)
    edges = np.unique(np.array(draw(st.lists(st.sampled_from([p for p in pool if np.isfinite(p)]), max_size=9))))
    cells = np.array(draw(st.lists(st.integers(0, g - 1), min_size=n, max_size=n)))
    clusters = np.array(draw(st.lists(st.integers(0, m - 1), min_size=n, max_size=n)))
    dtype = draw(st.sampled_from([np.int16, np.int32, np.int64]))
    return cells.astype(dtype), clusters.astype(dtype), values, edges, g, m, draw(st.integers(1, 4))


@settings(max_examples=300, deadline=None)
@given(events())
def test_equals_the_numpy_spec(args: tuple[object, ...]) -> None:
    cells, clusters, values, edges, g, m, threads = args
    got, want = _both(cells, clusters, values, edges, g, m, threads, batches=2)  # type: ignore[arg-type]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("sd", [0.5, 3.0, 12.0])
def test_many_events_any_thread_count(sd: float) -> None:
    """Quantile-spaced edges of skewed data (the guide's case), 400k events: 1, 2 and 3 threads equal the spec."""
    rng = np.random.default_rng(int(sd * 10))
    n = 400_000
    values = np.exp(rng.normal(2, sd, n)) * np.where(rng.random(n) < 0.1, -1, 1)
    values[rng.random(n) < 0.01] = 0.0
    edges = np.unique(np.quantile(values, np.arange(1, 500) / 500, method="inverted_cdf"))
    values[:50] = edges[:50]  # values on an edge start its bucket
    cells = rng.integers(0, 2, n).astype(np.int16)
    clusters = rng.integers(0, 1000, n).astype(np.int16)
    want = None
    for threads in (1, 2, 3):
        got, ref = _both(cells, clusters, values, edges, 2, 1000, threads, batches=3)
        want = want or ref
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [{"cells": 2}, {"cells": -1}, {"clusters": 5}, {"clusters": -1}])
def test_codes_out_of_range_are_refused(bad: dict[str, int]) -> None:
    cells = np.zeros(10, np.int32)
    clusters = np.zeros(10, np.int32)
    arrays = {"cells": cells, "clusters": clusters}
    arrays[next(iter(bad))][3] = next(iter(bad.values()))
    with pytest.raises(NativeError, match="outside"):
        native.event_histogram(cells, clusters, np.ones(10), np.array([0.5]), 2, 5, *_empty(2, 5, 2))


def test_outputs_must_be_writable_arrays_of_the_right_size() -> None:
    ones = np.ones(4)
    codes = np.zeros(4, np.int32)
    counts, lo, hi = _empty(1, 2, 2)
    with pytest.raises(NativeError, match="counts"):
        native.event_histogram(codes, codes, ones, np.array([0.5]), 1, 2, counts[:-1], lo, hi)
    with pytest.raises(NativeError, match="int64"):
        native.event_histogram(codes, codes, ones, np.array([0.5]), 1, 2, counts.astype(np.int32), lo, hi)
    with pytest.raises(NativeError, match="increasing"):
        native.event_histogram(codes, codes, ones, np.array([0.5, 0.5]), 1, 2, *_empty(1, 2, 3))
