"""The decision as the terminal, the report and the heat map show it; templates escape every name."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from viz_data import Analysis

from xpcompute.decision.roles import MetricRole
from xpcompute.viz import headlines, render_report
from xpcompute.viz.figures import effect_heatmap
from xpcompute.viz.headline import MetricInfo, with_roles
from xpcompute.viz.report import render_decision
from xpcompute.viz.terminal import decision_text

CALL: dict[str, Any] = {
    "cell": "b<script>", "control": "control", "recommendation": "don't ship", "rule": "risk_aware",
    "slice": "all users", "alpha": 0.05, "goal_alpha": 0.025, "warnings": ["secondary x got significantly worse"],
    "reasons": ["guardrail rebuffer_rate not shown non-inferior (margin +2%, upper bound +3.1%)"],
    "checks": [{"metric": "rebuffer_rate", "role": "guardrail", "test": "non-inferiority", "outcome": "not_non_inferior",
                "text": "guardrail rebuffer_rate not shown non-inferior", "estimator": "<b>"}],
}


def test_decision_block_is_escaped_and_names_the_call() -> None:
    html = render_decision([CALL])
    assert 'data-cell="b&lt;script&gt;" data-recommendation="don&#39;t ship"' in html
    assert "<script>" not in html and "&lt;b&gt;" in html
    assert "DON&#39;T SHIP" in html and "margin +2%, upper bound +3.1%" in html and "0.025 per goal" in html
    assert "no goal metric" in render_decision([], "no decision: no goal metric")
    assert render_decision([], None) == ""


def test_terminal_decision_block_lists_reasons_and_warnings() -> None:
    console = Console(record=True, width=120)
    console.print(decision_text([CALL]))
    text = console.export_text()
    assert "Decision (risk-aware rule, vs control)" in text
    assert "b<script>  DON'T SHIP: guardrail rebuffer_rate not shown non-inferior (margin +2%" in text
    assert "! secondary x got significantly worse" in text


def test_roles_order_the_headlines_and_the_heatmap(analysis: Analysis) -> None:
    metrics = list(dict.fromkeys(r.metric for r in analysis.records))
    infos = {m: MetricInfo(name=m, higher_is_better=True) for m in metrics}
    goal, guard = metrics[-1], metrics[0]
    roles = {goal: MetricRole(goal, "goal", True), guard: MetricRole(guard, "guardrail", True, 0.02, True)}
    tagged = with_roles(infos, roles)
    assert list(tagged)[:2] == [goal, guard] and tagged[guard].role_tag == "guardrail -2%"
    heads = headlines(analysis.records, tagged)
    assert heads[0].metric == goal
    fig = effect_heatmap(heads)
    cells = list(dict.fromkeys(h.cell for h in heads))
    assert len(fig.data) == len(cells)
    top = fig.data[0]
    assert top.y[-1] == f"{goal} · goal"  # the first metric on top of the map
    assert len(top.x) == len({h.slice for h in heads})
    html = render_report(analysis.records, title="t", infos=tagged, meta={"decision": [CALL]})
    assert html.index('id="decision"') < html.index('id="headlines"') < html.index('data-role="guardrail"') \
        < html.index('id="scorecard"') < html.index('id="figure-heatmap"')
