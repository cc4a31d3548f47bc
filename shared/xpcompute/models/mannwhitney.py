"""Mann–Whitney U (Wilcoxon rank-sum) test of every treatment cell against control.

Estimand choice (also written into every record's ``notes``): the record's
``effect`` is the **difference in means** ``mean(cell) - mean(control)`` with a
normal (unpooled-variance) interval and delta-method relative lift, so that
effect, relative_effect and the mean fields read the same as for every other
model on a scorecard. The test itself is the rank test: ``p_value`` is the
Mann–Whitney p-value and ``statistic`` is U of the treatment cell. The two
answer different questions (a shift in means versus stochastic dominance), so
the interval and the p-value can disagree on significance; the probability of
superiority ``P(cell > control) + P(tie) / 2 = U / (n_cell n_control)`` is
given in the notes as the rank test's own effect size.

The U statistic comes from ``native.rank_sums`` on distribution-compressed
rows (one row per cell and metric value with a frequency count), which gives
the same mid-rank sum and tie term as the raw rows. The p-value is the
two-sided asymptotic normal approximation with tie and continuity correction,
exactly as ``scipy.stats.mannwhitneyu(x, y, method="asymptotic",
use_continuity=True, alternative="two-sided")``. On ``ntile:N`` data the values
are bucket means, so U and p are approximations (bucket-mates become ties).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from xpcompute import native
from xpcompute.compression.distribution import DistributionView
from xpcompute.compression.transform import ColumnTransform
from xpcompute.errors import CellError, ZeroVarianceError
from xpcompute.models.base import CausalModel, MeansCovariance, make_record
from xpcompute.models.data import ModelData, Subgroup
from xpcompute.models.dist import norm_sf
from xpcompute.records import ResultRecord

F64 = NDArray[np.float64]

ESTIMAND_NOTE = (
    "mannwhitney: effect/se/CI = difference in means with a normal unpooled-variance interval; "
    "p_value and statistic = Mann–Whitney U of the cell (two-sided, normal approximation with tie and "
    "continuity correction), a test of stochastic dominance, so CI and p-value may disagree"
)


@dataclass(frozen=True)
class MannWhitneyResult:
    """U of the first sample, its normal approximation, and the probability of superiority."""

    u: float
    z: float
    p_value: float
    n_x: float
    n_y: float
    tie_term: float

    @property
    def prob_superiority(self) -> float:
        """``P(X > Y) + P(X = Y) / 2``, i.e. ``U / (n_x n_y)``."""
        return self.u / (self.n_x * self.n_y)


def mann_whitney(x: F64, wx: F64, y: F64, wy: F64, use_continuity: bool = True) -> MannWhitneyResult:
    """Two-sided Mann–Whitney test of sample x against sample y, each a set of values with frequency weights.

    Same formulas as scipy's asymptotic method: ``U = R_x - n_x (n_x + 1) / 2``,
    ``sigma^2 = n_x n_y / 12 * ((n + 1) - sum(t^3 - t) / (n (n - 1)))``,
    ``z = (max(U, n_x n_y - U) - n_x n_y / 2 - 0.5) / sigma``, ``p = min(1, 2 sf(z))``.
    """
    n_x, n_y = float(np.sum(wx)), float(np.sum(wy))
    if n_x <= 0 or n_y <= 0:
        raise CellError("Mann–Whitney needs rows in both samples; one of the two cells is empty")
    rank_sum, tie_term = native.rank_sums(x, wx, y, wy)
    u = rank_sum - n_x * (n_x + 1) / 2
    n = n_x + n_y
    u_max = max(u, n_x * n_y - u)
    var_term = (n + 1) - tie_term / (n * (n - 1))
    if not var_term > 0:
        raise ZeroVarianceError(
            "every value in the two cells is the same, so ranks carry no information; there is nothing to test "
            "(check the metric definition or the slice)"
        )
    sigma = np.sqrt(n_x * n_y / 12 * var_term)
    numerator = u_max - n_x * n_y / 2
    if use_continuity:
        numerator -= 0.5
    z = float(numerator / sigma)
    p = float(np.clip(2 * norm_sf(z), 0.0, 1.0))
    return MannWhitneyResult(u=float(u), z=z, p_value=p, n_x=n_x, n_y=n_y, tie_term=float(tie_term))


@dataclass(frozen=True)
class CellSample:
    """One cell's values with frequency counts, the moments behind its mean, and n-tile ranges if any."""

    values: F64
    counts: F64
    n: float
    mean: float
    var: float
    lower: F64 | None = None
    upper: F64 | None = None
    #: ``mean - anchor``, the anchor a value shared by every cell of one ``cell_samples`` call: differences
    #: of these keep their digits where differences of means near 1e9 x sd would not
    mean_dev: float = float("nan")
    anchor: float = 0.0


