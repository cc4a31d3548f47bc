"""One point of entry: Arrow rows (or a compressed table) plus a ``FitSpec`` in, result records out.

Each step is a public function so a notebook can stop anywhere and look:
``prepare`` (compress the rows the way the model needs), ``model_data``
(attach roles), ``fit_compressed`` (train + estimate), ``fit_table`` (all).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from xpcompute.columns import COVARIATE_RESIDUAL_SUFFIX, RESIDUAL_SUFFIX, residual_coefficient
from xpcompute.compression.encode import is_categorical, numeric_column, require_columns
from xpcompute.compression.lossless import compress_moments
from xpcompute.compression.schema import CompressedTable
from xpcompute.compression.transform import column_transforms
from xpcompute.errors import InputError, MissingValuesError, ZeroVarianceError
from xpcompute.metrics.base import cap_note
from xpcompute.models.data import ModelData
from xpcompute.models.registry import model_class
from xpcompute.records import ResultRecord
from xpcompute.spec import FitSpec


@dataclass(frozen=True)
class FitOutput:
    """Records plus what produced them (for introspection and reproducibility)."""

    records: list[ResultRecord]
    compressed: CompressedTable
    spec: FitSpec


def split_covariates(table: pa.Table, spec: FitSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Covariates by type: string/dictionary/bool are discrete (dummy-coded), numeric are continuous."""
    require_columns(table, list(spec.covariates), "covariate")
    discrete = tuple(c for c in spec.covariates if is_categorical(table.schema.field(c).type))
    continuous = tuple(c for c in spec.covariates if c not in discrete)
    return discrete, continuous


def prepare(table: pa.Table, spec: FitSpec) -> CompressedTable:
    """Compress raw rows into the schema the spec's model reads."""
    require_columns(table, [spec.metric, spec.treatment], "column")
    kind = model_class(spec.model).compression
    if kind == "panel":
        from xpcompute.compression import panel

        return panel.compress_panel(table, spec)
    if kind == "distribution":
        from xpcompute.compression import distribution

        return distribution.compress_distribution(table, spec)
    if kind == "events":  # raw event rows: the unit id is the cluster column (compression/events.py)
        from xpcompute.compression import events

        if not spec.cluster:
            raise InputError(f"model {spec.model!r} reads one row per event; name the unit id column (--cluster COL)")
        return events.compress_events(table, spec.metric, spec.cluster, spec.treatment)
    if spec.compress.kind == "ntile":
        raise InputError(
            f"ntile compression is lossy and only applies to rank and quantile models; model {spec.model!r} "
            "needs --compress lossless or none"
        )
    discrete, continuous = split_covariates(table, spec)
    if spec.model == "ratio":  # the denominator first, the residual, then the parts' covariates (CUPED)
        assert spec.denominator is not None
        table = with_residual(table, spec.metric, spec.denominator)
        continuous = (spec.denominator, residual_name(spec.metric), *spec.covariates)
        if len(spec.covariates) == 2:  # CUPED: the covariates' ratio gets its residual column too
            table = with_residual(table, spec.covariates[0], spec.covariates[1], spec.metric + COVARIATE_RESIDUAL_SUFFIX)
            continuous = (*continuous, spec.metric + COVARIATE_RESIDUAL_SUFFIX)
    keys = [spec.treatment, *discrete]
    for extra in (spec.segment, spec.time):
        if extra and extra not in keys:
            keys.append(extra)
    # the rows given are the whole table here: its own constants keep the sums precise (transform.py)
    transforms = {**column_transforms(table, continuous, "covariate"), **column_transforms(table, [spec.metric], "metric")}
    return compress_moments(
        table,
        keys,
        {spec.metric: continuous},
        weights=spec.weights,
        row_level=spec.compress.kind == "none",
        transforms=transforms,
    )


def residual_name(metric: str) -> str:
    """The residual column of a ratio whose numerator is ``metric`` (``columns.RESIDUAL_SUFFIX``)."""
    return metric + RESIDUAL_SUFFIX


