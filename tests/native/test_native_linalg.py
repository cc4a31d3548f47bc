"""gram_meat, cluster_meat and cholesky_solve (C++) against their NumPy specifications."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from xpcompute import native
from xpcompute.native import reference
from xpcompute.native.types import SolveResult

pytestmark = pytest.mark.skipif(native.backend() != "native", reason="tests the compiled module")

RTOL = 1e-10
finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


def _close(got: np.ndarray, want: np.ndarray, scale: np.ndarray | float, rtol: float = RTOL) -> None:
    assert got.shape == want.shape
    # 1e-300: subnormal products round differently in any summation order
    assert np.all(np.abs(got - want) <= rtol * (np.abs(want) + scale) + 1e-300), np.max(np.abs(got - want))


@st.composite
def gram_inputs(draw: st.DrawFn):
    g = draw(st.integers(0, 80))
    k = draw(st.integers(1, 9))
    x = draw(hnp.arrays(np.float64, (g, k), elements=finite))
    w = draw(hnp.arrays(np.float64, (g,), elements=st.floats(0, 5)))
    wy = draw(hnp.arrays(np.float64, (g,), elements=finite))
    e2 = draw(st.none() | hnp.arrays(np.float64, (g,), elements=st.floats(0, 5)))
    return x, w, wy, e2


@settings(max_examples=200, deadline=None)
@given(gram_inputs())
def test_gram_meat_matches_reference(args) -> None:
    x, w, wy, e2 = args
    xtwx, xtwy, meat = native.gram_meat(x, w, wy, e2)
    r_xtwx, r_xtwy, r_meat = reference.gram_meat(x, w, wy, e2)
    ax = np.abs(x)
    _close(xtwx, r_xtwx, ax.T @ (ax * w[:, None]))
    _close(xtwy, r_xtwy, ax.T @ np.abs(wy))
    np.testing.assert_array_equal(xtwx, xtwx.T)
    if e2 is None:
        assert meat is None
    else:
        assert meat is not None and r_meat is not None
        _close(meat, r_meat, ax.T @ (ax * e2[:, None]))
        np.testing.assert_array_equal(meat, meat.T)


def test_gram_meat_large_blocks() -> None:
    """More rows than one block, and K large enough for Eigen's blocked GEMM."""
    rng = np.random.default_rng(3)
    g, k = 20_011, 67
    x = rng.normal(size=(g, k))
    w, wy, e2 = rng.random(g), rng.normal(size=g), rng.random(g)
    got = native.gram_meat(x, w, wy, e2)
    want = reference.gram_meat(x, w, wy, e2)
    ax = np.abs(x)
    _close(got[0], want[0], ax.T @ (ax * w[:, None]))
    _close(got[1], want[1], ax.T @ np.abs(wy))
    assert got[2] is not None and want[2] is not None
    _close(got[2], want[2], ax.T @ (ax * e2[:, None]))


@st.composite
def cluster_inputs(draw: st.DrawFn):
    g = draw(st.integers(0, 80))
    k = draw(st.integers(1, 7))
    scores = draw(hnp.arrays(np.float64, (g, k), elements=finite))
    ids = draw(st.lists(st.sampled_from([-(2**40), -3, 0, 1, 2, 7, 2**40]), min_size=g, max_size=g))
    clusters = np.array(ids, dtype=np.int64)
    if draw(st.booleans()):
        clusters = np.sort(clusters)
    return scores, clusters


@settings(max_examples=200, deadline=None)
@given(cluster_inputs())
def test_cluster_meat_matches_reference(args) -> None:
    scores, clusters = args
    got = native.cluster_meat(scores, clusters)
    want = reference.cluster_meat(scores, clusters)
    a = np.abs(scores)
    scale = a.T @ a * max(len(scores), 1)
    _close(got, want, scale)
    np.testing.assert_array_equal(got, got.T)


