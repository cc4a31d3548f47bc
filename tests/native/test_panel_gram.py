"""The panel's grouped Gram sums equal ``group_moments`` (compiled and NumPy reference) and step aside when they
do not apply."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xpcompute import native
from xpcompute.compression import panel
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


@pytest.mark.parametrize("max_groups", [256, 2])
def test_a_row_major_matrix_gives_the_same_sums_as_its_columns(max_groups: int) -> None:
    rng = np.random.default_rng(7)
    n, periods = 2000, 3
    z = np.column_stack([rng.normal(size=(n, periods)), rng.integers(0, 2, size=(n, periods)).astype(float)])
    z[::53, 1] = np.nan
    keys = [rng.integers(-1, 3, size=n).astype(np.int32)]
    w = rng.integers(1, 4, size=n).astype(float)
    _, exps = panel_columns("y", periods)
    cols = [np.ascontiguousarray(z[:, j]) for j in range(z.shape[1])]
    by_cols = gram_moments(keys, [3], cols, exps, w, n, max_groups=max_groups)
    by_matrix = gram_moments(keys, [3], z, exps, w, n, max_groups=max_groups)
    if by_cols is None:  # too many groups: both step aside, and panel_moments answers natively for both
        assert by_matrix is None
        by_cols, by_matrix = (panel_moments(keys, [3], c, exps, w, n) for c in (cols, z))
    assert by_matrix is not None
    assert by_matrix.codes.tolist() == by_cols.codes.tolist() and by_matrix.dropped == by_cols.dropped
    np.testing.assert_array_equal(by_matrix.counts, by_cols.counts)
    np.testing.assert_array_equal(by_matrix.sums, by_cols.sums)  # the same rows in the same order: bit for bit


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 120), min_size=1, max_size=200),
    st.sampled_from([pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint32()]),
    st.integers(-60, 0),
    st.sampled_from([1, 7, 1 << 20]),
)
def test_int_codes_are_arrows_first_seen_codes(values: list[int], type_: pa.DataType, shift: int, chunk: int) -> None:
    if pa.types.is_unsigned_integer(type_):
        shift = 0
    column = pa.array([v + shift for v in values], type=type_)
    with mock.patch.object(panel, "_CHUNK", chunk):  # several chunks: users first seen in later ones
        got = panel._int_codes(column)
    want = pc.dictionary_encode(column)
    assert got is not None
    codes, dictionary = got
    assert codes.tolist() == want.indices.to_pylist()
    assert dictionary.equals(want.dictionary)


def test_int_codes_step_aside_for_nulls_wide_ranges_and_other_types() -> None:
    assert panel._int_codes(pa.array([1, None, 3])) is None
    assert panel._int_codes(pa.array([0, 10**12])) is None
    assert panel._int_codes(pa.array(["a", "b"])) is None
    assert panel._int_codes(pa.array([1, 2], type=pa.uint64())) is None
