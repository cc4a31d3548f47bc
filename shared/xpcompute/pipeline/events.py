"""Event-level quantile metrics in the pipeline: stage 1 publishes their events tables, stage 2 compresses a slice.

Stage 1 (``publish_event_tables``, called by ``pipeline/stage1.run_stage1`` on DuckDB or Spark): one events table
per event-quantile metric at ``keys.events_table(experiment, metric)`` (``sql/events.events_plan``), published
atomically like the analysis table. ``check_event_sources`` (called by ``check_sources``) refuses a missing
column, a time column that is not a date or timestamp and a value column that is not numeric, naming them.

Stage 2 (``event_histogram``, from the slice job), on DuckDB (``sql/events``): the pooled bucket edges from the
events of the first clusters (whole units, cells together, at least ``EDGE_SAMPLE`` events: deterministic,
never dependent on treatment); then one scan streams every event's cell index and unit cluster (stage 1's
int16 columns ``_xp_cell``, ``_xp_cluster``: ``sql/events.CLUSTER_RULE``) and value, filtered by the slice, in
Arrow batches into ``compression.events.EventHistogram``: one multi-threaded C++ pass per batch
(``native.event_histogram``: bucket by a guide on the doubles' bit patterns, exact; counts per (cell, cluster,
bucket), value ranges per (cell, bucket)), while a second thread has DuckDB decode the next batch. A second
route does the bucketing and counting in SQL (``route="sql"``: a guide table joined on a log-like grid cell,
then checked; ``sql/events.histogram_query``); both give the same table
(tests/pipeline/test_event_histogram_routes.py). The result is the ``events`` compressed table the
``event_quantile`` model reads.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xpcompute.compression.events import (
    EDGE_SAMPLE,
    EVENT_BUCKETS,
    EVENT_CLUSTERS,
    EXTRA_KEY,
    EventHistogram,
    Guide,
    bucket_edges,
    buckets_hold_their_values,
    histogram_table,
)
from xpcompute.compression.schema import CompressedTable
from xpcompute.errors import ColumnTypeError, InputError, MissingColumnError, NotFoundError
from xpcompute.experiment import ExperimentSpec
from xpcompute.metrics.events import EventQuantileMetric, event_metrics
from xpcompute.pipeline.engines import engine_scope
from xpcompute.pipeline.engines.base import ParquetFiles
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.pipeline.tables import PublishedTable, open_table
from xpcompute.sql import events as q
from xpcompute.sql.dialects import render
from xpcompute.storage import keys
from xpcompute.storage.objects import ObjectStore

if TYPE_CHECKING:
    from xpcompute.pipeline.engines.base import Engine
    from xpcompute.sql.stage1 import TimeKind

EVENTS = "events"
#: Rows per Arrow batch of the stage-2 scan.
BATCH_ROWS = 4_000_000


def check_event_sources(experiment: ExperimentSpec, schemas: Mapping[str, pa.Schema], uris: Mapping[str, str]) -> None:
    """Every column an event-quantile metric reads exists; its time column is a date/timestamp; a plain-column
    value is numeric."""
    for metric in event_metrics(experiment):
        source = metric.source
        spec = experiment.sources[source]
        schema = schemas[source]
        needed = {spec.user_column, spec.date_column}
        for expr in (metric.value(), metric.condition()):
            if expr is not None:
                needed |= {c.name for c in expr.find_all(q.exp.Column)}
        missing = sorted(c for c in needed if c not in schema.names)
        if missing:
            raise MissingColumnError(
                f"source {source!r} ({uris.get(source, source)}) has no column "
                f"{', '.join(repr(c) for c in missing)} (read by metric {metric.name!r}); it has: {', '.join(schema.names)}"
            )
        t = schema.field(spec.date_column).type
        if not (pa.types.is_date(t) or pa.types.is_timestamp(t)):
            raise ColumnTypeError(f"source {source!r}: column {spec.date_column!r} has type {t}; it must be a date "
                                  "or a timestamp")
        value = metric.value()
        if isinstance(value, q.exp.Column):
            vt = schema.field(value.name).type
            if not (pa.types.is_integer(vt) or pa.types.is_floating(vt) or pa.types.is_decimal(vt)):
                raise ColumnTypeError(
                    f"metric {metric.name!r}: source {source!r} column {value.name!r} has type {vt}; an event-level "
                    "quantile needs a numeric value (cast it in the metric's value, e.g. 'CAST(x AS DOUBLE)')"
                )


def publish_event_tables(
    eng: Engine, store: ObjectStore, experiment: ExperimentSpec, refs: Mapping[str, q.exp.Table],
    kinds: Mapping[str, TimeKind], meta: dict[str, object], seconds: dict[str, float], sql: dict[str, str],
) -> dict[str, PublishedTable]:
    """Build and publish the events table of every event-quantile metric (stage 1)."""
    from xpcompute.pipeline.stage1 import _publish

    out: dict[str, PublishedTable] = {}
    for metric in event_metrics(experiment):
        plan = q.events_plan(experiment, metric, refs, kinds)
        out[metric.name] = _publish(eng, store, keys.events_table(experiment.id, metric.name), plan,
                                    {**meta, "metric": metric.name}, seconds, sql, f"events.{metric.name}")
    return out


def events_sql(experiment: ExperimentSpec, dialect: str, tables: Mapping[str, str] | None = None,
               kinds: Mapping[str, TimeKind] | None = None) -> dict[str, str]:
    """The events-table queries as text, per metric (for review and golden files)."""
    from xpcompute.sql.dialects import table

    refs = {name: table((tables or {}).get(name, f"xp_{name}")) for name in experiment.sources}
    return {m.name: render(q.events_plan(experiment, m, refs, kinds).inline(), dialect, pretty=True)
            for m in event_metrics(experiment)}


def event_histogram(
    table: str | PublishedTable, experiment: ExperimentSpec, metric: str, slice_filter: SliceFilter,
    store: ObjectStore | None = None, clusters: int = EVENT_CLUSTERS, buckets: int = EVENT_BUCKETS,
    route: str = "native",
) -> CompressedTable:
    """Stage 2 of an event-quantile metric: the slice's events -> event histogram (module docstring).

    ``route="native"`` (default; ``"numpy"`` is its former name) streams the events into ``EventHistogram``
    (C++); ``"sql"`` lets DuckDB bucket and count (checked, else the native route runs). The SQL route is the one
    to take to an engine with many cores (DuckDB's aggregate into about a million groups is slow on two).
    """
    started = time.perf_counter()
    published = open_table(table, store)
    schema = published.schema
    slice_filter.check(experiment, schema)
    cells = tuple(sorted(experiment.cells))
    files = ParquetFiles(published.filesystem(), tuple(published.paths()), published.uri, schema)
    predicate = slice_filter.to_sql()
    stored = q.CELL_INDEX in schema.names and q.CLUSTER in schema.names and clusters == EVENT_CLUSTERS
    with engine_scope("duckdb") as eng:
        eng.register(EVENTS, files)
        scan = q.slice_scan(eng.table_ref(EVENTS), cells, clusters, predicate, stored=stored)
        sample, k = _edge_sample(eng, scan, clusters)
        edges = bucket_edges(sample, buckets)
        extra: dict[str, object] = {"slice": slice_filter.label(), "slice_id": slice_filter.slice_id,
                                    "edge_sample": len(sample), "edge_clusters": k}
        out = _sql_histogram(eng, scan, edges, cells, clusters, metric, extra) if route == "sql" else None
        if out is None:
            hist = EventHistogram(cells=cells, edges=edges, clusters=clusters)
            reader = eng.con.sql(render(scan, "duckdb")).to_arrow_reader(BATCH_ROWS)  # type: ignore[attr-defined]
            for batch in _prefetched(reader):
                hist.add(_codes(batch.column(0)), _codes(batch.column(1)),
                         np.asarray(pc.cast(batch.column(2), pa.float64()).to_numpy(zero_copy_only=False)))
            out = hist.compressed(metric, {**extra, "route": "native"})
    if out.layout.n_rows == 0:
        raise InputError(f"slice {slice_filter.label()!r} has no events of metric {metric!r} in any cell")
    info = out.layout.extra[EXTRA_KEY]
    info["seconds"] = round(time.perf_counter() - started, 3)
    return out


def _codes(column: pa.Array) -> np.ndarray:
    """An integer code column as NumPy (int16 stays int16: no copy)."""
    if column.null_count:
        raise InputError("events table: a cell index or unit cluster is missing; run stage 1 again")
    return np.asarray(column.to_numpy(zero_copy_only=False))


def _prefetched(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    """The reader's batches, the next one decoded by a second thread meanwhile (DuckDB and the C++ pass both
    release the GIL, so the scan and the histogram overlap)."""
    batches: queue.Queue[object] = queue.Queue(maxsize=1)
    done = object()
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                batches.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in reader:
                if not put(batch):
                    return
            put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    worker = threading.Thread(target=produce, name="xp-event-scan", daemon=True)
    worker.start()
    try:
        while True:
            item = batches.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, pa.RecordBatch)
            yield item
    finally:
        stop.set()
        worker.join()


def _edge_sample(eng: Engine, scan: q.exp.Select, clusters: int) -> tuple[np.ndarray, int]:
    """Values of the events of clusters ``0..k-1`` (whole units, cells pooled), ``k`` growing by 4x from 1% of
    the clusters until they hold ``EDGE_SAMPLE`` events or all clusters are in: deterministic, never dependent
    on treatment."""
    k = max(1, clusters // 100)
    while True:
        query = q.exp.select(q.exp.column(q.VALUE)).from_(scan.subquery("s")).where(
            q.exp.column(q.CLUSTER) < q.exp.Literal.number(k))
        values = eng.fetch(render(query, "duckdb")).column(0).to_numpy(zero_copy_only=False).astype(np.float64)
        if len(values) >= EDGE_SAMPLE or k >= clusters:
            return values, k
        k = min(clusters, k * 4)


def _sql_histogram(eng: Engine, scan: q.exp.Select, edges: np.ndarray, cells: tuple[str, ...], clusters: int,
                   metric: str, extra: dict[str, object]) -> CompressedTable | None:
    """DuckDB buckets (guide table) and counts; None when a bucket's values fall outside its edges."""
    guide = Guide.of(edges)
    eng.con.register("xp_guide", guide.arrow())  # type: ignore[attr-defined]
    try:
        query = q.histogram_query(scan, q.exp.to_table("xp_guide"), guide.scale, guide.start, guide.inverse,
                                  guide.cells)
        rows = eng.fetch(render(query, "duckdb"))
    finally:
        eng.con.unregister("xp_guide")  # type: ignore[attr-defined]
    bucket = rows.column("bucket").to_numpy().astype(np.int64)
    lo = rows.column("lo").to_numpy().astype(np.float64)
    hi = rows.column("hi").to_numpy().astype(np.float64)
    if not buckets_hold_their_values(edges, bucket, lo, hi):
        return None
    return histogram_table(
        cells, rows.column(q.CELL_INDEX).to_numpy().astype(np.int64), rows.column(q.CLUSTER).to_numpy(), bucket,
        rows.column("n").to_numpy(), lo, hi, len(edges) + 1, clusters, metric, {**extra, "route": "sql"},
    )


def event_artifacts(
    experiment: ExperimentSpec | None, store: ObjectStore, specs: Sequence[object], slice_filter: SliceFilter,
) -> tuple[dict[str, CompressedTable], dict[str, str]]:
    """The event histogram of every metric with an ``event_quantile`` fit, and why any could not be built."""
    metrics = list(dict.fromkeys(s.metric for s in specs if getattr(s, "model", None) == "event_quantile"))  # type: ignore[attr-defined]
    tables: dict[str, CompressedTable] = {}
    errors: dict[str, str] = {}
    for metric in metrics:
        try:
            if experiment is None or not isinstance(experiment.metric(metric), EventQuantileMetric):
                raise InputError(f"metric {metric!r} is not an event-level quantile metric of a registered "
                                 "experiment, so it has no events table (declare it with aggregation: event_quantile)")
            tables[metric] = event_histogram(keys.events_table(experiment.id, metric), experiment, metric,
                                             slice_filter, store)
        except (InputError, NotFoundError) as exc:
            errors[metric] = f"{type(exc).__name__}: {exc}"
    return tables, errors
