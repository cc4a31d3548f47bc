"""Quantile treatment effects ``q_p(cell) - q_p(control)`` with Poisson-bootstrap intervals.

Point estimates on exact rows (lossless / none compression) are inverted-CDF
weighted quantiles of each cell's distribution-compressed rows
(``native.weighted_quantiles``): the smallest value whose cumulative frequency
reaches ``p``, which equals ``numpy.quantile(raw, p, method="inverted_cdf")``
on the expanded raw rows.

On ``ntile:N`` rows the raw values are gone; each row carries its bucket's
value range, and the quantile interpolates the CDF linearly inside the bucket
that holds it (``grouped_quantiles``, the grouped-data ogive; single-valued
buckets such as an atom at 0 stay exact). Why not the inverted CDF of the
bucket means: it snaps every quantile to a bucket, so the QTE is off by up to
a bucket width, and with millions of rows per bucket every bootstrap replicate
lands in the same bucket, giving se = 0 and an interval that excludes the
truth. Interpolation makes the error second order in the bucket width and lets
the bootstrap see the sampling variation of the bucket masses.

Uncertainty (written into every record's ``notes``):

* The Poisson bootstrap runs on the compressed rows (``native.bootstrap_quantiles``
  on exact rows; ``native.bootstrap_grouped_quantiles`` with windowed draws on n-tile
  rows, both in C++; ``spec.bootstrap_reps`` replicates, ``spec.seed``): a compressed row standing
  for n identical input rows gets weight Poisson(n), which is exactly the sum
  of the n input rows' Poisson(1) weights, so the compressed bootstrap *is*
  the raw-row Poisson bootstrap. Cells are resampled independently.
* ``ci_low, ci_high``: percentile interval of the replicate QTEs
  (``alpha/2`` and ``1 - alpha/2``, linear interpolation between replicates).
* ``se``: standard deviation (ddof=1) of the replicate QTEs; ``p_value``:
  ``2 * (1 - Phi(|QTE| / se))``, the normal test with that se; ``statistic``
  is ``QTE / se``. When every replicate gives the same QTE (a quantile that
  sits on a heavy atom), se is 0 and no p-value is reported.
* Relative effect ``q_p(cell) / q_p(control) - 1`` with the delta method on the
  bootstrap covariance of the two quantiles (normal interval).
* Replicates that leave a cell empty (tiny cells) are left out and counted.

``mean_cell``/``mean_control`` stay the cells' means, as in every record;
the per-cell quantiles are in ``summaries`` (``CellSummary.quantiles``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from xpcompute import native
from xpcompute.compression.distribution import DistributionView
from xpcompute.errors import ZeroVarianceError
from xpcompute.models.base import CausalModel, MeansCovariance, make_record
from xpcompute.models.data import ModelData, Subgroup, subgroups
from xpcompute.models.mannwhitney import CellSample, cell_samples, restrict
from xpcompute.native.reference import grouped_quantiles
from xpcompute.records import CellSummary, ResultRecord

F64 = NDArray[np.float64]

ESTIMAND_NOTE = (
    "quantile: effect = q_p(cell) - q_p(control) (inverted-CDF quantiles; on ntile rows linear within a bucket); "
    "ci = Poisson-bootstrap percentile interval; se = bootstrap sd; p_value = normal test of effect/se; "
    "relative effect by the delta method"
)


def quantile_label(p: float) -> str:
    """Key of a quantile in summaries and notes: 0.5 -> ``p50``, 0.999 -> ``p99.9``."""
    return f"p{round(p * 100, 10):g}"


@dataclass(frozen=True)
class QuantileBootstrap:
    """Replicate quantiles of one subgroup: ``values[b, k, j]`` for cell k (order of ``cells``) and prob j."""

    cells: tuple[str, ...]
    values: F64

    def pair(self, cell: str, control: str, j: int) -> tuple[F64, F64]:
        """The replicates of (q_cell, q_control) at prob j where both are defined."""
        qc = self.values[:, self.cells.index(cell), j]
        q0 = self.values[:, self.cells.index(control), j]
        ok = np.isfinite(qc) & np.isfinite(q0)
        return qc[ok], q0[ok]


def sample_quantiles(sample: CellSample, probs: F64) -> F64:
    """One cell's quantiles: inverted CDF on exact rows, the interpolated ogive on n-tile rows."""
    if sample.n <= 0:
        return np.full(len(probs), np.nan)
    if sample.lower is None or sample.upper is None:
        return native.weighted_quantiles(sample.values, sample.counts, probs)
    return grouped_quantiles(sample.values, sample.lower, sample.upper, sample.counts, probs)[0]


