"""bootstrap_cluster_quantiles (C++) against its NumPy spec on the very same Poisson weights.

The spec is ``reference.cluster_quantiles`` (dense per-cluster histograms, the grouped-data ogive of
``reference.grouped_quantiles`` over each group's non-empty buckets) under ``native.poisson_weights(ones(G * M),
reps, seed)``. Counts and weights are whole numbers, so every cumulative mass is exact and the C++ result (a
local search from the point estimate's bucket with dot products of the weights) equals the spec bit for bit.
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


@st.composite
def histograms(draw: st.DrawFn) -> tuple[object, ...]:
    n = draw(st.integers(0, 60))
    n_groups = draw(st.integers(1, 3))
    n_buckets = draw(st.integers(1, 8))
    n_clusters = draw(st.integers(1, 6))
    groups = np.array(draw(st.lists(st.integers(0, n_groups - 1), min_size=n, max_size=n)), dtype=np.int32)
    buckets = np.array(draw(st.lists(st.integers(0, n_buckets - 1), min_size=n, max_size=n)), dtype=np.int32)
    clusters = np.array(draw(st.lists(st.integers(0, n_clusters - 1), min_size=n, max_size=n)), dtype=np.int32)
    counts = np.array(draw(st.lists(st.sampled_from([0.0, 1.0, 2.0, 3.0, 17.0, 1000.0]), min_size=n, max_size=n)))
    offset = np.array(draw(st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.9]), min_size=n, max_size=n)))
    width = np.array(draw(st.lists(st.sampled_from([0.0, 0.0, 0.05, 0.1]), min_size=n, max_size=n)))
    lower = buckets + offset  # values inside [bucket, bucket + 1): bucket order is value order
    upper = np.minimum(lower + width, buckets + 0.999)
    probs = np.array(draw(st.lists(st.sampled_from([0.01, 0.1, 0.25, 0.5, 0.9, 0.99]), min_size=1, max_size=4)))
    reps = draw(st.integers(0, 12))
    seed = draw(st.integers(0, 2**64 - 1))
    return groups, buckets, clusters, counts, lower, upper, n_groups, n_buckets, n_clusters, probs, reps, seed


@settings(max_examples=300, deadline=None)
@given(histograms())
def test_equals_the_numpy_spec_on_the_same_weights(args: tuple[object, ...]) -> None:
    groups, buckets, clusters, counts, lower, upper, g, b, m, probs, reps, seed = args
    got = native.bootstrap_cluster_quantiles(groups, buckets, clusters, counts, lower, upper, g, b, m, probs, reps,
                                             seed, threads=2)
    weights = native.poisson_weights(np.ones(g * m), reps, seed)
    want = reference.cluster_quantiles(groups, buckets, clusters, counts, lower, upper, g, b, m, weights, probs)
    assert got.shape == want.shape == (reps, g, len(probs))
    np.testing.assert_array_equal(got, want)


def test_results_depend_on_seed_and_replicate_only() -> None:
    """Threads never change a replicate; a longer run starts with the shorter run's replicates."""
    rng = np.random.default_rng(3)
    n = 4000
    args = (rng.integers(0, 2, n).astype(np.int32), rng.integers(0, 40, n).astype(np.int32),
            rng.integers(0, 100, n).astype(np.int32), rng.integers(1, 9, n).astype(np.float64))
    lower = args[1] + 0.25
    probs = np.array([0.5, 0.9])
    one = native.bootstrap_cluster_quantiles(*args, lower, lower + 0.5, 2, 40, 100, probs, 50, 11, threads=1)
    many = native.bootstrap_cluster_quantiles(*args, lower, lower + 0.5, 2, 40, 100, probs, 80, 11, threads=4)
    np.testing.assert_array_equal(one, many[:50])
    other = native.bootstrap_cluster_quantiles(*args, lower, lower + 0.5, 2, 40, 100, probs, 50, 12, threads=1)
    assert not np.array_equal(one, other)


def test_unit_weights_give_the_inverted_cdf_on_single_valued_buckets() -> None:
    """With every weight 1 (the spec's point estimate) single-valued buckets give numpy's inverted-CDF quantile."""
    rng = np.random.default_rng(5)
    values = rng.integers(0, 30, 5000).astype(np.float64)
    cluster = rng.integers(0, 50, 5000)
    probs = np.array([0.05, 0.5, 0.9, 0.99])
    want = np.quantile(values, probs, method="inverted_cdf")
    got = reference.cluster_quantiles(np.zeros(5000, np.int32), values.astype(np.int32), cluster.astype(np.int32),
                                      np.ones(5000), values, values, 1, 30, 50, np.ones((1, 50)), probs)
    np.testing.assert_array_equal(got[0, 0], want)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"groups": np.array([2], np.int32)}, "outside [0, n_groups)"),
        ({"buckets": np.array([-1], np.int32)}, "outside [0, n_buckets)"),
        ({"clusters": np.array([9], np.int32)}, "outside [0, n_clusters)"),
        ({"counts": np.array([1.5])}, "whole numbers"),
        ({"lower": np.array([2.0])}, "lower must be <= upper"),
        ({"probs": np.array([1.0])}, "probs must lie in (0, 1)"),
        ({"n_clusters": 0}, "n_clusters must be >= 1"),
    ],
)
def test_bad_input_is_a_typed_error(change: dict[str, object], message: str) -> None:
    args: dict[str, object] = dict(
        groups=np.array([0], np.int32), buckets=np.array([0], np.int32), clusters=np.array([0], np.int32),
        counts=np.array([1.0]), lower=np.array([1.0]), upper=np.array([1.0]), n_groups=1, n_buckets=1,
        n_clusters=2, probs=np.array([0.5]), reps=3, seed=0,
    )
    args.update(change)
    with pytest.raises(NativeError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        native.bootstrap_cluster_quantiles(**args)  # type: ignore[arg-type]