def with_residual(table: pa.Table, numerator: str, denominator: str, name: str | None = None) -> pa.Table:
    """``table`` with the ratio's residual column ``name`` (default ``residual_name(numerator)``) =
    ``numerator - c * denominator`` (NULL where either is), as stage 1 writes it
    (``columns.residual_coefficient``: ``c`` from exact sums here); kept if present."""
    name = name or residual_name(numerator)
    if name in table.schema.names:
        return table
    require_columns(table, [numerator, denominator], "column")
    y = numeric_column(table, numerator, "metric")
    d = numeric_column(table, denominator, "denominator")
    both = np.isfinite(y) & np.isfinite(d)
    yb, db = y[both], d[both]
    c = residual_coefficient(math.fsum(yb), math.fsum(db), float(np.abs(yb).max(initial=0.0)),
                             float(np.abs(db).max(initial=0.0)))
    residual = np.where(both, y - c * d, np.nan)
    return table.append_column(name, pa.array(residual, mask=~both))


def model_data(compressed: CompressedTable, spec: FitSpec) -> ModelData:
    """Attach roles: which keys are discrete covariates, which moment variables are continuous."""
    keys = set(compressed.layout.keys)
    discrete = tuple(c for c in spec.covariates if c in keys and c not in (spec.treatment, spec.segment, spec.time))
    layout = compressed.layout.metrics.get(spec.metric)
    continuous = layout.covariates if layout is not None else ()
    return ModelData(compressed=compressed, spec=spec, discrete=discrete, continuous=continuous)


def check_missing(compressed: CompressedTable, spec: FitSpec) -> list[str]:
    """Apply the null policy: refuse, or report how many rows were dropped."""
    dropped = compressed.layout.dropped.get(spec.metric, 0)
    if not dropped:
        return []
    if spec.null_policy == "refuse":
        raise MissingValuesError(
            f"metric {spec.metric!r}: {dropped} rows have a missing metric, covariate, key or weight; "
            "fill or filter them, or set null_policy='drop'"
        )
    return [f"dropped {dropped} of {compressed.layout.n_rows} rows with missing values"]


def check_variance(data: ModelData) -> None:
    """Refuse a metric that does not vary within any cell: no test is possible.

    Read on the stored sums of ``z = (y - shift) / scale``: a within-cell sum
    of squares is zero when it is within rounding (1e-12) of ``sum z^2``,
    whatever the location and magnitude of ``y``.
    """
    if data.compressed.layout.kind != "moments":
        return
    labels = data.cell_labels
    for cell in data.cells:
        sel = labels == cell
        n = data.n[sel].sum()
        if n > 1:
            s1, s2 = float(data.sum_z[sel].sum()), float(data.sum_z2[sel].sum())
            if s2 - s1 * (s1 / n) > 1e-12 * s2:
                return
    raise ZeroVarianceError(
        f"metric {data.spec.metric!r} has zero variance within every cell; there is nothing to test "
        "(check the metric definition or the slice)"
    )


def fit_compressed(compressed: CompressedTable, spec: FitSpec) -> list[ResultRecord]:
    """Train the spec's model on compressed data and return its records."""
    notes = check_missing(compressed, spec)
    limits = (compressed.layout.extra.get("caps") or {}).get(spec.metric)
    if limits:  # capped in stage 1: every record says at what (metrics.base.cap_note)
        notes.append(cap_note(spec.metric, limits))
    data = model_data(compressed, spec)
    check_variance(data)
    model = model_class(spec.model)()
    records = model.estimate(data)
    if notes:
        records = [r.model_copy(update={"notes": [*notes, *r.notes]}) for r in records]
    return records


def fit_table(table: pa.Table | pa.RecordBatch, spec: FitSpec) -> FitOutput:
    """Compress, fit and estimate in one call."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    compressed = prepare(table, spec)
    return FitOutput(records=fit_compressed(compressed, spec), compressed=compressed, spec=spec)


