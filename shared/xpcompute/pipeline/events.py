"""Event-level quantile metrics in the pipeline: stage 1 publishes their events tables, stage 2 compresses a slice.

Stage 1 (``publish_event_tables``, called by ``pipeline/stage1.run_stage1`` on DuckDB or Spark): one events table
per event-quantile metric at ``keys.events_table(experiment, metric)`` (``sql/events.events_plan``), published
atomically like the analysis table. ``check_event_sources`` (called by ``check_sources``) refuses a missing
column, a time column that is not a date or timestamp and a value column that is not numeric, naming them.

Stage 2 (``event_histogram``, from the slice job): one DuckDB scan of the slice's events (``sql/events``), every
event's cell index, unit cluster and value, streamed in Arrow batches into ``compression.events.EventHistogram``
(NumPy ``searchsorted`` into the pooled bucket edges, ``bincount`` of (cell, cluster, bucket)). The bucket edges
come from the first ``EDGE_SAMPLE`` (200,000) or more events of the scan, cells pooled: they depend on the table's
order but never on treatment, and any edges give a valid histogram (they only set where the buckets are fine).
The result is the ``events`` compressed table the ``event_quantile`` model reads.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xpcompute.compression.events import (
    EDGE_SAMPLE,
    EVENT_BUCKETS,
    EVENT_CLUSTERS,
    EventHistogram,
    bucket_edges,
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
) -> CompressedTable:
    """Stage 2 of an event-quantile metric: the slice's events -> event histogram (module docstring)."""
    started = time.perf_counter()
    published = open_table(table, store)
    schema = published.schema
    slice_filter.check(experiment, schema)
    cells = tuple(sorted(experiment.cells))
    files = ParquetFiles(published.filesystem(), tuple(published.paths()), published.uri, schema)
    predicate = slice_filter.to_sql()
    with engine_scope("duckdb") as eng:
        eng.register(EVENTS, files)
        scan = q.slice_scan(eng.table_ref(EVENTS), cells, clusters, predicate)
        reader = eng.con.sql(render(scan, "duckdb")).to_arrow_reader(BATCH_ROWS)  # type: ignore[attr-defined]
        hist: EventHistogram | None = None
        waiting: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        seen = 0
        for batch in reader:
            arrays = (np.asarray(batch.column(0).to_numpy(zero_copy_only=False), dtype=np.int64),
                      np.asarray(batch.column(1).to_numpy(zero_copy_only=False), dtype=np.int64),
                      np.asarray(pc.cast(batch.column(2), pa.float64()).to_numpy(zero_copy_only=False)))
            if hist is None:
                waiting.append(arrays)
                seen += len(arrays[2])
                if seen < EDGE_SAMPLE:
                    continue
                hist = EventHistogram(cells=cells, edges=_edges(waiting, buckets), clusters=clusters)
                for w in waiting:
                    hist.add(*w)
                waiting = []
            else:
                hist.add(*arrays)
        if hist is None:
            hist = EventHistogram(cells=cells, edges=_edges(waiting, buckets), clusters=clusters)
            for w in waiting:
                hist.add(*w)
    if not hist.counts.any():
        raise InputError(f"slice {slice_filter.label()!r} has no events of metric {metric!r} in any cell")
    extra: dict[str, object] = {"slice": slice_filter.label(), "slice_id": slice_filter.slice_id,
                                "edge_sample": min(seen, int(hist.counts.sum())),
                                "seconds": round(time.perf_counter() - started, 3)}
    return hist.compressed(metric, extra)


def _edges(batches: list[tuple[np.ndarray, np.ndarray, np.ndarray]], buckets: int) -> np.ndarray:
    """Pooled bucket edges from the first batches of the scan (cells together: never dependent on treatment)."""
    values = np.concatenate([b[2] for b in batches]) if batches else np.empty(0)
    return bucket_edges(values, buckets)


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
