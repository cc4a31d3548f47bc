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
            # in the stored units z = (y - shift) / scale, where the sums keep their digits at any location;
            # the variance scales by scale**2 and the mean is shifted back
            t = data.y_transform
            z1, z2 = float(data.sum_z[sel].sum()), float(data.sum_z2[sel].sum())
            zmean = z1 / n
            mean = t.shift + t.scale * zmean
            zvar = max(z2 - n * zmean * zmean, 0.0) / (n - 1) if n > 1 else None
            var = None if zvar is None else zvar * t.scale * t.scale
            out.append(
                CellSummary(
                    metric=data.spec.metric, cell=cell, count=n, mean=mean, variance=var,
                    segment=group.segment, time=group.time,
                )
            )
    return out


