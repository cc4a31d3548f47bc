"""Stage-1 queries: allocations x events x user dimensions -> analysis table and user-by-day table.

Both are built from the experiment spec and the metrics repo as sqlglot trees,
independent of the engine; ``sources`` maps each logical source name to the
table reference the engine uses. The shape:

    alloc      (one row per allocated user in a declared cell; users in two cells are left out)
    dims       (one row per user: each dimension's expression)
    distinct_* (one per distinct count: SELECT DISTINCT user, [day,] value, then COUNT(*) per user)
    src_*      (per event source: one row per user (and day), every aggregate filtered by window)
    SELECT user_id, cell, [day,] dimensions, metric columns, covariate columns
    FROM alloc [CROSS JOIN days] LEFT JOIN dims LEFT JOIN distinct_* .. LEFT JOIN src_* ..

These are the steps of a ``Stage1Plan``: one statement with CTEs, or
temporary tables joined at the end, as the engine prefers (see there).
Identical aggregates (the same SQL for two columns) are computed once.

Outlier capping (``Metric.cap``, analysis table only): absolute limits are
literals in the final select; with percentile limits the joined per-unit
values become a step ``uncapped``, one step ``cap_{i}`` per capped metric
computes its pooled limits over every unit of every cell (exact order
statistics by ``ROW_NUMBER``, interpolated as ``numpy.quantile(method="linear")``,
which every dialect renders alike; DuckDB's ``QUANTILE_CONT`` has no exact
Spark rendering in sqlglot), and the final select reads ``uncapped`` with
each capped column as ``CASE WHEN v > upper THEN upper WHEN v < lower THEN
lower ELSE v END`` (NULL stays NULL, unlike ``LEAST``/``GREATEST`` on DuckDB
and Spark), cast to DOUBLE. The user-by-day table is not capped.

Ratio metrics (analysis table only): one step ``ratio_constants`` computes each
ratio's constant ``c`` (the ratio of totals rounded to float32,
``columns.residual_coefficient``) from the ratios' per-unit values (the
final select's FROM and the joins they read), and the final select adds
``{ratio}__res = numerator - c * denominator`` (NULL where either is), which
keeps the ratio's variance exact (``models/ratio.py``); a ratio with CUPED
covariates also gets ``{ratio}__xres``, the same for their ratio.

Aggregates read ``CASE WHEN <window> AND <condition> THEN value END`` so one
scan of a source serves the analysis window and the pre-period alike. Unit
divisors apply after aggregating, to exact integer sums (carried as DOUBLE,
exact below 2**53), so every engine computes bit-identical values.

Windows (``docs/experiment-yaml.md`` states the rule for users): each unit's
analysis starts at ``start_u = max(first exposure, window start)`` (the
window start for everyone when the experiment has no exposure column) and
ends with the window's last day, inclusive; its pre-period is the
``pre_days`` days before ``start_u``. A timestamp event column is compared
to the instants (``start_u <= t < end + 1 day``); a date column to the days
(``date(start_u) <= d <= end``). With an exposure column every source step
joins the allocation step for ``start_u``; without one the bounds are literals.
Unit ids keep the type they have in the sources (integers or strings).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from typing import Literal

import sqlglot
from sqlglot import exp

from xpcompute.columns import RESIDUAL_LIMIT, RESIDUAL_RANGE
from xpcompute.experiment import ExperimentSpec
from xpcompute.metrics.base import Cap, PerUserColumn, RatioMetric, Window, lit
from xpcompute.sql.stage2 import double_literal

USER = "user_id"
CELL = "cell"
DAY = "day"
_DAY_INTERNAL = "_xp_day"

_START = "_xp_start"
_FIRST_DAY = "_xp_first_day"
_UNIT = "_xp_unit"
TimeKind = Literal["date", "timestamp"]

DOUBLE = exp.DataType.build("DOUBLE")
BIGINT = exp.DataType.build("BIGINT")
INT = exp.DataType.build("INT")
STRING = exp.DataType.build("VARCHAR")
_TYPES = {"double": DOUBLE, "bigint": BIGINT}


@dataclass(frozen=True)
class OutputColumn:
    """A column of a stage-1 output table and its SQL type name (used to check both engines agree)."""

    name: str
    type: str


def date_lit(d: date) -> exp.Expr:
    return exp.cast(lit(d.isoformat()), exp.DataType.Type.DATE)


def timestamp_lit(d: date) -> exp.Expr:
    return exp.cast(lit(f"{d.isoformat()} 00:00:00"), exp.DataType.Type.TIMESTAMP)


def _days(n: int) -> exp.Expr:
    return exp.Interval(this=exp.Literal.string(str(n)), unit=exp.var("DAY"))


def per_user_columns(experiment: ExperimentSpec) -> list[PerUserColumn]:
    """Every metric column then every covariate column, in the spec's order."""
    cols: list[PerUserColumn] = []
    for m in experiment.metric_objects():
        cols += list(m.columns())
    for c in experiment.covariates:
        cols += list(experiment.covariate(c).columns())
    return cols


