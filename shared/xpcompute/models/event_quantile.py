"""Event-level quantile effects ``q_p(cell) - q_p(control)`` over events, with a bootstrap clustered by unit.

The estimand is a quantile of the *events* of a cell (p90 of order value over all orders, p50 of playback-start
latency over all starts), not a quantile of per-unit values: a unit with 10 orders counts 10 times. Events are
not independent (a unit's orders are correlated), so the uncertainty comes from a Poisson bootstrap clustered by
unit: every unit's events share one Poisson(1) weight.

It reads an event histogram (``compression/events.py``): per (cell, unit cluster, value bucket) the event count
and the values' range. Point estimate per cell: the grouped-data ogive of the cell's bucket counts (the first
bucket whose cumulative count reaches ``p * N``, linear inside it between its smallest and largest value). On
lossless buckets (every bucket single-valued) that is ``numpy.quantile(events, p, method="inverted_cdf")``
exactly; on quantile-spaced buckets it lies in the bucket holding the raw quantile (within one bucket's range).

Uncertainty (``native.bootstrap_cluster_quantiles``, C++): replicate b gives every (cell, cluster) pair a weight
Poisson(1); clusters hold whole units (hash of the unit id mod ``M``), so this is the unit-clustered bootstrap
with units grouped at random ("random groups"), cells independent. Its variance is ``(1 - 1/M)`` times the
unit-level bootstrap's in expectation over the grouping (see ``compression/events.py``), so the replicate
effects are spread about their mean by ``sqrt(M / (M - 1))`` before anything is read from them:

* ``se`` = sd (ddof=1) of the scaled replicate effects; ``ci_low, ci_high`` = their ``alpha/2``, ``1 - alpha/2``
  percentiles; ``p_value`` = ``2 * (1 - Phi(|effect| / se))``, ``statistic`` = ``effect / se``.
* relative effect ``q_cell / q_control - 1`` with the delta method on the (scaled) replicate covariance of the
  two quantiles, normal interval (as the ``quantile`` model), so a guardrail "p90 must not rise more than 5%"
  reads it like any other relative effect.
* ``mean_cell``/``mean_control`` are the two quantiles (the estimand of this record), ``n_cell``/``n_control``
  the cells' event counts; units per cell are in the notes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from xpcompute import native
from xpcompute.compression.events import EXTRA_KEY
from xpcompute.errors import InputError, ZeroVarianceError
from xpcompute.models.base import CausalModel
from xpcompute.models.data import ModelData
from xpcompute.models.dist import norm_ppf, norm_sf
from xpcompute.models.quantile import pair_covariance, quantile_label
from xpcompute.native.reference import grouped_quantiles
from xpcompute.records import ResultRecord

F64 = NDArray[np.float64]

ESTIMAND_NOTE = (
    "event_quantile: effect = q_p(cell) - q_p(control) over events (each event counts once; not per-unit "
    "averages); ci = percentile interval of a Poisson bootstrap clustered by unit (Poisson(1) per cell and unit "
    "cluster, spread scaled by sqrt(M/(M-1))); se = bootstrap sd; p_value = normal test of effect/se; relative "
    "effect by the delta method"
)


class EventHistogramView:
    """The arrays of an event-histogram table, cells indexed in sorted order."""

    def __init__(self, data: ModelData) -> None:
        compressed = data.compressed
        if compressed.layout.kind != "events" or EXTRA_KEY not in compressed.layout.extra:
            raise InputError(
                f"model 'event_quantile' reads an event histogram (compression 'events'), got a "
                f"{compressed.layout.kind!r} table; declare the metric with aggregation: event_quantile"
            )
        t = compressed.table
        self.info: dict[str, object] = dict(compressed.layout.extra[EXTRA_KEY])
        column = t.column("cell")
        if pa.types.is_dictionary(column.type):  # as compression/events.py writes it: no strings to hash
            encoded = column.unify_dictionaries().combine_chunks()
        else:
            encoded = pc.dictionary_encode(column.cast(pa.string())).combine_chunks()
        found = [str(x) for x in encoded.dictionary.to_pylist()]
        self.cells: tuple[str, ...] = tuple(sorted(found))
        remap = np.array([self.cells.index(c) for c in found], dtype=np.int32)
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        self.groups = remap[codes] if len(found) else np.empty(0, dtype=np.int32)
        self.clusters = np.asarray(t.column("cluster").to_numpy(), dtype=np.int32)  # no copy when stored as int32
        self.buckets = np.asarray(t.column("bucket").to_numpy(), dtype=np.int32)
        self.n = t.column("n").to_numpy().astype(np.float64)
        self.lo = np.asarray(t.column("lo").to_numpy(), dtype=np.float64)
        self.hi = np.asarray(t.column("hi").to_numpy(), dtype=np.float64)
        self.totals = np.bincount(self.groups, weights=self.n, minlength=len(self.cells))
        self.n_clusters = int(self.info["clusters"])  # type: ignore[call-overload]
        self.n_buckets = int(self.info["buckets"])  # type: ignore[call-overload]

    def events(self, cell: str) -> float:
        return float(self.totals[self.cells.index(cell)])

    def point(self, probs: F64) -> F64:
        """``[n_cells, P]``: each cell's ogive quantiles on its bucket totals (NaN for an empty cell)."""
        out = np.full((len(self.cells), len(probs)), np.nan)
        nb = self.n_buckets
        g = len(self.cells)
        key = self.groups.astype(np.int64) * nb + self.buckets  # (cell, bucket), all cells in one pass
        mass = np.bincount(key, weights=self.n, minlength=g * nb).reshape(g, nb)
        lo = np.full(g * nb, np.inf)
        hi = np.full(g * nb, -np.inf)
        np.minimum.at(lo, key, self.lo)
        np.maximum.at(hi, key, self.hi)
        lo, hi = lo.reshape(g, nb), hi.reshape(g, nb)
        for k in range(g):
            keep = mass[k] > 0
            if keep.any():
                out[k] = grouped_quantiles(np.arange(int(keep.sum()), dtype=np.float64), lo[k, keep], hi[k, keep],
                                           mass[k, keep], probs)[0]
        return out