#: ``ModelData`` caches that depend only on the table and the spec, never on the row scale
_TABLE_CACHES = ("layout", "_raw_labels", "base_counts", "cell_labels", "cells")


def restrict(data: ModelData, mask: NDArray[np.bool_]) -> ModelData:
    """The same table with rows outside ``mask`` weighted 0 (keeps an existing bootstrap scale).

    The copy inherits the table-only caches (labels, cells) so that fitting
    many subgroups does not re-decode the key columns for each one.
    """
    base = np.ones(len(data.base_counts)) if data.scale is None else data.scale
    out = data.reweighted(np.where(mask, base, 0.0))
    for name in _TABLE_CACHES:
        if name in data.__dict__:
            out.__dict__[name] = data.__dict__[name]
    return out


def centered_moments(values: F64, counts: F64, n: float, anchor: float) -> tuple[float, float]:
    """``mean - anchor`` and the variance (ddof=1) of exact values with counts, by deviations, not sums of squares.

    Sums of y and y^2 lose ``log10(mean^2 / var)`` digits (all of them at a
    mean/sd ratio of 1e8); exact values need no such sums.
    """
    mean_dev = float((counts * (values - anchor)).sum()) / n  # no BLAS: see potential_outcome_mean
    mean = anchor + mean_dev
    var = float((counts * (values - mean) ** 2).sum()) / (n - 1) if n > 1 else float("nan")
    return mean_dev, var


def cell_samples(data: ModelData, view: DistributionView) -> dict[str, CellSample]:
    """Per cell of ``data`` (with its current weights): values, counts, n, mean and variance (ddof=1)."""
    out: dict[str, CellSample] = {}
    n_all, s1_all, s2_all = data.n, data.sum_y, data.sum_y2
    samples = {cell: view.sample(n_all, data.cell_labels == cell) for cell in data.cells}
    pooled = [(float(c.max()), float(v[int(np.argmax(c))])) for v, c in ((s.values, s.counts) for s in samples.values()) if len(v)]
    anchor = max(pooled)[1] if pooled else 0.0
    for cell, sample in samples.items():
        sel = data.cell_labels == cell
        n = float(n_all[sel].sum())
        if sample.lower is None and n > 0:
            mean_dev, var = centered_moments(sample.values, sample.counts, n, anchor)
            mean = anchor + mean_dev
        else:  # n-tile buckets: the bucket sums of y and y^2 are what is exact
            s1, s2 = float(s1_all[sel].sum()), float(s2_all[sel].sum())
            mean = s1 / n if n > 0 else float("nan")
            var = max(s2 - s1 * mean, 0.0) / (n - 1) if n > 1 else float("nan")
            mean_dev = mean - anchor
        out[cell] = CellSample(
            values=sample.values, counts=sample.counts, n=n, mean=mean, var=var, lower=sample.lower,
            upper=sample.upper, mean_dev=mean_dev, anchor=anchor,
        )
    return out