@dataclass(frozen=True)
class Windows:
    """The analysis window and pre-period of one source's events, per unit (see the module docstring).

    ``kind`` is the type of the source's time column; with ``exposure`` the
    unit's start is the allocation step's ``_xp_start`` (joined as ``x``),
    otherwise the window start as a literal.
    """

    experiment: ExperimentSpec
    kind: TimeKind
    exposure: bool

    def _start(self) -> exp.Expr:
        return exp.column(_START, table="x") if self.exposure else timestamp_lit(self.experiment.window.start)

    def _start_day(self) -> exp.Expr:
        return exp.cast(self._start(), exp.DataType.Type.DATE)

    def _end_next(self) -> exp.Expr:
        return timestamp_lit(self.experiment.window.end + timedelta(days=1))

    def analysis(self, t: exp.Expr) -> exp.Expr:
        w = self.experiment.window
        if self.kind == "date":
            if not self.exposure:
                return exp.Between(this=t.copy(), low=date_lit(w.start), high=date_lit(w.end))
            return exp.and_(t.copy() >= self._start_day(), t.copy() <= date_lit(w.end))
        return exp.and_(t.copy() >= self._start(), t.copy() < self._end_next())

    def pre(self, t: exp.Expr) -> exp.Expr:
        w = self.experiment.window
        if self.kind == "date":
            if not self.exposure:
                return exp.Between(this=t.copy(), low=date_lit(w.pre_start), high=date_lit(w.pre_end))
            low = exp.cast(exp.Sub(this=self._start_day(), expression=_days(w.pre_days)), exp.DataType.Type.DATE)
            return exp.and_(t.copy() >= low, t.copy() < self._start_day())
        low_ts = exp.Sub(this=self._start(), expression=_days(w.pre_days))
        return exp.and_(t.copy() >= low_ts, t.copy() < self._start())

    def of(self, column: PerUserColumn, t: exp.Expr) -> exp.Expr:
        return self.pre(t) if column.window == "pre" else self.analysis(t)

    def span(self, windows: set[Window], t: exp.Expr) -> exp.Expr:
        """One range covering the windows a step reads (its scan's WHERE)."""
        if windows == {"analysis"}:
            return self.analysis(t)
        if windows == {"pre"}:
            return self.pre(t)
        w = self.experiment.window
        if self.kind == "date" and not self.exposure:
            return exp.Between(this=t.copy(), low=date_lit(w.pre_start), high=date_lit(w.end))
        if self.kind == "date":
            low = exp.cast(exp.Sub(this=self._start_day(), expression=_days(w.pre_days)), exp.DataType.Type.DATE)
            return exp.and_(t.copy() >= low, t.copy() <= date_lit(w.end))
        return exp.and_(t.copy() >= exp.Sub(this=self._start(), expression=_days(w.pre_days)),
                        t.copy() < self._end_next())

    def day_index(self, t: exp.Expr) -> exp.Expr:
        """Days since the window start of an event (calendar day of a timestamp)."""
        day = t.copy() if self.kind == "date" else exp.cast(t.copy(), exp.DataType.Type.DATE)
        index = exp.cast(exp.DateDiff(this=day, expression=date_lit(self.experiment.window.start), unit=exp.var("DAY")), INT)
        if self.experiment.quasi is not None:  # a quasi-experiment's periods are event times (xpcompute.quasi)
            from xpcompute.quasi import event_period

            return event_period(self.experiment, index)
        return index


def _windows(experiment: ExperimentSpec, source: str, kinds: Mapping[str, TimeKind] | None) -> Windows:
    return Windows(experiment, (kinds or {}).get(source, "date"), experiment.allocation.exposure_column is not None)


def _window(experiment: ExperimentSpec, column: PerUserColumn, date_col: exp.Expr,
            kinds: Mapping[str, TimeKind] | None = None) -> exp.Expr:
    return _windows(experiment, column.aggregate.source, kinds).of(column, date_col)


def _scan(select: exp.Select, experiment: ExperimentSpec, source: str, table: exp.Table) -> exp.Select:
    """``select`` FROM the source, joined to each unit's start (as ``x``) when there is an exposure column.

    The allocation step joins as a narrow subquery with internal names, so a
    source column named like one of its columns cannot become ambiguous, and
    the inner join also drops events of units that are not analysed.
    """
    select = select.from_(table.copy())
    if experiment.allocation.exposure_column is None:
        return select
    spec = experiment.sources[source]
    starts = exp.select(exp.column(USER).as_(_UNIT), exp.column(_START)).from_("alloc").subquery("x")
    return select.join(starts, on=exp.column(spec.user_column).eq(exp.column(_UNIT, table="x")), join_type="INNER")


