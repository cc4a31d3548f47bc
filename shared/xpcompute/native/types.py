"""Result types of the native primitives (plain dataclasses inside the library)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class GroupMoments:
    """Output of ``group_moments``: one row per distinct key, sorted by combined code."""

    codes: NDArray[np.int64]
    counts: NDArray[np.float64]
    sums: NDArray[np.float64]
    dropped: int


@dataclass(frozen=True)
class SolveResult:
    """Output of ``cholesky_solve``: solution, inverse of the kept block, rank and dropped columns."""

    x: NDArray[np.float64]
    inverse: NDArray[np.float64]
    rank: int
    dropped: NDArray[np.int64]
