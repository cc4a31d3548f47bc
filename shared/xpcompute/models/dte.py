"""Dynamic treatment effects (DTE): one panel regression, standard errors clustered by user, from compressed sums.

The model, on user-by-period rows ``(u, t)``::

    y_ut = alpha_t + tau_{t, cell(u)} + sum_k gamma_k [key_k(u)] + e_ut

with period effects ``alpha_t``, period-by-cell effects ``tau_{t,c}`` (zero
for the control cell) and, optionally, dummies of discrete *user-level*
covariates (baseline level dropped). Without covariates the model is
saturated in period x cell, so the fit is the cell-by-period means.

Why it stays exact on compressed data. Every row's design vector depends only
on its group ``g`` (cell and keys, which are constant within a user) and its
period, so ``X'X`` and ``X'y`` are sums of per-(group, period) counts and
metric sums. A user's cluster score is ``X_g' e_u`` with ``X_g`` the group's
``P x K`` design and ``e_u = y_u - p_u * f_g`` its per-period residual vector
(``f_g`` the fitted values, ``p_u`` the user's rows per period), so the meat is
``sum_g X_g' (sum_{u in g} e_u e_u') X_g`` and::

    sum_{u in g} e_u e_u' = S_yy - S_yp * (1 f') - (f 1') * S_py + S_pp * (f f')

(``*`` elementwise), all stored by ``compression/panel.py``.

Variance. Cluster-robust by user with the small-sample correction of
statsmodels' ``cov_type='cluster'`` (its default ``use_correction=True``),
which is also Stata's ``vce(cluster)`` and linearmodels' ``PanelOLS(...).fit(cov_type='clustered',
cluster_entity=True, debiased=True, group_debias=True)``::

    V = G / (G - 1) * (N - 1) / (N - K) * (X'X)^-1 M (X'X)^-1

with ``G`` users (clusters; a frequency weight of w counts as w users), ``N``
user-period rows and ``K`` the rank of the design. Intervals and p-values use
the normal distribution (statsmodels' default ``use_t=False`` for clustered
errors, and the project's OLS convention); a subclass with ``use_t = True``
uses Student's t with ``G - 1`` degrees of freedom (statsmodels ``use_t=True``).

Reported effects (through the potential-outcomes base class): per period ``t``
and treatment cell ``c`` the average over period-``t`` rows of the prediction
under ``c`` minus under control, which is ``tau_{t,c}``; and overall (``time``
None) the same average over all user-period rows, i.e.
``sum_t (N_t / N) tau_{t,c}`` with ``N_t`` the rows in period ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from xpcompute import native
from xpcompute.compression.transform import ColumnTransform
from xpcompute.errors import CellError, InputError, ZeroVarianceError
from xpcompute.models.base import CausalModel, MeansCovariance
from xpcompute.models.data import ModelData, Subgroup
from xpcompute.models.linear import solve_identified
from xpcompute.models.panel_data import PanelData
from xpcompute.records import ResultRecord

F64 = NDArray[np.float64]

__all__ = ["DTEModel", "PanelDesign", "PanelOLSFit", "fit_panel_ols"]


@dataclass(frozen=True)
class PanelDesign:
    """The columns of the panel regression, fixed from the training data.

    Order: one dummy per period; per treatment cell (control excluded) one
    dummy per period; then per user-level key its levels but the first.
    Fixing levels here means counterfactual copies (every row set to one cell)
    and reweighted replicates share one column layout.
    """

    cells: tuple[str, ...]
    periods: tuple[str, ...]
    keys: dict[str, tuple[str, ...]]

    @classmethod
    def from_data(cls, data: PanelData) -> PanelDesign:
        keys = {k: tuple(sorted(set(data.group_labels(k)))) for k in data.covariate_keys}
        return cls(cells=data.cells, periods=data.periods, keys=keys)

    @property
    def names(self) -> tuple[str, ...]:
        out = [f"period[{t}]" for t in self.periods]
        out += [f"period[{t}]:cell[{c}]" for c in self.cells[1:] for t in self.periods]
        out += [f"{k}[{level}]" for k, levels in self.keys.items() for level in levels[1:]]
        return tuple(out)

    def effect_index(self, cell: str, period: int) -> int:
        """Column of ``tau_{period, cell}``."""
        if cell == self.cells[0]:
            raise ValueError(f"the control cell {cell!r} has no effect column")
        return len(self.periods) * self.cells.index(cell) + period

    def build(self, data: PanelData, cell: str | None = None) -> tuple[F64, tuple[int, ...]]:
        """Design rows, one per long row (group, period), with the cell set to ``cell`` (None: observed).

        Returns the design and the indices of the period and treatment columns, which
        must stay identified.
        """
        g, p = data.n_groups, len(self.periods)
        if data.periods != self.periods:
            raise InputError(
                f"the panel's periods {list(data.periods)} differ from the trained model's {list(self.periods)}"
            )
        cell_lab = np.repeat(data.group_labels(data.spec.treatment), p) if cell is None else np.full(g * p, cell, object)
        period_idx = np.tile(np.arange(p), g)
        rows = np.arange(g * p)
        n_effects = p * len(self.cells)
        n_keys = sum(len(levels) - 1 for levels in self.keys.values())
        x = np.zeros((g * p, n_effects + n_keys))
        x[rows, period_idx] = 1.0
        for j, c in enumerate(self.cells[1:]):
            sel = cell_lab == c
            x[rows[sel], p * (1 + j) + period_idx[sel]] = 1.0
        col = n_effects
        for key, levels in self.keys.items():
            lab = np.repeat(data.group_labels(key), p)
            for level in levels[1:]:
                x[:, col] = lab == level
                col += 1
        return x, tuple(range(n_effects))


@dataclass(frozen=True)
class PanelOLSFit:
    """Coefficients and cluster-robust covariance of one compressed panel regression."""

    coef: F64
    cov: F64
    names: tuple[str, ...]
    dropped: tuple[str, ...]
    nobs: float
    clusters: float
    rank: int
    correction: float


def fit_panel_ols(data: PanelData, design: PanelDesign) -> PanelOLSFit:
    """OLS of the metric on ``design`` with errors clustered by user, from the panel sums alone."""
    x, protect = design.build(data)
    names = design.names
    n = data.n
    _check_identified(data, design, n)
    xtx, xty, _ = native.gram_meat(x, n, data.sum_z, None)  # sums of z = (y - shift) / scale: see outcome_units
    solved, dropped = solve_identified(data, xtx, xty, tuple(names), tuple(protect))
    coef = solved.x
    g, p = data.n_groups, data.n_periods
    fitted = (x @ coef).reshape(g, p)
    sums = data.sums
    yp_f = sums.yp * fitted[:, None, :]
    resid_outer = sums.yy - yp_f - yp_f.transpose(0, 2, 1) + sums.pp * fitted[:, :, None] * fitted[:, None, :]
    rss = float(np.trace(resid_outer, axis1=1, axis2=2).sum())
    scale_y = float(np.trace(sums.yy, axis1=1, axis2=2).sum())
    if not rss > 1e-12 * scale_y:
        raise ZeroVarianceError(
            f"metric {data.spec.metric!r} has no residual variation around its cell-by-period means; "
            "there is nothing to test (check the metric definition or the slice)"
        )
    xg = x.reshape(g, p, -1)
    meat = np.einsum("gsk,gst,gtl->kl", xg, resid_outer, xg, optimize=True)
    nobs = float(n.sum())
    clusters = data.clusters
    rank = solved.rank
    if clusters <= 1 or nobs <= rank:
        raise InputError(
            f"metric {data.spec.metric!r}: {clusters:g} users and {nobs:g} user-period rows are too few for "
            f"{rank} parameters with clustered errors; widen the slice or the date range"
        )
    correction = clusters / (clusters - 1) * (nobs - 1) / (nobs - rank)
    bread = solved.inverse
    cov = bread @ meat @ bread * correction
    cov = (cov + cov.T) / 2
    return PanelOLSFit(coef=coef, cov=cov, names=names, dropped=dropped, nobs=nobs, clusters=clusters, rank=rank,
                       correction=correction)


def _check_identified(data: PanelData, design: PanelDesign, n: F64) -> None:
    """Every (cell, period) needs rows; else its effect is not identified and we say where."""
    labels = data.group_labels(data.spec.treatment)
    per_group = n.reshape(data.n_groups, data.n_periods)
    counts = np.vstack([per_group[labels == c].sum(axis=0) for c in design.cells])
    empty = np.argwhere(counts <= 0)
    if len(empty):
        c, t = empty[0]
        raise CellError(
            f"metric {data.spec.metric!r}: cell {design.cells[c]!r} has no rows in period {design.periods[t]!r} "
            f"({len(empty)} empty cell-period pair(s)), so its effect there is not identified; "
            "filter the time column to periods every cell covers"
        )


class DTEModel(CausalModel):
    """Period and period-by-cell effects on a user-by-period panel, standard errors clustered by user.

    ``train`` fits the regression on the compressed panel (``fit_panel_ols``);
    ``predict`` gives each (group, period) row's fitted value with the cell set
    to any cell; the potential-outcomes base class averages and differences
    those per period and overall. See the module docstring for why it is exact.
    """

    name: ClassVar[str] = "dte"
    compression = "panel"
    #: False: normal intervals (statsmodels' default for clustered errors); True: t with G - 1 df.
    use_t: ClassVar[bool] = False

    design: PanelDesign
    fit: PanelOLSFit

    def outcome_units(self, data: ModelData) -> ColumnTransform:
        """The panel holds sums of ``z = (y - shift) / scale``; one intercept per period absorbs the shift."""
        return data.y_transform

    def train(self, data: ModelData) -> None:
        panel = PanelData.of(data)
        if not hasattr(self, "design") or self.design.cells != panel.cells or self.design.periods != panel.periods:
            self.design = PanelDesign.from_data(panel)
        self.fit = fit_panel_ols(panel, self.design)
        self._row_design_cache: dict[tuple[int, str], F64] = {}
        if self.fit.dropped:
            self.notes.append(f"dropped collinear columns: {', '.join(self.fit.dropped)}")

    def row_design(self, data: PanelData, cell: str) -> F64:
        """Design rows of every (group, period) with the cell set to ``cell`` (cached per data and cell)."""
        key = (id(data), cell)
        cached = self._row_design_cache.get(key)
        if cached is None:
            cached = self._row_design_cache[key] = self.design.build(data, cell)[0]
        return cached

    def predict(self, data: ModelData, cell: str) -> F64:
        return self.row_design(PanelData.of(data), cell) @ self.fit.coef

    def mean_gradient(self, data: PanelData, group: Subgroup, cell: str) -> F64:
        """``a`` with mean prediction over the subgroup's user-period rows = ``a'b``."""
        w = data.n * group.mask
        return (self.row_design(data, cell) * w[:, None]).sum(axis=0) / w.sum()

    def means_covariance(self, data: ModelData, group: Subgroup, cell: str, control: str) -> MeansCovariance:
        panel = PanelData.of(data)
        grads = np.vstack([self.mean_gradient(panel, group, cell), self.mean_gradient(panel, group, control)])
        df = self.fit.clusters - 1 if self.use_t else None
        return MeansCovariance(cov=grads @ self.fit.cov @ grads.T, df=df)

    def subgroups(self, data: ModelData) -> list[Subgroup]:
        """All user-period rows (time None), then each period in sorted order."""
        panel = PanelData.of(data)
        rows = panel.n_groups * panel.n_periods
        period_of_row = np.tile(np.arange(panel.n_periods), panel.n_groups)
        out = [Subgroup(mask=np.ones(rows, dtype=bool))]
        out += [Subgroup(mask=period_of_row == t, time=label) for t, label in enumerate(panel.periods)]
        return out

    def estimate(self, data: ModelData) -> list[ResultRecord]:
        """The base class's estimate on the panel view, with a note on the clustering."""
        panel = PanelData.of(data)
        records = super().estimate(panel)
        cluster = panel.compressed.layout.extra.get("cluster")
        note = (
            f"standard errors clustered by {cluster} ({self.fit.clusters:g} clusters, "
            f"correction G/(G-1)*(N-1)/(N-K) = {self.fit.correction:.6g})"
        )
        return [r.model_copy(update={"notes": [*r.notes, note]}) for r in records]