def zero_safe(expr: exp.Expr) -> exp.Expr:
    """A team's expression (a metric's value or ``where``, a dimension) with every divisor ``d`` of ``/``, ``//``
    and ``%`` written ``NULLIF(d, 0)`` (a non-zero number literal is left as it is): x/0 is NULL on every engine.

    Unguarded, the engines disagree: Spark (ANSI mode) fails the whole query on any of them, Trino on integers and
    decimals, and DuckDB on ``//`` and on integer and decimal ``%``, while DuckDB's ``/`` gives +-inf or NaN (so
    does Trino's on doubles). NULL is what the builders' own divisions give (``Dialect.division_by_zero_raises``);
    an aggregate skips it and an events table leaves the event out.
    """

    def guard(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Div | exp.IntDiv | exp.Mod):
            d = node.expression
            nonzero = isinstance(d, exp.Literal) and not d.is_string and _number(d.this) not in (None, 0.0)
            if not nonzero and not isinstance(d, exp.Nullif):
                node.set("expression", exp.Nullif(this=d.copy(), expression=lit(0)))
        return node

    return expr.transform(guard)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def aggregate_sql(column: PerUserColumn, window: exp.Expr | None) -> exp.Expr:
    """The per-user aggregate of one column (before fill, cast and unit divisor)."""
    agg = column.aggregate
    condition = None if agg.condition is None else zero_safe(agg.condition)
    conds = [c for c in (window, condition) if c is not None]
    cond: exp.Expr | None = exp.and_(*[c.copy() for c in conds]) if conds else None

    def when(then: exp.Expr, otherwise: exp.Expr | None = None) -> exp.Expr:
        if cond is None:
            return then.copy()
        case = exp.Case().when(cond.copy(), then.copy())
        return case.else_(otherwise) if otherwise is not None else case

    value = zero_safe(agg.value)
    match agg.how:
        case "sum":
            return exp.Sum(this=when(value))
        case "count":
            return exp.Count(this=when(lit(1)))
        case "count_distinct":
            return exp.Count(this=exp.Distinct(expressions=[when(value)]))
        case "max":
            return exp.Max(this=when(value))
        case "min":
            return exp.Min(this=when(value))
        case "any":
            return exp.Max(this=when(lit(1), lit(0)))
        case "none":
            return exp.Min(this=when(lit(0), lit(1)))
        case "mean":
            total = exp.cast(exp.Sum(this=when(value)), DOUBLE)
            count = exp.Count(this=when(value))
            return exp.Div(this=total, expression=exp.Nullif(this=count, expression=lit(0)))
    raise AssertionError(f"unhandled aggregation {agg.how}")


def finish(column: PerUserColumn, raw: exp.Expr) -> exp.Expr:
    """Fill users without events, cast to the column's type, then convert units."""
    value = raw
    if column.fill is not None:
        fill = int(column.fill) if float(column.fill).is_integer() else column.fill
        value = exp.Coalesce(this=value, expressions=[lit(fill)])
    value = exp.cast(value, _TYPES[column.dtype])
    if column.divisor != 1.0:
        value = exp.Div(this=value, expression=exp.cast(lit(column.divisor), DOUBLE))
    return value


def allocation_dimensions(experiment: ExperimentSpec) -> list[str]:
    """Dimensions read from the allocation source (the others come from the users source)."""
    alloc = experiment.allocation.source
    if alloc == experiment.users_source:
        return []
    return [d for d in experiment.dimensions if experiment.dimension(d).source == alloc]