#: Windowed Poisson draws for n-tile rows (``native.bootstrap_grouped_quantiles``): buckets are drawn one by one
#: within this many standard deviations of each quantile, gaps between as one draw. Why 10: a replicate whose
#: quantile falls outside (probability < 1.5e-23) is redrawn bucket by bucket, so the bootstrap's law differs from
#: drawing every bucket by less than that, while a 1000-replicate fit on 2 x 1000 buckets needs ~20x fewer draws.
WINDOW_SD = 10.0


def bootstrap_cells(samples: dict[str, CellSample], probs: F64, reps: int, seed: int) -> QuantileBootstrap:
    """Poisson bootstrap of every cell's quantiles on its compressed rows, in one C++ call.

    Exact rows: ``native.bootstrap_quantiles`` (inverted CDF per replicate on the weights of
    ``native.poisson_weights``). n-tile rows: ``native.bootstrap_grouped_quantiles`` (the
    interpolated ogive per replicate) with windowed draws (``WINDOW_SD``): the same Poisson
    bootstrap in law as ``grouped_quantiles`` on ``poisson_weights``' rows, which it equals draw
    for draw with ``window_sd=0`` (tests/native/test_native_quantile.py). Results depend on
    (seed, replicate) only, never on threads. Why: with 1000 replicates of ~2000 n-tile rows the
    NumPy ogive and 2M Poisson draws took a 191 ms fit; this takes a few ms.
    """
    cells = tuple(samples)
    values = np.concatenate([samples[c].values for c in cells])
    counts = np.concatenate([samples[c].counts for c in cells])
    groups = np.concatenate([np.full(len(samples[c].values), k, dtype=np.int32) for k, c in enumerate(cells)])
    if all(samples[c].lower is None for c in cells):
        out = native.bootstrap_quantiles(values, counts, groups, len(cells), probs, reps, seed)
        return QuantileBootstrap(cells=cells, values=np.asarray(out, dtype=np.float64).reshape(reps, len(cells), len(probs)))
    lower: list[F64] = []
    upper: list[F64] = []
    for c in cells:
        s = samples[c]
        if s.lower is None or s.upper is None:  # mixed exact and n-tile cells: exact rows are single-valued buckets
            lower.append(s.values)
            upper.append(s.values)
        else:
            lower.append(s.lower)
            upper.append(s.upper)
    out = native.bootstrap_grouped_quantiles(
        values, np.concatenate(lower), np.concatenate(upper), counts, groups, len(cells), probs, reps, seed,
        window_sd=WINDOW_SD,
    )
    return QuantileBootstrap(cells=cells, values=np.asarray(out, dtype=np.float64))


def distribution_summaries(data: ModelData, probs: tuple[float, ...] | None = None) -> list[CellSummary]:
    """Per-cell count, mean, variance (ddof=1) and quantiles (``spec.quantiles`` by default) of a distribution table.

    Overall, then per segment or period, like the records. Quantiles are keyed
    ``p10``, ``p50``, ... (``quantile_label``) and are inverted-CDF quantiles of
    the frequency-weighted values.
    """
    probs = probs or data.spec.quantiles
    view = DistributionView.of(data.compressed, data.spec.metric, "quantile")
    labels = [quantile_label(p) for p in probs]
    grid = np.asarray(probs, dtype=np.float64)
    out: list[CellSummary] = []
    for group in subgroups(data):
        for cell, s in cell_samples(restrict(data, group.mask), view).items():
            if s.n <= 0:
                continue
            values = sample_quantiles(s, grid)
            out.append(
                CellSummary(
                    metric=data.spec.metric,
                    cell=cell,
                    count=s.n,
                    mean=s.mean,
                    variance=s.var if np.isfinite(s.var) else None,
                    quantiles={k: float(v) for k, v in zip(labels, values, strict=True)},
                    segment=group.segment,
                    time=group.time,
                )
            )
    return out


def pair_covariance(a: F64, b: F64) -> F64:
    """2x2 sample covariance (ddof=1) of two replicate series, elementwise (no BLAS threads for tiny products)."""
    if len(a) < 2:
        return np.full((2, 2), np.nan)
    da, db = a - a.mean(), b - b.mean()
    k = len(a) - 1
    cab = float((da * db).sum()) / k
    return np.array([[float((da * da).sum()) / k, cab], [cab, float((db * db).sum()) / k]])


