"""Dummy-coded discrete design rows for compressed data, with the treatment set to any cell.

Levels are fixed from the data the model is trained on, so counterfactual
copies (every row set to one cell) and bootstrap replicates share one column
layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from xpcompute.models.data import ModelData

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class DesignTerms:
    """Which discrete terms a linear model has, and their levels (first level is the baseline)."""

    cells: tuple[str, ...]
    discrete: dict[str, tuple[str, ...]]
    segment: str | None = None
    segment_levels: tuple[str, ...] = ()

    @classmethod
    def from_data(cls, data: ModelData, segment: str | None = None) -> DesignTerms:
        discrete = {c: tuple(sorted(set(data.labels(c)))) for c in data.discrete}
        seg_levels = tuple(sorted(set(data.labels(segment)))) if segment else ()
        return cls(cells=data.cells, discrete=discrete, segment=segment, segment_levels=seg_levels)

    def build(self, data: ModelData, cell: str | None = None) -> tuple[F64, tuple[str, ...], tuple[int, ...]]:
        """Design ``D`` (rows = compressed rows), column names, and the indices of treatment columns.

        Columns: intercept; with a segment, segment dummies (baseline dropped);
        discrete covariates; then one dummy per non-control cell and, with a
        segment, segment x cell interactions, so the model is saturated in
        segment by cell. Treatment columns come last among the discrete ones,
        so a covariate that duplicates the treatment makes the treatment
        column the collinear one, and the fit refuses it as unidentified.
        """
        g = len(data.n)
        cell_lab = data.cell_labels if cell is None else np.full(g, cell, dtype=object)
        cols: list[F64] = [np.ones(g)]
        names: list[str] = ["intercept"]
        protect: list[int] = []
        seg_lab = data.labels(self.segment) if self.segment else None
        seg_dummies: list[tuple[str, F64]] = []
        if seg_lab is not None:
            for level in self.segment_levels[1:]:
                seg_dummies.append((level, (seg_lab == level).astype(np.float64)))
                cols.append(seg_dummies[-1][1])
                names.append(f"{self.segment}[{level}]")
        for name, levels in self.discrete.items():
            lab = data.labels(name)
            for level in levels[1:]:
                cols.append((lab == level).astype(np.float64))
                names.append(f"{name}[{level}]")
        for c in self.cells[1:]:
            dummy = (cell_lab == c).astype(np.float64)
            protect.append(len(cols))
            cols.append(dummy)
            names.append(f"cell[{c}]")
            for level, sd in seg_dummies:
                protect.append(len(cols))
                cols.append(dummy * sd)
                names.append(f"cell[{c}]:{self.segment}[{level}]")
        return np.column_stack(cols), tuple(names), tuple(protect)