def _alloc_cte(experiment: ExperimentSpec, sources: Mapping[str, exp.Table]) -> exp.Select:
    """One row per unit allocated to exactly one declared cell: its cell, start and allocation-source dimensions.

    With an exposure column, ``_xp_start`` is the later of its first exposure
    and the window start, and units first exposed after the window (or never)
    are left out.
    """
    spec = experiment.sources[experiment.allocation.source]
    user = exp.column(spec.user_column)
    cell: exp.Expr = exp.column(experiment.allocation.cell_column)
    if experiment.quasi is not None:  # the group column's values mapped to 'treated' / 'comparison'
        from xpcompute.quasi import group_cell

        cell = group_cell(experiment)
    ctx = experiment.sql_context()
    select = exp.select(user.copy().as_(USER), exp.Min(this=exp.cast(cell, STRING)).as_(CELL))
    having: exp.Expr = exp.Min(this=exp.cast(cell, STRING)).eq(exp.Max(this=exp.cast(cell, STRING)))
    exposure = experiment.allocation.exposure_column
    if exposure is not None:
        first = exp.Min(this=exp.cast(exp.column(exposure), exp.DataType.Type.TIMESTAMP))
        start = exp.Greatest(this=first.copy(), expressions=[timestamp_lit(experiment.window.start)])
        day = exp.DateDiff(this=exp.cast(start.copy(), exp.DataType.Type.DATE),
                           expression=date_lit(experiment.window.start), unit=exp.var("DAY"))
        select = select.select(start.as_(_START), exp.cast(day, INT).as_(_FIRST_DAY))
        having = exp.and_(having, first.copy() < timestamp_lit(experiment.window.end + timedelta(days=1)))
    for name in allocation_dimensions(experiment):
        expr = zero_safe(experiment.dimension(name).expression(ctx))
        select = select.select(exp.Min(this=exp.cast(expr, STRING)).as_(name))
    return (
        select.from_(sources[experiment.allocation.source].copy())
        .where(cell.isin(*[lit(c) for c in experiment.cells]))
        .group_by(user)
        .having(having)
    )


def _dims_cte(experiment: ExperimentSpec, sources: Mapping[str, exp.Table]) -> exp.Select:
    """One row per user; a user listed twice keeps the smallest value of each dimension."""
    spec = experiment.sources[experiment.users_source]
    ctx = experiment.sql_context()
    user = exp.column(spec.user_column)
    select = exp.select(user.copy().as_(USER))
    from_alloc = set(allocation_dimensions(experiment))
    for name in experiment.dimensions:
        if name in from_alloc:
            continue
        dim = experiment.dimension(name)
        select = select.select(exp.Min(this=exp.cast(zero_safe(dim.expression(ctx)), STRING)).as_(name))
    return select.from_(sources[experiment.users_source].copy()).group_by(user)


def _src_alias(source: str, suffix: str = "") -> str:
    return f"src_{source}{suffix}"


def _source_cte(
    experiment: ExperimentSpec,
    source: str,
    table: exp.Table,
    columns: list[tuple[int, PerUserColumn]],
    daily: bool,
    kinds: Mapping[str, TimeKind] | None = None,
) -> exp.Select:
    """Per-user (or per-user-day) aggregates of one event source; internal column names ``c{i}``."""
    spec = experiment.sources[source]
    win = _windows(experiment, source, kinds)
    date_col = exp.column(spec.date_column)
    user = exp.column(spec.user_column)
    windows = {c.window for _, c in columns}
    where = win.span(windows, date_col)
    if daily:
        inner = _scan(exp.select(exp.Star(), win.day_index(date_col).as_(_DAY_INTERNAL)), experiment, source, table)
        inner = inner.where(where)
        select = exp.select(user.copy().as_(USER), exp.column(_DAY_INTERNAL).as_(DAY))
        for i, column in columns:
            select = select.select(aggregate_sql(column, None).as_(f"c{i}"))
        return select.from_(inner.subquery("e")).group_by(user, exp.column(_DAY_INTERNAL))
    select = exp.select(user.copy().as_(USER))
    for i, column in columns:
        select = select.select(aggregate_sql(column, win.of(column, date_col)).as_(f"c{i}"))
    return _scan(select, experiment, source, table).where(where).group_by(user)


def _distinct_cte(
    experiment: ExperimentSpec, table: exp.Table, i: int, column: PerUserColumn, per_day: bool,
    kinds: Mapping[str, TimeKind] | None = None,
) -> exp.Select:
    """A distinct count as its own step: ``SELECT DISTINCT user, [day,] value`` then ``COUNT(*)`` per user.

    Engines hash (user, value) pairs once this way; ``COUNT(DISTINCT CASE ..)``
    inside the source's wide aggregate costs DuckDB about twice as much, and so
    does one ``GROUP BY user, value`` with a 0/1 flag per window that serves two
    distinct counts of the same value (measured at 10M users: 20 s against 7 + 4 s).
    """
    agg = column.aggregate
    spec = experiment.sources[agg.source]
    win = _windows(experiment, agg.source, kinds)
    date_col = exp.column(spec.date_column)
    value = zero_safe(agg.value)
    conds = [win.of(column, date_col), value.copy().is_(exp.null()).not_()]
    if agg.condition is not None:
        conds.append(zero_safe(agg.condition))
    inner = exp.select(exp.column(spec.user_column).as_(USER)).distinct()
    group: list[exp.Expr] = [exp.column(USER)]
    outer = exp.select(exp.column(USER))
    if per_day:
        inner = inner.select(win.day_index(date_col).as_(DAY))
        group.append(exp.column(DAY))
        outer = outer.select(exp.column(DAY))
    inner = _scan(inner.select(value.copy().as_("v")), experiment, agg.source, table).where(exp.and_(*conds))
    return outer.select(exp.Count(this=exp.Star()).as_(f"c{i}")).from_(inner.subquery("x")).group_by(*group)


