"""Every multiple-testing correction against statsmodels' ``multipletests``, and the correction scopes.

Reference: each method's adjusted p-values equal statsmodels' at rtol 1e-12 on arbitrary p-values
(ties, zeros and ones included). Properties (hypothesis): adjusted p-values are at least the raw
ones and at most one, keep the raw order (monotone), do not depend on the order records come in,
and a scope splits the analysis into families that are each corrected as if alone.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests

from xpcompute.errors import InputError
from xpcompute.postprocess import CORRECTIONS, Correction, adjust_pvalues
from xpcompute.records import ResultRecord

STATSMODELS: dict[str, str] = {
    "bh": "fdr_bh",
    "holm": "holm",
    "hochberg": "simes-hochberg",
    "bonferroni": "bonferroni",
    "sidak": "sidak",
    "holm-sidak": "holm-sidak",
}
METHODS: list[Correction] = [m for m in CORRECTIONS if m != "none"]  # type: ignore[misc]

_p = st.one_of(st.floats(min_value=0.0, max_value=1.0), st.sampled_from([0.0, 1e-300, 1e-12, 0.01, 0.05, 1.0]))


def _record(p: float | None, metric: str = "m", cell: str = "a", slice_: str | None = None,
            model: str = "ttest") -> ResultRecord:
    return ResultRecord(metric=metric, model=model, cell=cell, control="c", effect=0.0, se=1.0, ci_low=-1,
                        ci_high=1, p_value=p, relative_effect=0.0, relative_ci_low=0.0, relative_ci_high=0.0,
                        n_cell=1, n_control=1, mean_cell=0.0, mean_control=0.0, slice=slice_)


def _adjusted(records: list[ResultRecord]) -> np.ndarray:
    return np.array([np.nan if r.p_value_adjusted is None else r.p_value_adjusted for r in records])


def test_statsmodels_covers_every_method() -> None:
    assert set(STATSMODELS) == set(METHODS)


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=80, deadline=None)
@given(p=st.lists(_p, min_size=1, max_size=40))
def test_each_method_matches_statsmodels(method: Correction, p: list[float]) -> None:
    out = _adjusted(adjust_pvalues([_record(x) for x in p], method))
    expected = multipletests(np.asarray(p), method=STATSMODELS[method])[1]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("method", [*METHODS, "none"])
@settings(max_examples=50, deadline=None)
@given(p=st.lists(_p, min_size=1, max_size=30), seed=st.integers(0, 2**32 - 1))
def test_bounded_monotone_and_order_invariant(method: Correction, p: list[float], seed: int) -> None:
    raw = np.asarray(p)
    out = _adjusted(adjust_pvalues([_record(x) for x in p], method))
    assert np.all(out >= raw - 1e-15) and np.all(out <= 1.0)
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(out[order]) >= -1e-15), "adjusted p-values must keep the raw order"
    perm = np.random.default_rng(seed).permutation(len(p))
    shuffled = _adjusted(adjust_pvalues([_record(p[i]) for i in perm], method))
    np.testing.assert_allclose(shuffled, out[perm], rtol=1e-12, atol=0)


@settings(max_examples=40, deadline=None)
@given(p=st.lists(_p, min_size=6, max_size=6), method=st.sampled_from(METHODS))
def test_scopes_are_families_corrected_alone(p: list[float], method: Correction) -> None:
    # 2 metrics x 3 cells (one slice), then 3 slices x 2 cells (one metric)
    recs = [_record(x, metric=f"m{i // 3}", cell=f"c{i % 3}") for i, x in enumerate(p)]
    by_metric = _adjusted(adjust_pvalues(recs, method, scope="metric"))
    for k in range(2):
        alone = multipletests(np.asarray(p[3 * k: 3 * k + 3]), method=STATSMODELS[method])[1]
        np.testing.assert_allclose(by_metric[3 * k: 3 * k + 3], alone, rtol=1e-12, atol=1e-300)
    recs = [_record(x, cell=f"c{i % 2}", slice_=f"s{i // 2}") for i, x in enumerate(p)]
    by_slice = _adjusted(adjust_pvalues(recs, method, scope="slice"))
    for cell in range(2):
        alone = multipletests(np.asarray(p[cell::2]), method=STATSMODELS[method])[1]
        np.testing.assert_allclose(by_slice[cell::2], alone, rtol=1e-12, atol=1e-300)
    whole = _adjusted(adjust_pvalues(recs, method, scope="analysis"))
    np.testing.assert_allclose(whole, multipletests(np.asarray(p), method=STATSMODELS[method])[1], rtol=1e-12,
                               atol=1e-300)
    # a narrower family never adjusts more than the whole analysis does, for the family-wise methods
    if method in ("bonferroni", "sidak", "holm", "holm-sidak"):
        assert np.all(by_slice <= whole + 1e-15)


def test_goal_scope_corrects_only_goal_metrics() -> None:
    recs = [_record(0.01, "conversion"), _record(0.02, "revenue"), _record(0.03, "latency"), _record(None, "revenue")]
    out = adjust_pvalues(recs, "bonferroni", scope={"conversion", "revenue"})
    np.testing.assert_allclose(_adjusted(out[:2]),
                               multipletests([0.01, 0.02], method="bonferroni")[1], rtol=1e-12)
    assert out[2].p_value_adjusted == 0.03 and out[2].correction == "none"
    assert out[3].p_value_adjusted is None
    assert [r.correction for r in out[:2]] == ["bonferroni", "bonferroni"]


def test_default_scope_is_the_whole_analysis() -> None:
    recs = [_record(0.01, "a"), _record(0.04, "b", slice_="s"), _record(0.03, "c", cell="z")]
    np.testing.assert_allclose(_adjusted(adjust_pvalues(recs)), multipletests([0.01, 0.04, 0.03], method="fdr_bh")[1],
                               rtol=1e-12)


def test_bad_scope_and_method_say_what_to_use() -> None:
    recs = [_record(0.01)]
    with pytest.raises(InputError, match="holm-sidak"):
        adjust_pvalues(recs, "hommel")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="goal metric names"):
        adjust_pvalues(recs, "bh", scope="cells")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="at least one metric"):
        adjust_pvalues(recs, "bh", scope=set())
