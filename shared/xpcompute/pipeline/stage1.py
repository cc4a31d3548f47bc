"""Stage 1: join the raw sources into the analysis table (and the user-by-day table), once per experiment.

``run_stage1`` resolves each source of the spec, checks that it has the
columns and types the metrics read (so a bad source fails with the spec's
names rather than an engine stack trace), registers the sources in the engine,
renders ``sql.stage1``'s queries in the engine's dialect, and publishes each
result atomically under ``{root}/{experiment}/analysis`` and ``.../user_day``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from xpcompute.errors import ColumnTypeError, InputError, MissingColumnError
from xpcompute.experiment import ExperimentSpec
from xpcompute.metrics.base import Cap
from xpcompute.pipeline.engines import EngineLike, engine_scope
from xpcompute.pipeline.engines.base import Engine, ParquetFiles, resolve_parquet
from xpcompute.pipeline.tables import PublishedTable, publish_table
from xpcompute.sql import stage1 as q
from xpcompute.sql.dialects import render
from xpcompute.storage import keys
from xpcompute.storage.objects import ObjectStore, open_store


@dataclass(frozen=True)
class Stage1Result:
    """The published tables and how long each step took (seconds)."""

    analysis: PublishedTable
    user_day: PublishedTable | None
    seconds: dict[str, float] = field(default_factory=dict)
    #: per event-level quantile metric, its events table (``pipeline/events.py``)
    events: dict[str, PublishedTable] = field(default_factory=dict)
    sql: dict[str, str] = field(default_factory=dict)


def stage1_sql(
    experiment: ExperimentSpec, dialect: str, tables: Mapping[str, str] | None = None,
    kinds: Mapping[str, q.TimeKind] | None = None,
) -> dict[str, str]:
    """The stage-1 queries as text (for review, golden files and notebooks); ``tables`` maps sources to names,
    ``kinds`` gives each source's time-column type (``time_kinds``; default ``date``)."""
    from xpcompute.sql.dialects import table

    refs = {name: table((tables or {}).get(name, f"xp_{name}")) for name in experiment.sources}
    out = {"analysis": render(q.analysis_query(experiment, refs, kinds), dialect, pretty=True)}
    if experiment.daily:
        out["user_day"] = render(q.daily_query(experiment, refs, kinds), dialect, pretty=True)
    from xpcompute.pipeline.events import events_sql

    out.update({f"events.{name}": text for name, text in events_sql(experiment, dialect, tables, kinds).items()})
    return out


def validate_sources(experiment: ExperimentSpec) -> dict[str, pa.Schema]:
    """Resolve every source the spec reads and check its columns and types; returns each source's schema.

    This is what ``xpcompute experiment validate`` and ``PUT /experiments/{id}``
    run: every problem a stage-1 run would hit on the sources is raised here,
    as a typed error naming the source, the column and what it must be.
    """
    files = {name: resolve_parquet(experiment.sources[name].uri, f"source {name!r}") for name in _used_sources(experiment)}
    check_sources(experiment, files)
    return {name: f.schema for name, f in files.items()}


def data_through(experiment: ExperimentSpec) -> date | None:
    """The last day any event source has data for, capped at the window end (what a scorecard says it covers).

    Read from the Parquet footers' column statistics (no data pages), so it is
    cheap on any size; a file without statistics is read for that one column.
    """
    latest: date | None = None
    events = {c.aggregate.source for c in q.per_user_columns(experiment)}
    for name in sorted(events):
        spec = experiment.sources[name]
        files = resolve_parquet(spec.uri, f"source {name!r}")
        for path in files.paths:
            with files.filesystem.open_input_file(path) as handle:
                meta = pq.ParquetFile(handle).metadata
                index = meta.schema.to_arrow_schema().get_field_index(spec.date_column)
                for g in range(meta.num_row_groups):
                    stats = meta.row_group(g).column(index).statistics if index >= 0 else None
                    value = stats.max if stats is not None and stats.has_min_max else None
                    if value is None:
                        column = pq.read_table(handle, columns=[spec.date_column]).column(0)
                        value = pc.max(column).as_py()
                    if isinstance(value, datetime):
                        value = value.date()
                    if isinstance(value, date) and (latest is None or value > latest):
                        latest = value
    return None if latest is None else min(latest, experiment.window.end)