@dataclass(frozen=True)
class Stage1Plan:
    """A stage-1 query as named steps and a final select that reads them by name.

    Engines choose how to run it (``Dialect.stage1_steps``): inline, the steps
    become the final select's CTEs and the engine plans one query (Spark,
    Trino, the golden files); materialized, each step becomes a temporary table
    in turn and the final select joins them (DuckDB). Materializing bounds
    memory to one aggregate's hash table at a time: planned as one query,
    DuckDB keeps every join's build side and every aggregate in memory at
    once and either runs out of memory at 10M users or, stacking the parts
    into one spillable GROUP BY instead, runs twice as long.
    """

    steps: tuple[tuple[str, exp.Select], ...]
    final: exp.Select

    def inline(self) -> exp.Select:
        """The same logical query as one statement (``WITH step AS (...) ... SELECT``)."""
        query = self.final.copy()
        for name, step in self.steps:
            query = query.with_(name, as_=step.copy())
        return query


def analysis_plan(
    experiment: ExperimentSpec, sources: Mapping[str, exp.Table], kinds: Mapping[str, TimeKind] | None = None
) -> Stage1Plan:
    """One row per allocated user: cell, dimensions, each metric's value, each covariate.

    ``kinds`` gives each event source's time-column type (default ``date``).
    """
    return _build(experiment, sources, daily=False, kinds=kinds)


def daily_plan(
    experiment: ExperimentSpec, sources: Mapping[str, exp.Table], kinds: Mapping[str, TimeKind] | None = None
) -> Stage1Plan:
    """One row per allocated user and day from the user's start through the window end, zero-filled;
    covariates repeat per day."""
    return _build(experiment, sources, daily=True, kinds=kinds)


def analysis_query(
    experiment: ExperimentSpec, sources: Mapping[str, exp.Table], kinds: Mapping[str, TimeKind] | None = None
) -> exp.Select:
    """``analysis_plan`` as one statement."""
    return analysis_plan(experiment, sources, kinds).inline()


def daily_query(
    experiment: ExperimentSpec, sources: Mapping[str, exp.Table], kinds: Mapping[str, TimeKind] | None = None
) -> exp.Select:
    """``daily_plan`` as one statement."""
    return daily_plan(experiment, sources, kinds).inline()


@dataclass(frozen=True)
class _Part:
    """One aggregate step: its name, query, the internal columns ``c{i}`` it fills, and its grain."""

    name: str
    query: exp.Select
    columns: tuple[int, ...]
    per_day: bool


def _parts(
    experiment: ExperimentSpec, sources: Mapping[str, exp.Table], daily: bool,
    kinds: Mapping[str, TimeKind] | None = None,
) -> tuple[list[_Part], dict[int, int]]:
    """The aggregate steps, and for every column ``i`` the column ``c{j}`` that holds its value.

    Columns whose aggregate is the same SQL (``streaming_hours`` and the
    denominator of ``hours_per_session`` both sum watch seconds in the window)
    are computed once: ``same[i]`` is the first such column.
    """
    columns = per_user_columns(experiment)
    same: dict[int, int] = {}
    seen: dict[tuple[str, ...], int] = {}
    distinct: list[tuple[int, PerUserColumn, bool]] = []
    wide: dict[tuple[str, bool], list[tuple[int, PerUserColumn]]] = {}
    for i, column in enumerate(columns):
        agg = column.aggregate
        spec = experiment.sources[agg.source]
        per_day = daily and column.window == "analysis"
        key = (agg.source, str(per_day),
               aggregate_sql(column, _window(experiment, column, exp.column(spec.date_column), kinds)).sql())
        same[i] = seen.setdefault(key, i)
        if same[i] != i:
            continue
        if agg.how == "count_distinct":
            distinct.append((i, column, per_day))
        else:
            wide.setdefault((agg.source, per_day), []).append((i, column))
    parts: list[_Part] = []
    for i, column, per_day in distinct:
        query = _distinct_cte(experiment, sources[column.aggregate.source], i, column, per_day, kinds)
        parts.append(_Part(f"distinct_{i}", query, (i,), per_day))
    for (source, per_day), cols in sorted(wide.items()):
        suffix = ("_d" if per_day else "_pre") if daily else ""
        query = _source_cte(experiment, source, sources[source], cols, per_day, kinds)
        parts.append(_Part(_src_alias(source, suffix), query, tuple(i for i, _ in cols), per_day))
    return parts, same


