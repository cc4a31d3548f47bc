"""Reference numbers from gbstats (run in .venv-ref by inference_ref.run_reference; JSON in, JSON out).

Input: {"cases": [{"stat": "mean"|"proportion"|"ratio"|"cuped", "a": {...}, "b": {...}, "relative": bool,
"alpha": float, "tuning": float, "prior": null | {"mean", "variance", "type"}, "inverse": bool}]}
Output: per case gbstats' point estimate and variance, its sequential interval and p-value
(SequentialTwoSidedTTest) and its Bayesian result (EffectBayesianABTest).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig, GaussianPrior
from gbstats.frequentist.tests import SequentialConfig, SequentialTwoSidedTTest
from gbstats.models.statistics import (
    ProportionStatistic,
    RatioStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
)


def moment(d: dict[str, Any]) -> SampleMeanStatistic | ProportionStatistic:
    if "sum_squares" in d:
        return SampleMeanStatistic(n=d["n"], sum=d["sum"], sum_squares=d["sum_squares"])
    return ProportionStatistic(n=d["n"], sum=d["sum"])


def statistic(kind: str, d: dict[str, Any]) -> Any:
    if kind in ("mean", "proportion"):
        return moment(d)
    if kind == "ratio":
        return RatioStatistic(
            n=d["n"], m_statistic=moment(d["m"]), d_statistic=moment(d["d"]), m_d_sum_of_products=d["m_d"]
        )
    if kind == "cuped":
        return RegressionAdjustedStatistic(
            n=d["n"],
            post_statistic=moment(d["post"]),
            pre_statistic=moment(d["pre"]),
            post_pre_sum_of_products=d["post_pre"],
            theta=0.0,
        )
    raise ValueError(kind)


def run(case: dict[str, Any]) -> dict[str, Any]:
    diff = "relative" if case["relative"] else "absolute"
    a, b = statistic(case["stat"], case["a"]), statistic(case["stat"], case["b"])
    seq = SequentialTwoSidedTTest(
        a,
        b,
        SequentialConfig(
            alpha=case["alpha"], sequential_tuning_parameter=case["tuning"], difference_type=diff
        ),
    )
    res = seq.compute_result()
    prior = case.get("prior")
    gp = GaussianPrior() if prior is None else GaussianPrior(prior["mean"], prior["variance"], True)
    ptype = "relative" if prior is None else prior["type"]
    a2, b2 = statistic(case["stat"], case["a"]), statistic(case["stat"], case["b"])
    bay = EffectBayesianABTest(
        a2,
        b2,
        EffectBayesianConfig(
            difference_type=diff,
            alpha=case["alpha"],
            inverse=case["inverse"],
            prior_type=ptype,
            prior_effect=gp,
        ),
    ).compute_result()
    return {
        "effect": float(seq.point_estimate),
        "se": math.sqrt(float(seq.variance)),
        "n": float(seq.stat_a.n + seq.stat_b.n),
        "mean_control": float(seq.stat_a.unadjusted_mean),
        "seq_ci": [float(x) for x in res.ci],
        "seq_p": float(res.p_value),
        "bayes_mean": float(bay.expected),
        "bayes_sd": float(bay.uplift.stddev),
        "bayes_ci": [float(x) for x in bay.ci],
        "bayes_ctw": float(bay.chance_to_win),
        "bayes_risk": [float(x) for x in bay.risk],
        "bayes_error": bay.error_message,
    }


if __name__ == "__main__":
    cases = json.load(sys.stdin)["cases"]
    json.dump([run(c) for c in cases], sys.stdout)
