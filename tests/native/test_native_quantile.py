"""bootstrap_grouped_quantiles (C++) against its NumPy spec on the very same Poisson weights.

The spec is ``reference.grouped_quantiles`` applied per group to ``native.poisson_weights(counts, reps,
seed)``, which is what ``models.quantile.bootstrap_cells`` computed before the bootstrap moved to C++;
equality here (bit for bit, NaN where a group has no weight) is what keeps every quantile fit's
numbers unchanged for the same seed.
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


def _spec(values: np.ndarray, lower: np.ndarray, upper: np.ndarray, counts: np.ndarray, groups: np.ndarray,
          n_groups: int, probs: np.ndarray, reps: int, seed: int) -> np.ndarray:
    w = native.poisson_weights(counts, reps, seed)
    out = np.full((reps, n_groups, len(probs)), np.nan)
    if reps == 0:
        return out
    for k in range(n_groups):
        sel = groups == k
        out[:, k, :] = reference.grouped_quantiles(values[sel], lower[sel], upper[sel], w[:, sel], probs)
    return out


@st.composite
def grouped_inputs(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    g = draw(st.integers(0, 30))
    values = np.array(draw(st.lists(st.sampled_from([-2.0, 0.0, 0.5, 1.0, 3.0, 7.5, 1e6]), min_size=g, max_size=g)))
    half = np.array(draw(st.lists(st.sampled_from([0.0, 0.0, 0.25, 1.0, 3.0]), min_size=g, max_size=g)))
    counts = np.array(draw(st.lists(st.sampled_from([0.0, 0.3, 1.0, 2.0, 9.0, 40.0, 5000.0]), min_size=g,
                                    max_size=g)))
    n_groups = draw(st.integers(0, 4))
    groups = np.array(draw(st.lists(st.integers(-1, n_groups), min_size=g, max_size=g)), dtype=np.int32)
    probs = np.array(draw(st.lists(st.sampled_from([0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 1.0]), min_size=1, max_size=5)))
    reps = draw(st.integers(0, 15))
    seed = draw(st.integers(0, 2**64 - 1))
    return (values.astype(np.float64), (values - half).astype(np.float64), (values + half).astype(np.float64),
            counts.astype(np.float64), groups, np.int64(n_groups), probs, np.int64(reps), np.uint64(seed))


@settings(max_examples=300, deadline=None)
@given(grouped_inputs())
def test_equals_the_numpy_spec_on_the_same_weights(args: tuple[np.ndarray, ...]) -> None:
    values, lower, upper, counts, groups, n_groups, probs, reps, seed = args
    got = native.bootstrap_grouped_quantiles(values, lower, upper, counts, groups, int(n_groups), probs, int(reps),
                                             int(seed), threads=2)
    want = _spec(values, lower, upper, counts, groups, int(n_groups), probs, int(reps), int(seed))
    assert got.shape == want.shape == (int(reps), int(n_groups), len(probs))
    np.testing.assert_array_equal(got, want)  # NaN where the spec has NaN, bit-equal elsewhere


def test_realistic_ntile_sizes_equal_spec_and_do_not_depend_on_threads() -> None:
    rng = np.random.default_rng(5)
    per_cell = 1000
    edges = np.sort(rng.lognormal(0, 1.2, size=(2, per_cell + 1)), axis=1)
    lower, upper = edges[:, :-1].ravel(), edges[:, 1:].ravel()
    lower[:200] = upper[:200] = 0.0  # an atom at zero, single-valued buckets
    values = (lower + upper) / 2
    counts = rng.integers(1, 10_000, size=2 * per_cell).astype(np.float64)
    groups = np.repeat(np.arange(2, dtype=np.int32), per_cell)
    probs = np.array([0.1, 0.5, 0.9, 0.99])
    base = native.bootstrap_grouped_quantiles(values, lower, upper, counts, groups, 2, probs, 200, 11, threads=1)
    np.testing.assert_array_equal(base, _spec(values, lower, upper, counts, groups, 2, probs, 200, 11))
    for threads in (2, 3, 0):
        np.testing.assert_array_equal(
            native.bootstrap_grouped_quantiles(values, lower, upper, counts, groups, 2, probs, 200, 11, threads),
            base)
    # fewer replicates give a prefix: replicate b depends on (seed, b) only
    np.testing.assert_array_equal(
        native.bootstrap_grouped_quantiles(values, lower, upper, counts, groups, 2, probs, 20, 11), base[:20])


def test_the_reference_backend_agrees_in_distribution() -> None:
    """The NumPy backend draws its own Poisson stream: same shape, and replicate means within Monte-Carlo error."""
    values = np.linspace(0.5, 99.5, 100)
    lower, upper = values - 0.5, values + 0.5
    counts = np.full(100, 50.0)
    groups = np.zeros(100, dtype=np.int32)
    probs = np.array([0.5, 0.9])
    a = native.bootstrap_grouped_quantiles(values, lower, upper, counts, groups, 1, probs, 2000, 3)[:, 0, :]
    b = reference.bootstrap_grouped_quantiles(values, lower, upper, counts, groups, 1, probs, 2000, 3)[:, 0, :]
    se = np.sqrt(a.var(axis=0, ddof=1) / 2000 + b.var(axis=0, ddof=1) / 2000)
    assert np.all(np.abs(a.mean(axis=0) - b.mean(axis=0)) < 4 * se)
    np.testing.assert_allclose(a.std(axis=0), b.std(axis=0), rtol=0.15)


def test_argument_errors_say_what_to_fix() -> None:
    one = np.ones(3)
    groups = np.zeros(3, dtype=np.int32)
    with pytest.raises(NativeError, match="lower must be <= upper"):
        native.bootstrap_grouped_quantiles(one, one + 1, one, one, groups, 1, np.array([0.5]), 2, 0)
    with pytest.raises(NativeError, match=r"probs must lie in \[0, 1\]"):
        native.bootstrap_grouped_quantiles(one, one, one, one, groups, 1, np.array([1.5]), 2, 0)
    with pytest.raises(NativeError, match="upper: length 2 does not match"):
        native.bootstrap_grouped_quantiles(one, one, one[:2], one, groups, 1, np.array([0.5]), 2, 0)
    with pytest.raises(NativeError, match="counts must be finite"):
        native.bootstrap_grouped_quantiles(one, one, one, -one, groups, 1, np.array([0.5]), 2, 0)