def _build(
    experiment: ExperimentSpec, sources: Mapping[str, exp.Table], daily: bool,
    kinds: Mapping[str, TimeKind] | None = None,
) -> Stage1Plan:
    steps: list[tuple[str, exp.Select]] = [
        ("alloc", _alloc_cte(experiment, sources)),
        ("dims", _dims_cte(experiment, sources)),
    ]
    select = exp.select(exp.column(USER, table="a"), exp.column(CELL, table="a"))
    joins: list[tuple[exp.Expr, exp.Expr | None, str]] = [
        (exp.to_table("dims").as_("u"), exp.column(USER, table="u").eq(exp.column(USER, table="a")), "LEFT"),
    ]
    if daily:
        periods = list(range(experiment.window.days))
        if experiment.quasi is not None:
            from xpcompute.quasi import event_times

            periods = event_times(experiment)
        days = exp.values([(d,) for d in periods], alias="days", columns=[DAY])
        steps.append(("day_index", exp.select(exp.cast(exp.column(DAY), INT).as_(DAY)).from_(days)))
        select = select.select(exp.column(DAY, table="d"))
        if experiment.allocation.exposure_column is None:
            joins.insert(0, (exp.to_table("day_index").as_("d"), None, "CROSS"))
        else:  # a unit's rows start on its own first day
            joins.insert(0, (exp.to_table("day_index").as_("d"),
                             exp.column(DAY, table="d") >= exp.column(_FIRST_DAY, table="a"), "INNER"))
    from_alloc = set(allocation_dimensions(experiment))
    for name in experiment.dimensions:
        select = select.select(exp.column(name, table="a" if name in from_alloc else "u"))

    parts, same = _parts(experiment, sources, daily, kinds)
    column_source: dict[int, str] = {}
    for n, part in enumerate(parts):
        alias = f"p{n}"
        steps.append((part.name, part.query))
        on: exp.Expr = exp.column(USER, table=alias).eq(exp.column(USER, table="a"))
        if part.per_day:
            on = exp.and_(on, exp.column(DAY, table=alias).eq(exp.column(DAY, table="d")))
        joins.append((exp.to_table(part.name).as_(alias), on, "LEFT"))
        column_source.update({i: alias for i in part.columns})

    caps = {} if daily else metric_caps(experiment)
    percentile = [name for name, cap in caps.items() if cap.kind == "percentile"]
    names: list[str] = [USER, CELL, *([DAY] if daily else []), *experiment.dimensions]
    for i, column in enumerate(per_user_columns(experiment)):
        j = same[i]
        value = finish(column, exp.column(f"c{j}", table=column_source[j]))
        cap = caps.get(column.name)
        if cap is not None and cap.kind == "absolute":
            lower = None if cap.lower is None else double_literal(float(cap.lower))
            upper = None if cap.upper is None else double_literal(float(cap.upper))
            value = capped(value, lower, upper)
        select = select.select(value.as_(column.name))
        names.append(column.name)

    query = select.from_(exp.to_table("alloc").as_("a"))
    for target, condition, kind in joins:
        if condition is None:
            query = query.join(target, join_type=kind)
        else:
            query = query.join(target, on=condition, join_type=kind)
    if not percentile:
        return _with_residuals(experiment, daily, steps, query)
    # percentile caps: the per-unit values as a step, pooled limits per metric, then the capped select
    steps.append((UNCAPPED, query))
    final = exp.select()
    aliases: dict[str, str] = {}
    for k, name in enumerate(percentile):
        step = f"cap_{k}"
        steps.append((step, pooled_limits(name, caps[name])))
        aliases[name] = f"k{k}"
    for name in names:
        value = exp.column(name, table="t")
        if name in aliases:
            value = capped(value, exp.column("lower", table=aliases[name]), exp.column("upper", table=aliases[name]))
        final = final.select(value.as_(name))
    final = final.from_(exp.to_table(UNCAPPED).as_("t"))
    for k, name in enumerate(percentile):
        final = final.join(exp.to_table(f"cap_{k}").as_(aliases[name]), join_type="CROSS")
    return _with_residuals(experiment, daily, steps, final)


UNCAPPED = "uncapped"


def ratio_metrics(experiment: ExperimentSpec, daily: bool) -> list[RatioMetric]:
    """The ratio metrics whose residual column (``RatioMetric.residual_column``) the table has: the analysis
    table's, not the user-by-day table's (whose fits are per day, not ratios)."""
    return [] if daily else [m for m in experiment.metric_objects() if isinstance(m, RatioMetric)]


