"""Lossy-compression validation: n-tile results against exact (lossless) results over the archive.

The seed paper (section 4.4): models that cannot be summarized by sufficient statistics use "a lossy
compression ... with sensible defaults that do not materially impact the precision of the treatment effect,
as validated by the platform's meta-analysis framework". Here the lossy compression is ``ntile:N``
(``compression.distribution``: rank and quantile models; the service uses ``AnalysisSpec.ntile_buckets``),
the exact one groups by the exact value (``compress=lossless``), and the framework is the archive.

For every archived experiment, every simple metric of its spec and every rank/quantile model asked for
(``models``: default ``mannwhitney``), the metric's per-unit values come from the archived stage-1 table
(or its stage-1 step on the raw sources, as ``meta.replay`` does), and the model is fitted on all units
twice: exact and ``ntile:N`` for each N. Per metric and N:

* **p-value agreement**: the share of results whose p-values differ by at most ``p_tolerance``;
* **decision agreement**: the share whose significance at the analysis's alpha is the same;
* the largest deviations: ``|p_ntile - p_exact|`` and ``|effect_ntile - effect_exact| / SE_exact``.

The criterion is the seeds' "more than 99.9% agreement" (``criterion``, on both shares); the recommended N
of a metric is the smallest N given that meets it (``None`` when none does).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xpcompute.errors import InputError, XPError
from xpcompute.metrics.base import RatioMetric
from xpcompute.spec import CompressSpec, FitSpec

if TYPE_CHECKING:
    import pyarrow as pa

    from xpcompute.coordinator.jobs import Analysis
    from xpcompute.coordinator.service import Coordinator

CRITERION = 0.999
DISTRIBUTION_MODELS = ("mannwhitney", "quantile")


@dataclass(frozen=True)
class Comparison:
    """One result (experiment, metric, model, cell, quantile) exact and under ``ntile:buckets``."""

    experiment_id: str
    metric: str
    model: str
    cell: str
    quantile: float | None
    buckets: int
    p_exact: float
    p_ntile: float
    effect_exact: float
    effect_ntile: float
    se_exact: float | None
    alpha: float

    @property
    def p_difference(self) -> float:
        return abs(self.p_ntile - self.p_exact)

    @property
    def effect_difference_se(self) -> float | None:
        if not self.se_exact or not math.isfinite(self.se_exact):
            return None
        return abs(self.effect_ntile - self.effect_exact) / self.se_exact

    @property
    def same_decision(self) -> bool:
        return (self.p_exact < self.alpha) == (self.p_ntile < self.alpha)

    def to_json_dict(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__},
                "p_difference": self.p_difference, "effect_difference_se": self.effect_difference_se,
                "same_decision": self.same_decision}


def _values(coordinator: Coordinator, analysis: Analysis, metric: str) -> pa.Table:
    """The metric's per-unit values of one archived analysis: from its stage-1 table, else its stage-1 step."""
    from xpcompute.coordinator.ledger import spec_hash, table_spec_hash
    from xpcompute.errors import NotFoundError
    from xpcompute.meta.replay import reduced_spec, stage1_from_raw, stage1_from_table, table_columns
    from xpcompute.pipeline.tables import open_table
    from xpcompute.storage import keys

    archived = coordinator.experiment_of(analysis)
    if archived is None:
        raise InputError(f"analysis {analysis.analysis_id} has no registered experiment version")
    reduced = reduced_spec(archived, metric)
    mapping = table_columns(archived, reduced)
    if mapping is not None:
        try:
            published = open_table(keys.analysis_table(archived.id), coordinator.store)
            if table_spec_hash(published.manifest) == spec_hash(archived):
                return stage1_from_table(published, reduced, mapping, archived)
        except NotFoundError:
            pass
    return stage1_from_raw(reduced)


