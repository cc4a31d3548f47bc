"""Reference tests of the decision's test statistics against statsmodels / scipy on raw rows, at rtol 1e-8.

The decision tests each metric's record (effect, SE, df from the project's own models); these tests feed
them records fitted by ``fit_table`` on raw rows and compare with statsmodels run on the same rows.
"""

from __future__ import annotations

import numpy as np
import pytest
from datagen import make_experiment
from scipy import stats
from statsmodels.stats import proportion as sm_proportion
from statsmodels.stats.weightstats import ttest_ind

from xpcompute.decision.tests import (
    deterioration,
    goal_alpha,
    guardrail_power_beta,
    non_inferiority,
    superiority,
)
from xpcompute.models import fit_table
from xpcompute.spec import FitSpec

RTOL = 1e-8


def column(table, name):  # type: ignore[no-untyped-def]
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False))


@pytest.fixture(scope="module")
def welch():  # type: ignore[no-untyped-def]
    table = make_experiment(n=3000, seed=31)
    out = fit_table(table, FitSpec(metric="y", treatment="cell", model="ttest"))
    y, cell = column(table, "y"), column(table, "cell")
    return [(r, y[cell == r.cell], y[cell == "control"]) for r in out.records]


@pytest.mark.parametrize("margin", [0.05, 0.3, 2.0])
@pytest.mark.parametrize("higher_is_better", [True, False])
def test_non_inferiority_is_statsmodels_welch_with_value(welch, margin: float, higher_is_better: bool) -> None:  # type: ignore[no-untyped-def]
    for r, a, b in welch:
        value, alternative = (-margin, "larger") if higher_is_better else (margin, "smaller")
        t, p, df = ttest_ind(a, b, alternative=alternative, usevar="unequal", value=value)
        res = non_inferiority(r.effect, r.se, margin, alpha=0.05, higher_is_better=higher_is_better, df=r.df)
        oriented_t = t if higher_is_better else -t
        np.testing.assert_allclose([float(res.p_value), float(res.statistic), r.df], [p, oriented_t, df], rtol=RTOL)
        assert bool(res.rejected) == (p < 0.05)
        # the bad-side bound is statsmodels' one-sided confidence limit of the difference
        q = stats.t.ppf(0.95, df)
        expected = (a.mean() - b.mean()) - q * r.se if higher_is_better else (a.mean() - b.mean()) + q * r.se
        np.testing.assert_allclose(float(res.bound), expected, rtol=RTOL)
        assert bool(res.rejected) == ((expected > -margin) if higher_is_better else (expected < margin))


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_superiority_and_deterioration_are_statsmodels_welch(welch, higher_is_better: bool) -> None:  # type: ignore[no-untyped-def]
    for r, a, b in welch:
        better, worse = ("larger", "smaller") if higher_is_better else ("smaller", "larger")
        _, p_two, _ = ttest_ind(a, b, alternative="two-sided", usevar="unequal")
        _, p_one, _ = ttest_ind(a, b, alternative=better, usevar="unequal")
        _, p_det, _ = ttest_ind(a, b, alternative=worse, usevar="unequal")
        two = superiority(r.effect, r.se, alpha=0.05, higher_is_better=higher_is_better, df=r.df)
        one = superiority(r.effect, r.se, alpha=0.05, higher_is_better=higher_is_better, df=r.df,
                          alternative="one_sided")
        det = deterioration(r.effect, r.se, alpha=0.05, higher_is_better=higher_is_better, df=r.df)
        np.testing.assert_allclose([float(two.p_value), float(one.p_value), float(det.p_value)],
                                   [p_two, p_one, p_det], rtol=RTOL)
        np.testing.assert_allclose(float(two.p_value), r.p_value, rtol=RTOL)  # the model's own p-value


def test_superiority_corrects_alpha_across_goals_only() -> None:
    # p two-sided = 0.02: significant alone, not with three goals (0.05 / 3 = 0.0167)
    z = stats.norm.isf(0.01)
    alone = superiority(z, 1.0, alpha=0.05)
    three = superiority(z, 1.0, alpha=0.05, n_goals=3)
    np.testing.assert_allclose([float(alone.p_value), float(three.p_value)], [0.02, 0.02], rtol=RTOL)
    assert bool(alone.rejected) and not bool(three.rejected)
    np.testing.assert_allclose(float(three.level), goal_alpha(0.05, 3), rtol=RTOL)
    # significant the wrong way is not "better"
    assert not bool(superiority(-z, 1.0, alpha=0.05).rejected)
    assert bool(superiority(-z, 1.0, alpha=0.05, higher_is_better=False).rejected)


