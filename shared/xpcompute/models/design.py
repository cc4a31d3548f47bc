"""Dummy-coded discrete design rows for compressed data, with the treatment set to any cell.

Levels are fixed from the data the model is trained on, so counterfactual
copies (every row set to one cell) and bootstrap replicates share one column
layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from xpcompute.errors import InputError
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
        discrete = {c: data.codes(c)[0] for c in data.discrete}
        seg_levels = data.codes(segment)[0] if segment else ()
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
        rows = np.arange(g)
        seg_codes = self._codes(data, self.segment, self.segment_levels) if self.segment else None
        n_seg = max(len(self.segment_levels) - 1, 0)
        names: list[str] = ["intercept"]
        names += [f"{self.segment}[{level}]" for level in self.segment_levels[1:]]
        for name, levels in self.discrete.items():
            names += [f"{name}[{level}]" for level in levels[1:]]
        first_cell = len(names)
        protect: list[int] = []
        for c in self.cells[1:]:
            protect.append(len(names))
            names.append(f"cell[{c}]")
            for level in self.segment_levels[1:]:
                protect.append(len(names))
                names.append(f"cell[{c}]:{self.segment}[{level}]")
        design = np.zeros((g, len(names)))
        design[:, 0] = 1.0
        offset = 1
        if seg_codes is not None:
            self._one_hot(design, rows, seg_codes, offset)
            offset += n_seg
        for name, levels in self.discrete.items():
            self._one_hot(design, rows, self._codes(data, name, levels), offset)
            offset += len(levels) - 1
        if cell is None:
            cell_codes = self._codes(data, data.spec.treatment, self.cells)
        else:
            cell_codes = np.full(g, self.cells.index(cell), dtype=np.int64)
        block = 1 + n_seg  # a cell dummy followed by its segment interactions
        treated = cell_codes > 0
        cell_col = first_cell + (cell_codes - 1) * block
        design[rows[treated], cell_col[treated]] = 1.0
        if seg_codes is not None:
            inter = treated & (seg_codes > 0)
            design[rows[inter], cell_col[inter] + seg_codes[inter]] = 1.0
        return design, tuple(names), tuple(protect)

    @staticmethod
    def _codes(data: ModelData, column: str, levels: tuple[str, ...]) -> NDArray[np.int64]:
        """Each row's position in ``levels`` (fixed at training time), from the data's own cached codes."""
        own_levels, inverse = data.codes(column)
        if own_levels == levels:
            return inverse
        position = {level: i for i, level in enumerate(levels)}
        mapping = np.array([position.get(level, -1) for level in own_levels], dtype=np.int64)
        if (mapping < 0).any():
            unknown = [lv for lv, m in zip(own_levels, mapping, strict=True) if m < 0]
            raise InputError(f"column {column!r} has levels {unknown} not seen when the model was trained")
        return mapping[inverse]

    @staticmethod
    def _one_hot(design: F64, rows: NDArray[np.int64], codes: NDArray[np.int64], offset: int) -> None:
        """Dummies for levels 1.. (level 0 is the baseline) into columns ``offset..``."""
        sel = codes > 0
        design[rows[sel], offset + codes[sel] - 1] = 1.0
