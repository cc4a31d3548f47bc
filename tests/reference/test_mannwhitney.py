"""Mann–Whitney U against scipy at 1e-8: raw and compressed rows, several cells, ties, weights, segments."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from datagen import expand, make_experiment
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from xpcompute.compression.distribution import compress_values
from xpcompute.compression.io import from_parquet_bytes, to_parquet_bytes
from xpcompute.models import fit_compressed, fit_table
from xpcompute.models.mannwhitney import ESTIMAND_NOTE, MannWhitneyModel, mann_whitney
from xpcompute.spec import CompressSpec, FitSpec

RTOL = 1e-8


def col(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False))


def check_against_scipy(records, y: np.ndarray, cell: np.ndarray, control: str = "control") -> None:  # type: ignore[no-untyped-def]
    for r in records:
        a, b = y[cell == r.cell], y[cell == control]
        ref = stats.mannwhitneyu(a, b, method="asymptotic", use_continuity=True, alternative="two-sided")
        np.testing.assert_allclose([r.statistic, r.p_value], [ref.statistic, ref.pvalue], rtol=RTOL)
        # effect: difference in means with a normal unpooled-variance interval
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        se = np.sqrt(va + vb)
        z = stats.norm.ppf(0.975)
        effect = a.mean() - b.mean()
        np.testing.assert_allclose([r.effect, r.se, r.ci_low, r.ci_high], [effect, se, effect - z * se, effect + z * se], rtol=RTOL)
        np.testing.assert_allclose([r.n_cell, r.n_control, r.mean_cell, r.mean_control], [len(a), len(b), a.mean(), b.mean()], rtol=RTOL)
        rel_se = np.sqrt(va / b.mean() ** 2 + a.mean() ** 2 * vb / b.mean() ** 4)
        np.testing.assert_allclose([r.relative_effect, r.relative_se], [a.mean() / b.mean() - 1, rel_se], rtol=RTOL)
        assert r.control == control and r.model == "mannwhitney" and ESTIMAND_NOTE in r.notes


@pytest.mark.parametrize("compress", ["lossless", "none"])
@pytest.mark.parametrize("metric", ["y", "sessions", "converted"])  # continuous, heavy ties, binary
def test_matches_scipy_on_raw_and_compressed(compress: str, metric: str) -> None:
    table = make_experiment(n=3000, seed=31)  # three cells, unequal sizes
    out = fit_table(table, FitSpec(metric=metric, treatment="cell", model="mannwhitney", compress=CompressSpec.parse(compress)))
    assert [r.cell for r in out.records] == ["a", "b"]
    check_against_scipy(out.records, col(table, metric), col(table, "cell"))
    if compress == "lossless" and metric != "y":
        assert out.compressed.compression_ratio > 50


def test_lossless_equals_raw_and_survives_parquet() -> None:
    table = make_experiment(n=2500, seed=12)
    spec = FitSpec(metric="sessions", treatment="cell", model="mannwhitney")
    raw = fit_table(table, spec.model_copy(update={"compress": CompressSpec(kind="none")})).records
    ct = compress_values(table, "sessions", ["cell"])
    packed = fit_compressed(from_parquet_bytes(to_parquet_bytes(ct)), spec)
    for r0, r1 in zip(raw, packed, strict=True):
        assert r0.statistic == r1.statistic
        np.testing.assert_allclose(
            np.array([r0.p_value, r0.effect, r0.se], dtype=float), np.array([r1.p_value, r1.effect, r1.se], dtype=float),
            rtol=1e-12,
        )


def test_other_control_and_unequal_sizes() -> None:
    table = make_experiment(n=2000, seed=5, cells=("x", "y0", "z"), shares=(0.1, 0.6, 0.3), effects=(0.2, 0.0, 0.5))
    out = fit_table(table, FitSpec(metric="y", treatment="cell", model="mannwhitney", control="y0"))
    assert [r.cell for r in out.records] == ["x", "z"]
    check_against_scipy(out.records, col(table, "y"), col(table, "cell"), control="y0")


@pytest.mark.parametrize("metric", ["y", "sessions"])
def test_integer_frequency_weights_equal_repeated_rows(metric: str) -> None:
    table = make_experiment(n=1500, seed=14, weights=True)
    out = fit_table(table, FitSpec(metric=metric, treatment="cell", model="mannwhitney", weights="w"))
    full = expand(table)
    check_against_scipy(out.records, col(full, metric), col(full, "cell"))


def test_segments_match_scipy_per_segment() -> None:
    table = make_experiment(n=4000, seed=2)
    out = fit_table(table, FitSpec(metric="sessions", treatment="cell", model="mannwhitney", segment="country"))
    y, cell, country = col(table, "sessions"), col(table, "cell"), col(table, "country")
    overall = [r for r in out.records if r.segment is None]
    check_against_scipy(overall, y, cell)
    segments = sorted({r.segment for r in out.records if r.segment is not None})
    assert segments == ["BR", "CA", "MX", "US"]
    for s in segments:
        sel = country == s
        check_against_scipy([r for r in out.records if r.segment == s], y[sel], cell[sel])


def test_probability_of_superiority_in_notes() -> None:
    table = make_experiment(n=1000, seed=3)
    (rec, _) = fit_table(table, FitSpec(metric="y", treatment="cell", model="mannwhitney")).records
    y, cell = col(table, "y"), col(table, "cell")
    a, b = y[cell == "a"], y[cell == "control"]
    ps = (np.sum(a[:, None] > b[None, :]) + 0.5 * np.sum(a[:, None] == b[None, :])) / (len(a) * len(b))
    note = next(n for n in rec.notes if n.startswith("probability of superiority"))
    assert float(note.split("= ")[1].split(";")[0]) == pytest.approx(ps, rel=1e-5)


def test_train_predict_are_the_cell_means() -> None:
    table = make_experiment(n=800, seed=9)
    spec = FitSpec(metric="y", treatment="cell", model="mannwhitney")
    from xpcompute.models import model_data

    data = model_data(compress_values(table, "y", ["cell"]), spec)
    model = MannWhitneyModel()
    model.train(data)
    y, cell = col(table, "y"), col(table, "cell")
    units = model.outcome_units(data)  # predictions are cell means less an anchor value (exact differences)
    for c in ("control", "a", "b"):
        np.testing.assert_allclose(units.shift + units.scale * model.predict(data, c), y[cell == c].mean(), rtol=RTOL)


@settings(max_examples=40, deadline=None)
@given(
    x=st.lists(st.integers(0, 5), min_size=2, max_size=30),
    y=st.lists(st.integers(0, 5), min_size=2, max_size=30),
    wx=st.lists(st.integers(1, 4), min_size=30, max_size=30),
    wy=st.lists(st.integers(1, 4), min_size=30, max_size=30),
)
def test_weighted_rank_test_equals_repeats_property(x: list[int], y: list[int], wx: list[int], wy: list[int]) -> None:
    xa, ya = np.asarray(x, float), np.asarray(y, float)
    wxa, wya = np.asarray(wx[: len(x)], float), np.asarray(wy[: len(y)], float)
    rx, ry = np.repeat(xa, wxa.astype(int)), np.repeat(ya, wya.astype(int))
    if np.unique(np.r_[rx, ry]).size < 2:
        return  # all values equal: no test (ZeroVarianceError, covered elsewhere)
    res = mann_whitney(xa, wxa, ya, wya)
    ref = stats.mannwhitneyu(rx, ry, method="asymptotic")
    np.testing.assert_allclose([res.u, res.p_value], [ref.statistic, ref.pvalue], rtol=RTOL, atol=1e-300)
    perm = np.random.default_rng(len(x)).permutation(len(x))
    again = mann_whitney(xa[perm], wxa[perm], ya, wya)
    assert again.u == res.u


def test_base_class_derivation_from_train_predict_agrees() -> None:
    """The base class's generic ATE (train, predict, means_covariance) gives the records' effect and se."""
    from xpcompute.models import model_data
    from xpcompute.models.base import CausalModel

    table = make_experiment(n=1500, seed=19)
    spec = FitSpec(metric="y", treatment="cell", model="mannwhitney")
    data = model_data(compress_values(table, "y", ["cell"]), spec)
    ours = MannWhitneyModel().estimate(data)
    generic = CausalModel.estimate(MannWhitneyModel(), data)
    for a, b in zip(ours, generic, strict=True):
        assert a.cell == b.cell
        np.testing.assert_allclose(
            np.array([a.effect, a.se, a.ci_low, a.relative_effect], dtype=float),
            np.array([b.effect, b.se, b.ci_low, b.relative_effect], dtype=float),
            rtol=1e-12,
        )
