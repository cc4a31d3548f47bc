"""bootstrap_grouped_quantiles (C++) against its NumPy spec on the very same Poisson weights.

The spec is ``reference.grouped_quantiles`` applied per group to ``native.poisson_weights(counts, reps,
seed)``, which is what ``models.quantile.bootstrap_cells`` computed before the bootstrap moved to C++;
with ``window_sd=0`` the C++ result equals it bit for bit (NaN where a group has no weight). With
``window_sd > 0`` (what the quantile model uses) the draws change but not their law: replicate
means, standard deviations and percentiles agree with the full draws within Monte-Carlo error, and
an A/A simulation of the n-tile quantile model keeps its false-positive rate and coverage.
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
                                             int(seed), threads=2, window_sd=0.0)
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
    with pytest.raises(NativeError, match="window_sd must be 0"):
        native.bootstrap_grouped_quantiles(one, one, one, one, groups, 1, np.array([0.5]), 2, 0, window_sd=-1.0)


def _ntile_cells(per_cell: int, count: float, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    edges = np.sort(rng.lognormal(0, 1.2, size=(2, per_cell + 1)), axis=1)
    lower, upper = edges[:, :-1].ravel(), edges[:, 1:].ravel()
    lower[: per_cell // 5] = upper[: per_cell // 5] = 0.0  # an atom at zero in control
    values = (lower + upper) / 2
    counts = np.maximum(1.0, rng.poisson(count, size=2 * per_cell)).astype(np.float64)
    groups = np.repeat(np.arange(2, dtype=np.int32), per_cell)
    return values, lower, upper, counts, groups


@pytest.mark.parametrize(("per_cell", "count"), [(1000, 5000.0), (200, 3.0), (50, 40.0)])
def test_windowed_draws_are_the_same_bootstrap_in_law(per_cell: int, count: float) -> None:
    """Windowed (window_sd=10) against every bucket drawn: means, sds and tails of the replicates agree."""
    values, lower, upper, counts, groups = _ntile_cells(per_cell, count, 3)
    probs = np.array([0.01, 0.1, 0.5, 0.9, 0.99])
    reps = 4000
    full = native.bootstrap_grouped_quantiles(values, lower, upper, counts, groups, 2, probs, reps, 1, window_sd=0.0)
    fast = native.bootstrap_grouped_quantiles(values, lower, upper, counts, groups, 2, probs, reps, 2, window_sd=10.0)
    assert np.isfinite(fast).all()
    sd = full.std(axis=0, ddof=1)
    se_mean = np.sqrt(2 * sd**2 / reps)
    assert np.all(np.abs(fast.mean(axis=0) - full.mean(axis=0)) <= 5 * se_mean + 1e-12)
    live = sd > 0
    ratio = fast.std(axis=0, ddof=1)[live] / sd[live]
    assert np.all(np.abs(ratio - 1) < 5 * np.sqrt(1 / reps) + 1e-9), ratio  # sd of a sd ratio ~ sqrt(1/reps)
    for q in (0.025, 0.975):  # the percentile interval's ends
        diff = np.abs(np.quantile(fast, q, axis=0) - np.quantile(full, q, axis=0))
        assert np.all(diff[live] <= 0.35 * sd[live] + 1e-12)
    # deterministic in (seed, replicate) whatever the threads
    np.testing.assert_array_equal(
        native.bootstrap_grouped_quantiles(values, lower, upper, counts, groups, 2, probs, 300, 9, 1, 10.0),
        native.bootstrap_grouped_quantiles(values, lower, upper, counts, groups, 2, probs, 300, 9, 3, 10.0))


def test_windowed_fallback_redraws_when_the_quantile_leaves_its_window() -> None:
    """A window far too narrow (1e-9 sd) forces the bucket-by-bucket redraw: valid quantiles within the data's range."""
    values, lower, upper, counts, groups = _ntile_cells(300, 50.0, 4)
    probs = np.array([0.2, 0.5, 0.8])
    out = native.bootstrap_grouped_quantiles(values, lower, upper, counts, groups, 2, probs, 200, 5, window_sd=1e-9)
    assert np.isfinite(out).all()
    for k in range(2):
        sel = groups == k
        assert out[:, k, :].min() >= lower[sel].min() and out[:, k, :].max() <= upper[sel].max()
        assert np.all(np.diff(out[:, k, :], axis=1) >= 0)  # quantiles ordered in every replicate


def test_ntile_quantile_model_aa_false_positive_rate_and_coverage() -> None:
    """400 seeded A/A experiments fitted on ntile:100 rows (windowed draws): p50 rejections and coverage within 3 SE."""
    import pyarrow as pa

    from xpcompute.compression.distribution import compress_values
    from xpcompute.models import fit_compressed
    from xpcompute.spec import CompressSpec, FitSpec

    runs, alpha = 400, 0.05
    rejected = covered = 0
    for seed in range(runs):
        rng = np.random.default_rng(50_000 + seed)
        y = rng.lognormal(0.0, 1.0, size=4000)
        y[rng.random(4000) < 0.1] = 0.0
        table = pa.table({"cell": np.repeat(["control", "treatment"], 2000), "y": y})
        spec = FitSpec(metric="y", treatment="cell", model="quantile", quantiles=(0.5,), bootstrap_reps=200, seed=seed,
                       compress=CompressSpec.parse("ntile:100"))
        (rec,) = fit_compressed(compress_values(table, "y", ["cell"], compress=spec.compress), spec)
        assert rec.p_value is not None and rec.ci_low is not None and rec.ci_high is not None
        rejected += rec.p_value < alpha
        covered += rec.ci_low <= 0.0 <= rec.ci_high
    print(f"\nntile quantile A/A: {rejected}/{runs} rejected at {alpha}, 95% CI covers 0 in {covered}/{runs}")
    band = 3 * np.sqrt(runs * alpha * (1 - alpha))
    assert abs(rejected - runs * alpha) <= band and abs(covered - runs * (1 - alpha)) <= band
