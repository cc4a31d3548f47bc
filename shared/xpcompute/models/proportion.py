"""Two-proportion z-test for binary (0/1) metrics.

The p-value uses the pooled proportion under the null, as
``statsmodels.stats.proportion.proportions_ztest`` does; the interval uses the
unpooled (Wald) variance, as ``confint_proportions_2indep(method="wald")``.
Proportions are stated in the metric's own units (``outcome_units`` is the
identity): a 0/1 metric's sums are exact in any units.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from xpcompute.compression.transform import IDENTITY, ColumnTransform
from xpcompute.errors import ColumnTypeError
from xpcompute.models.base import MeansCovariance
from xpcompute.models.data import ModelData, Subgroup
from xpcompute.models.dist import norm_sf
from xpcompute.models.ttest import WelchTTest, cell_moments
from xpcompute.records import ResultRecord

F64 = NDArray[np.float64]


class TwoProportionZTest(WelchTTest):
    """Cell proportions, Wald interval, pooled z-test."""

    name = "proportion"

    def outcome_units(self, data: ModelData) -> ColumnTransform:
        return IDENTITY

    def predict(self, data: ModelData, cell: str) -> F64:
        return np.full(len(data.n), self.moments[cell].mean_y)

    def potential_outcome_mean(self, data: ModelData, group: Subgroup, cell: str) -> float:
        return cell_moments(data, group.mask, cell).mean_y

    def train(self, data: ModelData) -> None:
        s1, s2 = data.sum_y, data.sum_y2
        if not np.allclose(s1, s2, rtol=1e-12, atol=1e-9) or (s1 < -1e-9).any() or (s1 > data.n + 1e-9).any():
            raise ColumnTypeError(
                f"metric {data.spec.metric!r} is not binary (0/1); use model 'ttest' or 'ols' for a continuous metric"
            )
        super().train(data)

    def means_covariance(self, data: ModelData, group: Subgroup, cell: str, control: str) -> MeansCovariance:
        pa_, pb = cell_moments(data, group.mask, cell), cell_moments(data, group.mask, control)
        return MeansCovariance(cov=np.diag([pa_.mean_y * (1 - pa_.mean_y) / pa_.n, pb.mean_y * (1 - pb.mean_y) / pb.n]))

    def estimate(self, data: ModelData) -> list[ResultRecord]:
        records = super().estimate(data)
        out = []
        for rec in records:
            mask = np.ones(len(data.n), dtype=bool)
            if rec.segment is not None and data.spec.segment:
                mask = data.labels(data.spec.segment) == rec.segment
            a = cell_moments(data, mask, rec.cell)
            b = cell_moments(data, mask, rec.control)
            pooled = (a.mean_y * a.n + b.mean_y * b.n) / (a.n + b.n)
            se0 = float(np.sqrt(pooled * (1 - pooled) * (1 / a.n + 1 / b.n)))
            z = (a.mean_y - b.mean_y) / se0 if se0 > 0 else float("nan")
            p = 2 * norm_sf(abs(z)) if se0 > 0 else float("nan")
            out.append(rec.model_copy(update={"statistic": z, "p_value": p}))
        return out
