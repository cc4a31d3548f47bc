"""Stage 2 for one slice job: filter the analysis table to the slice and compress it for the fits.

Two routes, chosen by ``XPCOMPUTE_SLICE_ENGINE`` (or the request's ``engine``):

* ``duckdb`` / ``spark`` / ``trino``: the pipeline's SQL stage 2
  (``xpcompute.pipeline.stage2.compute_slice``), for experiments with a
  registered spec;
* ``arrow``: in-process, for any Parquet analysis table in the object store:
  the slice filter evaluated by Arrow compute (values are Arrow literals, no
  SQL exists) and the C++ group-by (``compress_moments``). It needs no
  experiment spec, which makes it the route for ad-hoc tables and tests.
* ``cube``: compression first, taken one step further. Moments are sums, so
  the moments of any slice over the dimensions are the sums of the moments of
  the (cell x every dimension) groups it contains. The first slice job of an
  analysis compresses the table once by every dimension (a few thousand
  groups; stored at ``keys.cube``); every slice, live ones included, is then a
  filter and a re-aggregation of that small table, exact up to float rounding.

Either way the output is the moments schema the moments models read. Rank and
quantile models (``distribution``) and ``dte`` (``panel``) read a second
artifact per metric, built in-process from the slice's rows whatever the engine:
``slice_rows`` (the Arrow filter over the published analysis table, or over the
stage-1 user-by-day table for panels), then ``models.prepare``'s own
compression for the fit's spec, so the service's fit equals ``fit_table`` on the
same rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pyarrow as pa
import pyarrow.compute as pc

from xpcompute.compression.encode import is_categorical, require_columns
from xpcompute.compression.io import from_parquet_bytes, to_parquet_bytes
from xpcompute.compression.lossless import compress_moments
from xpcompute.compression.schema import COUNT_COLUMN, CompressedLayout, CompressedTable
from xpcompute.errors import InputError, NotFoundError
from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.pipeline.tables import PublishedTable, open_table
from xpcompute.spec import FitSpec
from xpcompute.storage import keys
from xpcompute.storage.objects import ObjectStore


@dataclass(frozen=True)
class SliceTask:
    """Everything one slice job needs, resolved from its job record and analysis."""

    experiment_id: str
    table_prefix: str
    slice: SliceFilter
    specs: tuple[FitSpec, ...]
    treatment: str
    experiment: ExperimentSpec | None
    engine: str


def compression_plan(specs: Sequence[FitSpec], schema: pa.Schema) -> tuple[list[str], dict[str, list[str]]]:
    """Group-by keys and per-metric continuous columns that serve every fit of the slice (as ``models.prepare``)."""
    treatment = specs[0].treatment
    keys_: list[str] = [treatment]
    metrics: dict[str, list[str]] = {}
    for spec in specs:
        require_columns(schema.empty_table(), [spec.metric, *spec.covariates], "column")
        continuous = metrics.setdefault(spec.metric, [])
        for cov in spec.covariates:
            if is_categorical(schema.field(cov).type):
                if cov not in keys_:
                    keys_.append(cov)
            elif cov not in continuous:
                continuous.append(cov)
        if spec.denominator and spec.denominator not in continuous:
            continuous.insert(0, spec.denominator)
        for extra in (spec.segment, spec.time):
            if extra and extra not in keys_:
                keys_.append(extra)
    return keys_, metrics


_CACHE: dict[tuple[str, str, tuple[str, ...]], pa.Table] = {}
_CACHE_ENTRIES = 2


def _read_cached(published: PublishedTable, columns: list[str]) -> pa.Table:
    """The published table's columns, kept for the next slice job in this (warm) process.

    A published run never changes (a new stage-1 run gets a new run id, and
    the key includes it), so the copy cannot go stale. Two entries are kept:
    a slice job reads one column set for its moments and another for its
    distribution or panel tables, and they should not evict each other.
    """
    key = (published.uri, published.run_id, tuple(columns))
    table = _CACHE.pop(key, None)
    if table is None:
        while len(_CACHE) >= _CACHE_ENTRIES:
            _CACHE.pop(next(iter(_CACHE)))  # least recently used first
        table = published.read(columns)
    _CACHE[key] = table
    return table


def compute_arrow(task: SliceTask, store: ObjectStore) -> CompressedTable:
    """Arrow filter + C++ group-by over the published analysis table in the object store."""
    needed = {task.treatment, *task.slice.columns()}
    for spec in task.specs:
        needed.update({spec.metric, *spec.covariates})
        needed.update(c for c in (spec.denominator, spec.segment, spec.time) if c)
    published = open_table(task.table_prefix, store)
    table = _read_cached(published, [c for c in sorted(needed) if c in published.schema.names])
    if task.experiment is not None:
        task.slice.check(task.experiment, table.schema)
    else:
        require_columns(table, task.slice.columns(), "slice column")
    require_columns(table, [task.treatment], "treatment column")
    if not task.slice.is_everyone:
        table = table.filter(task.slice.to_arrow_mask(table))
    if table.num_rows == 0:
        raise InputError(f"slice {task.slice.label()!r} is empty: no user matches it")
    group_keys, metrics = compression_plan(task.specs, table.schema)
    return compress_moments(table, group_keys, metrics)


def cube_dimensions(task: SliceTask, schema: pa.Schema) -> list[str]:
    """The columns a cube is grouped by beyond the fit keys: the declared dimensions, else the slice's columns."""
    if task.experiment is not None:
        return [d for d in task.experiment.dimensions if d in schema.names]
    return task.slice.columns()


