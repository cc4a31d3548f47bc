"""Stage 2: one slice of the analysis table -> compressed sufficient statistics, on DuckDB, Spark or Trino.

``compute_slice`` is the entry point other modules call. It validates every
user-supplied name and value (``plan_slice``), renders ``sql.stage2``'s one
query in the engine's dialect, runs it, and shapes the result into exactly the
``CompressedTable`` that ``compression.lossless.compress_moments`` builds from
the same rows: same key columns and order, ``_n``, the monomial sums of each
metric, per-metric counts and ``dropped``, the layout in the Arrow metadata.

``precompute_slices`` compresses the experiment's common slices when an
analysis is created; ``live_slice`` serves any other slice on demand. Both
store the compressed Parquet next to the analysis table under a key that
names the analysis run, write it with put-if-absent (a duplicated request
does the work at most once per key), and return what is stored.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from xpcompute.compression.io import from_parquet_bytes, to_parquet_bytes
from xpcompute.compression.schema import COUNT_COLUMN, CompressedLayout, CompressedTable, MetricLayout
from xpcompute.compression.transform import ColumnTransform, cached_transforms, transforms_for
from xpcompute.errors import ColumnTypeError, InputError, MissingColumnError, UnsafeIdentifierError
from xpcompute.experiment import ExperimentSpec
from xpcompute.metrics import metric_names
from xpcompute.metrics.base import IDENTIFIER
from xpcompute.pipeline.engines import EngineLike, engine_scope
from xpcompute.pipeline.engines.base import ParquetFiles
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.pipeline.tables import PublishedTable, open_table
from xpcompute.sql import stage2 as q
from xpcompute.sql.dialects import render, table
from xpcompute.storage import keys as storage_keys
from xpcompute.storage.objects import ObjectStore, storage_errors

CELL = "cell"
ANALYSIS = "analysis"


@dataclass(frozen=True)
class SlicePlan:
    """A validated stage-2 request: group keys (cell first), metrics with covariates, and the filter."""

    slice: SliceFilter
    keys: tuple[str, ...]
    moments: tuple[q.MetricMoments, ...]

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(m.metric for m in self.moments)

    def query(self, table_ref: exp.Table) -> exp.Select:
        return q.slice_query(table_ref, self.keys, self.moments, self.slice.to_sql())


def plan_slice(
    experiment: ExperimentSpec,
    slice: SliceFilter,
    metrics: Sequence[str],
    keys: Sequence[str] = (),
    schema: pa.Schema | None = None,
    transforms: Mapping[str, ColumnTransform] | None = None,
) -> SlicePlan:
    """Check names against the spec (and types against ``schema``) before any SQL exists.

    ``transforms`` are the analysis table's per-column constants
    (``table_transforms``); without them the query sums the raw values.
    """
    if isinstance(metrics, str):
        raise InputError("metrics must be a list of metric names, e.g. ['streaming_hours']")
    if not metrics:
        raise InputError(f"name at least one metric; experiment {experiment.id!r} has: {', '.join(experiment.metrics)}")
    for m in metrics:
        if not isinstance(m, str) or not IDENTIFIER.match(m):
            raise UnsafeIdentifierError(
                f"metric name {m!r} is not a metric of experiment {experiment.id!r}; use one of: {', '.join(experiment.metrics)}"
            )
        if m not in experiment.metrics:
            hint = (
                "it is in the catalog but not in this experiment's spec; add it to metrics and re-run stage 1"
                if m in metric_names()
                else "no such metric"
            )
            raise InputError(f"unknown metric {m!r} for experiment {experiment.id!r} ({hint}); use one of: {', '.join(experiment.metrics)}")
    if len(set(metrics)) != len(metrics):
        raise InputError(f"metrics {list(metrics)} name a metric twice")
    group: list[str] = [CELL]
    for k in keys:
        if k == CELL:
            continue
        if not isinstance(k, str) or not IDENTIFIER.match(k) or k not in experiment.dimensions:
            raise UnsafeIdentifierError(
                f"group key {k!r} is not a declared dimension of experiment {experiment.id!r}; "
                f"use one of: {', '.join(experiment.dimensions) or '(none declared)'}"
            )
        if k in group:
            raise InputError(f"group key {k!r} is listed twice")
        group.append(k)
    moments = tuple(
        q.MetricMoments(m, cov, transforms_for(transforms, (m, *cov)) if transforms is not None else ())
        for m, cov in ((m, experiment.compressed_covariates(m)) for m in metrics)
    )
    slice.check(experiment, schema)
    if schema is not None:
        needed = list(dict.fromkeys([*group, *(v for mm in moments for v in mm.variables)]))
        missing = [c for c in needed if c not in schema.names]
        if missing:
            raise MissingColumnError(
                f"the analysis table has no column {', '.join(repr(c) for c in missing)}; it was built from another "
                "spec: re-run stage 1 with this experiment"
            )
        for mm in moments:
            for v in mm.variables:
                t = schema.field(v).type
                if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t)):
                    role = "metric" if v == mm.metric else f"covariate of {mm.metric}"
                    raise ColumnTypeError(f"{role} column {v!r} has type {t} in the analysis table; it must be numeric")
    return SlicePlan(slice=slice, keys=tuple(group), moments=moments)


def slice_sql(
    experiment: ExperimentSpec,
    slice: SliceFilter,
    metrics: Sequence[str],
    keys: Sequence[str] = (),
    dialect: str = "duckdb",
    table_name: str = ANALYSIS,
    pretty: bool = True,
) -> str:
    """The stage-2 query as text, without running it (golden files, notebooks, Trino consoles)."""
    plan = plan_slice(experiment, slice, metrics, keys)
    return render(plan.query(table(table_name)), dialect, pretty=pretty)


def distribution_sql(
    experiment: ExperimentSpec,
    slice: SliceFilter,
    metric: str,
    keys: Sequence[str] = (),
    dialect: str = "duckdb",
    table_name: str = ANALYSIS,
    pretty: bool = True,
) -> str:
    """The distribution query (``compute_distribution``) as text, without running it."""
    from xpcompute.compression.distribution import value_column

    plan = plan_slice(experiment, slice, [metric], keys)
    query = q.distribution_query(table(table_name), plan.keys, metric, value_column(metric), plan.slice.to_sql())
    return render(query, dialect, pretty=pretty)


def compute_slice(
    analysis_table_uri_or_path: str | PublishedTable,
    experiment: ExperimentSpec,
    slice: SliceFilter,
    metrics: list[str],
    keys: list[str] | None = None,
    engine: EngineLike = "duckdb",
    store: ObjectStore | None = None,
    transforms: Mapping[str, ColumnTransform] | None = None,
) -> CompressedTable:
    """Compress one slice of a published analysis table into the moments schema.

    ``analysis_table_uri_or_path`` is a local path, an ``s3://`` URI, a key in
    ``store``, or an open ``PublishedTable``. ``keys`` are extra discrete group
    keys (declared dimensions) after the cell. ``transforms`` are the table's
    per-column constants; by default ``table_transforms`` computes them from
    the whole table (once per process and table run), so every slice of the
    table, and the cube and Arrow routes, hold the same shifted sums.
    """
    published = open_table(analysis_table_uri_or_path, store)
    schema = published.schema
    plan = plan_slice(experiment, slice, metrics, keys or [], schema)
    if transforms is None:
        transforms = table_transforms(published, [v for m in plan.moments for v in m.variables])
    plan = plan_slice(experiment, slice, metrics, keys or [], schema, transforms)
    files = ParquetFiles(published.filesystem(), tuple(published.paths()), published.uri, schema)
    with engine_scope(engine) as eng:
        eng.register(ANALYSIS, files)
        sql = render(plan.query(eng.table_ref(ANALYSIS)), eng.dialect.name)
        raw = eng.fetch(sql)
        engine_name = eng.dialect.name
    return shape_result(raw, plan, schema, {"engine": engine_name, "analysis_run": published.run_id,
                                            **table_caps(published, metrics)})


def table_caps(published: PublishedTable, metrics: Sequence[str]) -> dict[str, object]:
    """``{"caps": {metric: limits}}`` for the capped ones of ``metrics`` (stage 1's manifest), else nothing.

    The compressed layout's metadata carries them so every fit of the slice can say what its metric was capped at.
    """
    caps = published.manifest.get("caps") or {}
    chosen = {m: caps[m] for m in metrics if m in caps}
    return {"caps": chosen} if chosen else {}


def table_transforms(published: PublishedTable, columns: Sequence[str]) -> dict[str, ColumnTransform]:
    """The per-column shift and scale of the whole published table (see ``compression/transform.py``).

    Fixed once per table run: every slice job of every route uses these, so
    compressed slices are identical across routes and comparable to each other.
    """
    def read(names: list[str]) -> pa.Table:
        ranges = footer_ranges(published, names)
        if ranges is not None:
            return ranges
        return published.read(names)

    return cached_transforms(f"{published.uri}@{published.run_id}", columns, read)


def footer_ranges(published: PublishedTable, names: Sequence[str]) -> pa.Table | None:
    """Each column's minimum and maximum from the Parquet footers' statistics, as a two-row table; ``None``
    when any row group lacks them (the caller then reads the column).

    The transform depends on the column's finite minimum and maximum only, and
    footer statistics are those exact values (NaN and nulls are not counted in
    them), so this gives the same constants as a pass over the data for the
    price of reading the footers: at 10M users that is milliseconds instead of
    one column read per metric on every cold worker. Infinite values show up
    as an infinite bound, which the transform refuses like a data pass does.
    """
    import pyarrow.parquet as pq

    fs = published.filesystem()
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    for path in published.paths():
        with storage_errors(f"reading {published.uri}"), fs.open_input_file(path) as handle:
            meta = pq.ParquetFile(handle).metadata
        arrow_schema = meta.schema.to_arrow_schema()
        for name in names:
            index = arrow_schema.get_field_index(name)
            type_ = arrow_schema.field(name).type if index >= 0 else None
            if type_ is None or not (pa.types.is_integer(type_) or pa.types.is_floating(type_)):
                return None
            for g in range(meta.num_row_groups):
                column = meta.row_group(g).column(index)
                stats = column.statistics
                if stats is None or not stats.has_min_max:
                    if column.num_values and (stats is None or stats.null_count != column.num_values):
                        return None
                    continue  # an all-null row group adds nothing to the range
                lo, hi = float(stats.min), float(stats.max)
                if lo != lo or hi != hi:  # a writer that counted NaN: let the data pass decide
                    return None
                low[name] = min(low.get(name, lo), lo)
                high[name] = max(high.get(name, hi), hi)
    nan = float("nan")
    return pa.table({n: pa.array([low.get(n, nan), high.get(n, nan)], pa.float64()) for n in names})


def slice_rows(
    analysis_table_uri_or_path: str | PublishedTable,
    experiment: ExperimentSpec,
    slice: SliceFilter,
    columns: Sequence[str],
    engine: EngineLike = "duckdb",
    store: ObjectStore | None = None,
) -> pa.Table:
    """The rows of one slice, with ``columns`` only: ``SELECT columns FROM analysis WHERE <slice>``.

    For compressions that need the rows (n-tiles of a continuous metric): the
    engine pushes the filter and the projection into the Parquet scan, so a
    small slice of a 10M-row table costs a fraction of reading the table.
    Rows come back in no particular order.
    """
    published = open_table(analysis_table_uri_or_path, store)
    schema = published.schema
    slice.check(experiment, schema)
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise MissingColumnError(f"the analysis table has no column {', '.join(repr(c) for c in missing)}; re-run stage 1")
    files = ParquetFiles(published.filesystem(), tuple(published.paths()), published.uri, schema)
    with engine_scope(engine) as eng:
        eng.register(ANALYSIS, files)
        query = exp.select(*[exp.column(c) for c in dict.fromkeys(columns)]).from_(eng.table_ref(ANALYSIS))
        predicate = slice.to_sql()
        if predicate is not None:
            query = query.where(predicate)
        rows = eng.fetch(render(query, eng.dialect.name))
    if rows.num_rows == 0:
        raise InputError(f"slice {slice.label()!r} matches no users in the analysis table")
    return rows


def shape_result(raw: pa.Table, plan: SlicePlan, schema: pa.Schema, extra: dict[str, object] | None = None) -> CompressedTable:
    """Engine rows -> the ``compress_moments`` table: drop null-key and value-less groups, sort, type, lay out."""
    layouts = {m.metric: MetricLayout.build(m.metric, m.covariates, m.transforms) for m in plan.moments}
    columns = [*plan.keys, COUNT_COLUMN, *(c for lay in layouts.values() for c in lay.columns)]
    missing = [c for c in columns if c not in raw.column_names]
    if missing:
        raise InputError(f"the engine returned no column {missing}; the query and the result disagree")
    arrays: dict[str, pa.Array] = {}
    for k in plan.keys:
        arrays[k] = pc.cast(raw.column(k), schema.field(k).type)
    for c in columns[len(plan.keys):]:
        arrays[c] = pc.cast(raw.column(c), pa.float64())
    table_all = pa.table(arrays)
    n_rows = round(float(pc.sum(table_all.column(COUNT_COLUMN)).as_py() or 0))
    if n_rows == 0:
        raise InputError(
            f"slice {plan.slice.label()!r} matches no users in the analysis table; "
            "check the filter values (a value must match exactly, e.g. 'US' not 'us')"
        )
    keep = np.ones(table_all.num_rows, dtype=bool)
    for k in plan.keys:
        keep &= np.asarray(pc.is_valid(table_all.column(k)).to_numpy(zero_copy_only=False))
    has_value = np.zeros(table_all.num_rows, dtype=bool)
    for lay in layouts.values():
        has_value |= np.asarray(table_all.column(lay.count_column()).to_numpy()) > 0
    keep &= has_value
    kept = table_all.filter(pa.array(keep))
    if kept.num_rows == 0:
        raise InputError(
            f"slice {plan.slice.label()!r} has {n_rows} users but none with a value for {', '.join(layouts)} "
            "and non-null keys; choose other metrics or keys"
        )
    kept = kept.sort_by([(k, "ascending") for k in plan.keys]).combine_chunks()
    dropped = {m: n_rows - round(float(pc.sum(kept.column(lay.count_column())).as_py())) for m, lay in layouts.items()}
    layout = CompressedLayout(
        kind="moments",
        keys=plan.keys,
        metrics=layouts,
        n_rows=n_rows,
        dropped=dropped,
        extra={"row_level": False, "weights": None, "slice": plan.slice.label(), "slice_id": plan.slice.slice_id,
               **(extra or {})},
    )
    return CompressedTable(table=kept, layout=layout)


# ----------------------------------------------------------------------------- distributions (rank and quantile models)


def compute_distribution(
    analysis_table_uri_or_path: str | PublishedTable,
    experiment: ExperimentSpec,
    slice: SliceFilter,
    metric: str,
    keys: list[str] | None = None,
    engine: EngineLike = "duckdb",
    store: ObjectStore | None = None,
) -> CompressedTable:
    """One slice of one metric grouped by its exact value: what Mann-Whitney and quantile models read.

    The moments schema cannot answer rank or quantile questions, so metrics
    that declare those models need this second query; it returns exactly
    ``compression.distribution.compress_values(rows, metric, ["cell", *keys])``
    (lossless), a table of kind ``"distribution"``.
    """
    from xpcompute.compression.distribution import value_column

    published = open_table(analysis_table_uri_or_path, store)
    schema = published.schema
    plan = plan_slice(experiment, slice, [metric], keys or [], schema)
    vcol = value_column(metric)
    files = ParquetFiles(published.filesystem(), tuple(published.paths()), published.uri, schema)
    with engine_scope(engine) as eng:
        eng.register(ANALYSIS, files)
        sql = render(q.distribution_query(eng.table_ref(ANALYSIS), plan.keys, metric, vcol, plan.slice.to_sql()), eng.dialect.name)
        raw = eng.fetch(sql)
    layout_metric = MetricLayout.build(metric)
    arrays: dict[str, pa.Array] = {k: pc.cast(raw.column(k), schema.field(k).type) for k in plan.keys}
    arrays[vcol] = pc.cast(raw.column(vcol), pa.float64())
    for c in (COUNT_COLUMN, *layout_metric.columns):
        arrays[c] = pc.cast(raw.column(c), pa.float64())
    table_all = pa.table(arrays)
    n_rows = round(float(pc.sum(table_all.column(COUNT_COLUMN)).as_py() or 0))
    if n_rows == 0:
        raise InputError(f"slice {plan.slice.label()!r} matches no users in the analysis table; check the filter values")
    has_value = pc.is_valid(table_all.column(vcol))
    distinct = len(pc.unique(table_all.filter(has_value).column(vcol)))
    keep: Any = has_value
    for k in plan.keys:
        keep = pc.and_(keep, pc.is_valid(table_all.column(k)))
    kept = table_all.filter(keep)
    if kept.num_rows == 0:
        raise InputError(f"metric {metric!r} has no value in slice {plan.slice.label()!r}")
    kept = kept.sort_by([(k, "ascending") for k in (*plan.keys, vcol)]).combine_chunks()
    kept = kept.set_column(kept.column_names.index(COUNT_COLUMN), COUNT_COLUMN, kept.column(layout_metric.count_column()))
    counted = round(float(pc.sum(kept.column(COUNT_COLUMN)).as_py()))
    layout = CompressedLayout(
        kind="distribution",
        keys=(*plan.keys, vcol),
        metrics={metric: layout_metric},
        n_rows=n_rows,
        dropped={metric: n_rows - counted},
        extra={
            "compress": "lossless", "value_column": vcol, "weights": None, "row_level": False, "lossy": False,
            "distinct_values": distinct, "slice": plan.slice.label(), "slice_id": plan.slice.slice_id,
            "engine": eng.dialect.name, "analysis_run": published.run_id, **table_caps(published, [metric]),
        },
    )
    return CompressedTable(table=kept, layout=layout)


# ----------------------------------------------------------------------------- pre-compute and live compute


@dataclass(frozen=True)
class StoredSlice:
    """A compressed slice and where it is stored; ``cached`` when it was already there."""

    slice: SliceFilter
    store: ObjectStore
    key: str
    uri: str
    compressed: CompressedTable
    cached: bool


def slice_key(published: PublishedTable, experiment: ExperimentSpec, slice: SliceFilter, metrics: Sequence[str], keys: Sequence[str]) -> str:
    """Where a compressed slice of this analysis run lives (next to the analysis table)."""
    covs = {m: experiment.compressed_covariates(m) for m in metrics}
    signature = storage_keys.slice_signature(metrics, [CELL, *[k for k in keys if k != CELL]], covs)
    return storage_keys.compressed_slice(published.key, published.run_id, slice.slice_id, signature)


def live_slice(
    analysis_table_uri_or_path: str | PublishedTable,
    experiment: ExperimentSpec,
    slice: SliceFilter,
    metrics: list[str] | None = None,
    keys: list[str] | None = None,
    engine: EngineLike = "duckdb",
    store: ObjectStore | None = None,
) -> StoredSlice:
    """Serve a slice on demand: the stored one if this analysis run has it, else compute and store it."""
    published = open_table(analysis_table_uri_or_path, store)
    chosen = list(metrics or experiment.metrics)
    plan_slice(experiment, slice, chosen, keys or [], published.schema)
    key = slice_key(published, experiment, slice, chosen, keys or [])
    out = published.store
    if out.exists(key):
        return StoredSlice(slice, out, key, out.uri_for(key), from_parquet_bytes(out.get_bytes(key)), cached=True)
    compressed = compute_slice(published, experiment, slice, chosen, keys, engine)
    if not out.put_if_absent(key, to_parquet_bytes(compressed)):
        return StoredSlice(slice, out, key, out.uri_for(key), from_parquet_bytes(out.get_bytes(key)), cached=True)
    return StoredSlice(slice, out, key, out.uri_for(key), compressed, cached=False)


def precompute_slices(
    analysis_table_uri_or_path: str | PublishedTable,
    experiment: ExperimentSpec,
    slices: Sequence[SliceFilter] | None = None,
    metrics: list[str] | None = None,
    keys: list[str] | None = None,
    engine: EngineLike = "duckdb",
    store: ObjectStore | None = None,
) -> list[StoredSlice]:
    """Compress the experiment's ``precompute`` slices (or ``slices``) on one engine, storing each."""
    published = open_table(analysis_table_uri_or_path, store)
    chosen = list(slices if slices is not None else experiment.precompute)
    with engine_scope(engine) as eng:
        return [live_slice(published, experiment, s, metrics, keys, eng) for s in chosen]


def common_slices(experiment: ExperimentSpec, dimensions: Sequence[str] | None = None) -> list[SliceFilter]:
    """All users plus one slice per declared value of each dimension (those with a closed value set)."""
    from xpcompute.metrics import get_dimension

    out = [SliceFilter.everyone()]
    for name in dimensions if dimensions is not None else experiment.dimensions:
        if name not in experiment.dimensions:
            raise UnsafeIdentifierError(f"{name!r} is not a declared dimension of experiment {experiment.id!r}")
        values = get_dimension(name).values
        out += [SliceFilter.where(**{name: v}) for v in values or ()]
    return out


def read_slice(store: ObjectStore, key: str) -> CompressedTable:
    """A stored compressed slice (what the fit function reads)."""
    return from_parquet_bytes(store.get_bytes(key))


def slice_folder(published: PublishedTable) -> str:
    """The key prefix under which slices of ``published`` are stored."""
    return posixpath.join(posixpath.dirname(published.key), "slices", published.run_id)

