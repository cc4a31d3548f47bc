"""The replay notebook example: the committed file is what the library builds, and it runs through (its last
cell re-runs experiments from scratch and fails if a replayed number differs)."""

from __future__ import annotations

from pathlib import Path

import nbformat

from xpcompute.meta.notebook import DEFAULT_OUT, build
from xpcompute.notebook import execute_notebook

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_is_not_stale() -> None:
    committed = nbformat.read(ROOT / DEFAULT_OUT, as_version=4)
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in build().cells], \
        "examples/meta/replay.ipynb is stale: python -m xpcompute.meta.notebook"


def test_the_notebook_runs_and_its_check_passes(tmp_path: Path) -> None:
    nb = execute_notebook(build(), tmp_path, timeout_s=300)
    last = nb.cells[-1]
    text = "".join(o.get("text", "") for o in last.outputs)
    assert text.count("replay = re-run from scratch") == 3
