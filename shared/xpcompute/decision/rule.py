"""The ship call: one recommendation per treatment cell, with its reasons.

``RiskAwareRule`` is the decision rule of Schultzberg, Ankargren & Frånberg, "Risk-aware
product decisions in A/B tests with multiple metrics" (Spotify, 2024), as this module
applies it:

* **ship** when at least one goal metric is significantly better (superiority, alpha
  Bonferroni-corrected across the goal metrics only), every guardrail is shown
  non-inferior (one-sided, at the *unadjusted* alpha: shipping needs all of them, an
  intersection-union test whose false-ship rate is bounded by any one test's level), no
  goal or guardrail has significantly deteriorated (one-sided inferiority tests, their
  section 4), and the experiment's own checks pass (a sample-ratio mismatch blocks);
* **don't ship** when something blocks (a regression, a sample-ratio mismatch) or when the
  analysis has all its data and the evidence for shipping is not there;
* **keep running** when the evidence may still come: a partial analysis, or a sequential
  test whose boundary has not been crossed before its planned end.

What the rule promises (checked by ``tests/decision/test_rule_simulation.py``): if no goal
truly improves, or if any guardrail is truly worse by its margin or more, it ships with
probability at most alpha; with each goal powered at ``1 - beta_s`` and each guardrail at
``1 - guardrail_power_beta(G, beta)``, it ships a truly good change (goal at its planned
effect, guardrails unchanged) with probability at least ``1 - beta_s - beta - sum(alpha_det)``.

Only each metric's *headline* estimate (``viz.headline``: CUPED when declared, else the
metric's primary model) is tested: two models of one metric are not two discoveries.
Sequential records are read through their always-valid / repeated intervals and
sequential p-values. A rule is pluggable (``registry.register_rule``); a team's rule
implements ``DecisionRule.decide`` on the same ``DecisionContext``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from xpcompute.decision.roles import DecisionSpec, MetricRole, Role
from xpcompute.decision.tests import deterioration, goal_alpha, non_inferiority, superiority
from xpcompute.records import ResultRecord

if TYPE_CHECKING:
    from xpcompute.viz.headline import MetricInfo

Recommendation = Literal["ship", "don't ship", "keep running"]
RECOMMENDATIONS: tuple[str, ...] = ("ship", "don't ship", "keep running")
Outcome = Literal["better", "not_better", "non_inferior", "not_non_inferior", "regressed", "shown", "missing"]
SEQUENTIAL = ("always_valid", "group_sequential")
#: ``segment`` of the did model's pre-trend record (``models.did.PRE_TREND``; not imported from there, because
#: the decision runs at finalize and the did module loads scipy; a test holds the two equal)
PRE_TREND_SEGMENT = "pre-trend"


@dataclass(frozen=True)
class SRMCheck:
    """The sample-ratio check of the slice a decision reads."""

    slice: str
    p_value: float
    mismatch: bool


@dataclass(frozen=True)
class DecisionContext:
    """Everything a rule reads: the records, the roles, the checks, and how far the analysis got."""

    records: Sequence[ResultRecord]
    roles: Mapping[str, MetricRole]
    alpha: float = 0.05
    settings: DecisionSpec = field(default_factory=DecisionSpec)
    infos: Mapping[str, MetricInfo] | None = None
    srm: Sequence[SRMCheck] = ()
    complete: bool = True
    #: metric -> why it has no result (a failed job); such a goal or guardrail cannot pass
    failed: Mapping[str, str] = field(default_factory=dict)
    #: the slice the decision reads; default the all-users slice, else the first slice of the records
    slice: str | None = None

    @property
    def level(self) -> float:
        return self.settings.alpha if self.settings.alpha is not None else self.alpha


@dataclass(frozen=True)
class MetricCheck:
    """One metric's test in one cell, as the decision used it."""

    metric: str
    role: Role
    test: str
    outcome: Outcome
    text: str
    model: str | None = None
    estimator: str | None = None
    effect: float | None = None
    relative_effect: float | None = None
    p_value: float | None = None
    level: float | None = None
    bound: float | None = None
    margin: float | None = None
    relative: bool = False
    sequential: bool = False

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            out[key] = None if isinstance(value, float) and not math.isfinite(value) else value
        return out