@pytest.mark.parametrize("margin", [0.002, 0.01, 0.04])
@pytest.mark.parametrize("higher_is_better", [True, False])
def test_proportion_non_inferiority_is_statsmodels_wald(margin: float, higher_is_better: bool) -> None:
    table = make_experiment(n=6000, seed=12)
    out = fit_table(table, FitSpec(metric="converted", treatment="cell", model="proportion"))
    y, cell = column(table, "converted"), column(table, "cell")
    for r in out.records:
        c1, n1 = y[cell == r.cell].sum(), (cell == r.cell).sum()
        c0, n0 = y[cell == "control"].sum(), (cell == "control").sum()
        value, alternative = (-margin, "larger") if higher_is_better else (margin, "smaller")
        ref = sm_proportion.test_proportions_2indep(c1, n1, c0, n0, value=value, method="wald", compare="diff",
                                                    alternative=alternative, correction=False)
        res = non_inferiority(r.effect, r.se, margin, alpha=0.05, higher_is_better=higher_is_better)
        oriented = ref.statistic if higher_is_better else -ref.statistic
        np.testing.assert_allclose([float(res.p_value), float(res.statistic)], [ref.pvalue, oriented], rtol=RTOL)


def test_relative_non_inferiority_is_the_delta_method_z_test(welch) -> None:  # type: ignore[no-untyped-def]
    """A relative margin is tested on the record's relative effect and delta-method SE (normal)."""
    for r, a, b in welch:
        lift = a.mean() / b.mean() - 1
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        se = np.sqrt(va / b.mean() ** 2 + a.mean() ** 2 * vb / b.mean() ** 4)
        assert r.relative_effect is not None and r.relative_se is not None
        res = non_inferiority(r.relative_effect, r.relative_se, 0.02, alpha=0.05)
        np.testing.assert_allclose(float(res.p_value), stats.norm.sf((lift + 0.02) / se), rtol=RTOL)
        np.testing.assert_allclose(float(res.bound), lift - stats.norm.isf(0.05) * se, rtol=RTOL)


def test_vectorised_equals_one_at_a_time() -> None:
    rng = np.random.default_rng(3)
    e, s, m = rng.normal(size=200), rng.uniform(0.5, 2, 200), rng.uniform(0.1, 1, 200)
    hib = rng.random(200) < 0.5
    vec = non_inferiority(e, s, m, alpha=0.05, higher_is_better=hib)
    one = [float(non_inferiority(e[i], s[i], m[i], alpha=0.05, higher_is_better=hib[i]).p_value) for i in range(200)]
    np.testing.assert_allclose(vec.p_value, one, rtol=RTOL)


def test_guardrail_power_beta_keeps_the_decision_power() -> None:
    # Bonferroni on beta: G guardrails at power 1 - beta/G each miss one with probability <= beta
    assert guardrail_power_beta(4, 0.2) == pytest.approx(0.05, rel=RTOL)
    assert guardrail_power_beta(4, 0.2, n_other=1) == pytest.approx(0.04, rel=RTOL)
    assert guardrail_power_beta(0, 0.2) == 0.2
    # independent guardrails each at that power: all pass with probability >= 1 - beta
    assert (1 - guardrail_power_beta(5, 0.2)) ** 5 >= 0.8
    with pytest.raises(ValueError, match="beta must be in"):
        guardrail_power_beta(3, 1.5)


def test_bad_inputs_say_what_to_fix() -> None:
    with pytest.raises(ValueError, match="margin must be positive"):
        non_inferiority(0.1, 1.0, -0.02, alpha=0.05)
    with pytest.raises(ValueError, match="n_goals"):
        superiority(0.1, 1.0, alpha=0.05, n_goals=0)
    assert np.isnan(float(non_inferiority(0.1, 0.0, 0.02, alpha=0.05).p_value))
