"""The panel's grouped Gram sums equal ``group_moments`` (compiled and NumPy reference) and step aside when they
do not apply."""

from __future__ import annotations

import numpy as np
import pytest

from xpcompute import native
from xpcompute.compression.panel import panel_columns
from xpcompute.compression.panel_gram import gram_moments, panel_moments
from xpcompute.native import reference


@pytest.mark.parametrize("periods,weighted", [(1, False), (4, True), (12, True)])
def test_gram_sums_equal_group_moments(periods: int, weighted: bool) -> None:
    rng = np.random.default_rng(periods)
    n = 3000
    cols = [rng.normal(loc=3.0, size=n) for _ in range(periods)]
    cols += [rng.integers(0, 3, size=n).astype(float) for _ in range(periods)]
    cols[0][::97] = np.nan  # left out and counted as dropped, like the native routine does
    keys = [rng.integers(-1, 3, size=n).astype(np.int32), rng.integers(0, 2, size=n).astype(np.int32)]
    w = rng.integers(1, 4, size=n).astype(float) if weighted else None
    _, exps = panel_columns("y", periods)
    got = gram_moments(keys, [3, 2], cols, exps, w, n)
    assert got is not None
    for want in (native.group_moments(keys, [3, 2], cols, exps, w, n),
                 reference.group_moments(keys, [3, 2], cols, exps, w, n)):
        assert got.codes.tolist() == want.codes.tolist() and got.dropped == want.dropped
        np.testing.assert_array_equal(got.counts, want.counts)
        np.testing.assert_allclose(got.sums, want.sums, rtol=1e-11, atol=1e-9)


def test_it_steps_aside_for_many_groups_or_higher_degrees() -> None:
    rng = np.random.default_rng(0)
    n = 500
    cols = [rng.normal(size=n), rng.normal(size=n)]
    many = [np.arange(n, dtype=np.int32)]
    _, exps = panel_columns("y", 1)
    assert gram_moments(many, [n], cols, exps, None, n, max_groups=100) is None
    cubic = np.array([[3, 0], [1, 1]], dtype=np.int32)
    assert gram_moments([np.zeros(n, np.int32)], [1], cols, cubic, None, n) is None
    # panel_moments then answers what the native routine answers
    out = panel_moments([np.zeros(n, np.int32)], [1], cols, cubic, None, n)
    want = native.group_moments([np.zeros(n, np.int32)], [1], cols, cubic, None, n)
    np.testing.assert_array_equal(out.sums, want.sums)
