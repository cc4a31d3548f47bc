"""group_moments (C++) against its NumPy specification, plus its invariances."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xpcompute import native
from xpcompute.compression.schema import monomials
from xpcompute.native import reference
from xpcompute.native.types import GroupMoments

pytestmark = pytest.mark.skipif(native.backend() != "native", reason="tests the compiled module")

RTOL = 1e-10


def _abs_scale(keys, radices, columns, exponents, weights, n_rows) -> np.ndarray:
    """Per-group sums of |terms|: the scale against which rounding differences are measured."""
    abs_cols = [np.abs(c) for c in columns]
    abs_w = None if weights is None else np.abs(weights)
    ref = reference.group_moments(keys, radices, abs_cols, exponents, abs_w, n_rows)
    return np.asarray(ref.sums)


def assert_moments_close(got: GroupMoments, want: GroupMoments, scale: np.ndarray | None = None, rtol: float = RTOL) -> None:
    assert isinstance(got, GroupMoments)
    assert got.dropped == want.dropped
    np.testing.assert_array_equal(got.codes, want.codes)
    assert got.codes.dtype == np.int64
    assert got.sums.shape == want.sums.shape
    np.testing.assert_allclose(got.counts, want.counts, rtol=rtol, atol=0)
    atol = 0.0 if scale is None or scale.size == 0 else rtol * scale
    assert np.all(np.abs(got.sums - want.sums) <= atol + rtol * np.abs(want.sums))


@st.composite
def group_inputs(draw: st.DrawFn, max_rows: int = 60, big_radix: bool = False):
    n = draw(st.integers(0, max_rows))
    n_keys = draw(st.integers(0, 3))
    if big_radix:
        radices = [draw(st.integers(1, 5000)) for _ in range(n_keys)]
    else:
        radices = [draw(st.integers(0, 6)) for _ in range(n_keys)]
    keys = []
    for r in radices:
        idx = np.array(draw(st.lists(st.integers(-2, max(r, 0)), min_size=n, max_size=n)), dtype=np.int64)
        keys.append(idx.astype(draw(st.sampled_from([np.int32, np.int64, np.int16]))))
    n_cols = draw(st.integers(0, 3))
    value = st.one_of(st.floats(-5, 5, allow_nan=False), st.sampled_from([0.0, 1.0, -1.0, np.nan]))
    columns = [np.array(draw(st.lists(value, min_size=n, max_size=n)), dtype=np.float64) for _ in range(n_cols)]
    m = draw(st.integers(0, 6))
    exponents = np.array(
        draw(st.lists(st.lists(st.integers(0, 4), min_size=n_cols, max_size=n_cols), min_size=m, max_size=m)),
        dtype=np.int32,
    ).reshape(m, n_cols)
    weights = None
    if draw(st.booleans()):
        w = st.one_of(st.floats(0, 5, allow_nan=False), st.sampled_from([0.0, 1.0, 2.0, np.nan]))
        weights = np.array(draw(st.lists(w, min_size=n, max_size=n)), dtype=np.float64)
    n_rows = n if (draw(st.booleans()) or (not keys and not columns)) else None
    return keys, radices, columns, exponents, weights, n_rows


@settings(max_examples=300, deadline=None)
@given(group_inputs())
def test_group_moments_matches_reference(args) -> None:
    got = native.group_moments(*args)
    want = reference.group_moments(*args)
    assert_moments_close(got, want, _abs_scale(*args))


@settings(max_examples=60, deadline=None)
@given(group_inputs(big_radix=True))
def test_group_moments_many_codes_matches_reference(args) -> None:
    """Radix products above the dense table's limit take the sort-based path."""
    got = native.group_moments(*args)
    want = reference.group_moments(*args)
    assert_moments_close(got, want, _abs_scale(*args))


@pytest.mark.parametrize("radices", [[2048, 2048], [2048, 2049], [1 << 40, 3], [7, 1 << 55]])
def test_group_moments_dense_and_sorted_paths_agree(radices: list[int]) -> None:
    rng = np.random.default_rng(5)
    n = 5000
    keys = [rng.integers(-1, min(r, 3000), n).astype(np.int64) for r in radices]
    cols = [rng.normal(size=n), rng.normal(size=n)]
    cols[1][rng.random(n) < 0.05] = np.nan
    exps = np.asarray(monomials(1), dtype=np.int32)
    w = rng.integers(0, 4, n).astype(np.float64)
    got = native.group_moments(keys, radices, cols, exps, w)
    want = reference.group_moments(keys, radices, cols, exps, w)
    assert_moments_close(got, want, _abs_scale(keys, radices, cols, exps, w, None))


