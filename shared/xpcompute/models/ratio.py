"""Ratio metrics (for example hours per session): sum(y) / sum(d) per cell, delta-method variance.

The compressed data holds the metric y with the denominator d as its one
"covariate", so the degree-two moments (n, Sy, Sd, Syy, Sdd, Syd) are there.
Var(R) = (var_y - 2 R cov_yd + R^2 var_d) / (n * mean_d^2), with sample
(co)variances (ddof=1), the classic delta method for a ratio of means.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from xpcompute.errors import InputError, ZeroVarianceError
from xpcompute.models.base import CausalModel, MeansCovariance
from xpcompute.models.data import ModelData, Subgroup
from xpcompute.records import ResultRecord

F64 = NDArray[np.float64]


def ratio_moments(data: ModelData, mask: NDArray[np.bool_], cell: str) -> tuple[float, float, float]:
    """(count, ratio, variance of the ratio) of one cell."""
    if data.spec.denominator is None or data.layout.covariates != (data.spec.denominator,):
        raise InputError(
            f"ratio metric {data.spec.metric!r} needs data compressed with the denominator as its only covariate"
        )
    sel = mask & (data.cell_labels == cell)

    def tot(ey: int, ed: int) -> float:
        return float(data.moment(ey, ed)[sel].sum())

    n = tot(0, 0)
    my, md = tot(1, 0) / n, tot(0, 1) / n
    if md == 0:
        raise ZeroVarianceError(f"ratio metric {data.spec.metric!r}: denominator sums to zero in cell {cell!r}")
    vy = (tot(2, 0) - n * my * my) / (n - 1)
    vd = (tot(0, 2) - n * md * md) / (n - 1)
    cyd = (tot(1, 1) - n * my * md) / (n - 1)
    r = my / md
    return n, r, (vy - 2 * r * cyd + r * r * vd) / (n * md * md)


class RatioModel(CausalModel):
    """Ratio of sums per cell, cells independent."""

    name = "ratio"

    def train(self, data: ModelData) -> None:
        everyone = np.ones(len(data.n), dtype=bool)
        self.ratios = {c: ratio_moments(data, everyone, c)[1] for c in data.cells}

    def predict(self, data: ModelData, cell: str) -> F64:
        return np.full(len(data.n), self.ratios[cell])

    def potential_outcome_mean(self, data: ModelData, group: Subgroup, cell: str) -> float:
        return ratio_moments(data, group.mask, cell)[1]

    def means_covariance(self, data: ModelData, group: Subgroup, cell: str, control: str) -> MeansCovariance:
        va = ratio_moments(data, group.mask, cell)[2]
        vb = ratio_moments(data, group.mask, control)[2]
        return MeansCovariance(cov=np.diag([va, vb]))

    def estimate(self, data: ModelData) -> list[ResultRecord]:
        """Records whose cell means are the cell ratios, not the numerator means."""
        out = []
        for rec in super().estimate(data):
            mask = np.ones(len(data.n), dtype=bool)
            if rec.segment is not None and data.spec.segment:
                mask = data.labels(data.spec.segment) == rec.segment
            out.append(
                rec.model_copy(
                    update={
                        "mean_cell": ratio_moments(data, mask, rec.cell)[1],
                        "mean_control": ratio_moments(data, mask, rec.control)[1],
                    }
                )
            )
        return out
