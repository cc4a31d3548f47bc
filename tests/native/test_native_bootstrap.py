"""poisson_weights and bootstrap_quantiles: determinism, distribution, and agreement with each other."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from xpcompute import native
from xpcompute.native import reference

pytestmark = pytest.mark.skipif(native.backend() != "native", reason="tests the compiled module")

COUNTS = np.array([0.0, 0.3, 1.0, 1.0, 2.0, 3.5, 9.99, 10.0, 17.0, 250.0, 1e5])


def test_poisson_weights_deterministic_and_thread_independent() -> None:
    base = native.poisson_weights(COUNTS, 257, seed=42, threads=1)
    assert base.shape == (257, len(COUNTS)) and base.dtype == np.float64
    for threads in (1, 2, 4, 0):
        np.testing.assert_array_equal(native.poisson_weights(COUNTS, 257, seed=42, threads=threads), base)
    # replicate b depends on (seed, b) only: fewer replicates give a prefix
    np.testing.assert_array_equal(native.poisson_weights(COUNTS, 10, seed=42, threads=3), base[:10])
    other = native.poisson_weights(COUNTS, 257, seed=43, threads=2)
    assert not np.array_equal(other, base)
    assert np.all(base == np.round(base)) and np.all(base >= 0)
    assert np.all(base[:, 0] == 0)
    # seeds are taken modulo 2^64
    np.testing.assert_array_equal(
        native.poisson_weights(COUNTS, 3, seed=-1), native.poisson_weights(COUNTS, 3, seed=2**64 - 1)
    )


def test_poisson_weights_mean_and_variance() -> None:
    reps = 40_000
    w = native.poisson_weights(COUNTS, reps, seed=7, threads=2)
    mean, var = w.mean(axis=0), w.var(axis=0, ddof=1)
    se_mean = np.sqrt(COUNTS / reps)
    se_var = np.sqrt((2 * COUNTS**2 + COUNTS) / reps)
    assert np.all(np.abs(mean - COUNTS) <= 5 * se_mean + 1e-12), (mean, COUNTS)
    assert np.all(np.abs(var - COUNTS) <= 5 * se_var + 1e-12), (var, COUNTS)


@pytest.mark.parametrize("lam", [0.7, 4.0, 10.0, 31.5])
def test_poisson_weights_distribution(lam: float) -> None:
    """Chi-square goodness of fit, for the inversion (< 10) and the PTRS (>= 10) samplers."""
    draws = native.poisson_weights(np.full(200, lam), 500, seed=11).ravel().astype(np.int64)
    hi = int(stats.poisson.ppf(0.999, lam))
    observed = np.bincount(np.minimum(draws, hi), minlength=hi + 1)
    probs = stats.poisson.pmf(np.arange(hi + 1), lam)
    probs[-1] += stats.poisson.sf(hi, lam)
    expected = probs * len(draws)
    keep = expected >= 5
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    assert stats.chisquare(obs, exp).pvalue > 1e-4


@st.composite
def bootstrap_inputs(draw: st.DrawFn):
    g = draw(st.integers(0, 25))
    values = np.array(draw(st.lists(st.sampled_from([-1.0, 0.0, 0.5, 2.0, 3.0, 10.0]), min_size=g, max_size=g)))
    counts = np.array(draw(st.lists(st.sampled_from([0.0, 0.2, 1.0, 2.0, 5.0, 12.0]), min_size=g, max_size=g)))
    n_groups = draw(st.integers(0, 4))
    groups = np.array(draw(st.lists(st.integers(-1, n_groups), min_size=g, max_size=g)), dtype=np.int32)
    probs = np.array(draw(st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]), min_size=1, max_size=4)))
    reps = draw(st.integers(0, 12))
    seed = draw(st.integers(0, 2**63))
    return values.astype(np.float64), counts.astype(np.float64), groups, n_groups, probs, reps, seed


@settings(max_examples=150, deadline=None)
@given(bootstrap_inputs())
def test_bootstrap_quantiles_equal_quantiles_of_poisson_weights(args) -> None:
    values, counts, groups, n_groups, probs, reps, seed = args
    got = native.bootstrap_quantiles(values, counts, groups, n_groups, probs, reps, seed, threads=2)
    assert got.shape == (reps, n_groups, len(probs))
    w = native.poisson_weights(counts, reps, seed)
    for b in range(reps):
        for k in range(n_groups):
            sel = groups == k
            if w[b, sel].sum() > 0:
                want = reference.weighted_quantiles(values[sel], w[b, sel], probs)
                np.testing.assert_array_equal(got[b, k], want)
            else:
                assert np.all(np.isnan(got[b, k]))


def test_bootstrap_quantiles_thread_independent() -> None:
    rng = np.random.default_rng(9)
    g = 3000
    values = rng.normal(size=g)
    counts = rng.integers(1, 30, g).astype(np.float64)
    groups = rng.integers(0, 3, g).astype(np.int32)
    probs = np.array([0.05, 0.5, 0.95])
    one = native.bootstrap_quantiles(values, counts, groups, 3, probs, 64, seed=5, threads=1)
    for threads in (2, 4):
        np.testing.assert_array_equal(native.bootstrap_quantiles(values, counts, groups, 3, probs, 64, 5, threads), one)


def test_tabulated_and_summed_cdf_give_the_same_draws() -> None:
    """Over 1024 distinct small means switch from tabulated CDFs to summing on the fly; draws must not change."""
    rng = np.random.default_rng(12)
    many = np.concatenate([rng.random(1500) * 10, [0.0, 12.0, 1.0, 1.0]])
    rng.shuffle(many)
    w_many = native.poisson_weights(many, 40, seed=99)
    w_few = native.poisson_weights(many[:600], 40, seed=99)  # fewer than 1024 distinct: tabulated
    np.testing.assert_array_equal(w_many[:, :600], w_few)


def test_summed_cdf_distribution() -> None:
    lam = 3.0 + 1e-9 * np.arange(2000)  # 2000 distinct means: the on-the-fly sampler
    draws = native.poisson_weights(lam, 100, seed=3).ravel().astype(np.int64)
    hi = 12
    observed = np.bincount(np.minimum(draws, hi), minlength=hi + 1)
    probs = stats.poisson.pmf(np.arange(hi + 1), 3.0)
    probs[-1] += stats.poisson.sf(hi, 3.0)
    assert stats.chisquare(observed, probs * len(draws)).pvalue > 1e-4