def residual_coefficient_sql(numerator: str, denominator: str) -> exp.Expr:
    """``columns.residual_coefficient`` as an aggregate over rows with columns ``numerator`` and
    ``denominator``, counting the rows with both: the ratio of totals rounded to float32 (the same constant on
    every engine), 0 where undefined, out of range, or where the residual could overflow."""
    both = exp.and_(exp.column(numerator).is_(exp.null()).not_(), exp.column(denominator).is_(exp.null()).not_())

    def total(column: str) -> exp.Expr:
        return exp.Sum(this=exp.Case().when(both.copy(), exp.column(column)))

    def largest(column: str) -> exp.Expr:
        return exp.Max(this=exp.Abs(this=exp.Case().when(both.copy(), exp.column(column))))

    ratio = exp.Div(this=total(numerator), expression=exp.Nullif(this=total(denominator), expression=double_literal(0.0)))
    low, high = RESIDUAL_RANGE
    limit = double_literal(RESIDUAL_LIMIT)
    in_range = exp.and_(
        exp.Between(this=exp.Abs(this=ratio.copy()), low=double_literal(low), high=double_literal(high)),
        exp.LTE(this=largest(numerator), expression=limit.copy()),
        exp.LTE(this=exp.Mul(this=largest(denominator), expression=exp.Abs(this=ratio.copy())), expression=limit.copy()),
    )
    rounded = exp.cast(exp.cast(ratio, exp.DataType.build("FLOAT")), DOUBLE)
    return exp.Case().when(in_range, rounded).else_(double_literal(0.0))


#: the step holding one constant ``c{i}`` per ratio (``_with_residuals``)
RATIO_CONSTANTS = "ratio_constants"


def _with_residuals(experiment: ExperimentSpec, daily: bool, steps: list[tuple[str, exp.Select]],
                    final: exp.Select) -> Stage1Plan:
    """``final`` with each ratio's residual column ``y - c * d`` after its columns, the constants from one step
    ``ratio_constants`` (``columns.residual_coefficient`` says why the column exists); ``final`` itself
    without ratios.

    The step reads the ratios' values from the same FROM and only the joins they come from, in one pass, so no
    other column is computed twice and nothing is materialized that was not before.
    """
    ratios = ratio_metrics(experiment, daily)
    if not ratios:
        return Stage1Plan(steps=tuple(steps), final=final)
    values = {s.alias_or_name: (s.this if isinstance(s, exp.Alias) else s) for s in final.selects}
    residuals: list[tuple[str, str, str]] = []  # (numerator column, denominator column, residual column)
    for m in ratios:
        residuals.append((m.name, m.denominator_column, m.residual_column))
        parts = m.covariates_for_parts(experiment.covariates_for(m.name))
        if parts is not None:
            residuals.append((parts[0], parts[1], m.covariate_residual_column))
    pairs = [(values[num], values[den]) for num, den, _ in residuals]
    used = {c.table for pair in pairs for part in pair for c in part.find_all(exp.Column)}
    rows = final.copy()
    rows.set("expressions", [e.copy().as_(f"{side}{k}") for k, (y, d) in enumerate(pairs) for side, e in (("y", y), ("d", d))])
    rows.set("joins", [j.copy() for j in final.args.get("joins") or () if j.alias_or_name in used])
    constants = exp.select(*(residual_coefficient_sql(f"y{k}", f"d{k}").as_(f"c{k}") for k in range(len(pairs))))
    out = final.copy()
    for k, ((_, _, name), (y, d)) in enumerate(zip(residuals, pairs, strict=True)):
        product = exp.Mul(this=exp.column(f"c{k}", table="rc"), expression=exp.paren(d.copy()))
        out = out.select(exp.Sub(this=exp.paren(y.copy()), expression=product).as_(name))
    out = out.join(exp.to_table(RATIO_CONSTANTS).as_("rc"), join_type="CROSS")
    return Stage1Plan(steps=(*steps, (RATIO_CONSTANTS, constants.from_(rows.subquery("v")))), final=out)


def metric_caps(experiment: ExperimentSpec) -> dict[str, Cap]:
    """The capped metrics of the spec (column name = metric name), in the spec's order."""
    return {m.name: m.cap for m in experiment.metric_objects() if m.cap is not None and not isinstance(m, RatioMetric)}


def capped(value: exp.Expr, lower: exp.Expr | None, upper: exp.Expr | None) -> exp.Expr:
    """``value`` winsorized to [lower, upper] as DOUBLE; NULL stays NULL, and so does a NULL limit's side."""
    case = exp.Case()
    if upper is not None:
        case = case.when(exp.GT(this=value.copy(), expression=upper.copy()), exp.cast(upper.copy(), DOUBLE))
    if lower is not None:
        case = case.when(exp.LT(this=value.copy(), expression=lower.copy()), exp.cast(lower.copy(), DOUBLE))
    return exp.cast(case.else_(value.copy()), DOUBLE)