def time_kinds(experiment: ExperimentSpec, schemas: Mapping[str, pa.Schema]) -> dict[str, q.TimeKind]:
    """Each event source's time column: compared as instants (``timestamp``) or as days (``date``)."""
    out: dict[str, q.TimeKind] = {}
    for name, schema in schemas.items():
        column = experiment.sources[name].date_column
        if column in schema.names:
            out[name] = "timestamp" if pa.types.is_timestamp(schema.field(column).type) else "date"
    return out


def run_stage1(
    experiment: ExperimentSpec,
    output_root: str | ObjectStore,
    engine: EngineLike = "duckdb",
    daily: bool | None = None,
) -> Stage1Result:
    """Build and publish the analysis table (and the user-by-day table unless ``daily`` is False)."""
    store = open_store(output_root) if isinstance(output_root, str) else output_root
    make_daily = experiment.daily if daily is None else daily
    seconds: dict[str, float] = {}
    sql: dict[str, str] = {}
    with engine_scope(engine) as eng:
        if not eng.dialect.writes_tables:
            raise InputError(f"stage 1 cannot run on {eng.dialect.name} here; use engine='duckdb' or 'spark'")
        started = time.perf_counter()
        used = _used_sources(experiment)
        files = {name: resolve_parquet(experiment.sources[name].uri, f"source {name!r}") for name in used}
        check_sources(experiment, files)
        for name, f in files.items():
            eng.register(name, f)
        refs = {name: eng.table_ref(name) for name in used}
        kinds = time_kinds(experiment, {name: f.schema for name, f in files.items()})
        seconds["resolve"] = time.perf_counter() - started
        meta: dict[str, object] = {"experiment": experiment.id, "engine": eng.dialect.name, "spec": experiment.canonical()}

        from xpcompute.pipeline.events import publish_event_tables

        analysis = _publish(eng, store, keys.analysis_table(experiment.id), q.analysis_plan(experiment, refs, kinds),
                            meta, seconds, sql, "analysis", caps=q.metric_caps(experiment))
        user_day = None
        if make_daily:
            user_day = _publish(eng, store, keys.user_day_table(experiment.id), q.daily_plan(experiment, refs, kinds), meta,
                                seconds, sql, "user_day")
        events = publish_event_tables(eng, store, experiment, refs, kinds, meta, seconds, sql)
    return Stage1Result(analysis=analysis, user_day=user_day, seconds=seconds, sql=sql, events=events)


def _publish(
    eng: Engine,
    store: ObjectStore,
    key: str,
    plan: q.Stage1Plan,
    meta: dict[str, object],
    seconds: dict[str, float],
    sql: dict[str, str],
    label: str,
    caps: Mapping[str, Cap] | None = None,
) -> PublishedTable:
    """Run ``plan`` the way the engine prefers (its steps as temporary tables, or inline) and publish it.

    With ``caps`` the manifest records the limits each capped metric was held to (``cap_limits``),
    which every compressed slice of the table carries on to the fits' notes.
    """
    started = time.perf_counter()
    name = eng.dialect.name
    steps: list[tuple[str, str]] = []
    if eng.dialect.stage1_steps == "materialize":
        steps = [(step, render(query, name)) for step, query in plan.steps]
        final = render(plan.final, name)
        sql[label] = ";\n".join([*(f"CREATE TEMP TABLE {s} AS {text}" for s, text in steps), final])
    else:
        final = sql[label] = render(plan.inline(), name)

    table_meta: dict[str, object] = {**meta, "table_kind": label}

    def write(fs: pafs.FileSystem, directory: str) -> pa.Schema:
        schema = eng.write(final, fs, directory, steps)
        if caps:  # read before publish_table writes the manifest from table_meta
            table_meta["caps"] = cap_limits(fs, directory, caps)
        return schema

    table = publish_table(store, key, write, table_meta)
    seconds[label] = time.perf_counter() - started
    return table


