"""Lossy-compression validation over the archive: n-tile against exact (lossless) rank-test results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xpcompute.coordinator.service import Coordinator
from xpcompute.meta.compression import CRITERION, validate_compression
from xpcompute.meta.replay import reduced_spec, stage1_from_raw
from xpcompute.models import fit_table
from xpcompute.spec import CompressSpec, FitSpec

SOME = [f"archive-{i:03d}" for i in range(0, 50, 5)]  # 10 experiments of every size, duration and effect


@pytest.fixture(scope="module")
def check(archive_coordinator: Coordinator) -> object:
    return validate_compression(archive_coordinator, [4, 1000], experiments=SOME, p_tolerance=0.001)


def test_comparisons_are_the_fits_they_say(check: object, archive_coordinator: Coordinator) -> None:
    from xpcompute.meta.compression import CompressionCheck

    assert isinstance(check, CompressionCheck)
    assert {c.experiment_id for c in check.comparisons} == set(SOME) and not check.skipped
    c = next(c for c in check.comparisons if c.metric == "streaming_hours" and c.buckets == 4)
    analysis = archive_coordinator.state.get_analysis(
        next(a.analysis_id for a in archive_coordinator.state.list_analyses() if a.experiment_id == c.experiment_id))
    archived = archive_coordinator.experiment_of(analysis)
    assert archived is not None
    rows = stage1_from_raw(reduced_spec(archived, "streaming_hours"))  # independent of the archived table
    spec = FitSpec(metric="streaming_hours", treatment="cell", model="mannwhitney", control="control")
    exact = fit_table(rows, spec).records[0]
    lossy = fit_table(rows, spec.model_copy(update={"compress": CompressSpec(kind="ntile", buckets=4)})).records[0]
    assert c.p_exact == pytest.approx(exact.p_value, rel=1e-12)
    assert c.p_ntile == pytest.approx(lossy.p_value, rel=1e-12)


def test_shares_and_recommendation_follow_from_the_comparisons(check: object) -> None:
    from xpcompute.meta.compression import CompressionCheck

    assert isinstance(check, CompressionCheck)
    summary = check.summary
    for metric, entry in summary["metrics"].items():
        met = []
        for n, row in entry["buckets"].items():
            mine = [c for c in check.comparisons if c.metric == metric and c.buckets == int(n)]
            assert row["results"] == len(mine) > 0
            p_share = float(np.mean([abs(c.p_ntile - c.p_exact) <= 0.001 for c in mine]))
            d_share = float(np.mean([(c.p_exact < c.alpha) == (c.p_ntile < c.alpha) for c in mine]))
            assert row["p_value_agreement"] == pytest.approx(p_share)
            assert row["decision_agreement"] == pytest.approx(d_share)
            assert row["max_p_difference"] == pytest.approx(max(abs(c.p_ntile - c.p_exact) for c in mine))
            if p_share >= CRITERION and d_share >= CRITERION:
                met.append(int(n))
        assert entry["recommended_buckets"] == (min(met) if met else None)


def test_binary_and_small_count_metrics_are_exact_under_enough_buckets(check: object) -> None:
    from xpcompute.meta.compression import CompressionCheck

    assert isinstance(check, CompressionCheck)
    # retained is 0/1: ntile keeps at most N distinct values exactly, so even 4 buckets lose nothing
    assert all(c.p_ntile == c.p_exact for c in check.comparisons if c.metric == "retained")
    # a 4-bucket continuous metric is lossy: its p-values move (that the check can see it is the point)
    assert any(c.p_ntile != c.p_exact for c in check.comparisons if c.metric == "streaming_hours" and c.buckets == 4)


def test_cli_prints_the_recommendation(archive: object, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from xpcompute.cli import main

    out = tmp_path / "check.json"
    assert main(["meta", "compression", "--buckets", "4,1000", "--home", str(archive.home),  # type: ignore[attr-defined]
                 "--experiments", ",".join(SOME[:3]), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "recommended" in text and "retained" in text
    body = json.loads(out.read_text())
    assert body["summary"]["metrics"]["retained"]["recommended_buckets"] == 4 and body["comparisons"]
