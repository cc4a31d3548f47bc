"""The decision rule on records: roles from class / YAML / request, blockers, keep running, the registry."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.decision import decide, get_rule, register_rule, roles_for, rule_names
from xpcompute.decision.roles import DecisionSpec, MetricRole, RolesSpec, resolve_roles
from xpcompute.decision.rule import CellDecision, DecisionContext, RiskAwareRule, SRMCheck
from xpcompute.errors import InputError
from xpcompute.experiment import ExperimentSpec
from xpcompute.records import ResultRecord


def rec(metric: str, effect: float, se: float = 1.0, cell: str = "b", model: str = "ttest", mean0: float = 100.0,
        **extra: Any) -> ResultRecord:
    return ResultRecord(
        metric=metric, model=model, cell=cell, control="a", effect=effect, se=se, ci_low=effect - 2 * se,
        ci_high=effect + 2 * se, p_value=0.5, relative_effect=effect / mean0, relative_se=se / mean0,
        relative_ci_low=None, relative_ci_high=None, n_cell=1e4, n_control=1e4, mean_cell=mean0 + effect,
        mean_control=mean0, slice="all users", **extra,
    )


ROLES = {
    "hours": MetricRole("hours", "goal", higher_is_better=True),
    "rebuffer": MetricRole("rebuffer", "guardrail", higher_is_better=False, margin=0.02, relative=True),
    "clicks": MetricRole("clicks", "secondary", higher_is_better=True),
}


def one(records: list[ResultRecord], **kw: Any) -> CellDecision:
    out = RiskAwareRule().decide(DecisionContext(records=records, roles=kw.pop("roles", ROLES), **kw))
    assert len(out) == 1
    return out[0]


def test_ship_when_goal_better_and_guardrail_non_inferior() -> None:
    d = one([rec("hours", 5.0), rec("rebuffer", 0.0, se=0.5), rec("clicks", 0.1)])
    assert d.recommendation == "ship", d.reasons
    assert d.reasons[0].startswith("goal hours better (+5.0%")
    assert "all 1 guardrail non-inferior" in d.reasons


def test_guardrail_not_shown_non_inferior_says_margin_and_bound() -> None:
    # relative effect +1%, relative se 1%: upper bound 1% + 1.645% = +2.6% > +2% margin
    d = one([rec("hours", 5.0), rec("rebuffer", 1.0, se=1.0)])
    assert d.recommendation == "don't ship"
    assert d.reasons == ("guardrail rebuffer not shown non-inferior (margin +2%, upper bound +2.6%)",)
    partial = one([rec("hours", 5.0), rec("rebuffer", 1.0, se=1.0)], complete=False)
    assert partial.recommendation == "keep running"
    assert partial.reasons[0] == "guardrail rebuffer not yet shown non-inferior (margin +2%, upper bound +2.6%)"


def test_regression_and_srm_block() -> None:
    d = one([rec("hours", 5.0), rec("rebuffer", 4.0, se=0.5)])
    assert d.recommendation == "don't ship"
    assert d.reasons[0].startswith("guardrail rebuffer got significantly worse (+4.0%")
    srm = one([rec("hours", 5.0), rec("rebuffer", 0.0, se=0.5)], srm=[SRMCheck("all users", 1e-6, True)])
    assert srm.recommendation == "don't ship" and srm.reasons[0].startswith("sample ratio mismatch in all users")
    # a secondary metric's regression is a warning, not a blocker
    warned = one([rec("hours", 5.0), rec("rebuffer", 0.0, se=0.5), rec("clicks", -5.0)])
    assert warned.recommendation == "ship" and warned.warnings[0].startswith("secondary clicks got significantly worse")


def test_two_models_of_one_metric_are_one_test() -> None:
    """The CUPED (ols) record is the headline when covariates are declared; the t-test does not count."""
    from xpcompute.viz.headline import MetricInfo

    infos = {"hours": MetricInfo("hours", covariates=("pre_hours",))}
    d = one([rec("hours", 0.5, se=1.0), rec("hours", 5.0, model="ols"), rec("rebuffer", 0.0, se=0.5)],
            infos=infos)
    assert d.recommendation == "ship"
    goal = next(c for c in d.checks if c.metric == "hours")
    assert goal.model == "ols" and goal.estimator == "CUPED on pre_hours"
    assert sum(c.metric == "hours" for c in d.checks) == 1


def test_sequential_records_decide_on_their_intervals() -> None:
    seq: dict[str, Any] = {"inference": "always_valid", "information_fraction": 0.4}
    hours = rec("hours", 5.0, sequential_ci_low=-0.5, sequential_ci_high=10.5, sequential_p_value=0.09, **seq)
    rebuffer = rec("rebuffer", 0.0, se=0.5, sequential_ci_low=-1.5, sequential_ci_high=1.5, **seq)
    d = one([hours, rebuffer])
    assert d.recommendation == "keep running"
    assert d.reasons[-1] == "the sequential test has not crossed its boundary"
    crossed = rec("hours", 5.0, sequential_ci_low=1.0, sequential_ci_high=9.0, sequential_p_value=0.001, **seq)
    assert one([crossed, rebuffer]).recommendation == "ship"


def test_no_goal_means_no_ship_and_says_how_to_declare_one() -> None:
    d = one([rec("clicks", 5.0)], roles={"clicks": ROLES["clicks"]})
    assert d.recommendation == "don't ship" and "roles: {goal:" in d.reasons[0]


def test_roles_resolve_request_over_yaml_over_class() -> None:
    from xpcompute.decision.roles import ClassRole

    hib = {"a": True, "b": False, "c": True}
    declared = {"a": ClassRole("guardrail", 0.1, relative=False)}
    roles = resolve_roles(["a", "b", "c"], hib, declared, RolesSpec(goal=("c",)))
    assert (roles["a"].role, roles["a"].margin, roles["a"].source) == ("guardrail", 0.1, "metric class")
    assert roles["b"].role == "secondary" and roles["c"].role == "goal"
    over = resolve_roles(["a", "b", "c"], hib, declared, RolesSpec(goal=("c",)),
                         RolesSpec.model_validate({"goals": ["a"], "guardrails": {"c": {"margin": 0.01}}}))
    assert over["a"].role == "goal" and over["c"].role == "guardrail" and over["c"].source == "request"
    with pytest.raises(ValueError, match="has no direction"):
        resolve_roles(["a"], {"a": None}, None, RolesSpec(goal=("a",)))
    with pytest.raises(ValidationError, match="under two roles"):
        RolesSpec.model_validate({"goal": ["a"], "secondary": ["a"]})


def _spec(**extra: Any) -> ExperimentSpec:
    raw: dict[str, Any] = {
        "id": "e", "cells": ["control", "b"], "control": "control",
        "window": {"start": "2026-01-01", "end": "2026-01-10"},
        "sources": {"allocations": {"uri": "a.parquet"}, "users": {"uri": "u.parquet"},
                    "playback": {"uri": "p.parquet"}, "account": {"uri": "x.parquet"}},
        "metrics": ["streaming_hours", "rebuffer_rate", "retained", "sessions"],
    }
    raw.update(extra)
    return ExperimentSpec.parse(raw)


def test_experiment_yaml_roles_are_validated_and_catalog_roles_apply() -> None:
    spec = _spec()
    roles = roles_for(spec.metrics, spec)
    assert roles["streaming_hours"].role == "goal"  # declared on the catalog class
    assert (roles["rebuffer_rate"].role, roles["rebuffer_rate"].margin, roles["rebuffer_rate"].relative) == \
        ("guardrail", 0.02, True)
    assert (roles["retained"].margin, roles["retained"].relative) == (0.005, False)
    yaml_roles = _spec(roles={"goal": ["sessions"], "secondary": ["streaming_hours"]})
    assert roles_for(yaml_roles.metrics, yaml_roles)["sessions"].role == "goal"
    with pytest.raises(InputError, match=r"roles names \['revenue'\], which are not metrics"):
        _spec(roles={"goal": ["revenue"]})
    with pytest.raises(InputError, match=r"decision\.rule 'nope' is not registered"):
        _spec(decision={"rule": "nope"})
    with pytest.raises(InputError, match=r"roles.guardrails.sessions.margin: Field required"):
        _spec(roles={"guardrails": {"sessions": {"relative": True}}})
    # the two shapes people write first get an example of the one that works, not pydantic's "valid dictionary"
    with pytest.raises(InputError, match=r"guardrails must map each metric to its margin, e.g. guardrails: "
                                         r"\{sessions: \{margin: 0.02, relative: true\}\}, not a list"):
        _spec(roles={"guardrails": [{"metric": "sessions", "margin": 0.02}]})
    with pytest.raises(InputError, match=r"guardrail 'sessions': say how to read the margin 0.05: write "
                                         r"\{margin: 0.05, relative: true\} for a fraction of the control mean"):
        _spec(roles={"guardrails": {"sessions": 0.05}})


def test_request_roles_must_name_requested_metrics() -> None:
    with pytest.raises(ValidationError, match=r"roles names \['x'\], which are not metrics of this request"):
        AnalysisSpec(metrics=("a",), roles=RolesSpec(goal=("x",)))


class AlwaysKeepRunning:
    """A team's rule: never decides before a human looks."""

    name: ClassVar[str] = "always_keep_running"

    def decide(self, context: DecisionContext) -> list[CellDecision]:
        cells = sorted({r.cell for r in context.records})
        return [CellDecision(cell=c, control="a", recommendation="keep running", reasons=("by policy",),
                             rule=self.name) for c in cells]


