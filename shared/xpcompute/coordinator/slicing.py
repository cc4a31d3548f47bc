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
  the (cell x every dimension) groups it contains. One slice job of an
  analysis compresses the table once by every dimension (a few thousand
  groups; stored at ``keys.cube``); every slice, live ones included, is then a
  filter and a re-aggregation of that small table, exact up to float rounding.
  Until the analysis's first slice is done, and while one job builds the cube
  (it claims it first: ``keys.cube_claim``), slice jobs compute straight from
  the table (the experiment's DuckDB SQL, else ``arrow``), so the first
  results never wait for a cube. Null dimension values are a group of their
  own in the cube (the C++ group-by alone would drop those users).

Either way the output is the moments schema the moments models read. Rank and
quantile models (``distribution``) and ``dte`` (``panel``) read a second
artifact per metric: ``slice_rows`` (the Arrow filter over the published
analysis table, or over the stage-1 user-by-day table for panels), then
``models.prepare``'s own compression for the fit's spec, so the service's fit
equals ``fit_table`` on the same rows. With cube moments, a metric with at most
N distinct values in the whole table (counts, days: its n-tile table is exact)
has a distribution cube too, grouped by (cell, every dimension, value), and
its slices are re-aggregated from it into the very table ``prepare`` makes
from the rows; continuous metrics, whose n-tile cuts depend on the slice, are
always compressed from the rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from xpcompute.columns import COVARIATE_RESIDUAL_SUFFIX, RESIDUAL_SUFFIX
from xpcompute.compression.distribution import at_most_distinct, compress_values, fit_keys, value_column
from xpcompute.compression.encode import is_categorical, numeric_column, require_columns
from xpcompute.compression.lossless import compress_moments
from xpcompute.compression.schema import COUNT_COLUMN, CompressedLayout, CompressedTable
from xpcompute.compression.transform import ColumnTransform, cached_transforms
from xpcompute.coordinator.lru import LRU
from xpcompute.coordinator.stored import decode_derived, encode_derived, note_healed
from xpcompute.errors import CorruptObjectError, InputError, MissingValuesError, NotFoundError
from xpcompute.experiment import ExperimentSpec
from xpcompute.lazy import lazy
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.pipeline.tables import PublishedTable, open_table
from xpcompute.spec import CompressSpec, FitSpec
from xpcompute.storage import keys
from xpcompute.storage.objects import ObjectStore

if TYPE_CHECKING:
    import pyarrow.compute as pc
else:  # loaded on first use: a fit decodes a stored slice with this module and computes nothing
    pc = lazy("pyarrow.compute")


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
        residual = spec.metric + RESIDUAL_SUFFIX  # a ratio's residual column, which stage 1 writes next to it
        if spec.denominator and residual in schema.names and residual not in continuous:
            continuous.insert(1, residual)
        residual = spec.metric + COVARIATE_RESIDUAL_SUFFIX  # and its CUPED covariates' ratio's
        if spec.denominator and spec.covariates and residual in schema.names and residual not in continuous:
            continuous.append(residual)
        for extra in (spec.segment, spec.time):
            if extra and extra not in keys_:
                keys_.append(extra)
    return keys_, metrics


_CACHE: LRU[tuple[str, str, tuple[str, ...]], pa.Table] = LRU(2)


def _read_cached(published: PublishedTable, columns: list[str]) -> pa.Table:
    """The published table's columns, kept for the next slice job in this (warm) process.

    A published run never changes (a new stage-1 run gets a new run id, and
    the key includes it), so the copy cannot go stale. Two entries are kept:
    a slice job reads one column set for its moments and another for its
    distribution or panel tables, and they should not evict each other.
    """
    key = (published.uri, published.run_id, tuple(columns))
    table = _CACHE.get(key)
    if table is None:
        schema = published.schema
        strings = [c for c in columns if c in schema.names and _is_string(schema.field(c).type)]
        table = published.read(columns, dictionary=strings)
        for name in strings:  # one chunk and one dictionary: a slice mask is then one lookup per column
            column = table.column(name).unify_dictionaries()
            table = table.set_column(table.schema.get_field_index(name), name, pa.chunked_array([column.combine_chunks()]))
        _CACHE.put(key, table)
    return table


def _is_string(type_: pa.DataType) -> bool:
    return bool(pa.types.is_string(type_) or pa.types.is_large_string(type_))


def compute_arrow(task: SliceTask, store: ObjectStore) -> CompressedTable:
    """Arrow filter + C++ group-by over the published analysis table in the object store."""
    needed = {task.treatment, *task.slice.columns()}
    for spec in task.specs:
        needed.update({spec.metric, *spec.covariates})
        needed.update(c for c in (spec.denominator, spec.segment, spec.time) if c)
        if spec.denominator:  # the ratio's residual columns, where the table has them (``compression_plan``)
            needed.update((spec.metric + RESIDUAL_SUFFIX, spec.metric + COVARIATE_RESIDUAL_SUFFIX))
    published = open_table(task.table_prefix, store)
    table = full = _read_cached(published, [c for c in sorted(needed) if c in published.schema.names])
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
    return compress_moments(table, group_keys, metrics, transforms=table_transforms(published, metrics, full))


def table_transforms(
    published: PublishedTable, metrics: dict[str, list[str]], table: pa.Table | None = None
) -> dict[str, ColumnTransform]:
    """The whole table's shift and scale of every metric and covariate (``compression/transform.py``).

    Computed from the whole published table, never from a slice, and cached per
    table run, so the Arrow, cube and SQL routes (``pipeline.stage2.table_transforms``
    uses the same key) compress every slice with the same constants. ``table``:
    the whole table's columns when already read.
    """
    columns = [*metrics, *(c for cs in metrics.values() for c in cs)]

    def read(names: list[str]) -> pa.Table:
        return table.select(names) if table is not None else published.read(names)

    return cached_transforms(f"{published.uri}@{published.run_id}", columns, read)


def cube_dimensions(task: SliceTask, schema: pa.Schema) -> list[str]:
    """The columns a cube is grouped by beyond the fit keys: the declared dimensions, else the slice's columns."""
    if task.experiment is not None:
        return [d for d in task.experiment.dimensions if d in schema.names]
    return task.slice.columns()


def reaggregate(cube: CompressedTable, slice_filter: SliceFilter, keys_: Sequence[str]) -> CompressedTable:
    """One slice of a cube: keep the groups the filter selects, sum their moments by ``keys_``."""
    values = [c for c in cube.table.column_names if c not in cube.layout.keys]
    grouped = _sum_slice(cube.table, slice_filter, keys_, values)
    n_rows = int(pc.sum(grouped.column(COUNT_COLUMN)).as_py() or 0)
    if n_rows == 0:
        raise InputError(f"slice {slice_filter.label()!r} is empty: no user matches it")
    dropped = {
        m: n_rows - int(pc.sum(grouped.column(layout.count_column())).as_py() or 0)
        for m, layout in cube.layout.metrics.items()
    }
    layout = CompressedLayout(
        kind="moments", keys=tuple(keys_), metrics=cube.layout.metrics, n_rows=n_rows, dropped=dropped,
        extra={**cube.layout.extra, "cube": True},
    )
    return CompressedTable(table=grouped, layout=layout)


def _sum_slice(table: pa.Table, slice_filter: SliceFilter, group: Sequence[str], sums: Sequence[str]) -> pa.Table:
    """The cube rows ``slice_filter`` selects, their ``sums`` columns summed by ``group`` (sorted by it)."""
    if not slice_filter.is_everyone:
        table = table.filter(slice_filter.to_arrow_mask(table))
    grouped = table.group_by(list(group)).aggregate([(c, "sum") for c in sums])
    grouped = grouped.rename_columns([c.removesuffix("_sum") if c.endswith("_sum") else c for c in grouped.column_names])
    return grouped.select([*group, *sums]).sort_by([(k, "ascending") for k in group])


#: a claim older than this is taken to be from a crashed job: the cube is then built anyway (put-if-absent)
CLAIM_STALE_S = 300.0
#: stands in for a null dimension value while a cube is grouped (the C++ group-by drops null keys)
_NULL_GROUP = "\x00null"


def _cube(
    store: ObjectStore,
    analysis_id: str,
    signature: str,
    build: Callable[[], CompressedTable | None],
    may_build: Callable[[], bool] = lambda: True,
) -> CompressedTable | None:
    """The stored cube, or build it here if no other job is building it; ``None`` means: compute without it.

    One slice job claims the cube (a put-if-absent marker) and builds it; the
    others compute their slices from the table meanwhile. ``may_build`` can
    hold the claim back (the moments cube waits for the analysis's first
    slice, so the first results never wait for a cube). A claim older than
    ``CLAIM_STALE_S`` (its job crashed) is ignored. ``build`` returning
    ``None`` means the cube does not apply (nothing is stored).
    """
    key = keys.cube(analysis_id, signature)
    if key in _CUBES:  # decoded here before, or found not to apply
        return _CUBES.get(key)
    try:
        return _CUBES.put(key, decode_derived(store, key))
    except NotFoundError:
        pass
    except CorruptObjectError as exc:
        # derived from the analysis table: rebuild it once, replace the damaged bytes, and say so
        log.warning("%s; rebuilding it from the analysis table", exc)
        cube = build()
        if cube is not None:
            store.put_bytes(key, encode_derived(cube))
        note_healed(key)
        return _CUBES.put(key, cube)
    if not may_build():
        return None
    claim = keys.cube_claim(analysis_id, signature)
    if not store.put_if_absent(claim, json.dumps({"at": time.time()}).encode()):
        try:
            claimed_at = float(json.loads(store.get_bytes(claim))["at"])
        except (NotFoundError, ValueError, KeyError, TypeError):
            claimed_at = 0.0
        if time.time() - claimed_at < CLAIM_STALE_S:
            return None
    cube = build()
    if cube is not None:
        store.put_if_absent(key, encode_derived(cube))
    # also a cube that does not apply (a continuous metric): it never will for this table, and asking again
    # would cost the next slice jobs the claim round-trips, and a rebuild check once the claim is stale
    return _CUBES.put(key, cube)


log = logging.getLogger(__name__)


#: cubes this (warm) worker decoded or found not to apply (``None``), by key: a stored cube never changes
#: (put-if-absent at a key that names the analysis and the cube's inputs), and every slice job reads the same few
_CUBES: LRU[str, CompressedTable | None] = LRU(16)


def _with_null_groups(table: pa.Table, dims: Sequence[str]) -> pa.Table:
    """String dimensions with nulls get a stand-in value so the cube keeps those users as a group of their own."""
    for name in dims:
        column = table.column(name)
        if column.null_count and pa.types.is_dictionary(column.type) and _is_string(column.type.value_type):
            column = column.cast(column.type.value_type)
        if column.null_count and _is_string(column.type):
            table = table.set_column(table.schema.get_field_index(name), name, pc.fill_null(column, _NULL_GROUP))
    return table


def _restore_nulls(cube: CompressedTable, dims: Sequence[str]) -> CompressedTable:
    """Turn the stand-in back into null, so a slice filter treats those groups as it treats null rows."""
    table = cube.table
    for name in dims:
        column = table.column(name)
        if _is_string(column.type):
            null = pa.scalar(None, column.type)
            table = table.set_column(
                table.schema.get_field_index(name), name, pc.if_else(pc.equal(column, _NULL_GROUP), null, column)
            )
    return CompressedTable(table=table, layout=cube.layout)


def _signature(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def compute_cube(task: SliceTask, store: ObjectStore, analysis_id: str) -> CompressedTable:
    """Re-aggregate this slice from the analysis's cube, building the cube first if no other job is."""
    published = open_table(task.table_prefix, store)
    group_keys, metrics = compression_plan(task.specs, published.schema)
    dims = [d for d in cube_dimensions(task, published.schema) if d not in group_keys]
    if task.experiment is not None:
        task.slice.check(task.experiment, published.schema)

    def build() -> CompressedTable:
        needed = sorted({*group_keys, *dims, *metrics, *(c for cs in metrics.values() for c in cs)})
        table = _with_null_groups(_read_cached(published, needed), dims)
        transforms = table_transforms(published, metrics, table)
        return _restore_nulls(compress_moments(table, [*group_keys, *dims], metrics, transforms=transforms), dims)

    def first_slice_done() -> bool:
        """Until a slice of the analysis is done, slices go straight to the table (a few seconds at 10M
        users each, against the cube's ten): the first results come sooner, and a one-slice analysis
        never builds a cube."""
        return any(keys.is_slice_table(analysis_id, k) for k in store.list(keys.analysis_slices(analysis_id)))

    signature = _signature("shifted", published.run_id, group_keys, dims, metrics)  # z-sums (transform.py)
    cube = _cube(store, analysis_id, signature, build, first_slice_done)
    if cube is None:  # not yet, or another job is building it: this slice straight from the table
        if _sql_serves(task, group_keys, metrics):
            return compute_pipeline(replace(task, engine="duckdb"), store)
        return compute_arrow(task, store)
    require_columns(cube.table, task.slice.columns(), "slice column")
    return reaggregate(cube, task.slice, group_keys)


def distribution_cube(
    task: SliceTask, store: ObjectStore, analysis_id: str, spec: FitSpec, table_key: str
) -> CompressedTable | None:
    """The exact distribution cube of ``spec.metric``, if it has one: ``None`` means compress the slice's rows.

    A metric with at most N distinct values over the whole table (counts,
    days, flags) has at most N in every slice, so ``ntile:N`` keeps every
    slice's values exact; the cube groups the table once by (fit keys, every
    dimension, value) and each slice sums its groups (``reaggregate_distribution``),
    which is the table ``compress_distribution`` makes from the slice's rows.
    A continuous metric has no such cube (its n-tile cuts depend on the slice).
    """
    if spec.compress.kind != "ntile" or spec.compress.buckets is None or spec.weights is not None:
        return None
    published = open_table(table_key, store)
    keys_ = fit_keys(spec)
    dims = [d for d in cube_dimensions(task, published.schema) if d not in keys_]
    buckets = spec.compress.buckets

    def build() -> CompressedTable | None:
        table = _read_cached(published, sorted({*keys_, *dims, spec.metric}))
        y = numeric_column(table, spec.metric, "metric")
        if not at_most_distinct(y[~np.isnan(y)], buckets):
            return None
        cube = compress_values(_with_null_groups(table, dims), spec.metric, [*keys_, *dims], compress=CompressSpec())
        return _restore_nulls(cube, dims)

    signature = _signature("distribution", published.run_id, spec.metric, keys_, dims, buckets)
    return _cube(store, analysis_id, signature, build)


def reaggregate_distribution(
    cube: CompressedTable, slice_filter: SliceFilter, keys_: Sequence[str], compress: CompressSpec, n_rows: int
) -> CompressedTable:
    """One slice of a distribution cube, laid out as ``compress_distribution`` lays out the slice's rows.

    ``n_rows`` is the slice's row count (the moments table's), so rows with a
    null metric are counted as dropped exactly as on the rows.
    """
    (metric, layout), = cube.layout.metrics.items()
    vcol = value_column(metric)
    group = [*keys_, vcol]
    grouped = _sum_slice(cube.table, slice_filter, group, [COUNT_COLUMN, *layout.columns])
    if grouped.num_rows == 0:
        raise MissingValuesError(
            f"metric {metric!r}: no row of slice {slice_filter.label()!r} has a non-null metric; check the slice"
        )
    kept = int(pc.sum(grouped.column(layout.count_column())).as_py() or 0)
    extra: dict[str, object] = {
        "compress": compress.label(), "value_column": vcol, "weights": None, "row_level": False, "lossy": False,
        "buckets": compress.buckets, "distinct_values": int(pc.count_distinct(grouped.column(vcol)).as_py()),
        "cube": True,
    }
    return CompressedTable(
        table=grouped,
        layout=CompressedLayout(
            kind="distribution", keys=tuple(group), metrics=cube.layout.metrics, n_rows=n_rows,
            dropped={metric: n_rows - kept}, extra=extra,
        ),
    )


def _sql_serves(task: SliceTask, group_keys: Sequence[str], metrics: dict[str, list[str]]) -> bool:
    """Whether the SQL stage 2 of the registered experiment holds every column this slice's fits read.

    It reads only the slice's columns, with the filter pushed into the Parquet
    scan: about 1 s at 10M users where the Arrow route first reads the whole
    table (5 s); so the slices computed while the cube is being built, which
    include the first results, go that way.
    """
    if task.experiment is None or list(group_keys) != [task.treatment] or task.treatment != "cell":
        return False
    return all(
        m in task.experiment.metrics and set(cols) <= set(task.experiment.compressed_covariates(m))
        for m, cols in metrics.items()
    )


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
        return with_caps([compute_arrow(task, store)], task, store)[0]
    if task.engine == "cube":
        return with_caps([compute_cube(task, store, analysis_id)], task, store)[0]
    return compute_pipeline(task, store)  # the SQL route records the caps itself


def with_caps(tables: Sequence[CompressedTable], task: SliceTask, store: ObjectStore) -> list[CompressedTable]:
    """Carry stage 1's outlier caps (from the table's manifest, read once) into each layout, as the SQL route
    does, so every fit says what its metric was capped at whichever route computed the slice."""
    from xpcompute.pipeline.stage2 import table_caps

    todo = [t for t in tables if "caps" not in t.layout.extra]
    if not todo:
        return list(tables)
    published = open_table(task.table_prefix, store)
    out = []
    for t in tables:
        caps = {} if "caps" in t.layout.extra else table_caps(published, list(t.layout.metrics))
        out.append(t if not caps else CompressedTable(table=t.table, layout=replace(
            t.layout, extra={**t.layout.extra, **caps})))
    return out


def moments_specs(specs: Sequence[FitSpec], metrics: Sequence[str]) -> tuple[FitSpec, ...]:
    """The fits the moments table serves, plus a plain one for each metric only other layouts read.

    Every metric keeps its moments (cell counts for the sample-ratio check,
    means in the scorecard) even when all its models read another layout.
    """
    from xpcompute.models.registry import model_class

    out = [s for s in specs if model_class(s.model).compression not in ("distribution", "panel", "events")]
    covered = {s.metric for s in out}
    # an event-level quantile metric has no analysis-table column (its rows are events: pipeline/events.py)
    covered |= {s.metric for s in specs if model_class(s.model).compression == "events"}
    treatment = specs[0].treatment if specs else "cell"
    out += [FitSpec(metric=m, treatment=treatment) for m in metrics if m not in covered]
    return tuple(out)


def slice_rows(
    table_key: str, store: ObjectStore, slice_filter: SliceFilter, columns: Sequence[str], dims: Sequence[str] = ()
) -> pa.Table:
    """The rows of the published table at ``table_key`` that ``slice_filter`` selects, with ``columns``.

    The table is read (and kept for the next job) with ``dims`` too, every
    column a slice may filter on, so that every slice of an analysis reuses one
    cached read instead of one read per combination of filter columns.
    """
    published = open_table(table_key, store)
    names = published.schema.names
    needed = sorted({*columns, *slice_filter.columns(), *(d for d in dims if d in names)})
    require_columns(published.schema.empty_table(), needed, f"column of {table_key}:")
    table = _read_cached(published, needed)
    if not slice_filter.is_everyone:
        # the filter columns serve the mask only: filtering just ``columns`` moves half the bytes at 10M rows
        mask = slice_filter.to_arrow_mask(table)
        table = table.select(list(dict.fromkeys(columns))).filter(mask)
    if table.num_rows == 0:
        raise InputError(f"slice {slice_filter.label()!r} is empty: no row of {table_key} matches it")
    return table


def _spec_columns(spec: FitSpec) -> list[str]:
    cols = [spec.treatment, spec.metric, *spec.covariates]
    cols += [c for c in (spec.segment, spec.time, spec.cluster, spec.weights) if c]
    return cols


def compute_artifacts(
    task: SliceTask,
    store: ObjectStore,
    specs: Sequence[FitSpec],
    layout: str,
    table_key: str,
    analysis_id: str | None = None,
    n_rows: int | None = None,
) -> tuple[dict[str, CompressedTable], dict[str, str]]:
    """The ``layout`` compression (``distribution`` or ``panel``) of each metric whose fits read it.

    One compression per metric, from the first of its fits with that layout
    (rank and quantile fits of one metric share keys and n-tiles). Given
    ``n_rows``, the slice's row count, because its moments came from the
    cube, a distribution table comes from the metric's distribution cube where
    it has one (built here if no other job is building it). The rest are
    compressed from the slice's rows, read once for all of them: so is every
    table of a slice computed from the rows while another job builds the
    moments cube, which keeps the first results from waiting on any cube.
    Returns the tables and, per metric, the reason a data problem
    (``InputError``) left it out, so one bad metric fails only its own fits.
    """
    from xpcompute.models import prepare
    from xpcompute.models.registry import model_class

    first: dict[str, FitSpec] = {}
    for s in specs:
        if model_class(s.model).compression == layout:
            first.setdefault(s.metric, s)
    tables: dict[str, CompressedTable] = {}
    errors: dict[str, str] = {}
    by_rows: dict[str, FitSpec] = {}
    for metric, spec in first.items():
        cube = None
        if layout == "distribution" and analysis_id is not None and n_rows is not None:
            try:
                cube = distribution_cube(task, store, analysis_id, spec, table_key)
                if cube is not None:
                    tables[metric] = _label(reaggregate_distribution(cube, task.slice, fit_keys(spec), spec.compress, n_rows), task)
            except InputError as exc:
                errors[metric] = f"{type(exc).__name__}: {exc}"
                continue
        if cube is None:
            by_rows[metric] = spec
    if not by_rows:
        return dict(zip(tables, with_caps(list(tables.values()), task, store), strict=True)), errors
    columns = list(dict.fromkeys(c for s in by_rows.values() for c in _spec_columns(s)))
    try:
        if layout == "distribution" and task.engine == "cube" and n_rows is None and task.experiment is not None:
            # the slice is computed straight from the table (no cube yet): let DuckDB scan just its rows
            from xpcompute.pipeline import stage2

            rows = stage2.slice_rows(table_key, task.experiment, task.slice, columns, "duckdb", store)
        else:
            dims = task.experiment.dimensions if task.experiment is not None else ()
            rows = slice_rows(table_key, store, task.slice, columns, dims)
    except (InputError, NotFoundError) as exc:
        errors.update({m: f"{type(exc).__name__}: {exc}" for m in by_rows})
        return tables, errors
    for metric, spec in by_rows.items():
        try:
            tables[metric] = _label(prepare(rows.select(list(dict.fromkeys(_spec_columns(spec)))), spec), task)
        except InputError as exc:
            errors[metric] = f"{type(exc).__name__}: {exc}"
    return dict(zip(tables, with_caps(list(tables.values()), task, store), strict=True)), errors


def _label(compressed: CompressedTable, task: SliceTask) -> CompressedTable:
    """Record the slice in the table's layout (the exported notebook shows it)."""
    extra = {**compressed.layout.extra, "slice": task.slice.label(), "slice_id": task.slice.slice_id}
    return CompressedTable(table=compressed.table, layout=replace(compressed.layout, extra=extra))


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
