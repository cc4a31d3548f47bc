"""The potential-outcomes base class every causal model subclasses.

A model implements two methods, as in the paper's Causal Models framework:
``train`` on the (compressed, frequency-weighted) data, and ``predict`` the
expected outcome of every row with the treatment set to a given cell. The
base class does the rest: it averages the counterfactual predictions over all
rows (ATE), over each segment (CATE) or each period (DTE), differences them
against control, and attaches variances. A model that knows the covariance of
its potential-outcome means analytically overrides ``means_covariance``
(``LinearModel`` does, by the delta method); any other model gets a Poisson
bootstrap over the compressed rows, retraining on each replicate.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from xpcompute import native
from xpcompute.models.data import ModelData, Subgroup, subgroups
from xpcompute.records import ResultRecord

F64 = NDArray[np.float64]
CompressionKind = Literal["moments", "distribution", "panel"]


@dataclass(frozen=True)
class MeansCovariance:
    """Covariance of the potential-outcome means (cell, control) and the degrees of freedom (None = normal)."""

    cov: F64
    df: float | None = None


class CausalModel(ABC):
    """Train, then predict the potential outcomes; the base derives ATE, CATE and DTE."""

    name: ClassVar[str]
    #: The compressed schema the model reads. "distribution" keeps the metric value as a key,
    #: which is what makes the Poisson bootstrap over compressed rows exact.
    compression: ClassVar[CompressionKind] = "moments"

    def __init__(self) -> None:
        self.notes: list[str] = []

    # ---- the two methods a scientist writes --------------------------
    @abstractmethod
    def train(self, data: ModelData) -> None:
        """Fit the model on ``data`` (rows carry frequency weights ``data.n``)."""

    @abstractmethod
    def predict(self, data: ModelData, cell: str) -> F64:
        """E[y] for every compressed row of ``data`` had it been assigned ``cell``."""

    # ---- optional analytic variance ----------------------------------
    def means_covariance(self, data: ModelData, group: Subgroup, cell: str, control: str) -> MeansCovariance | None:
        """Override with an analytic covariance of (mean under cell, mean under control); None = bootstrap."""
        return None

    # ---- what the base class derives ----------------------------------
    def potential_outcome_mean(self, data: ModelData, group: Subgroup, cell: str) -> float:
        """Average counterfactual prediction over the subgroup's rows, weighted by their counts."""
        w = data.n * group.mask
        return float(np.dot(self.predict(data, cell), w) / w.sum())

    def subgroups(self, data: ModelData) -> list[Subgroup]:
        """The populations effects are reported for: overall, then per segment (CATE) or period (DTE)."""
        return subgroups(data)

    def estimate(self, data: ModelData) -> list[ResultRecord]:
        """Train on ``data`` and return one record per (subgroup, treatment cell)."""
        self.notes = []
        data.check_cells_nonempty()
        self.train(data)
        groups = [g for g in self.subgroups(data) if (data.n * g.mask).sum() > 0]
        means = {
            (i, c): self.potential_outcome_mean(data, g, c) for i, g in enumerate(groups) for c in data.cells
        }
        analytic = {
            (i, c): self.means_covariance(data, g, c, data.control)
            for i, g in enumerate(groups)
            for c in data.treatments
        }
        if any(v is None for v in analytic.values()):
            boot = self._bootstrap_means(data, groups)
            for key, value in analytic.items():
                if value is None:
                    i, c = key
                    pair = boot[:, [groups_index(i, c, data), groups_index(i, data.control, data)]]
                    ok = np.isfinite(pair).all(axis=1)
                    analytic[key] = MeansCovariance(cov=np.cov(pair[ok].T, ddof=1))
        records = []
        for i, g in enumerate(groups):
            for c in data.treatments:
                cov = analytic[(i, c)]
                assert cov is not None
                records.append(
                    make_record(
                        data,
                        model=self.name,
                        cell=c,
                        mu_cell=means[(i, c)],
                        mu_control=means[(i, data.control)],
                        cov=cov,
                        group=g,
                        notes=list(self.notes),
                    )
                )
        return records

    def _bootstrap_means(self, data: ModelData, groups: Sequence[Subgroup]) -> F64:
        """Poisson bootstrap: replicate r scales each compressed row by Poisson(n)/n and retrains a copy.

        Returns ``[reps, len(groups) * len(cells)]`` potential-outcome means (NaN where a replicate
        emptied a cell). Exact for compressed rows that stand for identical input rows.
        """
        spec = data.spec
        n = data.base_counts
        weights = native.poisson_weights(n, spec.bootstrap_reps, spec.seed)
        scale_all = np.divide(weights, n, out=np.zeros_like(weights), where=n > 0)
        out = np.full((spec.bootstrap_reps, len(groups) * len(data.cells)), np.nan)
        for r in range(spec.bootstrap_reps):
            rep = data.reweighted(scale_all[r])
            model = copy.copy(self)
            try:
                model.train(rep)
                for i, g in enumerate(groups):
                    for c in data.cells:
                        w = rep.n * g.mask
                        if w.sum() > 0:
                            out[r, groups_index(i, c, data)] = float(np.dot(model.predict(rep, c), w) / w.sum())
            except (ArithmeticError, ValueError):
                continue  # a degenerate replicate (e.g. an emptied cell) is left out
        return out


