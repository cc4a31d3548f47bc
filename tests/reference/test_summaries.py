"""Per-cell summary statistics from compressed data equal NumPy on the raw rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from datagen import make_experiment

from xpcompute.models import model_data, prepare
from xpcompute.spec import FitSpec
from xpcompute.summary import cell_summaries


@pytest.mark.parametrize("model", ["ttest", "quantile"])
def test_cell_summaries_match_numpy(model: str) -> None:
    table = make_experiment(n=3000, seed=17)
    spec = FitSpec(metric="y", treatment="cell", model=model, segment="country", quantiles=(0.25, 0.5, 0.9))  # type: ignore[arg-type]
    summaries = cell_summaries(model_data(prepare(table, spec), spec))
    y = np.asarray(table.column("y").to_numpy())
    cell = np.asarray(table.column("cell").to_pylist())
    country = np.asarray(table.column("country").to_pylist())
    assert len(summaries) == 3 * (1 + 4)  # cells x (overall + 4 countries)
    for s in summaries:
        sel = cell == s.cell
        if s.segment is not None:
            sel &= country == s.segment
        np.testing.assert_allclose([s.count, s.mean, s.variance], [sel.sum(), y[sel].mean(), y[sel].var(ddof=1)], rtol=1e-9)
        if model == "quantile":
            expected = np.quantile(y[sel], [0.25, 0.5, 0.9], method="inverted_cdf")
            np.testing.assert_allclose([s.quantiles["p25"], s.quantiles["p50"], s.quantiles["p90"]], expected, rtol=1e-12)
        else:
            assert s.quantiles == {}


def test_cli_summaries(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(make_experiment(n=500, seed=1), path)
    out = subprocess.run([sys.executable, "-m", "xpcompute.cli", "fit", str(path), "--metric", "y", "--treatment", "cell",
                          "--summaries"], capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)
    assert {r["cell"] for r in rows} == {"control", "a", "b"} and all(r["count"] > 0 for r in rows)


def test_summaries_keep_their_digits_far_from_zero() -> None:
    """Per-cell mean and variance at 1e9 + N(0, 1) equal NumPy's on the rows (the stored sums are shifted)."""
    import numpy as np
    import pyarrow as pa

    from xpcompute.models import fit_table, model_data
    from xpcompute.spec import FitSpec
    from xpcompute.summary import cell_summaries

    y = 1e9 + np.random.default_rng(3).normal(size=2000)
    spec = FitSpec(metric="y", treatment="cell")
    out = fit_table(pa.table({"cell": ["control", "treatment"] * 1000, "y": y}), spec)
    summaries = cell_summaries(model_data(out.compressed, spec))
    assert len(summaries) == 2
    for s in summaries:
        rows = y[0::2] if s.cell == "control" else y[1::2]
        assert s.mean == pytest.approx(rows.mean(), rel=1e-14)
        assert s.variance == pytest.approx(rows.var(ddof=1), rel=1e-8)
