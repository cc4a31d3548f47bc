"""Two-proportion z-test for binary (0/1) metrics.

The p-value uses the pooled proportion under the null, as
``statsmodels.stats.proportion.proportions_ztest`` does; the interval uses the
unpooled (Wald) variance, as ``confint_proportions_2indep(method="wald")``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from xpcompute.errors import ColumnTypeError
from xpcompute.models.base import MeansCovariance
from xpcompute.models.data import ModelData, Subgroup
from xpcompute.models.ttest import WelchTTest, cell_moments
from xpcompute.records import ResultRecord

F64 = NDArray[np.float64]


class TwoProportionZTest(WelchTTest):
    """Cell proportions, Wald interval, pooled z-test."""

    name = "proportion"

    def train(self, data: ModelData) -> None:
        s1, s2 = data.sum_y, data.sum_y2
        if not np.allclose(s1, s2, rtol=1e-12, atol=1e-9) or (s1 < -1e-9).any() or (s1 > data.n + 1e-9).any():
            raise ColumnTypeError(
                f"metric {data.spec.metric!r} is not binary (0/1); use model 'ttest' or 'ols' for a continuous metric"
            )
        super().train(data)

    def means_covariance(self, data: ModelData, group: Subgroup, cell: str, control: str) -> MeansCovariance:
        a = cell_moments(data, group.mask, cell)
        b = cell_moments(data, group.mask, control)
        return MeansCovariance(cov=np.diag([a.mean * (1 - a.mean) / a.n, b.mean * (1 - b.mean) / b.n]))

    def estimate(self, data: ModelData) -> list[ResultRecord]:
        records = super().estimate(data)
        out = []
        for rec in records:
            mask = np.ones(len(data.n), dtype=bool)
            if rec.segment is not None and data.spec.segment:
                mask = data.labels(data.spec.segment) == rec.segment
            a = cell_moments(data, mask, rec.cell)
            b = cell_moments(data, mask, rec.control)
            pooled = (a.mean * a.n + b.mean * b.n) / (a.n + b.n)
            se0 = float(np.sqrt(pooled * (1 - pooled) * (1 / a.n + 1 / b.n)))
            z = (a.mean - b.mean) / se0 if se0 > 0 else float("nan")
            p = float(2 * stats.norm.sf(abs(z))) if se0 > 0 else float("nan")
            out.append(rec.model_copy(update={"statistic": z, "p_value": p}))
        return out
