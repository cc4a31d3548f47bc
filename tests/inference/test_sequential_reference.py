"""Sequential methods against independent implementations.

- Confidence sequences: gbstats' SequentialTwoSidedTTest (in .venv-ref) on the same summary statistics, 1e-8.
- Group-sequential boundaries: Lan-DeMets boundaries built on gsdesign's recursive integration (ref_gsdesign.py,
  at grid r = 100) for equal, unequal and unplanned looks, 1e-6.
- Look state: recording looks one at a time gives the boundaries of the whole sequence, and the boundaries
  spend exactly the alpha the spending function allows.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from inference_cases import arm_moments, make_cases
from inference_ref import run_reference

from xpcompute.inference import (
    EffectEstimate,
    alpha_spent,
    analyze_look,
    confidence_sequence,
    crossing_probabilities,
    group_sequential_boundaries,
    next_look,
    two_sample_effect,
)
from xpcompute.inference.power import confidence_sequence_z_threshold
from xpcompute.inference.sequential import running_confidence_sequence

RTOL = 1e-8
GS_TOL = 1e-6


@pytest.fixture(scope="module")
def gbstats_results() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    cases = make_cases()
    return cases, run_reference("ref_gbstats.py", {"cases": cases})


def test_confidence_sequence_matches_gbstats(gbstats_results) -> None:  # type: ignore[no-untyped-def]
    cases, refs = gbstats_results
    worst = 0.0
    for case, ref in zip(cases, refs, strict=True):
        if case["stat"] in ("mean", "proportion"):
            # our own estimate from the same sums
            ma, va, na = arm_moments(case["a"])  # type: ignore[arg-type]
            mb, vb, nb = arm_moments(case["b"])  # type: ignore[arg-type]
            est = two_sample_effect(ma, va, na, mb, vb, nb, relative=bool(case["relative"]))
            np.testing.assert_allclose([est.effect, est.se], [ref["effect"], ref["se"]], rtol=RTOL)
        else:
            # ratio and CUPED: their estimate and se come from the model; the interval is what is compared
            est = EffectEstimate(ref["effect"], ref["se"], ref["n"])  # type: ignore[arg-type]
        cs = confidence_sequence(est.effect, est.se, est.n, float(case["tuning"]), float(case["alpha"]))  # type: ignore[arg-type]
        ours = np.array([cs.ci_low, cs.ci_high, cs.p_value])
        theirs = np.array([*ref["seq_ci"], ref["seq_p"]])  # type: ignore[misc]
        np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=1e-300)
        worst = max(worst, float(np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-300))))
    print(f"confidence sequence vs gbstats: {len(cases)} cases, max relative error {worst:.2e}")


def test_confidence_sequence_p_value_and_interval_agree() -> None:
    """p <= alpha exactly when the interval excludes 0, and the z-threshold form gives the same edge."""
    for n in (100.0, 5_000.0, 80_000.0):
        thr = float(confidence_sequence_z_threshold([n / 10_000.0], 0.05)[0])
        at_edge = confidence_sequence(thr * 0.3, 0.3, n, 10_000.0, 0.05)
        assert at_edge.ci_low == pytest.approx(0.0, abs=1e-12)
        assert at_edge.p_value == pytest.approx(0.05, rel=1e-10)
        assert confidence_sequence(thr * 0.3 * 1.01, 0.3, n, 10_000.0).p_value < 0.05
        assert confidence_sequence(thr * 0.3 * 0.99, 0.3, n, 10_000.0).p_value > 0.05


def test_running_confidence_sequence_only_tightens() -> None:
    rng = np.random.default_rng(4)
    looks, prev = [], (-math.inf, math.inf, 1.0)
    for day in range(1, 15):
        n = 1_000.0 * day
        looks.append(
            confidence_sequence(0.05 + rng.normal(0, 0.5 / math.sqrt(n)), 2.0 / math.sqrt(n), n, 14_000.0)
        )
        low, high, p = running_confidence_sequence(looks)
        assert low >= prev[0] and high <= prev[1] and p <= prev[2]
        assert (low, high, p) == (
            max(c.ci_low for c in looks),
            min(c.ci_high for c in looks),
            min(c.p_value for c in looks),
        )
        prev = (low, high, p)


FRACTION_SETS = [
    [0.2, 0.4, 0.6, 0.8, 1.0],
    [0.1, 0.35, 0.5, 0.9, 1.0],  # unequal
    [0.05, 0.12, 0.3, 0.31, 0.7, 1.0, 1.2],  # unplanned extra look and an overrun past the plan
    [k / 14 for k in range(1, 15)],  # 14 daily looks
    [0.5, 1.0],
    [0.25, 0.6],  # stopped early: never reaches the planned information
]


@pytest.fixture(scope="module")
def gsdesign_results() -> tuple[list[dict[str, object]], list[list[float]]]:
    cases: list[dict[str, object]] = [
        {"fractions": f, "alpha": a, "spending": s, "r": 100}
        for f in FRACTION_SETS
        for s in ("obrien_fleming", "pocock")
        for a in (0.05, 0.1)
    ]
    return cases, run_reference("ref_gsdesign.py", {"cases": cases})


def test_boundaries_match_gsdesign(gsdesign_results) -> None:  # type: ignore[no-untyped-def]
    cases, refs = gsdesign_results
    worst = 0.0
    for case, ref in zip(cases, refs, strict=True):
        b = group_sequential_boundaries(case["fractions"], case["alpha"], case["spending"])
        ours, theirs = np.array(b.z), np.array(ref)
        finite = np.isfinite(theirs)  # looks past full spending have no boundary
        assert np.array_equal(np.isfinite(ours), finite), (ours, theirs)
        np.testing.assert_allclose(ours[finite], theirs[finite], rtol=0, atol=GS_TOL)
        worst = max(worst, float(np.max(np.abs(ours[finite] - theirs[finite]))))
    print(f"group-sequential boundaries vs gsdesign: {len(cases)} designs, max abs error {worst:.2e}")


@pytest.mark.parametrize("spending", ["obrien_fleming", "pocock"])
@pytest.mark.parametrize("fractions", FRACTION_SETS)
def test_boundaries_spend_exactly_the_allowed_alpha(spending: str, fractions: list[float]) -> None:
    b = group_sequential_boundaries(fractions, 0.05, spending)  # type: ignore[arg-type]
    spent = np.cumsum(crossing_probabilities(b.z, fractions))
    np.testing.assert_allclose(spent, alpha_spent(np.array(fractions), 0.05, spending), rtol=1e-7, atol=1e-12)  # type: ignore[arg-type]


def test_looks_recorded_one_at_a_time_equal_the_whole_design() -> None:
    planned_n = 20_000.0
    ns = [1_500.0, 4_000.0, 9_000.0, 9_500.0, 16_000.0, 20_000.0]
    effects = [0.02, 0.01, 0.03, 0.028, 0.029, 0.03]
    sd = 1.0
    looks = []
    whole = group_sequential_boundaries([n / planned_n for n in ns], 0.05, "obrien_fleming")
    for k, (n, eff) in enumerate(zip(ns, effects, strict=True)):
        se = sd * math.sqrt(4.0 / n)
        res = analyze_look(
            looks, time=f"2026-01-{k + 1:02d}", n=n, planned_n=planned_n, effect=eff, se=se, planned_looks=6
        )
        assert res.label == f"look {k + 1} of 6"
        assert res.look.boundary == pytest.approx(whole.z[k], abs=1e-12)
        assert res.look.alpha_spent == pytest.approx(whole.cumulative_alpha[k], abs=1e-15)
        assert res.look.crossed == (abs(eff / se) >= whole.z[k])
        c, before, now, crossed = next_look(
            [lk.information_fraction for lk in looks], n / planned_n, eff / se
        )
        assert (c, before, now, crossed) == pytest.approx(
            (res.look.boundary, res.alpha_spent_before, res.look.alpha_spent, res.look.crossed)
        )
        assert res.stopped_earlier == any(lk.crossed for lk in looks)
        assert res.repeated_ci == pytest.approx((eff - c * se, eff + c * se))
        looks.append(res.look)
    assert any(lk.crossed for lk in looks) and not looks[0].crossed
    restored = [type(looks[0]).from_dict(lk.as_dict()) for lk in looks]
    assert restored == looks
    with pytest.raises(ValueError, match="adds no information"):
        analyze_look(looks, time="x", n=ns[-1], planned_n=planned_n, effect=0.0, se=0.01)
