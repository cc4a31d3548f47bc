"""The difference-in-differences notebook example runs through (its own cells check every effect, the average and
the pre-trend test against statsmodels, and the service's records against the local fit), and the copy in
examples/ is the notebook the code builds."""

from __future__ import annotations

from pathlib import Path

import nbformat

from xpcompute.did_notebook import build_did_notebook
from xpcompute.notebook import execute_notebook

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "notebooks" / "did.ipynb"


def test_the_example_is_the_built_notebook() -> None:
    stored = nbformat.read(str(EXAMPLE), as_version=4)
    built = build_did_notebook()
    assert [c.source for c in stored.cells] == [c.source for c in built.cells], (
        "examples/notebooks/did.ipynb is stale: python -m xpcompute.did_notebook")


def test_the_notebook_runs_and_its_checks_pass(tmp_path: Path) -> None:
    nb = execute_notebook(build_did_notebook(), tmp_path, timeout_s=300)
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "= statsmodels" in outputs and "SUCCEEDED | sample ratio: Quasi-experiment" in outputs
    (figure,) = [c for c in nb.cells if c.cell_type == "code" and c.source.endswith("event_study(records)")]
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in figure.outputs)
