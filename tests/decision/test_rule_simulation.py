"""Simulation of the risk-aware decision rule: false-ship rate and power against what the rule promises.

Each run is one experiment's summary statistics (an estimate and its standard error per metric), drawn
vectorised for 200,000 seeded runs per scenario; the rule's own tests (``decision.tests``) and its ship
condition (``rule.combine``) decide every run. A last test checks that ``RiskAwareRule`` deciding from
``ResultRecord``s gives the same calls as the vectorised path.

What the rule promises, with alpha = 0.05, G goal metrics and K guardrails:

1. no goal truly improves  ->  P(ship) <= alpha  (Bonferroni across the goals; everything else only lowers it);
2. some guardrail is truly worse by exactly its margin  ->  P(ship) <= alpha  (intersection-union: that
   guardrail's one-sided test alone has level alpha; no correction across guardrails is needed);
3. one goal at the effect planned for power 1 - beta_s at alpha / G, guardrails unchanged and each planned
   with ``guardrail_power_beta(K, beta)``  ->  P(ship) >= 1 - beta_s - beta - (deterioration tests' false
   alarms: alpha per metric with no true effect), a union bound valid under any dependence.

With independent metrics the probability of a ship is known in closed form; the simulated rate must match it
within 4 Monte-Carlo standard errors, which checks the implementation and not only the bounds.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import stats

from xpcompute.decision.roles import DecisionSpec, MetricRole
from xpcompute.decision.rule import DecisionContext, RiskAwareRule, combine
from xpcompute.decision.tests import deterioration, guardrail_power_beta, non_inferiority, superiority
from xpcompute.records import ResultRecord

RUNS = 200_000
ALPHA, BETA, BETA_GOAL = 0.05, 0.2, 0.2
G, K = 2, 3
Z = stats.norm.isf(ALPHA)  # one-sided critical value of the guardrail and deterioration tests
Z_GOAL = stats.norm.isf(ALPHA / G / 2)  # two-sided, Bonferroni across the goals
#: the goal effect planned for power 1 - BETA_GOAL, and the guardrail margin planned for power 1 - beta/K,
#: both in units of the standard error
MDE = Z_GOAL + stats.norm.isf(BETA_GOAL)
MARGIN = Z + stats.norm.isf(guardrail_power_beta(K, BETA))


def simulate(goal_true: NDArray[np.float64], guard_true: NDArray[np.float64], rho: float,
             seed: int) -> NDArray[np.bool_]:
    """Ship calls of ``RUNS`` experiments: estimates N(true, 1) per metric, equicorrelated with ``rho``."""
    m = G + K
    cov = np.full((m, m), rho) + (1 - rho) * np.eye(m)
    draws = np.random.default_rng(seed).multivariate_normal(np.zeros(m), cov, size=RUNS).T
    goal = goal_true[:, None] + draws[:G]
    guard = guard_true[:, None] + draws[G:]
    better = superiority(goal, 1.0, alpha=ALPHA, n_goals=G).rejected
    ok = non_inferiority(guard, 1.0, MARGIN, alpha=ALPHA).rejected
    worse = np.concatenate([deterioration(goal, 1.0, alpha=ALPHA).rejected,
                            deterioration(guard, 1.0, alpha=ALPHA).rejected])
    return combine(better, ok, worse)


def exact_ship(goal_true: NDArray[np.float64], guard_true: NDArray[np.float64]) -> float:
    """P(ship) for independent metrics, in closed form (goal: better / got worse are disjoint events)."""
    pb = stats.norm.sf(Z_GOAL - goal_true)
    pd = stats.norm.cdf(-Z - goal_true)
    goals = np.prod(1 - pd) - np.prod(1 - pb - pd)
    guards = np.prod(stats.norm.sf(np.maximum(Z - MARGIN, -Z) - guard_true))
    return float(goals * guards)


def mc_se(p: float) -> float:
    return float(np.sqrt(max(p * (1 - p), 1e-12) / RUNS))


SCENARIOS = {
    # name: (goal true effects, guardrail true effects, promised bound kind)
    "null goals": (np.zeros(G), np.zeros(K), "false ship"),
    "goals worse": (np.array([-1.0, 0.0]), np.zeros(K), "false ship"),
    "guardrail at its margin, goal large": (np.array([8.0, 0.0]), np.array([-MARGIN, 0.0, 0.0]), "false ship"),
    "planned effect, guardrails unchanged": (np.array([MDE, 0.0]), np.zeros(K), "power"),
    "planned effect, guardrails slightly better": (np.array([MDE, 0.0]), np.full(K, 0.5), "power"),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("rho", [0.0, 0.6])
def test_rule_keeps_its_promises(name: str, rho: float) -> None:
    goal_true, guard_true, kind = SCENARIOS[name]
    ship = simulate(goal_true, guard_true, rho, seed=zlib.crc32(f"{name}/{rho}".encode()))
    rate = float(ship.mean())
    if kind == "false ship":
        assert rate <= ALPHA + 4 * mc_se(ALPHA), f"{name}: false-ship rate {rate:.4f} > alpha {ALPHA}"
    else:
        null_metrics = int((goal_true == 0).sum() + (guard_true == 0).sum())
        bound = 1 - BETA_GOAL - BETA - ALPHA * null_metrics
        assert rate >= bound - 4 * mc_se(bound), f"{name}: power {rate:.4f} < promised {bound:.4f}"
    if rho == 0.0:
        exact = exact_ship(goal_true, guard_true)
        assert abs(rate - exact) < 4 * mc_se(exact) + 1e-9, f"{name}: simulated {rate:.4f}, exact {exact:.4f}"


def test_the_false_ship_bound_is_attained_at_the_margin() -> None:
    """At the margin with everything else certain to pass, the rule ships at rate alpha: the bound is tight."""
    goal_true, guard_true = np.array([12.0, 12.0]), np.array([-MARGIN, 12.0, 12.0])
    rate = float(simulate(goal_true, guard_true, 0.0, seed=7).mean())
    assert abs(rate - ALPHA) < 4 * mc_se(ALPHA)


def test_correcting_alpha_across_guardrails_would_cost_power_without_need() -> None:
    """The paper's first point: with K guardrails at alpha / K the power drops, the false-ship rate was fine."""
    guard_true = np.zeros(K)
    rng = np.random.default_rng(11)
    guard = guard_true[:, None] + rng.standard_normal((K, RUNS))
    at_alpha = non_inferiority(guard, 1.0, MARGIN, alpha=ALPHA).rejected.all(axis=0).mean()
    at_bonferroni = non_inferiority(guard, 1.0, MARGIN, alpha=ALPHA / K).rejected.all(axis=0).mean()
    assert at_alpha - at_bonferroni > 0.05
    assert at_alpha >= 1 - BETA - 4 * mc_se(1 - BETA)