def control_of(data: ModelData, cells: tuple[str, ...]) -> str:
    """The spec's control, else 'control' when present, else the first cell in sorted order."""
    control = data.spec.control or ("control" if "control" in cells else cells[0])
    if control not in cells:
        raise InputError(f"control cell {control!r} has no events in this slice; cells with events: {list(cells)}")
    return control


class EventQuantileModel(CausalModel):
    """Event-level quantile effects at ``spec.quantiles`` for every treatment cell against control."""

    name = "event_quantile"
    compression = "events"

    def train(self, data: ModelData) -> None:
        """Per-cell event quantiles at ``spec.quantiles`` (the ogive on the cell's bucket counts)."""
        self.view = EventHistogramView(data)
        self.probs = np.asarray(data.spec.quantiles, dtype=np.float64)
        self.quantiles = self.view.point(self.probs)

    def predict(self, data: ModelData, cell: str) -> F64:
        """The cell's trained quantiles (this model's potential outcomes are quantiles, not means)."""
        return self.quantiles[self.view.cells.index(cell)]

    def estimate(self, data: ModelData) -> list[ResultRecord]:
        """One record per (treatment cell, quantile)."""
        spec = data.spec
        if spec.segment or spec.time:
            raise InputError("model 'event_quantile' reports the whole slice; request a slice per segment instead "
                             "of --segment/--time")
        self.train(data)
        view = self.view
        if len(view.cells) < 2:
            raise InputError(f"metric {spec.metric!r}: events of only {list(view.cells)} in this slice; an effect "
                             "needs the control and at least one other cell")
        control = control_of(data, view.cells)
        if np.all(view.lo == view.lo[0]) and np.all(view.hi == view.lo[0]):
            raise ZeroVarianceError(f"metric {spec.metric!r} takes one value on every event; quantile effects are "
                                    "all zero and cannot be tested")
        m = view.n_clusters
        boot = native.bootstrap_cluster_quantiles(
            view.groups, view.buckets, view.clusters, view.n, view.lo, view.hi, len(view.cells), view.n_buckets, m,
            self.probs, spec.bootstrap_reps, spec.seed,
        )
        info = view.info
        units = info.get("units") or {}
        notes = [
            ESTIMAND_NOTE,
            f"event_quantile: M = {m} unit clusters, B = {view.n_buckets} value buckets "
            f"({'lossless: every bucket holds one value, quantiles exact' if info.get('lossless') else 'quantile-spaced, pooled over cells: quantiles linear inside a bucket'}), "
            f"{spec.bootstrap_reps} replicates, seed {spec.seed}",
        ]
        k0 = view.cells.index(control)
        records = []
        for cell in view.cells:
            if cell == control:
                continue
            k1 = view.cells.index(cell)
            counts = (f"events: {view.events(cell):.0f} in {cell!r}, {view.events(control):.0f} in {control!r}"
                      + (f"; units: {units.get(cell)} and {units.get(control)}" if isinstance(units, dict) and units else ""))
            for j, p in enumerate(self.probs):
                records.append(self._record(data, boot, k1, k0, cell, control, j, float(p), m, [*notes, counts]))
        return records

    def _record(self, data: ModelData, boot: F64, k1: int, k0: int, cell: str, control: str, j: int, p: float,
                m: int, notes: list[str]) -> ResultRecord:
        spec = data.spec
        alpha = spec.alpha
        q1 = float(self.quantiles[k1, j])
        q0 = float(self.quantiles[k0, j])
        qc, qk = boot[:, k1, j], boot[:, k0, j]
        ok = np.isfinite(qc) & np.isfinite(qk)
        qc, qk = qc[ok], qk[ok]
        notes = [*notes, f"{quantile_label(p)}: q_cell = {q1:.10g}, q_control = {q0:.10g}"]
        if len(qc) < spec.bootstrap_reps:
            notes.append(f"bootstrap: {spec.bootstrap_reps - len(qc)} of {spec.bootstrap_reps} replicates left a "
                         "cell without events and were left out")
        scale = float(np.sqrt(m / (m - 1))) if m > 1 else 1.0
        qc = qc.mean() + scale * (qc - qc.mean()) if len(qc) else qc
        qk = qk.mean() + scale * (qk - qk.mean()) if len(qk) else qk
        effect = q1 - q0
        z = norm_ppf(1 - alpha / 2)
        se = ci_low = ci_high = p_value = statistic = None
        rel = rel_se = rel_lo = rel_hi = None
        if len(qc) >= 2:
            diff = qc - qk
            se = float(np.std(diff, ddof=1))
            lo, hi = np.quantile(diff, [alpha / 2, 1 - alpha / 2])
            ci_low, ci_high = float(lo), float(hi)
            if se > 0:
                statistic = effect / se
                p_value = 2 * norm_sf(abs(statistic))
            else:
                notes.append(f"{quantile_label(p)}: every bootstrap replicate gives the same effect (the quantile "
                             "sits on an atom of the event values), so there is no p-value")
        else:
            notes.append(f"{quantile_label(p)}: fewer than 2 usable bootstrap replicates, so no interval or p-value")
        if q0 != 0:
            rel = effect / q0
            if len(qc) >= 2:
                cov = pair_covariance(qc, qk)
                ratio = q1 / q0
                v = float(cov[0, 0] - 2 * ratio * cov[0, 1] + ratio * ratio * cov[1, 1])
                if v >= 0:
                    rel_se = float(np.sqrt(v)) / abs(q0)
                    rel_lo, rel_hi = rel - z * rel_se, rel + z * rel_se
        return ResultRecord(
            metric=spec.metric, model=self.name, cell=cell, control=control, effect=effect, se=se,
            ci_low=ci_low, ci_high=ci_high, p_value=p_value, relative_effect=rel, relative_se=rel_se,
            relative_ci_low=rel_lo, relative_ci_high=rel_hi, n_cell=self.view.events(cell),
            n_control=self.view.events(control), mean_cell=q1, mean_control=q0, alpha=alpha, statistic=statistic,
            quantile=p, notes=notes,
        )