class QuantileModel(CausalModel):
    """Quantile treatment effects at ``spec.quantiles`` for every treatment cell against control."""

    name = "quantile"
    compression = "distribution"

    def train(self, data: ModelData) -> None:
        """Per-cell samples of the rows ``data`` weights in, and their quantiles at ``spec.quantiles``."""
        self.view = DistributionView.of(data.compressed, data.spec.metric, self.name)
        self.samples = cell_samples(data, self.view)
        probs = np.asarray(data.spec.quantiles, dtype=np.float64)
        self.quantiles = {c: sample_quantiles(s, probs) for c, s in self.samples.items()}

    def predict(self, data: ModelData, cell: str) -> F64:
        """Potential-outcome mean of every row under ``cell`` (no covariates: the cell mean)."""
        return np.full(len(data.n), self.samples[cell].mean)

    def predict_quantiles(self, cell: str) -> F64:
        """The trained quantiles of ``cell``'s potential-outcome distribution at ``spec.quantiles``."""
        return self.quantiles[cell]

    def summaries(self, data: ModelData) -> list[CellSummary]:
        """Count, mean, variance (ddof=1) and the spec's quantiles of every cell, per subgroup."""
        return distribution_summaries(data)

    def estimate(self, data: ModelData) -> list[ResultRecord]:
        """One record per (subgroup, treatment cell, quantile)."""
        self.notes = []
        data.check_cells_nonempty()
        spec = data.spec
        view = DistributionView.of(data.compressed, spec.metric, self.name)
        present = view.values[data.n > 0]
        if len(present) and present.min() == present.max():
            raise ZeroVarianceError(
                f"metric {spec.metric!r} takes one value in every cell; quantile effects are all zero and cannot "
                "be tested (check the metric definition or the slice)"
            )
        if spec.covariates:
            self.notes.append("quantile: covariates are ignored (marginal quantiles per cell)")
        if view.lossy:
            self.notes.append(
                f"{view.label}: lossy; quantiles interpolate linearly inside n-tile buckets (exact on single-valued ones)"
            )
        probs = np.asarray(spec.quantiles, dtype=np.float64)
        records: list[ResultRecord] = []
        skipped: list[str] = []
        for group in self.subgroups(data):
            where = group.segment or group.time
            self.train(restrict(data, group.mask))
            live = {c: s for c, s in self.samples.items() if s.n > 0}
            if data.control not in live:
                skipped.extend(f"{c} in {where}" for c in data.treatments)
                continue
            boot = bootstrap_cells(live, probs, spec.bootstrap_reps, spec.seed)
            for cell in data.treatments:
                if cell not in live:
                    skipped.append(f"{cell} in {where}")
                    continue
                for j, p in enumerate(probs):
                    records.append(self._record(data, group, boot, cell, j, float(p)))
        if skipped and records:
            msg = f"quantile: no estimate where a cell is empty: {', '.join(skipped)}"
            records = [r.model_copy(update={"notes": [*r.notes, msg]}) for r in records]
        return records

    def _record(self, data: ModelData, group: Subgroup, boot: QuantileBootstrap, cell: str, j: int, p: float) -> ResultRecord:
        """The QTE record at prob ``p``: bootstrap covariance into ``make_record``, then the percentile CI."""
        control = data.control
        alpha = data.spec.alpha
        q1 = float(self.quantiles[cell][j])
        q0 = float(self.quantiles[control][j])
        qc, qk = boot.pair(cell, control, j)
        notes = [*self.notes, ESTIMAND_NOTE, f"{quantile_label(p)}: q_cell = {q1:.10g}, q_control = {q0:.10g}"]
        reps = data.spec.bootstrap_reps
        if len(qc) < reps:
            notes.append(f"bootstrap: {reps - len(qc)} of {reps} replicates emptied a cell and were left out")
        cov = pair_covariance(qc, qk)
        rec = make_record(
            data, model=self.name, cell=cell, mu_cell=q1, mu_control=q0, cov=MeansCovariance(cov=cov), group=group
        )
        diff = qc - qk
        update: dict[str, object] = {"quantile": p, "notes": notes}
        if len(diff) >= 2:
            lo, hi = np.quantile(diff, [alpha / 2, 1 - alpha / 2])
            update.update(ci_low=float(lo), ci_high=float(hi))
        if len(diff) < 2:
            notes.append(f"{quantile_label(p)}: fewer than 2 usable bootstrap replicates, so no interval or p-value")
            update.update(se=None, ci_low=None, ci_high=None, p_value=None, statistic=None)
        elif not (rec.se is not None and rec.se > 0):
            notes.append(
                f"{quantile_label(p)}: every bootstrap replicate gives the same effect (the quantile sits on an "
                "atom of the distribution), so there is no p-value; see the mean-based models for this metric"
            )
            update.update(p_value=None, statistic=None)
        return rec.model_copy(update=update)