def reaggregate(cube: CompressedTable, slice_filter: SliceFilter, keys_: Sequence[str]) -> CompressedTable:
    """One slice of a cube: keep the groups the filter selects, sum their moments by ``keys_``."""
    table = cube.table
    if not slice_filter.is_everyone:
        table = table.filter(slice_filter.to_arrow_mask(table))
    values = [c for c in table.column_names if c not in cube.layout.keys]
    n_rows = int(pc.sum(table.column(COUNT_COLUMN)).as_py() or 0)
    if n_rows == 0:
        raise InputError(f"slice {slice_filter.label()!r} is empty: no user matches it")
    grouped = table.group_by(list(keys_)).aggregate([(c, "sum") for c in values])
    grouped = grouped.rename_columns([c.removesuffix("_sum") if c.endswith("_sum") else c for c in grouped.column_names])
    grouped = grouped.select([*keys_, *values]).sort_by([(k, "ascending") for k in keys_])
    dropped = {
        m: n_rows - int(pc.sum(grouped.column(layout.count_column())).as_py() or 0)
        for m, layout in cube.layout.metrics.items()
    }
    layout = CompressedLayout(
        kind="moments", keys=tuple(keys_), metrics=cube.layout.metrics, n_rows=n_rows, dropped=dropped,
        extra={**cube.layout.extra, "cube": True},
    )
    return CompressedTable(table=grouped, layout=layout)


def compute_cube(task: SliceTask, store: ObjectStore, analysis_id: str) -> CompressedTable:
    """Build (once per analysis and dimension set) or read the cube, then re-aggregate this slice from it."""
    published = open_table(task.table_prefix, store)
    group_keys, metrics = compression_plan(task.specs, published.schema)
    dims = [d for d in cube_dimensions(task, published.schema) if d not in group_keys]
    signature = hashlib.sha256(
        json.dumps([published.run_id, group_keys, dims, metrics], sort_keys=True).encode()
    ).hexdigest()[:16]
    key = keys.cube(analysis_id, signature)
    try:
        cube = from_parquet_bytes(store.get_bytes(key))
    except NotFoundError:
        needed = sorted({*group_keys, *dims, *metrics, *(c for cs in metrics.values() for c in cs)})
        table = _read_cached(published, needed)
        if task.experiment is not None:
            task.slice.check(task.experiment, table.schema)
        cube = compress_moments(table, [*group_keys, *dims], metrics)
        store.put_if_absent(key, to_parquet_bytes(cube))
    require_columns(cube.table, task.slice.columns(), "slice column")
    return reaggregate(cube, task.slice, group_keys)


def compute_pipeline(task: SliceTask, store: ObjectStore) -> CompressedTable:
    """The pipeline's SQL stage 2 (DuckDB, Spark or Trino) for a registered experiment."""
    if task.experiment is None:
        raise InputError(
            f"engine {task.engine!r} needs the experiment spec of {task.experiment_id!r} in the object store "
            f"({keys.experiment_spec(task.experiment_id)}); register it, or use engine 'arrow' for an ad-hoc table"
        )
    from xpcompute.pipeline import stage2

    metrics = sorted({s.metric for s in task.specs})
    extra = sorted({c for s in task.specs for c in (s.segment, s.time) if c})
    result: CompressedTable = stage2.compute_slice(
        task.table_prefix, task.experiment, task.slice, metrics, keys=extra, engine=task.engine, store=store,
    )
    return result


