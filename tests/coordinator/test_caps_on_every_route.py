"""Every slice route (SQL straight from the table, the cube, Arrow) tells each fit what its metric was capped at."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.runner import run_experiment
from xpcompute.synthetic_ecommerce import generate

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ecommerce"


@pytest.mark.parametrize("engine", ["cube", "arrow"])
def test_cap_notes_on_every_slice(tmp_path: Path, engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("experiment.yaml", "shop_metrics.py"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    generate(tmp_path / "data", customers=2_000, seed=3)
    raw = yaml.safe_load((tmp_path / "experiment.yaml").read_text())
    for metric in raw["metrics"]:
        if isinstance(metric, dict) and metric.get("name") == "revenue":
            metric["cap"] = {"upper": 0.99, "kind": "percentile"}
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("XPCOMPUTE_SLICE_ENGINE", engine)
    slices = [SliceFilter(), SliceFilter.where(platform="ios"), SliceFilter.where(country="US"),
              SliceFilter.where(tier="gold")]
    result = run_experiment(ExperimentSpec.from_yaml(tmp_path / "experiment.yaml"), home=tmp_path / "home",
                            slices=slices, workers=1, console=Console(quiet=True))
    assert result.ok, result.scorecard.failures
    revenue = [r for r in result.scorecard.records if r.metric == "revenue"]
    assert {r.slice for r in revenue} == {s.label() for s in slices}
    for r in revenue:
        assert any("capped at p99" in n for n in r.notes), (r.slice, r.model, r.notes)
