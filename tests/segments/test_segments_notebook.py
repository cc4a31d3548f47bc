"""The segment-discovery notebook example runs through (its own cells check a Wald test against statsmodels and a
segment's effect against the raw rows), and the copy in examples/ is the notebook the code builds."""

from __future__ import annotations

from pathlib import Path

import nbformat

from xpcompute.notebook import execute_notebook
from xpcompute.segments.notebook import build_segments_notebook

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "segments" / "segment_discovery.ipynb"


def test_the_example_is_the_built_notebook() -> None:
    stored = nbformat.read(str(EXAMPLE), as_version=4)
    built = build_segments_notebook()
    assert [c.source for c in stored.cells] == [c.source for c in built.cells], (
        "examples/segments/segment_discovery.ipynb is stale: python -m xpcompute.segments.notebook")


def test_the_notebook_runs_and_its_checks_pass(tmp_path: Path) -> None:
    nb = execute_notebook(build_segments_notebook(), tmp_path, timeout_s=300)
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "discoveries (BH at 0.05)" in outputs and "= statsmodels" in outputs and "= rows" in outputs
