"""The demo runs a whole analysis on the embedded default and finds the effects built into the data."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from xpcompute.demo import run_demo


def test_demo_end_to_end_finds_the_true_effects(tmp_path: Path) -> None:
    result = run_demo(users=30_000, home=tmp_path / "demo", workers=2, console=Console(quiet=True))
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