def test_a_team_registers_its_own_rule() -> None:
    register_rule("always_keep_running", AlwaysKeepRunning)
    assert "always_keep_running" in rule_names() and "risk_aware" in rule_names()
    spec = _spec(decision={"rule": "always_keep_running"})
    out = decide([rec("streaming_hours", 5.0)], experiment=spec)
    assert [d.recommendation for d in out] == ["keep running"]
    with pytest.raises(InputError, match="already registered"):
        register_rule("always_keep_running", RiskAwareRule)
    with pytest.raises(InputError, match="is not registered"):
        get_rule("missing_rule")


def test_decide_from_an_experiment_uses_its_settings() -> None:
    spec = _spec(decision={"goal_test": "one_sided"})
    assert spec.decision == DecisionSpec(goal_test="one_sided")
    records = [rec("streaming_hours", 1.8), rec("rebuffer_rate", 0.0, se=0.5, model="ratio"),
               rec("retained", 0.0, se=0.001, model="proportion", mean0=0.9)]
    # z = 1.8: one-sided p = 0.036 < 0.05 ships; two-sided p = 0.072 would not
    out = decide(records, experiment=spec, request={"alpha": 0.05})
    assert out[0].recommendation == "ship", out[0].reasons
    assert decide(records, experiment=_spec(), request={"alpha": 0.05})[0].recommendation == "don't ship"


