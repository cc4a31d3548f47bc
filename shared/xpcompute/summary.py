"""Per-cell summary statistics (count, mean, variance, quantiles) straight from compressed data."""

from __future__ import annotations

from xpcompute.models.data import ModelData, subgroups
from xpcompute.records import CellSummary


def cell_summaries(data: ModelData) -> list[CellSummary]:
    """Count, mean and unbiased variance of the metric per cell, overall and per segment/period.

    Distribution tables (rank and quantile models) also give the quantiles of
    ``spec.quantiles``; panel tables summarise the user-period rows.
    """
    if data.compressed.layout.kind == "distribution":
        from xpcompute.models.quantile import distribution_summaries

        return distribution_summaries(data)
    out: list[CellSummary] = []
    for group in subgroups(data):
        for cell in data.cells:
            sel = group.mask & (data.cell_labels == cell)
            n = float(data.n[sel].sum())
            if n <= 0:
                continue
            s1, s2 = float(data.sum_y[sel].sum()), float(data.sum_y2[sel].sum())
            mean = s1 / n
            var = max(s2 - n * mean * mean, 0.0) / (n - 1) if n > 1 else None
            out.append(
                CellSummary(
                    metric=data.spec.metric, cell=cell, count=n, mean=mean, variance=var,
                    segment=group.segment, time=group.time,
                )
            )
    return out


