"""Ratio metrics (for example hours per session): sum(y) / sum(d) per cell, delta-method variance.

The compressed data holds the metric y with the denominator d as its one
"covariate", so the degree-two moments (n, Sy, Sd, Syy, Sdd, Syd) are there.
Var(R) = (var_y - 2 R cov_yd + R^2 var_d) / (n * mean_d^2), with sample
(co)variances (ddof=1), the classic delta method for a ratio of means.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from xpcompute.compression.transform import ColumnTransform
from xpcompute.errors import CellError, InputError, ZeroVarianceError
from xpcompute.models.base import CausalModel, MeansCovariance
from xpcompute.models.data import ModelData, Subgroup
from xpcompute.records import ResultRecord

F64 = NDArray[np.float64]


def ratio_unit(data: ModelData) -> float:
    """The power of two ``ay / ad`` (scales of metric and denominator): the natural unit of the ratio.

    Variances are stated in it, so that a ratio of 1e-150 has a variance of
    order one rather than a subnormal 1e-300 with a few digits left.
    """
    exponent = math.frexp(data.transform(0).scale)[1] - math.frexp(data.transform(1).scale)[1]
    return math.ldexp(1.0, min(max(exponent, -1021), 1022))


def ratio_moments(data: ModelData, mask: NDArray[np.bool_], cell: str) -> tuple[float, float, float]:
    """(count, ratio, variance of the ratio in ``ratio_unit`` squared) of one cell, from the stored sums of ``z``.

    With ``y = sy + ay zy`` and ``d = sd + ad zd`` (``compression/transform.py``),
    the (co)variances are ``ay^2 var(zy)``, ``ad^2 var(zd)``, ``ay ad cov(zy, zd)``,
    so Var(R) = (ay / mean_d)^2 (var(zy) - 2 rho cov + rho^2 var(zd)) / n with
    ``rho = R ad / ay``: no digit is lost to the means, nothing squares a value
    near 1e300. A cell of one row has no variance (NaN; the base refuses or notes it).
    """
    if data.spec.denominator is None or data.layout.covariates != (data.spec.denominator,):
        raise InputError(
            f"ratio metric {data.spec.metric!r} needs data compressed with the denominator as its only covariate"
        )
    sel = mask & (data.cell_labels == cell)

    def tot(ey: int, ed: int) -> float:
        return float(data.moment(ey, ed)[sel].sum())

    n = tot(0, 0)
    if n <= 0:
        raise CellError(f"ratio metric {data.spec.metric!r}: cell {cell!r} has no rows here")
    ty, td = data.transform(0), data.transform(1)
    szy, szd = tot(1, 0), tot(0, 1)
    mzy, mzd = szy / n, szd / n
    my, md = ty.shift + ty.scale * mzy, td.shift + td.scale * mzd
    if md == 0:
        raise ZeroVarianceError(
            f"ratio metric {data.spec.metric!r}: the denominator {data.spec.denominator!r} sums to zero in cell "
            f"{cell!r}; the ratio is undefined there (check the denominator or the slice)"
        )
    r = my / md
    if n < 2:
        return n, r, float("nan")
    vzy = (tot(2, 0) - szy * mzy) / (n - 1)
    vzd = (tot(0, 2) - szd * mzd) / (n - 1)
    czyd = (tot(1, 1) - szy * mzd) / (n - 1)
    rho = r * (td.scale / ty.scale)
    u = ty.scale / (ratio_unit(data) * md)
    return n, r, u * u * (vzy - 2 * rho * czyd + rho * rho * vzd) / n


class RatioModel(CausalModel):
    """Ratio of sums per cell, cells independent."""

    name = "ratio"

    def outcome_units(self, data: ModelData) -> ColumnTransform:
        """Ratios, and their variances, in units of ``ratio_unit``."""
        return ColumnTransform(shift=0.0, scale=ratio_unit(data))

    def train(self, data: ModelData) -> None:
        everyone = np.ones(len(data.n), dtype=bool)
        unit = ratio_unit(data)
        self.ratios = {c: ratio_moments(data, everyone, c)[1] / unit for c in data.cells}

    def predict(self, data: ModelData, cell: str) -> F64:
        return np.full(len(data.n), self.ratios[cell])

    def potential_outcome_mean(self, data: ModelData, group: Subgroup, cell: str) -> float:
        return ratio_moments(data, group.mask, cell)[1] / ratio_unit(data)

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
