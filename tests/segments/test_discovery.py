"""The honest tree and the false-discovery control of segment discovery, checked against the raw rows."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest
from statsmodels.stats.multitest import multipletests

from xpcompute.segments.cube import HALF_COLUMN, assign_halves, build_cube, half_query
from xpcompute.segments.discovery import ESTIMATION_HALF, SegmentSettings, discover
from xpcompute.segments.simulate import DIMENSIONS, Planted


def num(*values: float | None) -> np.ndarray:
    """Reported numbers as an array (a missing one, None, fails the comparison as NaN)."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def md5_half(unit: object) -> int:
    """The documented rule, in Python: the lowest bit of MD5(unit id as text)."""
    return int(hashlib.md5(str(unit).encode()).hexdigest()[-1], 16) % 2


@pytest.fixture(scope="module")
def planted() -> tuple[pa.Table, Planted]:
    truth = Planted(users=60_000, seed=11, base_effect=0.1, planted_effect=0.4)
    table = truth.table()
    return table.append_column(HALF_COLUMN, assign_halves(table.column("user_id"))), truth


def test_halves_are_the_md5_rule_for_integer_and_string_ids() -> None:
    ints = pa.array([0, 1, 2, 17, 123456789, -5, 2**40])
    strings = pa.array(["u1", "user-000042", "Ünïcode", ""])
    for ids in (ints, strings):
        assert assign_halves(ids).to_pylist() == [md5_half(u) for u in ids.to_pylist()]
    assert "MD5(TO_UTF8(CAST(user_id AS VARCHAR)))" in half_query("user_id", dialect="trino")
    assert "MD5(CAST(user_id AS STRING))" in half_query("user_id", dialect="spark")


def test_halves_split_units_about_evenly_and_independently_of_the_cell(planted: tuple[pa.Table, Planted]) -> None:
    table, _ = planted
    half = np.asarray(table.column(HALF_COLUMN).to_numpy(zero_copy_only=False))
    treated = np.asarray(table.column("cell").to_pylist()) == "treatment"
    n = len(half)
    # 5-sigma bounds of a fair coin: a broken hash (constant, or correlated with the cell) fails them
    assert abs(half.mean() - 0.5) < 5 * 0.5 / np.sqrt(n)
    assert abs(half[treated].mean() - half[~treated].mean()) < 5 * np.sqrt(0.5 / treated.sum() + 0.5 / (~treated).sum()) * 0.5


def test_leaves_are_estimated_on_the_estimation_half_exactly_as_from_the_rows(planted: tuple[pa.Table, Planted]) -> None:
    table, _ = planted
    cube = build_cube(table.drop_columns([HALF_COLUMN]), "user_id", "cell", list(DIMENSIONS), {"y": ["pre"]})
    report = discover(cube, "cell", ["y"])
    assert len(report.segments) >= 2
    y = np.asarray(table.column("y"))
    treated = np.asarray(table.column("cell").to_pylist()) == "treatment"
    pre = np.asarray(table.column("pre"))
    est = np.asarray(table.column(HALF_COLUMN)) == ESTIMATION_HALF
    # CUPED slope of the estimation half: pooled within-cell OLS of y on pre
    within = [(pre[est & g] - pre[est & g].mean(), y[est & g] - y[est & g].mean()) for g in (treated, ~treated)]
    theta = sum(float(c @ v) for c, v in within) / sum(float(c @ c) for c, _ in within)
    u = y - theta * pre

    def effect(mask: np.ndarray) -> tuple[float, float]:
        a, b = u[mask & treated], u[mask & ~treated]
        return a.mean() - b.mean(), a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)

    covered = np.zeros(len(y), dtype=bool)
    for seg in report.segments:
        inside = np.asarray(seg.slice.to_arrow_mask(table).to_numpy(zero_copy_only=False), dtype=bool)
        assert not (covered & inside).any()  # the leaves are disjoint
        covered |= inside
        tau, var = effect(inside & est)
        rest, var_rest = effect(~inside & est)
        assert seg.n_cell == (inside & est & treated).sum()
        np.testing.assert_allclose(num(seg.effect, seg.se, seg.rest_effect), num(tau, np.sqrt(var), rest), rtol=1e-9)
        z = (tau - rest) / np.sqrt(var + var_rest)
        from scipy import stats

        np.testing.assert_allclose(num(seg.p_value), 2 * stats.norm.sf(abs(z)), rtol=1e-8)
        q = stats.norm.isf(0.025)
        np.testing.assert_allclose(num(seg.ci_low, seg.ci_high), num(tau - q * np.sqrt(var), tau + q * np.sqrt(var)), rtol=1e-9)


