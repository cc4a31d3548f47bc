"""Cells and notebooks for the notebooks xpcompute writes: the analysis export and the examples under examples/.

Why one place: every notebook is built the same way (markdown and code cells with their text stripped, a
kernelspec), and the example builders (``did_notebook``, ``segments.notebook``, ``meta.notebook``) also write
the result to a path; only their cells differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nbformat
from nbformat import NotebookNode

#: the kernelspec of the examples: whatever ``python3`` kernel the reader's Jupyter has
EXAMPLE_KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def md(text: str) -> NotebookNode:
    """A markdown cell of ``text`` (surrounding blank lines dropped)."""
    return nbformat.v4.new_markdown_cell(text.strip())


def code(text: str) -> NotebookNode:
    """A code cell of ``text`` (surrounding blank lines dropped)."""
    return nbformat.v4.new_code_cell(text.strip())


def example_notebook(cells: Sequence[NotebookNode]) -> NotebookNode:
    """An example notebook of ``cells`` on the reader's ``python3`` kernel."""
    nb = nbformat.v4.new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = dict(EXAMPLE_KERNEL)
    return nb


def save(nb: NotebookNode, path: Path) -> Path:
    """Write ``nb`` to ``path`` (folders made as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


__all__ = ["EXAMPLE_KERNEL", "code", "example_notebook", "md", "save"]