class MannWhitneyModel(CausalModel):
    """Rank test per treatment cell; effect reported as the difference in means (see module docstring)."""

    name = "mannwhitney"
    compression = "distribution"

    def train(self, data: ModelData) -> None:
        """Per-cell samples (values with counts) and moments of the rows ``data`` weights in."""
        self.view = DistributionView.of(data.compressed, data.spec.metric, self.name)
        self.samples = cell_samples(data, self.view)

    def predict(self, data: ModelData, cell: str) -> F64:
        """The saturated model without covariates: every row's potential outcome is the cell mean (less the anchor)."""
        return np.full(len(data.n), self.samples[cell].mean_dev)

    def outcome_units(self, data: ModelData) -> ColumnTransform:
        """Means are stated relative to the samples' anchor value (``CellSample.mean_dev``)."""
        anchor = next(iter(self.samples.values())).anchor if self.samples else 0.0
        return ColumnTransform(shift=anchor, scale=1.0)

    def potential_outcome_mean(self, data: ModelData, group: Subgroup, cell: str) -> float:
        """The base class's weighted average of ``predict``, without BLAS (``np.dot`` threads can stall on a busy host)."""
        w = data.n * group.mask
        return float((self.predict(data, cell) * w).sum() / w.sum())

    def means_covariance(self, data: ModelData, group: Subgroup, cell: str, control: str) -> MeansCovariance:
        """Independent cells: ``diag(var_cell / n_cell, var_control / n_control)`` in ``group``, normal reference."""
        view = DistributionView.of(data.compressed, data.spec.metric, self.name)
        samples = cell_samples(restrict(data, group.mask), view)
        a, b = samples[cell], samples[control]
        return MeansCovariance(cov=np.diag([a.var / a.n, b.var / b.n]), df=None)

    def test(self, cell: str, control: str) -> MannWhitneyResult:
        """The rank test of ``cell`` against ``control`` on the trained samples."""
        a, b = self.samples[cell], self.samples[control]
        return mann_whitney(a.values, a.counts, b.values, b.counts)

    def estimate(self, data: ModelData) -> list[ResultRecord]:
        """One record per (subgroup, treatment cell): mean difference with the Mann–Whitney p-value.

        Each subgroup (overall, then each segment or period) is fitted by
        training on the data restricted to it, then predicting every cell.
        """
        self.notes = []
        data.check_cells_nonempty()
        view = DistributionView.of(data.compressed, data.spec.metric, self.name)
        if data.spec.covariates:
            self.notes.append("mannwhitney: covariates are ignored (the rank test is unadjusted)")
        if view.lossy:
            self.notes.append(f"{view.label}: values are bucket means, so U and the p-value are approximate")
        everyone = np.ones(len(data.n), dtype=bool)
        records: list[ResultRecord] = []
        skipped: list[str] = []
        for group in self.subgroups(data):
            sub = restrict(data, group.mask)
            self.train(sub)
            control = data.control
            for cell in data.treatments:
                a, b = self.samples[cell], self.samples[control]
                where = group.segment or group.time
                if a.n <= 0 or b.n <= 0:
                    skipped.append(f"{cell} in {where}")
                    continue
                try:
                    mw = self.test(cell, control)
                except ZeroVarianceError:
                    if where is None:
                        raise
                    skipped.append(f"{cell} in {where} (no variation)")
                    continue
                mu1 = self.potential_outcome_mean(sub, Subgroup(mask=everyone), cell)
                mu0 = self.potential_outcome_mean(sub, Subgroup(mask=everyone), control)
                rec = make_record(
                    data,
                    model=self.name,
                    cell=cell,
                    mu_cell=mu1,
                    mu_control=mu0,
                    cov=MeansCovariance(cov=np.diag([a.var / a.n, b.var / b.n]), df=None),
                    group=group,
                    units=self.outcome_units(sub),
                )
                notes = [
                    *self.notes,
                    ESTIMAND_NOTE,
                    f"probability of superiority P(cell > control) + P(tie)/2 = {mw.prob_superiority:.6g}; "
                    f"z = {mw.z:.6g}",
                ]
                records.append(rec.model_copy(update={"p_value": mw.p_value, "statistic": mw.u, "notes": notes}))
        if skipped and records:
            msg = f"mannwhitney: no test where a cell is empty or constant: {', '.join(skipped)}"
            records = [r.model_copy(update={"notes": [*r.notes, msg]}) for r in records]
        return records