@dataclass(frozen=True)
class CellDecision:
    """The recommendation for one treatment cell: what to do, why, and every test behind it."""

    cell: str
    control: str
    recommendation: Recommendation
    reasons: tuple[str, ...]
    rule: str
    slice: str | None = None
    alpha: float = 0.05
    goal_alpha: float | None = None
    warnings: tuple[str, ...] = ()
    checks: tuple[MetricCheck, ...] = ()

    @property
    def summary(self) -> str:
        """One line: ``don't ship: guardrail X not shown non-inferior (...)``."""
        return f"{self.recommendation}: {self.reasons[0]}" if self.reasons else self.recommendation

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "cell": self.cell, "control": self.control, "recommendation": self.recommendation,
            "reasons": list(self.reasons), "warnings": list(self.warnings), "rule": self.rule, "slice": self.slice,
            "alpha": self.alpha, "goal_alpha": self.goal_alpha, "summary": self.summary,
            "checks": [c.to_json_dict() for c in self.checks],
        }


class DecisionRule(Protocol):
    """What a registered rule implements."""

    name: ClassVar[str]

    def decide(self, context: DecisionContext) -> list[CellDecision]: ...


def combine(goal_better: NDArray[np.bool_], guardrail_ok: NDArray[np.bool_],
            regressed: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The rule's ship condition over arrays (metrics on axis 0, runs on axis 1).

    Ship iff some goal is better, every guardrail is non-inferior and nothing regressed. With no goal
    nothing can ship; with no guardrail the guardrail condition holds vacuously.
    """
    any_goal = goal_better.any(axis=0) if goal_better.shape[0] else np.zeros(goal_better.shape[1:], dtype=bool)
    all_guard = guardrail_ok.all(axis=0) if guardrail_ok.shape[0] else np.ones(any_goal.shape, dtype=bool)
    any_reg = regressed.any(axis=0) if regressed.shape[0] else np.zeros(any_goal.shape, dtype=bool)
    return np.asarray(any_goal & all_guard & ~any_reg)


# ---- formatting --------------------------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return (f"{value * 100:+.2g}" if abs(value) < 0.001 else f"{value * 100:+.1f}") + "%"


def _num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:+.4g}"


def _pp(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value * 100:+.2f} pp"


def _p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "p=—"
    return "p<0.0001" if p < 1e-4 else f"p={p:.2g}" if p < 0.01 else f"p={p:.3f}"


def _clean(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _effect_text(r: ResultRecord) -> str:
    rel = _clean(r.relative_effect)
    return _pct(rel) if rel is not None else _num(_clean(r.effect))


# ---- the per-metric tests of a record ------------------------------------------------------------------------
def _sequential(r: ResultRecord) -> bool:
    return r.inference in SEQUENTIAL and _clean(r.sequential_ci_low) is not None \
        and _clean(r.sequential_ci_high) is not None


def goal_check(r: ResultRecord, role: MetricRole, alpha: float, n_goals: int, settings: DecisionSpec,
               estimator: str | None = None) -> MetricCheck:
    """Superiority of a goal's headline record at ``alpha / n_goals`` in its desired direction."""
    hib = bool(role.higher_is_better)
    level = goal_alpha(alpha, n_goals)
    seq = _sequential(r)
    if seq:
        p = _clean(r.sequential_p_value)
        d = (_clean(r.effect) or 0.0) * (1 if hib else -1)
        better = p is not None and p < level and d > 0
        bound = r.sequential_ci_low if hib else r.sequential_ci_high
    else:
        res = superiority(r.effect, r.se if r.se is not None else math.nan, alpha=alpha, higher_is_better=hib,
                          alternative=settings.goal_test, df=_df(r), n_goals=n_goals)
        p, better, bound = _clean(float(res.p_value)), bool(res.rejected), float(res.bound)
    direction = "up" if hib else "down"
    if better:
        text = f"goal {r.metric} better ({_effect_text(r)}, {_p(p)}, level {level:.3g})"
    else:
        text = f"goal {r.metric} not shown better ({_effect_text(r)}, {_p(p)}, needs < {level:.3g} and {direction})"
    return MetricCheck(metric=r.metric, role="goal", test=f"superiority ({settings.goal_test.replace('_', '-')})",
                       outcome="better" if better else "not_better", text=text, model=r.model, estimator=estimator,
                       effect=_clean(r.effect), relative_effect=_clean(r.relative_effect), p_value=p, level=level,
                       bound=_clean(bound), sequential=seq)


def guardrail_check(r: ResultRecord, role: MetricRole, alpha: float, estimator: str | None = None,
                    final: bool = True, points: bool = False) -> MetricCheck:
    """Non-inferiority of a guardrail's headline record against its margin, at the unadjusted ``alpha``.

    ``points``: an absolute margin of a proportion (or a metric shown in percent) is printed in
    percentage points, as the scorecard prints its effects."""
    hib = bool(role.higher_is_better)
    margin = float(role.margin or math.nan)
    seq = _sequential(r)
    if role.relative:
        effect, se = _clean(r.relative_effect), _clean(r.relative_se)
        if se is None and _clean(r.relative_ci_low) is not None and _clean(r.relative_ci_high) is not None:
            from scipy import special

            z = float(-special.ndtri(r.alpha / 2))
            se = (float(r.relative_ci_high) - float(r.relative_ci_low)) / (2 * z)  # type: ignore[arg-type]
        df = None
    else:
        effect, se, df = _clean(r.effect), _clean(r.se), _df(r)
    p: float | None
    if seq:
        raw = r.sequential_ci_low if hib else r.sequential_ci_high
        mean0 = _clean(r.mean_control)
        bound = _clean(raw)
        if role.relative:
            bound = None if bound is None or not mean0 else bound / abs(mean0)
        ok = bound is not None and ((bound > -margin) if hib else (bound < margin))
        p = None
    else:
        res = non_inferiority(effect if effect is not None else math.nan, se if se is not None else math.nan,
                              margin, alpha=alpha, higher_is_better=hib, df=df)
        p, ok, bound = _clean(float(res.p_value)), bool(res.rejected), _clean(float(res.bound))
    side = "lower" if hib else "upper"
    show: Callable[[float | None], str]
    if role.relative:
        show, margin_text = _pct, role.margin_text()
    elif points:
        show = _pp
        margin_text = _pp(-margin if hib else margin)
    else:
        show, margin_text = _num, role.margin_text()
    detail = f"margin {margin_text}, {side} bound {show(bound)}"
    if ok:
        text = f"guardrail {r.metric} non-inferior ({detail})"
    else:
        text = f"guardrail {r.metric} not {'' if final else 'yet '}shown non-inferior ({detail})"
    return MetricCheck(metric=r.metric, role="guardrail", test="non-inferiority",
                       outcome="non_inferior" if ok else "not_non_inferior", text=text, model=r.model,
                       estimator=estimator, effect=_clean(r.effect), relative_effect=_clean(r.relative_effect),
                       p_value=p, level=alpha, bound=bound, margin=role.margin, relative=role.relative, sequential=seq)


def regressed(r: ResultRecord, role: MetricRole, alpha: float) -> tuple[bool, float | None]:
    """The deterioration test of a metric with a direction: did it significantly get worse? (and its p-value)"""
    if role.higher_is_better is None:
        return False, None
    hib = bool(role.higher_is_better)
    if _sequential(r):
        d_hi = r.sequential_ci_high if hib else -float(r.sequential_ci_low)  # type: ignore[arg-type]
        return bool(d_hi is not None and d_hi < 0), _clean(r.sequential_p_value)
    res = deterioration(r.effect, r.se if r.se is not None else math.nan, alpha=alpha, higher_is_better=hib,
                        df=_df(r))
    return bool(res.rejected), _clean(float(res.p_value))


def _df(r: ResultRecord) -> float | None:
    """Degrees of freedom of a Welch t-test record; ``None`` (normal) for every other model."""
    return float(r.df) if r.model == "ttest" and r.df is not None and math.isfinite(r.df) else None


# ---- the rule --------------------------------------------------------------------------------------------------
def decision_slice(records: Sequence[ResultRecord], wanted: str | None = None) -> str | None:
    """The slice a decision reads: ``wanted``, else the all-users slice, else the first slice the records name."""
    from xpcompute.pipeline.slices import SliceFilter

    slices = list(dict.fromkeys(r.slice for r in records))
    if wanted is not None:
        return wanted
    everyone = SliceFilter().label()
    if everyone in slices or not slices:
        return everyone
    return slices[0]  # None for records of a local fit, which carry no slice


class RiskAwareRule:
    """Schultzberg, Ankargren & Frånberg (2024): ship on a better goal, non-inferior guardrails, no regression."""

    name: ClassVar[str] = "risk_aware"

    def decide(self, context: DecisionContext) -> list[CellDecision]:
        from xpcompute.viz.headline import headlines

        target = decision_slice(context.records, context.slice)
        records = [r for r in context.records if r.slice == target]
        heads = headlines(records, context.infos)
        by_cell: dict[str, dict[str, Any]] = {}
        controls: dict[str, str] = {}
        for h in heads:
            by_cell.setdefault(h.cell, {})[h.metric] = h
            controls[h.cell] = h.control
        alpha = context.level
        roles = context.roles
        goals = [m for m, role in roles.items() if role.role == "goal"]
        guards = [m for m, role in roles.items() if role.role == "guardrail"]
        srm = next((s for s in context.srm if s.slice == target), None)
        sequential_open = any(
            r.inference in SEQUENTIAL and (r.information_fraction or 0.0) < 1.0 for r in records
        )
        out: list[CellDecision] = []
        for cell in sorted(by_cell, key=_natural):
            out.append(self._cell(context, cell, controls[cell], by_cell[cell], goals, guards, srm, alpha,
                                  target, sequential_open))
        return out

    def _cell(self, context: DecisionContext, cell: str, control: str, heads: Mapping[str, Any],
              goals: list[str], guards: list[str], srm: SRMCheck | None, alpha: float, target: str | None,
              sequential_open: bool) -> CellDecision:
        roles = context.roles
        final = context.complete and not sequential_open
        checks: list[MetricCheck] = []
        blockers: list[str] = []
        missing: list[str] = []
        warnings: list[str] = []
        if context.settings.srm_blocks and srm is not None and srm.mismatch:
            blockers.append(f"sample ratio mismatch in {srm.slice} ({_p(srm.p_value)}): the cells are not the "
                            "planned split, so every comparison may be biased")
        if context.settings.pretrend_blocks:
            blockers += pretrend_blockers(context.records, cell, [*goals, *guards], roles, alpha, target)
        for metric in [*goals, *guards]:
            if metric not in heads:
                why = context.failed.get(metric)
                missing.append(f"no result for {roles[metric].role} {metric}" + (f" ({why})" if why else ""))
                checks.append(MetricCheck(metric=metric, role=roles[metric].role, test="none", outcome="missing",
                                          text=missing[-1]))
        for metric in goals:
            if metric in heads:
                h = heads[metric]
                checks.append(goal_check(h.record, roles[metric], alpha, len(goals), context.settings, h.estimator))
        for metric in guards:
            if metric in heads:
                h = heads[metric]
                checks.append(guardrail_check(h.record, roles[metric], alpha, h.estimator, final=final,
                                              points=h.info.in_points))
        det_alpha = context.settings.deterioration_alpha or alpha
        for metric, h in heads.items():
            role = roles.get(metric)
            if role is None or role.higher_is_better is None:
                continue
            worse, p = regressed(h.record, role, det_alpha)
            if not worse:
                continue
            text = f"{role.role} {metric} got significantly worse ({_effect_text(h.record)}, {_p(p)})"
            if role.role in ("goal", "guardrail"):
                blockers.append(text)
                checks.append(MetricCheck(metric=metric, role=role.role, test="deterioration (one-sided)",
                                          outcome="regressed", text=text, model=h.record.model,
                                          estimator=h.estimator, effect=_clean(h.record.effect),
                                          relative_effect=_clean(h.record.relative_effect), p_value=p,
                                          level=det_alpha))
            else:
                warnings.append(text + " (not decisive)")
        goal_better = np.array([[c.outcome == "better"] for c in checks if c.role == "goal" and c.test != "none"
                                and c.outcome != "regressed"], dtype=bool).reshape(-1, 1)
        guard_ok = np.array([[c.outcome == "non_inferior"] for c in checks if c.role == "guardrail"
                             and c.outcome in ("non_inferior", "not_non_inferior", "missing")],
                            dtype=bool).reshape(-1, 1)
        reg = np.array([[bool(blockers)]], dtype=bool)
        ship = bool(combine(goal_better, guard_ok, reg)[0]) and not missing
        level = goal_alpha(alpha, len(goals)) if goals else None
        common = dict(cell=cell, control=control, rule=self.name, slice=target, alpha=alpha, goal_alpha=level,
                      warnings=tuple(warnings), checks=tuple(checks))
        if not goals:
            return CellDecision(recommendation="don't ship", reasons=(
                "no goal metric is declared, so nothing can be shown better; declare one under roles: {goal: [...]}",
            ), **common)  # type: ignore[arg-type]
        failing = [c.text for c in checks if c.outcome in ("not_better", "not_non_inferior")]
        if blockers:
            also = [t for t in failing if t.startswith("guardrail")]
            return CellDecision(recommendation="don't ship", reasons=(*blockers, *also),
                                **common)  # type: ignore[arg-type]
        if ship:
            better = [c.text for c in checks if c.outcome == "better"]
            n_guard = sum(1 for c in checks if c.outcome == "non_inferior")
            reasons = [*better, f"all {n_guard} guardrail{'s' if n_guard != 1 else ''} non-inferior"
                       if n_guard else "no guardrail declared", "nothing regressed significantly"]
            if srm is not None:
                reasons.append(f"sample ratio as planned ({_p(srm.p_value)})")
            return CellDecision(recommendation="ship", reasons=tuple(reasons), **common)  # type: ignore[arg-type]
        goals_not_better = all(c.outcome != "better" for c in checks if c.role == "goal")
        ordered = ([c for c in failing if c.startswith("guardrail")] + [c for c in failing if c.startswith("goal")]
                   if not goals_not_better else failing)
        if not final:
            why = "the analysis is still running" if not context.complete else \
                "the sequential test has not crossed its boundary"
            return CellDecision(recommendation="keep running", reasons=(*missing, *ordered, why),
                                **common)  # type: ignore[arg-type]
        return CellDecision(recommendation="don't ship", reasons=(*missing, *ordered), **common)  # type: ignore[arg-type]


def pretrend_blockers(records: Sequence[ResultRecord], cell: str, metrics: Sequence[str],
                      roles: Mapping[str, MetricRole], alpha: float, target: str | None) -> list[str]:
    """Why a difference in differences cannot be trusted: a decisive metric's pre-trend test rejects.

    A DiD estimate is causal only if the groups would have moved in parallel without the change; the
    ``did`` model's pre-trend record (``segment="pre-trend"``: the joint Wald test that every
    pre-period effect is zero) is the data's evidence against that. Like a sample-ratio mismatch in a
    randomised test, a rejection says the comparison itself is broken, so it blocks a ship rather than
    counting as one more metric (``DecisionSpec.pretrend_blocks``).
    """
    out: list[str] = []
    for r in records:
        if (r.model == "did" and r.segment == PRE_TREND_SEGMENT and r.cell == cell and r.metric in metrics
                and (target is None or r.slice == target) and r.p_value is not None
                and math.isfinite(r.p_value) and r.p_value < alpha):
            stat = f"chi2 {r.statistic:.3g}, " if r.statistic is not None and math.isfinite(r.statistic) else ""
            out.append(f"pre-trend test of {roles[r.metric].role} {r.metric} rejects parallel trends ({stat}"
                       f"{_p(r.p_value)}): the difference in differences may be biased")
    return out


def _natural(cell: str) -> tuple[Any, ...]:
    from xpcompute.viz._common import natural_key

    return tuple(natural_key(cell))


__all__ = [
    "RECOMMENDATIONS", "CellDecision", "DecisionContext", "DecisionRule", "MetricCheck", "Recommendation",
    "RiskAwareRule", "SRMCheck", "combine", "decision_slice", "goal_check", "guardrail_check", "pretrend_blockers",
    "regressed",
]
