"""Inference on summary statistics: sequential tests, Bayesian analysis, shrinkage, power.

Every function takes an effect with its standard error (or per-arm means, variances and counts), never rows,
so it serves every moments-based model (t-test, proportion, OLS/CUPED, ratio). Modules:

- `effects`: `EffectEstimate` and the adapters from per-arm summaries and from a `ResultRecord`.
- `sequential`: anytime-valid confidence sequences; Lan-DeMets group-sequential boundaries by recursive
  numerical integration; `Look` state and `analyze_look` / `next_look` for one more analysis.
- `bayes`: normal-normal posterior of the absolute and the relative effect with a per-metric prior.
- `shrinkage`: empirical-Bayes (REML or DerSimonian-Laird) shrinkage across the estimates of one analysis.
- `power`: pre-period and CUPED variance, power / sample size / MDE, progress of a running test, and simulated
  power of the sequential methods.

Names resolve lazily (PEP 562): the experiment spec and every function import
``xpcompute.inference.settings``, and the math modules pull in scipy.stats,
which costs most of a cold start; they load on first use instead.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, typed, for mypy and editors
    from xpcompute.inference.bayes import (
        BayesAnalysis,
        BayesResult,
        NormalPrior,
        bayes_two_sample,
        normal_posterior,
    )
    from xpcompute.inference.effects import EffectEstimate, effect_from_record, two_sample_effect
    from xpcompute.inference.power import (
        MdeResult,
        MetricDesign,
        PowerResult,
        PrePeriodVariance,
        Progress,
        SampleSizeResult,
        SimulatedPower,
        minimum_detectable_effect,
        power_at,
        preperiod_variance,
        progress,
        sample_size,
        simulated_sequential_power,
    )
    from xpcompute.inference.sequential import (
        ConfidenceSequenceResult,
        GroupSequentialBoundaries,
        Look,
        LookResult,
        alpha_spent,
        analyze_look,
        confidence_sequence,
        crossing_probabilities,
        group_sequential_boundaries,
        information_fraction,
        next_look,
        running_confidence_sequence,
    )
    from xpcompute.inference.shrinkage import ShrinkageResult, empirical_bayes_shrinkage

_WHERE: dict[str, str] = {
    "BayesAnalysis": "bayes",
    "BayesResult": "bayes",
    "ConfidenceSequenceResult": "sequential",
    "EffectEstimate": "effects",
    "GroupSequentialBoundaries": "sequential",
    "Look": "sequential",
    "LookResult": "sequential",
    "MdeResult": "power",
    "MetricDesign": "power",
    "NormalPrior": "bayes",
    "PowerResult": "power",
    "PrePeriodVariance": "power",
    "Progress": "power",
    "SampleSizeResult": "power",
    "ShrinkageResult": "shrinkage",
    "SimulatedPower": "power",
    "alpha_spent": "sequential",
    "analyze_look": "sequential",
    "bayes_two_sample": "bayes",
    "confidence_sequence": "sequential",
    "crossing_probabilities": "sequential",
    "effect_from_record": "effects",
    "empirical_bayes_shrinkage": "shrinkage",
    "group_sequential_boundaries": "sequential",
    "information_fraction": "sequential",
    "minimum_detectable_effect": "power",
    "next_look": "sequential",
    "normal_posterior": "bayes",
    "power_at": "power",
    "preperiod_variance": "power",
    "progress": "power",
    "running_confidence_sequence": "sequential",
    "sample_size": "power",
    "simulated_sequential_power": "power",
    "two_sample_effect": "effects",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'xpcompute.inference' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"xpcompute.inference.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "BayesAnalysis",
    "BayesResult",
    "ConfidenceSequenceResult",
    "EffectEstimate",
    "GroupSequentialBoundaries",
    "Look",
    "LookResult",
    "MdeResult",
    "MetricDesign",
    "NormalPrior",
    "PowerResult",
    "PrePeriodVariance",
    "Progress",
    "SampleSizeResult",
    "ShrinkageResult",
    "SimulatedPower",
    "alpha_spent",
    "analyze_look",
    "bayes_two_sample",
    "confidence_sequence",
    "crossing_probabilities",
    "effect_from_record",
    "empirical_bayes_shrinkage",
    "group_sequential_boundaries",
    "information_fraction",
    "minimum_detectable_effect",
    "next_look",
    "normal_posterior",
    "power_at",
    "preperiod_variance",
    "progress",
    "running_confidence_sequence",
    "sample_size",
    "simulated_sequential_power",
    "two_sample_effect",
]