def compute_slice(task: SliceTask, store: ObjectStore, analysis_id: str) -> CompressedTable:
    if task.engine == "arrow":
        return compute_arrow(task, store)
    if task.engine == "cube":
        if task.experiment is not None:
            task.slice.check(task.experiment)
        return compute_cube(task, store, analysis_id)
    return compute_pipeline(task, store)


def moments_specs(specs: Sequence[FitSpec], metrics: Sequence[str]) -> tuple[FitSpec, ...]:
    """The fits the moments table serves, plus a plain one for each metric only other layouts read.

    Every metric keeps its moments (cell counts for the sample-ratio check,
    means in the scorecard) even when all its models read another layout.
    """
    from xpcompute.models.registry import model_class

    out = [s for s in specs if model_class(s.model).compression not in ("distribution", "panel")]
    covered = {s.metric for s in out}
    treatment = specs[0].treatment if specs else "cell"
    out += [FitSpec(metric=m, treatment=treatment) for m in metrics if m not in covered]
    return tuple(out)


def slice_rows(table_key: str, store: ObjectStore, slice_filter: SliceFilter, columns: Sequence[str]) -> pa.Table:
    """The rows of the published table at ``table_key`` that ``slice_filter`` selects, with ``columns``."""
    published = open_table(table_key, store)
    needed = list(dict.fromkeys([*columns, *slice_filter.columns()]))
    require_columns(published.schema.empty_table(), needed, f"column of {table_key}:")
    table = _read_cached(published, needed)
    if not slice_filter.is_everyone:
        table = table.filter(slice_filter.to_arrow_mask(table))
    if table.num_rows == 0:
        raise InputError(f"slice {slice_filter.label()!r} is empty: no row of {table_key} matches it")
    return table


def _spec_columns(spec: FitSpec) -> list[str]:
    cols = [spec.treatment, spec.metric, *spec.covariates]
    cols += [c for c in (spec.segment, spec.time, spec.cluster, spec.weights) if c]
    return cols


def compute_artifacts(
    task: SliceTask, store: ObjectStore, specs: Sequence[FitSpec], layout: str, table_key: str,
) -> tuple[dict[str, CompressedTable], dict[str, str]]:
    """The ``layout`` compression (``distribution`` or ``panel``) of each metric whose fits read it.

    One compression per metric, from the first of its fits with that layout
    (rank and quantile fits of one metric share keys and n-tiles). Returns the
    tables and, per metric, the reason a data problem (``InputError``) left it
    out, so one bad metric fails only its own fits.
    """
    from xpcompute.models import prepare
    from xpcompute.models.registry import model_class

    first: dict[str, FitSpec] = {}
    for s in specs:
        if model_class(s.model).compression == layout:
            first.setdefault(s.metric, s)
    if not first:
        return {}, {}
    columns = list(dict.fromkeys(c for s in first.values() for c in _spec_columns(s)))
    try:
        rows = slice_rows(table_key, store, task.slice, columns)
    except (InputError, NotFoundError) as exc:
        return {}, {m: f"{type(exc).__name__}: {exc}" for m in first}
    tables: dict[str, CompressedTable] = {}
    errors: dict[str, str] = {}
    for metric, spec in first.items():
        try:
            compressed = prepare(rows.select(list(dict.fromkeys(_spec_columns(spec)))), spec)
        except InputError as exc:
            errors[metric] = f"{type(exc).__name__}: {exc}"
            continue
        extra = {**compressed.layout.extra, "slice": task.slice.label(), "slice_id": task.slice.slice_id}
        tables[metric] = CompressedTable(table=compressed.table, layout=replace(compressed.layout, extra=extra))
    return tables, errors


def cell_counts(compressed: CompressedTable, treatment: str) -> dict[str, float]:
    """Users per cell in a compressed slice (input to the sample-ratio check)."""
    if treatment not in compressed.table.column_names:
        return {}
    cells = compressed.table.column(treatment).to_pylist()
    counts = compressed.table.column(COUNT_COLUMN).to_pylist()
    out: dict[str, float] = {}
    for cell, n in zip(cells, counts, strict=True):
        out[str(cell)] = out.get(str(cell), 0.0) + float(n)
    return out