def test_the_tree_never_reads_the_estimation_half(planted: tuple[pa.Table, Planted]) -> None:
    """Rewriting every metric value of the estimation half changes the leaves' numbers, never the leaves."""
    table, _ = planted
    est = np.asarray(table.column(HALF_COLUMN)) == ESTIMATION_HALF
    y = np.asarray(table.column("y")).copy()
    y[est] = np.random.default_rng(0).normal(50.0, 30.0, size=int(est.sum()))
    other = table.set_column(table.schema.get_field_index("y"), "y", pa.array(y))
    reports = [discover(build_cube(t.drop_columns([HALF_COLUMN]), "user_id", "cell", list(DIMENSIONS),
                                   {"y": ["pre"]}), "cell", ["y"]) for t in (table, other)]
    assert len(reports[0].segments) >= 2
    assert [s.label for s in reports[0].segments] == [s.label for s in reports[1].segments]
    assert [s.effect for s in reports[0].segments] != [s.effect for s in reports[1].segments]


def test_bh_runs_across_every_test_and_leaf(planted: tuple[pa.Table, Planted]) -> None:
    table, _ = planted
    cube = build_cube(table.drop_columns([HALF_COLUMN]), "user_id", "cell", list(DIMENSIONS), {"y": ["pre"]})
    settings = SegmentSettings(fdr=0.1)
    report = discover(cube, "cell", ["y"], settings=settings)
    p = [t.p_value for t in report.tests] + [s.p_value for s in report.segments]
    reject, adjusted, _, _ = multipletests(p, alpha=0.1, method="fdr_bh")
    got = [t.p_adjusted for t in report.tests] + [s.p_adjusted for s in report.segments]
    np.testing.assert_allclose(num(*got), adjusted, rtol=1e-12)
    assert [t.discovered for t in report.tests] + [s.discovered for s in report.segments] == list(reject)
    assert report.tested == len(p) == len(DIMENSIONS) + len(report.segments)
    assert report.discoveries == int(reject.sum())


def test_a_leaf_is_a_live_slice_body() -> None:
    """Every leaf's filter round-trips through the live-slice request body unchanged."""
    from xpcompute.pipeline.slices import SliceFilter

    truth = Planted(users=30_000, seed=5, planted_effect=0.8)
    cube = build_cube(truth.table(), "user_id", "cell", list(DIMENSIONS), {"y": []})
    report = discover(cube, "cell", ["y"])
    assert report.segments
    for seg in report.segments:
        body = seg.model_dump(mode="json")["slice"]
        again = SliceFilter.model_validate(body)
        assert again.slice_id == seg.slice.slice_id and again.label() == seg.label


def test_null_dimension_values_follow_the_slice_filter_semantics() -> None:
    """A null device is a value of its own in the Wald test, and follows neither branch of a device split: every
    leaf counts exactly the rows its slice filter selects (what a live slice of it would compute)."""
    truth = Planted(users=80_000, seed=4, base_effect=0.1, planted_effect=0.5)
    table = truth.table()
    rng = np.random.default_rng(1)
    device = pa.array([None if rng.random() < 0.1 else v for v in table.column("device").to_pylist()])
    table = table.set_column(table.schema.get_field_index("device"), "device", device)
    cube = build_cube(table, "user_id", "cell", list(DIMENSIONS), {"y": ["pre"]})
    report = discover(cube, "cell", ["y"])
    (device_test,) = [t for t in report.tests if t.dimension == "device"]
    assert "(null)" in device_test.values and device_test.df == len(DIMENSIONS["device"])
    assert any(c.column == "device" for s in report.segments for c in s.slice.all_of)
    est = np.asarray(assign_halves(table.column("user_id"))) == ESTIMATION_HALF
    treated = np.asarray(table.column("cell").to_pylist()) == "treatment"
    for seg in report.segments:
        inside = np.asarray(seg.slice.to_arrow_mask(table).to_numpy(zero_copy_only=False), dtype=bool)
        assert (seg.n_cell, seg.n_control) == ((inside & est & treated).sum(), (inside & est & ~treated).sum())