def test_an_ad_hoc_table_states_directions_in_the_roles() -> None:
    """Columns the metrics repo does not know have no direction; the request's roles give it."""
    request = {"metrics": ["col_a", "col_b"], "roles": {"goal": ["col_a"], "guardrails": {"col_b": {"margin": 0.5}},
                                                      "higher_is_better": {"col_a": True, "col_b": False}}}
    out = decide([rec("col_a", 5.0), rec("col_b", -1.0, se=0.5)], request=request)
    assert out[0].recommendation == "ship", out[0].reasons
    with pytest.raises(ValueError, match=r"roles: \{higher_is_better: \{col_a: true\}\}"):
        decide([rec("col_a", 5.0)], request={"metrics": ["col_a"], "roles": {"goal": ["col_a"]}})


def test_deterioration_level_is_a_setting() -> None:
    # z = -1.8: one-sided p = 0.036 regresses at alpha 0.05, not at deterioration_alpha 0.01
    records = [rec("hours", 5.0), rec("rebuffer", 0.0, se=0.5), rec("hours", -1.8, cell="c"),
               rec("rebuffer", 0.0, se=0.5, cell="c")]
    loose = RiskAwareRule().decide(DecisionContext(records=records, roles=ROLES))
    strict = RiskAwareRule().decide(DecisionContext(records=records, roles=ROLES,
                                                    settings=DecisionSpec(deterioration_alpha=0.01)))
    assert loose[1].reasons[0].startswith("goal hours got significantly worse (-1.8%, p=0.036)")
    assert strict[1].recommendation == "don't ship" and strict[1].reasons[0].startswith("goal hours not shown better")


def test_a_rejected_pre_trend_blocks_a_difference_in_differences_ship() -> None:
    """A quasi-experiment's did headline is only causal under parallel trends: a decisive metric whose pre-trend
    test rejects blocks the ship, like a sample-ratio mismatch; ``pretrend_blocks: false`` turns that off."""
    from xpcompute.decision.rule import PRE_TREND_SEGMENT
    from xpcompute.models.did import PRE_TREND

    assert PRE_TREND_SEGMENT == PRE_TREND
    heads = [rec("hours", 5.0, model="did"), rec("rebuffer", 0.0, se=0.5, model="did")]
    trend = rec("hours", 0.0, model="did", segment=PRE_TREND).model_copy(update={"p_value": 0.003, "statistic": 14.2})
    calm = trend.model_copy(update={"p_value": 0.4, "statistic": 3.1})
    assert one([*heads, calm]).recommendation == "ship"
    d = one([*heads, trend])
    assert d.recommendation == "don't ship"
    assert d.reasons[0] == ("pre-trend test of goal hours rejects parallel trends (chi2 14.2, p=0.003): the "
                            "difference in differences may be biased")
    # another cell's pre-trend is that cell's concern
    other = [*heads, *(r.model_copy(update={"cell": "c"}) for r in heads), trend.model_copy(update={"cell": "c"})]
    by_cell = {d.cell: d for d in RiskAwareRule().decide(DecisionContext(records=other, roles=ROLES))}
    assert by_cell["b"].recommendation == "ship" and by_cell["c"].recommendation == "don't ship"
    off = one([*heads, trend], settings=DecisionSpec(pretrend_blocks=False))
    assert off.recommendation == "ship"
