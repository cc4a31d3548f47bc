"""weighted_quantiles and rank_sums (C++) against their NumPy specifications and SciPy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from xpcompute import native
from xpcompute.native import reference

pytestmark = pytest.mark.skipif(native.backend() != "native", reason="tests the compiled module")

# few distinct values, so that ties are common
tied_values = st.one_of(st.sampled_from([-1.5, 0.0, 0.25, 1.0, 2.0, 7.0]), st.floats(-100, 100, allow_nan=False))


@st.composite
def weighted_sample(draw: st.DrawFn, min_size: int = 1):
    n = draw(st.integers(min_size, 40))
    values = np.array(draw(st.lists(tied_values, min_size=n, max_size=n)), dtype=np.float64)
    weights = np.array(
        draw(st.lists(st.one_of(st.sampled_from([0.0, 1.0, 2.0, 3.0]), st.floats(0, 4)), min_size=n, max_size=n)),
        dtype=np.float64,
    )
    return values, weights


probs_strategy = st.lists(st.one_of(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), st.floats(0, 1)), min_size=1, max_size=7)


@settings(max_examples=300, deadline=None)
@given(weighted_sample(), probs_strategy)
def test_weighted_quantiles_matches_reference(sample, probs) -> None:
    values, weights = sample
    assume(np.any(weights > 0))
    p = np.array(probs)
    got = native.weighted_quantiles(values, weights, p)
    want = reference.weighted_quantiles(values, weights, p)
    np.testing.assert_array_equal(got, want)


@settings(max_examples=100, deadline=None)
@given(weighted_sample(), probs_strategy)
def test_weighted_quantiles_integer_weights_match_numpy(sample, probs) -> None:
    values, weights = sample
    weights = np.round(weights)
    assume(np.any(weights > 0))
    expanded = np.repeat(values, weights.astype(np.int64))
    got = native.weighted_quantiles(values, weights, np.array(probs))
    np.testing.assert_array_equal(got, np.quantile(expanded, probs, method="inverted_cdf"))


def test_weighted_quantiles_shapes_and_nan() -> None:
    v = np.array([3.0, np.nan, 1.0, 2.0])
    w = np.array([1.0, 1.0, 1.0, 0.0])
    p = np.array([0.0, 0.5, 1.0, np.nan])
    np.testing.assert_array_equal(native.weighted_quantiles(v, w, p), [1.0, 3.0, np.nan, np.nan])
    np.testing.assert_array_equal(native.weighted_quantiles(v, w, p), reference.weighted_quantiles(v, w, p))
    grid = np.array([[0.1, 0.9], [0.5, 0.6]])
    np.testing.assert_array_equal(native.weighted_quantiles(v, w, grid), reference.weighted_quantiles(v, w, grid))


@st.composite
def integer_weighted_sample(draw: st.DrawFn):
    n = draw(st.integers(0, 30))
    values = np.array(draw(st.lists(tied_values, min_size=n, max_size=n)), dtype=np.float64)
    weights = np.array(draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), dtype=np.float64)
    return values, weights


@settings(max_examples=300, deadline=None)
@given(integer_weighted_sample(), integer_weighted_sample())
def test_rank_sums_matches_reference_and_scipy(a, b) -> None:
    (va, wa), (vb, wb) = a, b
    got = native.rank_sums(va, wa, vb, wb)
    want = reference.rank_sums(va, wa, vb, wb)
    assert isinstance(got, tuple) and all(isinstance(v, float) for v in got)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    # the expanded sample: a row of weight k is k equal values
    xa = np.repeat(va, wa.astype(np.int64))
    xb = np.repeat(vb, wb.astype(np.int64))
    pooled = np.concatenate([xa, xb])
    ranks = stats.rankdata(pooled) if len(pooled) else np.zeros(0)
    _, t = np.unique(pooled, return_counts=True)
    np.testing.assert_allclose(got[0], ranks[: len(xa)].sum(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got[1], float(np.sum(t.astype(np.float64) ** 3 - t)), rtol=1e-10, atol=1e-10)


def test_rank_sums_fractional_weights_match_reference() -> None:
    rng = np.random.default_rng(2)
    va, vb = rng.integers(0, 20, 300).astype(float), rng.integers(0, 20, 200).astype(float)
    wa, wb = rng.random(300) * 3, rng.random(200) * 3
    np.testing.assert_allclose(native.rank_sums(va, wa, vb, wb), reference.rank_sums(va, wa, vb, wb), rtol=1e-10)