@settings(max_examples=100, deadline=None)
@given(group_inputs(), st.randoms(use_true_random=False))
def test_group_moments_row_order_does_not_matter(args, rnd) -> None:
    keys, radices, columns, exponents, weights, n_rows = args
    n = len(columns[0]) if columns else (len(keys[0]) if keys else (n_rows or 0))
    perm = np.array(rnd.sample(range(n), n), dtype=np.int64)
    shuffled = (
        [k[perm] for k in keys],
        radices,
        [c[perm] for c in columns],
        exponents,
        None if weights is None else weights[perm],
        n_rows,
    )
    a = native.group_moments(*args)
    b = native.group_moments(*shuffled)
    assert_moments_close(b, a, _abs_scale(*args), rtol=1e-12)


@settings(max_examples=100, deadline=None)
@given(group_inputs(), st.data())
def test_integer_weight_equals_repeated_rows(args, data) -> None:
    keys, radices, columns, exponents, _, n_rows = args
    n = len(columns[0]) if columns else (len(keys[0]) if keys else (n_rows or 0))
    reps = np.array(data.draw(st.lists(st.integers(1, 4), min_size=n, max_size=n)), dtype=np.int64)
    weighted = native.group_moments(keys, radices, columns, exponents, reps.astype(np.float64), n_rows)
    rep_n = None if n_rows is None else int(reps.sum())
    repeated = native.group_moments(
        [np.repeat(k, reps) for k in keys], radices, [np.repeat(c, reps) for c in columns], exponents, None, rep_n
    )
    np.testing.assert_array_equal(weighted.codes, repeated.codes)
    np.testing.assert_allclose(weighted.counts, repeated.counts, rtol=1e-12)
    valid = reference.combine_keys(keys, radices)[1] if keys else np.ones(n, bool)
    for c in columns:
        valid &= ~np.isnan(c)
    assert weighted.dropped == int((~valid).sum())
    assert repeated.dropped == int(reps[~valid].sum())
    scale = _abs_scale(keys, radices, columns, exponents, reps.astype(np.float64), n_rows)
    # plus a few units of the smallest subnormal per row: below 2**-1022 (values like 1e-323 hypothesis finds)
    # a product w * x and the sum of w copies of x each round to the subnormal grid, where a relative bound is 0
    floor = 4.0 * np.finfo(np.float64).smallest_subnormal * max(int(reps.sum()), 1)
    assert np.all(np.abs(weighted.sums - repeated.sums) <= 1e-12 * (scale + np.abs(repeated.sums)) + floor)


def test_group_moments_known_values() -> None:
    keys = [np.array([0, 1, 1, -1, 0, 2], np.int32), np.array([1, 0, 0, 0, 1, 0], np.int32)]
    y = np.array([1.0, 2.0, 3.0, 4.0, np.nan, 5.0])
    w = np.array([1.0, 2.0, 1.0, 1.0, 1.0, np.nan])
    res = native.group_moments(keys, [3, 2], [y], np.array([[0], [1], [2]], np.int32), w)
    np.testing.assert_array_equal(res.codes, [1, 2])  # (0,1) -> 1, (1,0) -> 2
    np.testing.assert_array_equal(res.counts, [1.0, 3.0])
    np.testing.assert_array_equal(res.sums, [[1.0, 1.0, 1.0], [3.0, 7.0, 17.0]])
    assert res.dropped == 3  # null key, NaN value, NaN weight


def test_group_moments_counts_only_and_noncontiguous_inputs() -> None:
    rng = np.random.default_rng(1)
    base_keys = rng.integers(0, 7, (200, 2)).astype(np.int32)
    keys = [base_keys[:, 0], base_keys[:, 1]]  # strided views
    cols = [rng.normal(size=400)[::2].astype(np.float32)]
    exps = np.array([[1], [3]], np.int32)
    got = native.group_moments(keys, [7, 7], cols, exps)
    want = reference.group_moments(keys, [7, 7], [c.astype(np.float64) for c in cols], exps)
    assert_moments_close(got, want, _abs_scale(keys, [7, 7], [c.astype(np.float64) for c in cols], exps, None, None))
    counts = native.group_moments(keys, [7, 7], [], np.zeros((0, 0), np.int32), None, 200)
    assert counts.sums.shape == (len(counts.codes), 0)
    np.testing.assert_array_equal(counts.counts, want.counts)
    empty = native.group_moments([], [], [], np.zeros((0, 0), np.int32), None, 0)
    assert empty.codes.shape == (0,) and empty.dropped == 0