# Exact linear-interpolation quantiles (numpy's "linear" method, its lerp included) from order statistics:
# h = (n - 1) q, a = x_(floor h), b = x_(floor h + 1), t = h - floor h; a + (b - a) t, or b - (b - a)(1 - t) for t >= 0.5.
_RANKED = "SELECT v, ROW_NUMBER() OVER (ORDER BY v) - 1 AS r, COUNT(*) OVER () AS n FROM src WHERE NOT v IS NULL"
_SIDE = (
    "MAX(CASE WHEN r = CAST(FLOOR(CAST(n - 1 AS DOUBLE) * :q) AS BIGINT) THEN v END) AS {s}_a, "
    "MAX(CASE WHEN r = LEAST(CAST(FLOOR(CAST(n - 1 AS DOUBLE) * :q) AS BIGINT) + 1, n - 1) THEN v END) AS {s}_b, "
    "MAX(CAST(n - 1 AS DOUBLE) * :q - FLOOR(CAST(n - 1 AS DOUBLE) * :q)) AS {s}_t"
)
_LERP = "CASE WHEN {s}_t >= 0.5 THEN {s}_b - ({s}_b - {s}_a) * (1.0 - {s}_t) ELSE {s}_a + ({s}_b - {s}_a) * {s}_t END"


@cache
def _template(sql: str) -> exp.Expr:
    """A parsed fixed template (internal names only; user values enter as placeholder literals)."""
    return sqlglot.parse_one(sql, read="duckdb")


def pooled_limits(column: str, cap: Cap) -> exp.Select:
    """One row: the ``lower`` and ``upper`` limits (DOUBLE; NULL for a side not capped) of ``column`` in ``uncapped``.

    Pooled over every unit of every cell with a value, so the limits do not depend on the treatment.
    """
    src = exp.select(exp.cast(exp.column(column), DOUBLE).as_("v")).from_(UNCAPPED)
    ranked = _template(_RANKED).copy()
    assert isinstance(ranked, exp.Select)
    ranked = ranked.from_(src.subquery("s"))
    inner = exp.select()
    outer = exp.select()
    for side in ("lower", "upper"):
        q = getattr(cap, side)
        if q is None:
            outer = outer.select(exp.cast(exp.null(), DOUBLE).as_(side))
            continue
        parts = _template(f"SELECT {_SIDE.format(s=side)}").copy()
        parts = exp.replace_placeholders(parts, q=double_literal(float(q)))
        assert isinstance(parts, exp.Select)
        inner = inner.select(*parts.selects)
        lerp = _template(_LERP.format(s=side)).copy()
        outer = outer.select(exp.cast(lerp, DOUBLE).as_(side))
    return outer.from_(inner.from_(ranked.subquery("ranked")).subquery("order_stats"))


def output_columns(experiment: ExperimentSpec, daily: bool, user_type: str = "bigint") -> list[OutputColumn]:
    """The columns (and SQL types) a stage-1 table has, in order; the unit id keeps its source type."""
    out = [OutputColumn(USER, user_type), OutputColumn(CELL, "string")]
    if daily:
        out.append(OutputColumn(DAY, "int"))
    out += [OutputColumn(d, "string") for d in experiment.dimensions]
    caps = {} if daily else metric_caps(experiment)
    out += [OutputColumn(c.name, "double" if c.name in caps else c.dtype) for c in per_user_columns(experiment)]
    for m in ratio_metrics(experiment, daily):
        out.append(OutputColumn(m.residual_column, "double"))
        if m.covariates_for_parts(experiment.covariates_for(m.name)) is not None:
            out.append(OutputColumn(m.covariate_residual_column, "double"))
    return out


def source_columns(experiment: ExperimentSpec) -> dict[str, set[str]]:
    """Columns each source must have (checked before a query runs, so errors name the spec's source)."""
    need: dict[str, set[str]] = {}
    alloc = experiment.sources[experiment.allocation.source]
    need.setdefault(experiment.allocation.source, set()).update({alloc.user_column, experiment.allocation.cell_column})
    if experiment.allocation.exposure_column is not None:
        need[experiment.allocation.source].add(experiment.allocation.exposure_column)
    users = experiment.sources[experiment.users_source]
    ctx = experiment.sql_context()
    need.setdefault(experiment.users_source, set()).add(users.user_column)
    for d in experiment.dimensions:
        dim = experiment.dimension(d)
        need.setdefault(dim.source, set()).update(dim.columns(ctx))
    for column in per_user_columns(experiment):
        spec = experiment.sources[column.aggregate.source]
        need.setdefault(column.aggregate.source, set()).update(
            column.aggregate.columns() | {spec.user_column, spec.date_column}
        )
    return need
