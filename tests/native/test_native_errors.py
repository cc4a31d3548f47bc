"""Bad shapes and values raise NativeError (an XPError) with a message, never a crash."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest

from xpcompute import native
from xpcompute.errors import NativeError, XPError

pytestmark = pytest.mark.skipif(native.backend() != "native", reason="tests the compiled module")

I32 = np.int32
k3 = np.array([0, 1, 2], I32)
y3 = np.array([1.0, 2.0, 3.0])
e1 = np.array([[1]], I32)
x = np.ones((4, 2))
v4 = np.ones(4)

BAD_CALLS: dict[str, tuple[Callable[[], object], str]] = {
    "key length": (lambda: native.group_moments([k3, k3[:2]], [3, 3], [y3], e1), "keys[1] has 2 rows"),
    "radices count": (lambda: native.group_moments([k3], [3, 3], [y3], e1), "radices"),
    "negative radix": (lambda: native.group_moments([k3], [-3], [y3], e1), "radices[0] must be >= 0"),
    "float key": (lambda: native.group_moments([y3], [3], [y3], e1), "integers"),
    "exponents shape": (lambda: native.group_moments([k3], [3], [y3, y3], e1), "exponents must have shape"),
    "exponents 1-d": (lambda: native.group_moments([k3], [3], [y3], np.array([1], I32)), "exponents must have shape"),
    "negative exponent": (lambda: native.group_moments([k3], [3], [y3], np.array([[-1]], I32)), "exponents"),
    "column length": (lambda: native.group_moments([k3], [3], [y3[:2]], e1), "keys[0] has 3 rows, expected 2"),
    "column 2-d": (lambda: native.group_moments([k3], [3], [np.ones((3, 1))], e1), "1-d"),
    "weights length": (lambda: native.group_moments([k3], [3], [y3], e1, np.ones(2)), "weights has 2 rows"),
    "n_rows": (lambda: native.group_moments([k3], [3], [y3], e1, None, 5), "expected 5"),
    "radix overflow": (lambda: native.group_moments([k3, k3], [2**40, 2**40], [y3], e1), "2^62"),
    "gram x 1-d": (lambda: native.gram_meat(v4, v4, v4), "2-d"),
    "gram w length": (lambda: native.gram_meat(x, v4[:3], v4), "w: length 3"),
    "gram wy length": (lambda: native.gram_meat(x, v4, v4[:3]), "wy: length 3"),
    "gram e2 length": (lambda: native.gram_meat(x, v4, v4, np.ones(5)), "e2: length 5"),
    "cluster length": (lambda: native.cluster_meat(x, np.arange(3)), "clusters: length 3"),
    "cluster 1-d": (lambda: native.cluster_meat(v4, np.arange(4)), "2-d"),
    "solve square": (lambda: native.cholesky_solve(np.ones((2, 3)), np.ones(2)), "square"),
    "solve b length": (lambda: native.cholesky_solve(np.eye(3), np.ones(2)), "b: length 2"),
    "solve b 3-d": (lambda: native.cholesky_solve(np.eye(2), np.ones((2, 1, 1))), "[K] or [K, m]"),
    "quantile lengths": (lambda: native.weighted_quantiles(y3, v4, np.array([0.5])), "weights: length 4"),
    "quantile no weight": (lambda: native.weighted_quantiles(y3, np.zeros(3), np.array([0.5])), "positive weight"),
    "quantile empty": (lambda: native.weighted_quantiles(np.zeros(0), np.zeros(0), np.array([0.5])), "positive"),
    "ranks a lengths": (lambda: native.rank_sums(y3, v4, y3, y3), "weights_a: length 4"),
    "ranks b lengths": (lambda: native.rank_sums(y3, y3, v4, y3), "weights_b: length 3"),
    "poisson negative": (lambda: native.poisson_weights(np.array([1.0, -1.0]), 3, 0), "counts must be finite"),
    "poisson nan": (lambda: native.poisson_weights(np.array([np.nan]), 3, 0), "counts must be finite"),
    "poisson inf": (lambda: native.poisson_weights(np.array([np.inf]), 3, 0), "counts must be finite"),
    "poisson reps": (lambda: native.poisson_weights(y3, -1, 0), "reps must be >= 0"),
    "poisson threads": (lambda: native.poisson_weights(y3, 2, 0, -2), "threads must be >= 0"),
    "poisson 2-d": (lambda: native.poisson_weights(np.ones((2, 2)), 2, 0), "1-d"),
    "boot groups": (
        lambda: native.bootstrap_quantiles(y3, y3, np.zeros(2, I32), 1, np.array([0.5]), 2, 0),
        "groups: length 2",
    ),
    "boot counts": (
        lambda: native.bootstrap_quantiles(y3, v4, np.zeros(3, I32), 1, np.array([0.5]), 2, 0),
        "counts: length 4",
    ),
    "boot probs": (
        lambda: native.bootstrap_quantiles(y3, y3, np.zeros(3, I32), 1, np.ones((1, 2)), 2, 0),
        "probs must be 1-d",
    ),
    "boot n_groups": (
        lambda: native.bootstrap_quantiles(y3, y3, np.zeros(3, I32), -1, np.array([0.5]), 2, 0),
        "n_groups must be >= 0",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_input_raises_native_error(case: str) -> None:
    call, message = BAD_CALLS[case]
    with pytest.raises(NativeError, match=re.escape(message)) as info:
        call()
    assert isinstance(info.value, XPError)
    assert info.value.code == "native"
