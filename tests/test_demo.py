"""The demo runs a whole analysis on the embedded default, finds the effects built into the data, and makes the
ship call: autoplay_plus carries a planted guardrail regression (rebuffering +12%, margin 2%)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from xpcompute.demo import run_demo


def test_demo_end_to_end_finds_the_true_effects(tmp_path: Path) -> None:
    console = Console(record=True, width=120)
    result = run_demo(users=30_000, home=tmp_path / "demo", workers=2, console=console)
    card = result.scorecard
    assert card.complete and not card.failures, card.failures
    assert result.report.exists() and "streaming_hours" in result.report.read_text()
    slices = {r.slice for r in card.records}
    assert len(slices) == 5
    # the generator gives autoplay_plus +8% watch time per session (more on TV): CUPED OLS must see it
    hours = [r for r in card.records if r.metric == "streaming_hours" and r.model == "ols" and r.cell == "autoplay_plus"
             and r.slice == "all users"]
    assert len(hours) == 1 and hours[0].effect > 0 and hours[0].p_value_adjusted is not None
    assert hours[0].p_value_adjusted < 0.05
    # every record carries an adjusted p-value from one BH family
    assert all(r.correction == "bh" for r in card.records)
    # the decision: autoplay_plus is not shipped because of its guardrail, and the scorecard says so first
    calls = {d["cell"]: d for d in card.decision}
    assert set(calls) == {"autoplay", "autoplay_plus"}, card.decision_note
    plus = calls["autoplay_plus"]
    assert plus["recommendation"] == "don't ship"
    assert plus["reasons"][0].startswith("guardrail rebuffer_rate got significantly worse (+"), plus["reasons"]
    assert any(r.startswith("guardrail rebuffer_rate not shown non-inferior (margin +2%, upper bound +")
               for r in plus["reasons"]), plus["reasons"]
    goal = next(c for c in plus["checks"] if c["metric"] == "streaming_hours")
    assert goal["outcome"] == "better" and goal["model"] == "ols"  # the CUPED headline is the goal's one test
    text = console.export_text()
    assert text.index("Decision (risk-aware rule") < text.index("Slice: all users")
    assert "autoplay_plus  DON'T SHIP: guardrail rebuffer_rate got significantly worse" in text
    report = result.report.read_text()
    assert 'data-cell="autoplay_plus" data-recommendation="don&#39;t ship"' in report
    assert report.index('id="decision"') < report.index('id="headlines"') < report.index('id="scorecard"')
    assert 'id="figure-heatmap"' in report
    # segment discovery tests the ratio metrics like the others: their residual columns stay out of its
    # regressions (there the numerator would be an exact linear function of its denominator and residual)
    ratio_tests = [t for t in (card.segments or {}).get("tests", []) if t["metric"] == "rebuffer_rate"]
    assert ratio_tests and all(t["p_value"] is not None and t["note"] is None for t in ratio_tests), ratio_tests
