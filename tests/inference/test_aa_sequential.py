"""A/A and A/B simulations of peeking: 4,000 seeded experiments, 14 daily looks each, vectorised.

Each experiment enrolls users daily into two arms (weekday pattern, so the information fractions are unequal)
and measures a skewed continuous metric (gamma, skewness 1.4) and a conversion (Bernoulli 0.1). At every daily
look the Welch z-statistic comes from the running sums, exactly as the analysis computes it from moments.

A/A: a fixed-horizon test declared significant at any look rejects far more than alpha; the confidence sequence
and both group-sequential designs (O'Brien-Fleming- and Pocock-type spending) stay at or below alpha within
binomial noise: with 4,000 experiments the bound is alpha + 3 sqrt(alpha (1 - alpha) / 4000) = 0.0603.
A/B: the effect gives a single final look 80% power; each method's power and the power it loses against that
look are printed, and their ordering asserted.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from xpcompute.inference import (
    analyze_look,
    confidence_sequence,
    crossing_probabilities,
    group_sequential_boundaries,
    simulated_sequential_power,
)

N_EXP = 4_000
ALPHA = 0.05
DAILY = np.array([150, 170, 160, 150, 140, 100, 110] * 2)  # users per arm per day
N_ARM = np.cumsum(DAILY)  # per arm at each look
PLANNED_N = 2.0 * N_ARM[-1]  # both arms, at the planned last look
FRACTIONS = 2.0 * N_ARM / PLANNED_N
BOUND = ALPHA + 3.0 * math.sqrt(ALPHA * (1 - ALPHA) / N_EXP)
Z80 = stats.norm.isf(ALPHA / 2) + stats.norm.isf(0.2)  # drift giving 80% power at one final look


def simulate(metric: str, lift_in_final_se: float, seed: int) -> np.ndarray:
    """z-statistics (experiments x looks) of the Welch test on the running sums."""
    rng = np.random.default_rng(seed)
    sums = np.zeros((2, N_EXP))
    sq = np.zeros((2, N_EXP))
    z = np.empty((N_EXP, DAILY.size))
    if metric == "gamma":
        shape, scale = 2.0, 5.0
        sd = math.sqrt(shape) * scale
    else:
        p = 0.1
        sd = math.sqrt(p * (1 - p))
    shift = lift_in_final_se * sd * math.sqrt(2.0 / N_ARM[-1])
    for day, n in enumerate(DAILY):
        draw = (
            rng.gamma(shape, scale, (2, N_EXP, n)) if metric == "gamma" else rng.binomial(1, p, (2, N_EXP, n))
        )
        draw = draw.astype(np.float64)
        sums += draw.sum(axis=2)
        sq += (draw * draw).sum(axis=2)
        m = N_ARM[day]
        mean = sums / m
        var = (sq - sums * sums / m) / (m - 1)
        if metric == "binary":  # the proportion test's variance p(1-p)
            var = mean * (1 - mean)
        effect = mean[1] + shift - mean[0]
        z[:, day] = effect / np.sqrt(var[0] / m + var[1] / m)
    return z


def rejections(z: np.ndarray) -> dict[str, np.ndarray]:
    crit = stats.norm.isf(ALPHA / 2)
    # confidence sequence through the public per-look function: se = 1 so effect = z
    p_cs = np.array(
        [
            [
                confidence_sequence(zz, 1.0, 2.0 * N_ARM[k], PLANNED_N, ALPHA).p_value
                for k, zz in enumerate(row)
            ]
            for row in z
        ]
    )
    out = {
        "fixed, one final look": np.abs(z[:, -1]) >= crit,
        "fixed, any of 14 looks": (np.abs(z) >= crit).any(axis=1),
        "confidence sequence": (p_cs <= ALPHA).any(axis=1),
    }
    for spending in ("obrien_fleming", "pocock"):
        b = np.array(group_sequential_boundaries(FRACTIONS.tolist(), ALPHA, spending).z)
        out[f"group sequential, {spending}"] = (np.abs(z) >= b).any(axis=1)
    return out


@pytest.fixture(scope="module", params=["gamma", "binary"])
def aa(request: pytest.FixtureRequest) -> tuple[str, dict[str, float]]:
    z = simulate(request.param, 0.0, seed=2026)
    return request.param, {k: float(v.mean()) for k, v in rejections(z).items()}


def test_aa_peeking_inflates_and_sequential_methods_hold_alpha(aa) -> None:  # type: ignore[no-untyped-def]
    metric, rates = aa
    print(f"\nA/A, {metric} metric, {N_EXP} experiments x 14 looks, alpha {ALPHA} (bound {BOUND:.4f}):")
    for k, v in rates.items():
        print(f"  {k:34s} false-positive rate {v:.4f}")
    assert rates["fixed, any of 14 looks"] > 2 * ALPHA  # the problem: peeking at a fixed-horizon test
    assert rates["fixed, one final look"] <= BOUND
    for k in ("confidence sequence", "group sequential, obrien_fleming", "group sequential, pocock"):
        assert rates[k] <= BOUND, k


@pytest.fixture(scope="module")
def ab() -> dict[str, float]:
    z = simulate("gamma", Z80, seed=7)
    return {k: float(v.mean()) for k, v in rejections(z).items()}


def test_ab_power_lost_against_a_single_look(ab) -> None:  # type: ignore[no-untyped-def]
    single = ab["fixed, one final look"]
    mc = 3.0 * math.sqrt(0.8 * 0.2 / N_EXP)
    print(f"\nA/B, gamma metric, 80% design power, {N_EXP} experiments x 14 looks:")
    for k, v in ab.items():
        print(f"  {k:34s} power {v:.4f}   lost vs one final look {single - v:+.4f}")
    assert abs(single - 0.8) < mc
    obf, poc, cs = (
        ab["group sequential, obrien_fleming"],
        ab["group sequential, pocock"],
        ab["confidence sequence"],
    )
    # O'Brien-Fleming spends almost nothing early and loses little; Pocock spends early and loses more; the
    # confidence sequence, valid at every n without a plan of looks, pays most
    assert single - mc < obf + mc and single - obf < 0.05
    assert poc < obf and cs < poc
    # the exact power of the O'Brien-Fleming design from the recursive integration agrees with the simulation
    b = group_sequential_boundaries(FRACTIONS.tolist(), ALPHA, "obrien_fleming")
    exact = float(crossing_probabilities(b.z, FRACTIONS.tolist(), drift=Z80).sum())
    print(f"  exact O'Brien-Fleming power (integration): {exact:.4f}")
    assert abs(exact - obf) < mc
    # and the library's Brownian-motion power simulation says it is simulated and agrees too
    for method, simulated in (("obrien_fleming", obf), ("pocock", poc), ("confidence_sequence", cs)):
        sp = simulated_sequential_power(Z80, FRACTIONS.tolist(), method, alpha=ALPHA, n_sims=20_000, seed=3)
        assert sp.simulated and "simulated" in sp.note
        assert abs(sp.power - simulated) < mc + 3 * sp.mc_se, method


def test_look_state_reproduces_the_vectorised_decision() -> None:
    """Recording the looks of a few experiments one at a time reaches the same decisions as the simulation."""
    z = simulate("gamma", Z80, seed=11)[:6]
    b = np.array(group_sequential_boundaries(FRACTIONS.tolist(), ALPHA, "pocock").z)
    for row in z:
        looks = []
        for k, zz in enumerate(row):
            res = analyze_look(
                looks,
                time=f"day {k + 1}",
                n=2.0 * N_ARM[k],
                planned_n=PLANNED_N,
                effect=zz,
                se=1.0,
                spending="pocock",
                planned_looks=14,
            )
            looks.append(res.look)
        assert [lk.crossed for lk in looks] == list(np.abs(row) >= b)
        assert looks[-1].alpha_spent == pytest.approx(ALPHA)
