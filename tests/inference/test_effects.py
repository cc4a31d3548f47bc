"""The adapter from model results: every moments-based model's ResultRecord feeds the inference functions.

Fits the t-test, proportion, OLS/CUPED and ratio models on one seeded experiment, turns each record into an
EffectEstimate (absolute and relative), and checks it carries the record's numbers and that the sequential,
Bayesian and shrinkage functions accept it: with a flat prior the posterior is the record's estimate and se, and
the confidence sequence is wider than the record's fixed-horizon interval.
"""

from __future__ import annotations

import pytest
from datagen import make_experiment

from xpcompute.inference import (
    confidence_sequence,
    effect_from_record,
    empirical_bayes_shrinkage,
    normal_posterior,
    two_sample_effect,
)
from xpcompute.models import fit_table
from xpcompute.spec import FitSpec

SPECS = [
    FitSpec(metric="y", treatment="cell", model="ttest"),
    FitSpec(metric="converted", treatment="cell", model="proportion"),
    FitSpec(metric="y", treatment="cell", model="ols", covariates=("pre",)),
    FitSpec(metric="hours", treatment="cell", model="ratio", denominator="sessions"),
]


@pytest.mark.parametrize("spec", SPECS, ids=[s.model for s in SPECS])
def test_records_of_every_moments_model_feed_inference(spec: FitSpec) -> None:
    records = fit_table(make_experiment(n=6_000, seed=3), spec).records
    assert records
    effects = []
    for rec in records:
        for relative in (False, True):
            est = effect_from_record(rec, relative=relative)
            assert est.n == rec.n_cell + rec.n_control
            assert est.effect == (rec.relative_effect if relative else rec.effect)
            post = normal_posterior(est)
            assert (post.posterior_mean, post.posterior_sd) == (est.effect, est.se)
            cs = confidence_sequence(est.effect, est.se, est.n, planned_n=2 * est.n)
            fixed_half = 1.959963984540054 * est.se
            assert cs.half_width > fixed_half
            effects.append(est)
    if len(records) >= 2:
        shr = empirical_bayes_shrinkage([e.effect for e in effects] * 2, [e.se for e in effects] * 2)
        assert shr.posterior_mean.shape == (2 * len(effects),)


def test_two_sample_effect_needs_a_control_mean_for_relative() -> None:
    with pytest.raises(ValueError, match="non-zero control mean"):
        two_sample_effect(0.0, 1.0, 10, 1.0, 1.0, 10, relative=True)
