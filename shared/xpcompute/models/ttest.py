"""Welch's two-sample t-test, as a potential-outcomes model whose prediction is the cell mean.

Written the way a scientist would add a model: ``train`` computes the cell
means and variances from the compressed sums, ``predict`` returns the cell
mean, and ``means_covariance`` states the (independent) variances of the two
means with the Welch–Satterthwaite degrees of freedom, so intervals and
p-values equal ``scipy.stats.ttest_ind(equal_var=False)``.

Everything is computed from the stored sums of ``z = (y - shift) / scale``
(``compression/transform.py``) and stays in those units (``outcome_units``):
the variance ``sum z^2 - n mean_z^2`` keeps its digits whatever the mean of
``y``, and no square of a value near 1e300 is ever formed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from xpcompute.compression.transform import IDENTITY, ColumnTransform
from xpcompute.errors import CellError
from xpcompute.models.base import CausalModel, MeansCovariance
from xpcompute.models.data import ModelData, Subgroup

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class CellMoments:
    """Count, mean and unbiased variance of one cell within one subgroup, in the stored units ``z``."""

    n: float
    mean: float
    var: float
    units: ColumnTransform = IDENTITY

    @property
    def mean_y(self) -> float:
        """The mean in the metric's own units."""
        return self.units.shift + self.units.scale * self.mean


def cell_moments(data: ModelData, mask: NDArray[np.bool_], cell: str) -> CellMoments:
    """Count, mean and variance (ddof=1) of the stored metric ``z`` from the compressed sums."""
    sel = mask & (data.cell_labels == cell)
    n = float(data.n[sel].sum())
    if n <= 0:
        raise CellError(f"metric {data.spec.metric!r}: cell {cell!r} has no rows here")
    s1 = float(data.sum_z[sel].sum())
    s2 = float(data.sum_z2[sel].sum())
    mean = s1 / n
    var = max(s2 - s1 * mean, 0.0) / (n - 1) if n > 1 else float("nan")
    return CellMoments(n=n, mean=mean, var=var, units=data.y_transform)


class WelchTTest(CausalModel):
    """Difference in means with unequal variances."""

    name = "ttest"

    def outcome_units(self, data: ModelData) -> ColumnTransform:
        return data.y_transform

    def train(self, data: ModelData) -> None:
        everyone = np.ones(len(data.n), dtype=bool)
        self.moments = {c: cell_moments(data, everyone, c) for c in data.cells}

    def predict(self, data: ModelData, cell: str) -> F64:
        return np.full(len(data.n), self.moments[cell].mean)

    def potential_outcome_mean(self, data: ModelData, group: Subgroup, cell: str) -> float:
        return cell_moments(data, group.mask, cell).mean

    def means_covariance(self, data: ModelData, group: Subgroup, cell: str, control: str) -> MeansCovariance:
        a = cell_moments(data, group.mask, cell)
        b = cell_moments(data, group.mask, control)
        va, vb = a.var / a.n, b.var / b.n
        # in z units the terms are O(1/n): their squares cannot overflow or underflow
        df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1)) if va + vb > 0 else float("nan")
        return MeansCovariance(cov=np.diag([va, vb]), df=df)