def test_cluster_meat_many_clusters() -> None:
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(30_000, 5))
    clusters = rng.integers(0, 9_000, 30_000)
    got = native.cluster_meat(scores, clusters)
    want = reference.cluster_meat(scores, clusters)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())


def _assert_solve_matches(a: np.ndarray, b: np.ndarray, tol: float = 1e-10) -> SolveResult:
    got = native.cholesky_solve(a, b, tol)
    want = reference.cholesky_solve(a, b, tol)
    assert isinstance(got, SolveResult)
    assert got.rank == want.rank
    np.testing.assert_array_equal(got.dropped, want.dropped)
    assert got.dropped.dtype == np.int64
    inv_scale = np.abs(want.inverse).max() if want.inverse.size else 0.0
    _close(got.inverse, want.inverse, inv_scale)
    x_scale = np.abs(want.x).max() if want.x.size else 0.0
    _close(got.x, want.x, x_scale)
    np.testing.assert_array_equal(got.inverse, got.inverse.T)
    return got


@st.composite
def normal_equations(draw: st.DrawFn):
    k_free = draw(st.integers(0, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = 4 * (k_free + 1) + 5
    cols = [rng.normal(size=n) for _ in range(k_free)]
    # insert exactly collinear columns (integer combinations of earlier ones) and all-zero columns
    for _ in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, len(cols)))
        kind = draw(st.sampled_from(["zero", "combo", "copy"]))
        if kind == "zero" or pos == 0:
            new = np.zeros(n)
        elif kind == "copy":
            new = cols[draw(st.integers(0, pos - 1))].copy()
        else:
            coef = rng.integers(-3, 4, pos).astype(np.float64)
            new = np.column_stack(cols[:pos]) @ coef
        cols.insert(pos, new)
    x = np.column_stack(cols) if cols else np.zeros((n, 0))
    a = x.T @ x
    m = draw(st.sampled_from([None, 1, 3]))
    b = x.T @ (rng.normal(size=n) if m is None else rng.normal(size=(n, m)))
    return a, b


@settings(max_examples=200, deadline=None)
@given(normal_equations())
def test_cholesky_solve_matches_reference(args) -> None:
    a, b = args
    res = _assert_solve_matches(a, b)
    kept = np.setdiff1d(np.arange(a.shape[0]), res.dropped)
    # the solution solves the kept block exactly and is zero at the dropped columns
    assert np.all(res.x[res.dropped] == 0)
    if len(kept):
        np.testing.assert_allclose(a[np.ix_(kept, kept)] @ res.x[kept], b[kept], rtol=1e-8, atol=1e-8 * np.abs(b).max())


def test_cholesky_solve_drops_collinear_in_order() -> None:
    rng = np.random.default_rng(0)
    x0, x1 = rng.normal(size=50), rng.normal(size=50)
    x = np.column_stack([x0, x1, x0 + 2 * x1, np.zeros(50), 3 * x1, rng.normal(size=50)])
    a = x.T @ x
    b = x.T @ rng.normal(size=50)
    res = _assert_solve_matches(a, b)
    np.testing.assert_array_equal(res.dropped, [2, 3, 4])
    assert res.rank == 3


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_cholesky_solve_non_finite_and_empty() -> None:
    a = np.array([[4.0, 1.0, np.inf], [1.0, 3.0, 0.0], [np.inf, 0.0, np.nan]])
    b = np.array([1.0, 2.0, 3.0])
    res = _assert_solve_matches(a, b)
    np.testing.assert_array_equal(res.dropped, [2])
    empty = native.cholesky_solve(np.zeros((0, 0)), np.zeros(0))
    assert empty.rank == 0 and empty.x.shape == (0,) and empty.inverse.shape == (0, 0)
    all_zero = native.cholesky_solve(np.zeros((2, 2)), np.ones((2, 2)))
    assert all_zero.rank == 0 and np.all(all_zero.x == 0)
    np.testing.assert_array_equal(all_zero.dropped, [0, 1])