def groups_index(group: int, cell: str, data: ModelData) -> int:
    return group * len(data.cells) + data.cells.index(cell)


def raw_mean(data: ModelData, mask: NDArray[np.bool_], cell: str) -> tuple[float, float]:
    """Observed (count, mean) of the metric in one cell of a subgroup."""
    sel = mask & (data.cell_labels == cell)
    n = float(data.n[sel].sum())
    return n, (float(data.sum_y[sel].sum() / n) if n > 0 else float("nan"))


def make_record(
    data: ModelData,
    *,
    model: str,
    cell: str,
    mu_cell: float,
    mu_control: float,
    cov: MeansCovariance,
    group: Subgroup,
    notes: list[str] | None = None,
) -> ResultRecord:
    """Turn the two potential-outcome means and their covariance into a result record.

    Absolute effect ``mu_cell - mu_control``; relative effect ``mu_cell / mu_control - 1``
    with its variance by the delta method; intervals and p-values from the t
    distribution with ``cov.df`` degrees of freedom, or the normal when it is None.
    """
    alpha = data.spec.alpha
    c = cov.cov
    effect = mu_cell - mu_control
    var = float(c[0, 0] + c[1, 1] - 2 * c[0, 1])
    se = float(np.sqrt(var)) if var >= 0 else float("nan")
    dist = stats.norm if cov.df is None else stats.t(cov.df)
    q = float(dist.ppf(1 - alpha / 2))
    stat = effect / se if se > 0 else float("nan")
    p = float(2 * dist.sf(abs(stat))) if se > 0 else float("nan")
    if mu_control != 0:
        grad = np.array([1 / mu_control, -mu_cell / mu_control**2])
        rel = mu_cell / mu_control - 1
        rel_var = float(grad @ c @ grad)
        rel_se = float(np.sqrt(rel_var)) if rel_var >= 0 else float("nan")
        rel_lo, rel_hi = rel - q * rel_se, rel + q * rel_se
    else:
        rel = rel_se = rel_lo = rel_hi = float("nan")
    n1, m1 = raw_mean(data, group.mask, cell)
    n0, m0 = raw_mean(data, group.mask, data.control)
    return ResultRecord(
        metric=data.spec.metric,
        model=model,
        cell=cell,
        control=data.control,
        effect=effect,
        se=se,
        ci_low=effect - q * se,
        ci_high=effect + q * se,
        p_value=p,
        relative_effect=rel,
        relative_se=rel_se,
        relative_ci_low=rel_lo,
        relative_ci_high=rel_hi,
        n_cell=n1,
        n_control=n0,
        mean_cell=m1,
        mean_control=m0,
        alpha=alpha,
        statistic=stat,
        df=cov.df,
        segment=group.segment,
        time=group.time,
        notes=notes or [],
    )
