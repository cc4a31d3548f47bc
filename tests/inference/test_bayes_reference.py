"""Normal-normal Bayesian results against gbstats' EffectBayesianABTest (in .venv-ref), to 1e-8.

Same seeded summary statistics as the sequential reference test: means, proportions (own estimate from the
sums), ratio and CUPED metrics (gbstats' estimate and se), absolute and relative, flat and proper priors stated
on either scale, metrics where higher or lower is better. Compared: posterior mean and sd, credible interval,
chance to beat control, expected loss of not shipping / of shipping (gbstats' risk = [control, treatment]).
"""

from __future__ import annotations

import numpy as np
import pytest
from inference_cases import arm_moments, make_cases
from inference_ref import run_reference

from xpcompute.inference import (
    EffectEstimate,
    NormalPrior,
    bayes_two_sample,
    normal_posterior,
    two_sample_effect,
)
from xpcompute.inference.bayes import positive_part_mean

RTOL = 1e-8


@pytest.fixture(scope="module")
def gbstats_results() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    cases = make_cases(seed=29)
    return cases, run_reference("ref_gbstats.py", {"cases": cases})


def test_posterior_matches_gbstats(gbstats_results) -> None:  # type: ignore[no-untyped-def]
    cases, refs = gbstats_results
    worst = 0.0
    for case, ref in zip(cases, refs, strict=True):
        assert ref["bayes_error"] is None
        rel = bool(case["relative"])
        if case["stat"] in ("mean", "proportion"):
            ma, va, na = arm_moments(case["a"])  # type: ignore[arg-type]
            mb, vb, nb = arm_moments(case["b"])  # type: ignore[arg-type]
            est = two_sample_effect(ma, va, na, mb, vb, nb, relative=rel)
        else:
            est = EffectEstimate(ref["effect"], ref["se"], ref["n"], ref["mean_control"], rel)  # type: ignore[arg-type]
        p = case["prior"]
        prior = None if p is None else NormalPrior(p["mean"], p["variance"], p["type"])  # type: ignore[index]
        res = normal_posterior(est, prior, alpha=float(case["alpha"]), higher_is_better=not case["inverse"])  # type: ignore[arg-type]
        ours = np.array(
            [
                res.posterior_mean,
                res.posterior_sd,
                res.ci_low,
                res.ci_high,
                res.chance_to_beat_control,
                res.expected_loss_not_ship,
                res.expected_loss_ship,
            ]
        )
        theirs = np.array(
            [ref["bayes_mean"], ref["bayes_sd"], *ref["bayes_ci"], ref["bayes_ctw"], *ref["bayes_risk"]]
        )  # type: ignore[misc]
        # losses below ~1e-12 are where gbstats' truncated-normal moments lose digits; compare those absolutely
        np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=1e-14)
        rel_err = np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-12)
        worst = max(worst, float(rel_err.max()))
    print(f"Bayesian engine vs gbstats: {len(cases)} cases, max relative error {worst:.2e}")


def test_two_sample_gives_both_scales_and_flat_prior_is_the_likelihood() -> None:
    res = bayes_two_sample(10.0, 4.0, 2_000, 10.2, 4.4, 2_100)
    est = two_sample_effect(10.0, 4.0, 2_000, 10.2, 4.4, 2_100)
    assert res.absolute.posterior_mean == est.effect and res.absolute.posterior_sd == est.se
    assert res.relative.posterior_mean == pytest.approx(0.02)
    # a tight prior at 0 pulls the posterior toward 0 and narrows it
    tight = bayes_two_sample(10.0, 4.0, 2_000, 10.2, 4.4, 2_100, NormalPrior(0.0, 1e-4, "relative"))
    assert 0 < tight.relative.posterior_mean < res.relative.posterior_mean
    assert tight.relative.posterior_sd < res.relative.posterior_sd
    # the same prior moved to the absolute scale gives the same absolute posterior
    moved = bayes_two_sample(10.0, 4.0, 2_000, 10.2, 4.4, 2_100, NormalPrior(0.0, 1e-4 * 100.0, "absolute"))
    assert moved.relative.posterior_mean == pytest.approx(tight.relative.posterior_mean, rel=1e-12)


def test_expected_losses_are_normal_partial_expectations() -> None:
    """Against numerical integration, including far tails where the naive formula cancels."""
    from scipy import integrate, stats

    for mu, sd in [(0.3, 1.0), (-4.0, 0.5), (-30.0, 4.0), (2.0, 0.1), (0.0, 3.0)]:
        exact = integrate.quad(
            lambda x, mu=mu, sd=sd: x * stats.norm.pdf(x, mu, sd), 0.0, np.inf, epsrel=1e-12, epsabs=0
        )[0]
        assert positive_part_mean(mu, sd) == pytest.approx(exact, rel=1e-9)
