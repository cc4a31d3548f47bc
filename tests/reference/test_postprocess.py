"""BH and Holm against statsmodels' multipletests; the sample-ratio check against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.multitest import multipletests

from xpcompute.errors import InputError
from xpcompute.postprocess import adjust_pvalues, benjamini_hochberg, holm, srm_test
from xpcompute.records import ResultRecord


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=60))
def test_corrections_match_statsmodels(p: list[float]) -> None:
    arr = np.asarray(p)
    np.testing.assert_allclose(benjamini_hochberg(arr), multipletests(arr, method="fdr_bh")[1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(holm(arr), multipletests(arr, method="holm")[1], rtol=1e-12, atol=1e-15)


def _record(p: float | None) -> ResultRecord:
    return ResultRecord(metric="m", model="ttest", cell="a", control="c", effect=0.0, se=1.0, ci_low=-1, ci_high=1,
                        p_value=p, relative_effect=0.0, relative_ci_low=0.0, relative_ci_high=0.0, n_cell=1,
                        n_control=1, mean_cell=0.0, mean_control=0.0)


def test_adjust_pvalues_keeps_missing_and_labels_method() -> None:
    recs = [_record(0.01), _record(None), _record(0.04), _record(0.03)]
    out = adjust_pvalues(recs, "holm")
    assert out[1].p_value_adjusted is None
    np.testing.assert_allclose([out[i].p_value_adjusted for i in (0, 2, 3)], multipletests([0.01, 0.04, 0.03], method="holm")[1])
    assert {r.correction for r in out} == {"holm"}
    with pytest.raises(InputError):
        adjust_pvalues(recs, "fdr_by")  # type: ignore[arg-type]


def test_srm_matches_scipy_and_flags_mismatch() -> None:
    res = srm_test({"control": 50_400, "a": 49_600})
    chi2, p = stats.chisquare([49_600, 50_400])
    assert res.chi2 == pytest.approx(chi2) and res.p_value == pytest.approx(p) and not res.mismatch
    bad = srm_test({"control": 51_000, "a": 49_000})
    assert bad.mismatch
    uneven = srm_test({"control": 20_000, "a": 80_000}, {"control": 0.2, "a": 0.8})
    assert uneven.chi2 == pytest.approx(0.0)
    with pytest.raises(InputError, match="at least two"):
        srm_test({"control": 10})