def _record(metric: str, cell: str, effect: float) -> ResultRecord:
    return ResultRecord(
        metric=metric, model="proportion", cell=cell, control="control", effect=effect, se=1.0,
        ci_low=effect - 1.96, ci_high=effect + 1.96, p_value=float(2 * stats.norm.sf(abs(effect))),
        relative_effect=effect / 100, relative_se=0.01, relative_ci_low=None, relative_ci_high=None,
        n_cell=1000.0, n_control=1000.0, mean_cell=100 + effect, mean_control=100.0, slice="all users",
    )


def test_records_path_equals_the_vectorised_path() -> None:
    """RiskAwareRule on ResultRecords makes the same call as the vectorised simulation, run by run."""
    runs = 300
    rng = np.random.default_rng(5)
    goal = np.array([[MDE], [0.0]]) + rng.standard_normal((G, runs))
    guard = np.array([[-1.0], [0.0], [0.5]]) + rng.standard_normal((K, runs))
    expected = combine(superiority(goal, 1.0, alpha=ALPHA, n_goals=G).rejected,
                       non_inferiority(guard, 1.0, MARGIN, alpha=ALPHA).rejected,
                       np.concatenate([deterioration(goal, 1.0, alpha=ALPHA).rejected,
                                       deterioration(guard, 1.0, alpha=ALPHA).rejected]))
    roles = {f"g{i}": MetricRole(f"g{i}", "goal", higher_is_better=True) for i in range(G)}
    roles |= {f"k{i}": MetricRole(f"k{i}", "guardrail", higher_is_better=True, margin=MARGIN) for i in range(K)}
    records = [_record(f"g{i}", f"t{run}", goal[i, run]) for run in range(runs) for i in range(G)]
    records += [_record(f"k{i}", f"t{run}", guard[i, run]) for run in range(runs) for i in range(K)]
    decisions = RiskAwareRule().decide(DecisionContext(records=records, roles=roles, alpha=ALPHA,
                                                       settings=DecisionSpec()))
    got = {d.cell: d.recommendation == "ship" for d in decisions}
    assert len(got) == runs
    assert [got[f"t{run}"] for run in range(runs)] == expected.tolist()
    assert 0 < expected.sum() < runs  # both calls occur, so the comparison means something
