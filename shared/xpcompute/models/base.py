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

Units: a model may train, predict and state its covariance in the units of
the stored sums, ``z = (y - shift) / scale`` (``compression/transform.py``),
and say so in ``outcome_units``; the base then turns the two means and their
covariance back into the metric's units in ``make_record``, forming the effect
as ``scale * (z1 - z0)`` so that a large shift never cancels digits away.

Degenerate inputs never give a silent number: a cell below
``spec.min_cell_count`` is refused (overall) or reported with a note and no
SE (in a segment or period); an SE that cannot be computed is NaN with a
note; a result outside the float64 range is a ``NumericRangeError``.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from xpcompute import native
from xpcompute.compression.transform import IDENTITY, ColumnTransform
from xpcompute.errors import CellError, NumericRangeError
from xpcompute.models.data import ModelData, Subgroup, subgroups
from xpcompute.models.dist import norm_ppf, norm_sf, t_ppf, t_sf
from xpcompute.records import ResultRecord

F64 = NDArray[np.float64]
CompressionKind = Literal["moments", "distribution", "panel", "events"]


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

    def outcome_units(self, data: ModelData) -> ColumnTransform:
        """The units of ``predict`` and ``means_covariance``: ``y = shift + scale * value``.

        The identity (the metric's own units, as ``data.sum_y`` gives them) by
        default; models that read the stored sums (``data.moment``,
        ``data.sum_z``) return ``data.y_transform``.
        """
        return IDENTITY

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
        check_min_count(data)
        self.train(data)
        units = self.outcome_units(data)
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
                        units=units,
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


def check_min_count(data: ModelData) -> None:
    """Refuse a cell with fewer rows than ``spec.min_cell_count``: its variance, and so any test, is undefined.

    With one row a cell has no variance (Welch's SE is undefined) and its OLS
    residual is zero by construction (HC1 then reports a near-zero SE and a
    p-value like 1e-273); neither is an answer.
    """
    least = data.spec.min_cell_count
    labels = data.cell_labels
    for cell in data.cells:
        n = float(data.base_counts[labels == cell].sum())
        if n < least:
            raise CellError(
                f"metric {data.spec.metric!r}: cell {cell!r} has {n:g} rows with a value, fewer than "
                f"min_cell_count={least}; collect more data, merge cells, or lower min_cell_count (at least 2)"
            )


def raw_mean(data: ModelData, mask: NDArray[np.bool_], cell: str) -> tuple[float, float]:
    """Observed (count, mean) of the metric in one cell of a subgroup (from the stored sums, then rescaled)."""
    sel = mask & (data.cell_labels == cell)
    n = float(data.n[sel].sum())
    if n <= 0:
        return n, float("nan")
    t = data.y_transform
    if t.is_identity:
        return n, float(data.sum_y[sel].sum() / n)
    return n, t.shift + t.scale * float(data.sum_z[sel].sum() / n)


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
    units: ColumnTransform = IDENTITY,
) -> ResultRecord:
    """Turn the two potential-outcome means and their covariance into a result record.

    ``mu_*`` and ``cov`` are in ``units`` (``y = shift + scale * value``).
    Absolute effect ``scale * (mu_cell - mu_control)``, formed before the shift
    is added back so no digit cancels; relative effect ``effect / mean_control``
    with its variance by the delta method (scaled by ``(scale / mean_control)^2``,
    so no square of a large mean is formed); intervals and p-values from the t
    distribution with ``cov.df`` degrees of freedom, or the normal when it is None.
    """
    alpha = data.spec.alpha
    notes = list(notes or [])
    c = cov.cov
    unit = units.scale
    diff = mu_cell - mu_control
    effect = unit * diff
    var = float(c[0, 0] + c[1, 1] - 2 * c[0, 1])
    se_units = float(np.sqrt(var)) if var >= 0 else float("nan")
    se = unit * se_units
    n1, m1 = raw_mean(data, group.mask, cell)
    n0, m0 = raw_mean(data, group.mask, data.control)
    least = data.spec.min_cell_count
    if min(n1, n0) < least:
        small = cell if n1 < least else data.control
        notes.append(
            f"cell {small!r} has {min(n1, n0):g} rows here, fewer than min_cell_count={least}: "
            "no standard error, interval or p-value is reported"
        )
        se_units = se = float("nan")
    elif not se_units >= 0:
        notes.append(
            f"the standard error cannot be computed (variance of the effect {var:g}); no interval or p-value "
            "is reported"
        )
        se_units = se = float("nan")
    elif se_units == 0:
        notes.append("the standard error is zero: the effect does not vary with the data, so there is no p-value")
    # scipy.stats' norm/t, evaluated by models.dist (scipy.stats costs a new fit function more than its fit)
    df = cov.df
    q = norm_ppf(1 - alpha / 2) if df is None else t_ppf(1 - alpha / 2, df)
    stat = diff / se_units if se_units > 0 else float("nan")
    p = (2 * (norm_sf(abs(stat)) if df is None else t_sf(abs(stat), df))) if se_units > 0 else float("nan")
    mean_cell = units.shift + unit * mu_cell
    mean_control = units.shift + unit * mu_control
    if mean_control != 0:
        ratio = mean_cell / mean_control
        rel = effect / mean_control
        rel_var = float(c[0, 0] - 2 * ratio * c[0, 1] + ratio * ratio * c[1, 1])
        rel_se = abs(unit / mean_control) * float(np.sqrt(rel_var)) if rel_var >= 0 and se_units > 0 else float("nan")
        rel_lo, rel_hi = rel - q * rel_se, rel + q * rel_se
    else:
        rel = rel_se = rel_lo = rel_hi = float("nan")
    check_range(data, model, cell, [mu_cell, mu_control, diff, se_units], [mean_cell, mean_control, effect, se])
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
        notes=notes,
    )


def check_range(data: ModelData, model: str, cell: str, inputs: list[float], outputs: list[float]) -> None:
    """Refuse a result that the float64 range cannot hold (finite in model units, infinite in the metric's)."""
    for a, b in zip(inputs, outputs, strict=True):
        if np.isfinite(a) and not np.isfinite(b):
            raise NumericRangeError(
                f"metric {data.spec.metric!r}, model {model!r}, cell {cell!r}: a result is outside the float64 "
                "range (about 1.8e308); rescale the metric (e.g. report it in thousands) and fit again"
            )