def cap_limits(fs: pafs.FileSystem, directory: str, caps: Mapping[str, Cap]) -> dict[str, dict[str, object]]:
    """The limits each capped metric of a freshly written analysis table was held to, for its manifest.

    A percentile limit is read back from the written column: the capped values' maximum (minimum)
    *is* the upper (lower) limit, because the interpolated quantile lies at or below the next order
    statistic, which the cap therefore sets to the limit exactly. So the limits come from the
    table itself on every engine (Spark runs the plan as one statement with no step to read).
    An absolute limit is the declared value. ``units_at_upper``/``units_at_lower`` count the
    units at the limit (capped, or equal to it).
    """
    data = ds.dataset(directory, format="parquet", filesystem=fs).to_table(columns=list(caps))
    out: dict[str, dict[str, object]] = {}
    for name, cap in caps.items():
        column = data.column(name)
        lo_hi = pc.min_max(column).as_py()
        entry: dict[str, object] = {"kind": cap.kind, "pooled": True, "lower_q": None, "upper_q": None}
        for side, observed in (("lower", lo_hi["min"]), ("upper", lo_hi["max"])):
            declared = getattr(cap, side)
            if declared is None:
                entry[side] = None
                continue
            limit = float(declared) if cap.kind == "absolute" else observed
            entry[side] = limit
            if cap.kind == "percentile":
                entry[f"{side}_q"] = float(declared)
            entry[f"units_at_{side}"] = 0 if limit is None else int(pc.sum(pc.equal(column, limit)).as_py() or 0)
        out[name] = entry
    return out


def _used_sources(experiment: ExperimentSpec) -> list[str]:
    used = [experiment.allocation.source, experiment.users_source]
    for m in experiment.metric_objects():
        used += sorted(m.sources())
    for c in experiment.covariates:
        used += sorted(experiment.covariate(c).sources())
    for d in experiment.dimensions:
        used.append(experiment.dimension(d).source)
    return list(dict.fromkeys(used))


_NUMERIC_AGGREGATIONS = {"sum", "mean", "max", "min"}


def check_sources(experiment: ExperimentSpec, files: Mapping[str, ParquetFiles]) -> None:
    """Every column the queries read exists, and the ones they add up or compare as dates have usable types."""
    from xpcompute.pipeline.events import check_event_sources

    check_event_sources(experiment, {n: f.schema for n, f in files.items()}, {n: f.uri for n, f in files.items()})
    needed = q.source_columns(experiment)
    for source, columns in needed.items():
        schema = files[source].schema
        missing = sorted(c for c in columns if c not in schema.names)
        if missing:
            raise MissingColumnError(
                f"source {source!r} ({files[source].uri}) has no column {', '.join(repr(c) for c in missing)}; "
                f"it has: {', '.join(schema.names)}"
            )
    event_sources = {c.aggregate.source for c in q.per_user_columns(experiment)}
    for name in sorted(event_sources):
        date_col = experiment.sources[name].date_column
        _expect(files[name].schema, name, date_col, "a date or a timestamp", _is_date)
    alloc = experiment.allocation
    _expect(files[alloc.source].schema, alloc.source, alloc.cell_column, "a string", _is_string)
    if alloc.exposure_column is not None:
        _expect(files[alloc.source].schema, alloc.source, alloc.exposure_column, "a date or a timestamp", _is_date)
    id_kinds: dict[str, str] = {}
    for source_name, spec in experiment.sources.items():
        if source_name in files:
            _expect(files[source_name].schema, source_name, spec.user_column, "an integer or a string (UUIDs as strings)",
                    _is_unit_id)
            id_kinds[source_name] = "string" if _is_string(files[source_name].schema.field(spec.user_column).type) else "integer"
    if len(set(id_kinds.values())) > 1:
        listing = ", ".join(f"{s}.{experiment.sources[s].user_column} ({k})" for s, k in id_kinds.items())
        raise ColumnTypeError(
            f"unit id columns must all be integers or all be strings, so units match across sources; got {listing}. "
            "Cast the odd ones out in your tables (or a view) to the same type"
        )
    for column in q.per_user_columns(experiment):
        agg = column.aggregate
        if agg.how in _NUMERIC_AGGREGATIONS and agg.value.key == "column":
            _expect(files[agg.source].schema, agg.source, agg.value.name, "numeric", _is_numeric)


def _is_date(t: pa.DataType) -> bool:
    return bool(pa.types.is_date(t) or pa.types.is_timestamp(t))


def _is_string(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _is_unit_id(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or _is_string(t))


def _is_numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_boolean(t))


def _expect(schema: pa.Schema, source: str, column: str, what: str, ok: Callable[[pa.DataType], bool]) -> None:
    type_ = schema.field(column).type
    if not ok(type_):
        raise ColumnTypeError(f"source {source!r}: column {column!r} has type {type_}; it must be {what}")
