"""The decision layer: metric roles, the tests that match them, and a pluggable ship rule.

``decide_scorecard`` is what the coordinator calls after the inference pass (at
finalize and for a partial ``results()``): it resolves each metric's role (metric
class, experiment ``roles:``, request ``roles``), builds a ``DecisionContext`` from the
scorecard's records, sample-ratio checks and failures, and runs the experiment's rule
(``decision: {rule: ...}``, default ``risk_aware``). The result is one JSON-safe dict
per treatment cell (``CellDecision.to_json_dict``): recommendation, reasons, checks.

Modules: ``roles`` (specs, resolution; no scipy), ``tests`` (superiority,
non-inferiority, deterioration; ``guardrail_power_beta``), ``rule`` (``RiskAwareRule``),
``registry`` (``register_rule``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from xpcompute.decision.registry import get_rule, has_rule, register_rule, rule_names
from xpcompute.decision.roles import (
    ClassRole,
    DecisionSpec,
    GuardrailSpec,
    MetricRole,
    Role,
    RolesSpec,
    resolve_roles,
)

if TYPE_CHECKING:
    from xpcompute.decision.rule import CellDecision
    from xpcompute.experiment import ExperimentSpec
    from xpcompute.records import ResultRecord
    from xpcompute.viz.headline import MetricInfo


def class_role(metric: object) -> ClassRole | None:
    """The role a metric class declares (``role``, ``margin``, ``margin_relative``), if any."""
    role = getattr(metric, "role", None)
    if role is None:
        return None
    return ClassRole(role=role, margin=getattr(metric, "margin", None),
                     relative=bool(getattr(metric, "margin_relative", True)))


def roles_for(metrics: Iterable[str], experiment: ExperimentSpec | None = None,
              request: RolesSpec | Mapping[str, Any] | None = None) -> dict[str, MetricRole]:
    """Each metric's role for one analysis: the request's override, the experiment's ``roles:``, the class's.

    Without an experiment (an ad-hoc table), directions and class roles come from the metrics repo
    when it knows the name; unknown names are secondary without a direction.
    """
    from xpcompute.errors import XPError
    from xpcompute.metrics import get_metric

    names = list(metrics)
    hib: dict[str, bool | None] = {}
    declared: dict[str, ClassRole] = {}
    for name in names:
        try:
            metric = experiment.metric(name) if experiment is not None else get_metric(name)
        except (XPError, KeyError):
            hib[name] = None
            continue
        hib[name] = metric.higher_is_better
        found = class_role(metric)
        if found is not None:
            declared[name] = found
    override = RolesSpec.model_validate(request) if isinstance(request, Mapping) else request
    return resolve_roles(names, hib, declared, experiment.roles if experiment is not None else None, override)


def infos_for(metrics: Iterable[str], experiment: ExperimentSpec | None) -> dict[str, MetricInfo]:
    """Display metadata (with CUPED covariates) per metric, so the decision tests each metric's headline."""
    from xpcompute.errors import XPError
    from xpcompute.viz.headline import MetricInfo, metric_infos

    names = list(metrics)
    out = metric_infos(names, experiment)
    if experiment is not None:
        for name in names:
            try:
                out[name] = MetricInfo.from_metric(experiment.metric(name), experiment.covariates_for(name))
            except (XPError, KeyError):
                continue
            if experiment.metric(name).aggregation in ("any", "none") and out[name].kind == "simple":
                from dataclasses import replace

                out[name] = replace(out[name], kind="proportion")
    return out


def decide(
    records: Sequence[ResultRecord],
    *,
    experiment: ExperimentSpec | None = None,
    request: Mapping[str, Any] | None = None,
    srm: Sequence[Any] = (),
    complete: bool = True,
    failures: Sequence[Any] = (),
) -> list[CellDecision]:
    """The decision per treatment cell for one analysis's records (after corrections and the inference pass).

    ``srm`` are the scorecard's per-slice checks (objects with ``slice``, ``p_value``, ``mismatch``);
    ``failures`` its failed jobs (objects with ``metric`` and ``error``). ``request`` is the stored analysis
    request (its ``roles`` override and ``alpha``).
    """
    from xpcompute.decision.rule import DecisionContext, SRMCheck

    request = request or {}
    metrics = list(dict.fromkeys([*(request.get("metrics") or ()), *(r.metric for r in records)]))
    roles = roles_for(metrics, experiment, request.get("roles"))
    settings = experiment.decision if experiment is not None else DecisionSpec()
    failed = {str(f.metric): str(f.error) for f in failures if getattr(f, "metric", None)}
    context = DecisionContext(
        records=records, roles=roles, alpha=float(request.get("alpha", 0.05)), settings=settings,
        infos=infos_for(metrics, experiment), srm=[SRMCheck(s.slice, float(s.p_value), bool(s.mismatch)) for s in srm],
        complete=complete, failed=failed,
    )
    return get_rule(settings.rule).decide(context)


__all__ = [
    "ClassRole", "DecisionSpec", "GuardrailSpec", "MetricRole", "Role", "RolesSpec", "decide", "get_rule",
    "has_rule", "infos_for", "register_rule", "resolve_roles", "roles_for", "rule_names",
]
