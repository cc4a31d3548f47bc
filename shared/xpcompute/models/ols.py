"""OLS with covariates and HC1 errors (CUPED is the special case of one pre-period covariate), and CATE.

Both are ``LinearModel``s: predictions are linear in the coefficients, so the
covariance of any average of counterfactual predictions follows from the
coefficient covariance by the delta method, with no bootstrap.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from xpcompute.compression.transform import ColumnTransform
from xpcompute.models.base import CausalModel, MeansCovariance
from xpcompute.models.data import ModelData, Subgroup
from xpcompute.models.design import DesignTerms
from xpcompute.models.linear import OLSFit, compressed_ols

F64 = NDArray[np.float64]


class LinearModel(CausalModel):
    """A model whose prediction for a row is ``x'b``; the base averages and differences predictions."""

    name: ClassVar[str] = "ols"
    saturate_segment: ClassVar[bool] = False

    terms: DesignTerms
    fit: OLSFit

    def train(self, data: ModelData) -> None:
        if not hasattr(self, "terms") or self.terms.cells != data.cells:
            self.terms = DesignTerms.from_data(data, data.spec.segment if self.saturate_segment else None)
        design, names, protect = self.terms.build(data)
        self.fit = compressed_ols(data, design, names, protect)
        self._row_design_cache: dict[tuple[int, str], F64] = {}
        if self.fit.dropped:
            self.notes.append(f"dropped collinear columns: {', '.join(self.fit.dropped)}")
        self.notes.extend(note for note in self.fit.notes if note not in self.notes)

    def outcome_units(self, data: ModelData) -> ColumnTransform:
        """Coefficients are in units of the stored metric ``z`` (the sums are of ``z``)."""
        return data.y_transform

    def row_design(self, data: ModelData, cell: str) -> F64:
        """Each compressed row's average design row ``(d_g, mean c)`` with the treatment set to ``cell``."""
        key = (id(data), cell)
        cached = self._row_design_cache.get(key)
        if cached is None:
            cached = self._row_design_cache[key] = self._build_row_design(data, cell)
        return cached

    def _build_row_design(self, data: ModelData, cell: str) -> F64:
        design, _, _ = self.terms.build(data, cell)
        k = len(data.layout.covariates)
        if not k:
            return design
        n = data.n
        means = [
            np.divide(data.moment(0, *[int(i == j) for i in range(k)]), n, out=np.zeros_like(n), where=n > 0)
            for j in range(k)
        ]
        return np.column_stack([design, *means])

    def predict(self, data: ModelData, cell: str) -> F64:
        return self.row_design(data, cell) @ self.fit.coef

    def mean_gradient(self, data: ModelData, group: Subgroup, cell: str) -> F64:
        """``g`` with mean prediction over the subgroup = ``g'b`` (weights = row counts)."""
        w = data.n * group.mask
        return (self.row_design(data, cell) * w[:, None]).sum(axis=0) / w.sum()

    def means_covariance(self, data: ModelData, group: Subgroup, cell: str, control: str) -> MeansCovariance:
        grads = np.vstack([self.mean_gradient(data, group, cell), self.mean_gradient(data, group, control)])
        return MeansCovariance(cov=grads @ self.fit.cov @ grads.T)


class OLSModel(LinearModel):
    """``y ~ cell + discrete covariates + continuous covariates``, HC1; the effect is the cell coefficient."""

    name = "ols"

    def subgroups(self, data: ModelData) -> list[Subgroup]:
        return [Subgroup(mask=np.ones(len(data.n), dtype=bool))]


class CATEModel(LinearModel):
    """One model saturated in segment x cell (plus covariates), HC1.

    CATE(segment) averages counterfactual predictions over the segment's rows,
    which equals the segment's interaction coefficients; all segments share
    one coefficient covariance, so heterogeneity can be tested jointly
    (``heterogeneity_test``).
    """

    name = "cate"
    saturate_segment = True

    def heterogeneity_test(self, data: ModelData, cell: str) -> tuple[float, int, float]:
        """Wald test that the CATE of ``cell`` is equal in every segment: (chi2, df, p-value)."""
        from scipy import stats

        groups = [g for g in self.subgroups(data) if g.segment is not None]
        grads = np.vstack(
            [self.mean_gradient(data, g, cell) - self.mean_gradient(data, g, data.control) for g in groups]
        )
        effects = grads @ self.fit.coef
        cov = grads @ self.fit.cov @ grads.T
        contrast = np.eye(len(groups))[1:] - np.eye(len(groups))[0]
        diff = contrast @ effects
        vc = contrast @ cov @ contrast.T
        chi2 = float(diff @ np.linalg.pinv(vc) @ diff)
        dof = int(np.linalg.matrix_rank(vc))
        return chi2, dof, float(stats.chi2.sf(chi2, dof))