def compare_experiment(coordinator: Coordinator, analysis: Analysis, buckets: Sequence[int],
                       models: Sequence[str] = ("mannwhitney",), metrics: Sequence[str] | None = None,
                       bootstrap_reps: int = 200) -> list[Comparison]:
    """Every (metric, model) of one archived analysis, exact against each ``ntile:N``."""
    from xpcompute.models import fit_table

    archived = coordinator.experiment_of(analysis)
    assert archived is not None
    alpha = float(analysis.request.get("alpha", 0.05))
    names = [m for m in (metrics or analysis.request.get("metrics") or archived.metrics)
             if m in archived.metrics and not isinstance(archived.metric(m), RatioMetric)]
    out: list[Comparison] = []
    for metric in names:
        table = _values(coordinator, analysis, metric)
        for model in models:
            if model not in DISTRIBUTION_MODELS:
                raise InputError(f"model {model!r} is not compressed lossily; choose from {DISTRIBUTION_MODELS}")
            base = FitSpec(metric=metric, treatment="cell", control=archived.control, model=model, alpha=alpha,
                           bootstrap_reps=bootstrap_reps)
            exact = {(r.cell, r.quantile): r for r in fit_table(table, base).records}
            for n in buckets:
                lossy = fit_table(table, base.model_copy(update={"compress": CompressSpec(kind="ntile", buckets=n)}))
                for r in lossy.records:
                    e = exact[(r.cell, r.quantile)]
                    if e.p_value is None or r.p_value is None:
                        continue
                    out.append(Comparison(archived.id, metric, model, r.cell, r.quantile, n, e.p_value, r.p_value,
                                          e.effect, r.effect, e.se, alpha))
    return out


def summarize(comparisons: Sequence[Comparison], buckets: Sequence[int], p_tolerance: float,
              criterion: float = CRITERION, worst: int = 5) -> dict[str, Any]:
    """Per metric and N: shares that agree, largest deviations, and the smallest N that meets ``criterion``."""
    metrics = sorted({c.metric for c in comparisons})
    per_metric: dict[str, Any] = {}
    for metric in metrics:
        rows: dict[str, Any] = {}
        recommended = None
        for n in sorted(buckets):
            mine = [c for c in comparisons if c.metric == metric and c.buckets == n]
            if not mine:
                continue
            p_share = sum(c.p_difference <= p_tolerance for c in mine) / len(mine)
            d_share = sum(c.same_decision for c in mine) / len(mine)
            effects = [c.effect_difference_se for c in mine if c.effect_difference_se is not None]
            meets = p_share >= criterion and d_share >= criterion
            if meets and recommended is None:
                recommended = n
            rows[str(n)] = {
                "results": len(mine), "p_value_agreement": p_share, "decision_agreement": d_share,
                "max_p_difference": max(c.p_difference for c in mine),
                "max_effect_difference_se": max(effects) if effects else None, "meets_criterion": meets,
                "largest": [c.to_json_dict() for c in sorted(mine, key=lambda c: -c.p_difference)[:worst]],
            }
        per_metric[metric] = {"buckets": rows, "recommended_buckets": recommended}
    return {"criterion": criterion, "p_tolerance": p_tolerance, "metrics": per_metric}


@dataclass
class CompressionCheck:
    buckets: tuple[int, ...]
    models: tuple[str, ...]
    comparisons: list[Comparison]
    skipped: dict[str, str]
    summary: dict[str, Any]
    seconds: float

    def to_json_dict(self) -> dict[str, Any]:
        return {"buckets": list(self.buckets), "models": list(self.models), "summary": self.summary,
                "experiments": len({c.experiment_id for c in self.comparisons}), "skipped": self.skipped,
                "seconds": round(self.seconds, 3)}


def validate_compression(coordinator: Coordinator, buckets: Sequence[int], models: Sequence[str] = ("mannwhitney",),
                         experiments: Sequence[str] | None = None, metrics: Sequence[str] | None = None,
                         p_tolerance: float = 0.001, criterion: float = CRITERION,
                         bootstrap_reps: int = 200) -> CompressionCheck:
    """n-tile against exact over the archive (every registered experiment's newest finished analysis)."""
    from xpcompute.meta.archive import latest_completed

    started = time.perf_counter()
    if not buckets or any(n < 2 for n in buckets):
        raise InputError("--buckets needs bucket counts of at least 2, e.g. 100,1000")
    ids = list(experiments) if experiments else [r.experiment_id for r in coordinator.list_experiments()]
    comparisons: list[Comparison] = []
    skipped: dict[str, str] = {}
    for experiment_id in ids:
        try:
            analysis = latest_completed(coordinator, experiment_id)
            if analysis is None:
                skipped[experiment_id] = "no finished analysis"
                continue
            comparisons += compare_experiment(coordinator, analysis, buckets, models, metrics, bootstrap_reps)
        except XPError as exc:
            skipped[experiment_id] = f"{type(exc).__name__}: {exc}"
    if not comparisons:
        raise InputError("no archived result could be compared; " + "; ".join(list(skipped.values())[:3]))
    summary = summarize(comparisons, buckets, p_tolerance, criterion)
    return CompressionCheck(tuple(sorted(buckets)), tuple(models), comparisons, skipped, summary,
                            time.perf_counter() - started)


__all__ = ["CRITERION", "Comparison", "CompressionCheck", "compare_experiment", "summarize", "validate_compression"]
