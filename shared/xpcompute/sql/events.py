"""Stage-1 events table of an event-level quantile metric, and the stage-2 scan of one slice of it.

Stage 1 (``events_plan``): one row per event of the metric's source inside its unit's analysis window (the
rule of ``sql/stage1.Windows``: from ``max(first exposure, window start)`` through the window's last day), that
matches the metric's ``where`` and has a value, for units allocated to exactly one declared cell::

    alloc   (sql/stage1's allocation step: unit, cell, start, allocation-source dimensions)
    dims    (sql/stage1's users step: one row per unit, its dimensions)
    SELECT x.unit AS user_id, x.cell AS cell, <dimensions>, CAST(<value> AS DOUBLE) AS value,
           CAST(x.cell_index AS SMALLINT) AS _xp_cell, CAST(x.cluster AS SMALLINT) AS _xp_cluster
    FROM <source> JOIN (alloc + cell index + cluster, per unit) AS x ON <source user> = x.unit
         LEFT JOIN dims AS d ON x.unit = d.unit
    WHERE <analysis window> AND <where> AND <value> IS NOT NULL

Every divisor in the metric's value and ``where`` is guarded (``sql/stage1.zero_safe``): x/0 is NULL, so the
event is left out, on every engine.

The cell and the unit's dimensions are written on every event (denormalised), so a slice is a scan with a
filter and stage 2 never joins. So are two small integers stage 2 reads instead of the unit id and the cell
label: ``_xp_cell``, the cell's index in the experiment's sorted cells (a CASE of literals), and
``_xp_cluster``, the unit's cluster (``cluster_sql``), both computed once per unit in the allocation subquery.
The allocation and users steps join as subqueries with internal column names (``_xp_*``), so a source column
named ``cell`` or ``user_id`` cannot become ambiguous.

The unit cluster (``CLUSTER_RULE``): ``int(first 7 hex digits of MD5(CAST(unit AS VARCHAR)), 16) mod M``, i.e.
in Python ``int(hashlib.md5(str(unit).encode()).hexdigest()[:7], 16) % M`` for integer and string ids. It is a
sqlglot expression of MD5, SUBSTRING and STRPOS only (every intermediate below 2**28, so no 64-bit arithmetic),
so DuckDB, Spark and Trino compute the same clusters (golden SQL: tests/pipeline/golden/stage1_events_*). The
first digits, not the last: the segment cube's half is the last digit's lowest bit (``segments/cube.py``).

Stage 2 (``slice_scan``): ``SELECT _xp_cell, _xp_cluster, value FROM events WHERE <slice>``. An events table
published before those columns existed gets them computed in the scan by the same rule (the same clusters).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlglot import exp

from xpcompute.compression.events import EVENT_CLUSTERS
from xpcompute.experiment import ExperimentSpec
from xpcompute.metrics.base import lit
from xpcompute.metrics.events import EventQuantileMetric
from xpcompute.sql import stage1 as q
from xpcompute.sql.stage1 import CELL, DOUBLE, USER, Stage1Plan, TimeKind

VALUE = "value"
CELL_INDEX = "_xp_cell"
CLUSTER = "_xp_cluster"
_UNIT = "_xp_unit"
_CELL = "_xp_cell"
_START = "_xp_start"
_DIGEST = "_xp_md5"
_CLUSTER = "_xp_k"
_INDEX = "_xp_c"
HEX = "0123456789abcdef"
#: Hex digits of the digest the cluster is read from (7: below 2**28, so 32-bit arithmetic suffices everywhere).
CLUSTER_DIGITS = 7
CLUSTER_RULE = ("unit cluster = int(first 7 hex digits of MD5(CAST(unit AS VARCHAR)), 16) mod M "
                "(Python: int(hashlib.md5(str(unit).encode()).hexdigest()[:7], 16) % M)")


def digest_sql(unit: exp.Expr) -> exp.Expr:
    """``MD5(CAST(unit AS VARCHAR))``: 32 lowercase hex digits in every dialect (Trino's via TO_HEX/LOWER)."""
    return exp.func("MD5", exp.cast(unit, "VARCHAR"))


def cluster_sql(digest: exp.Expr, clusters: int) -> exp.Expr:
    """The unit's cluster from its digest: ``(sum_i hexval(digit_i) * 16^(6-i)) % clusters`` over the first 7 hex
    digits (``CLUSTER_RULE``); ``hexval`` is ``STRPOS('0123456789abcdef', digit) - 1``."""
    total: exp.Expr | None = None
    for i in range(CLUSTER_DIGITS):
        digit = exp.Substring(this=digest.copy(), start=exp.Literal.number(i + 1), length=exp.Literal.number(1))
        value: exp.Expr = exp.Sub(this=exp.StrPosition(this=exp.Literal.string(HEX), substr=digit),
                                  expression=exp.Literal.number(1))
        weight = 16 ** (CLUSTER_DIGITS - 1 - i)
        term = exp.Mul(this=exp.paren(value), expression=exp.Literal.number(weight)) if weight > 1 else exp.paren(value)
        total = term if total is None else exp.Add(this=total, expression=term)
    assert total is not None
    return exp.Mod(this=exp.paren(total), expression=exp.Literal.number(clusters))


def cell_index_sql(cell: exp.Expr, cells: tuple[str, ...]) -> exp.Expr:
    """The cell's index in ``cells`` (the experiment's sorted cells): a CASE of literals, NULL for any other."""
    case = exp.Case()
    for i, c in enumerate(cells):
        case = case.when(cell.copy().eq(lit(c)), exp.Literal.number(i))
    return case


def unit_clusters_py(units: object, clusters: int = EVENT_CLUSTERS) -> list[int]:
    """``CLUSTER_RULE`` in Python (for tests and checks): the cluster of each unit id (int or str)."""
    import hashlib

    return [int(hashlib.md5(str(u).encode()).hexdigest()[:CLUSTER_DIGITS], 16) % clusters
            for u in units]  # type: ignore[attr-defined]


def _dim_alias(name: str) -> str:
    return f"_xp_d_{name}"


def events_plan(
    experiment: ExperimentSpec, metric: EventQuantileMetric, sources: Mapping[str, exp.Table],
    kinds: Mapping[str, TimeKind] | None = None,
) -> Stage1Plan:
    """The events table of ``metric``: one row per event in its unit's analysis window (module docstring)."""
    spec = experiment.sources[metric.source]
    kind = (kinds or {}).get(metric.source, "date")
    win = q.Windows(experiment, kind, experiment.allocation.exposure_column is not None)
    alloc_dims = q.allocation_dimensions(experiment)
    user_dims = [d for d in experiment.dimensions if d not in alloc_dims]

    x_cols: list[exp.Expr] = [exp.column(USER).as_(_UNIT), exp.column(CELL).as_(_CELL)]
    if experiment.allocation.exposure_column is not None:
        x_cols.append(exp.column(_START))
    x_cols += [exp.column(d).as_(_dim_alias(d)) for d in alloc_dims]
    # per unit, once: its digest, then its cluster and cell index from it (never per event)
    inner = exp.select(*x_cols, digest_sql(exp.column(USER)).as_(_DIGEST)).from_("alloc").subquery("a")
    x_names = [c.alias_or_name for c in x_cols]
    x = exp.select(
        *[exp.column(n) for n in x_names],
        cluster_sql(exp.column(_DIGEST), EVENT_CLUSTERS).as_(_CLUSTER),
        cell_index_sql(exp.column(_CELL), tuple(sorted(experiment.cells))).as_(_INDEX),
    ).from_(inner).subquery("x")
    d_cols: list[exp.Expr] = [exp.column(USER).as_(_UNIT)] + [exp.column(d).as_(_dim_alias(d)) for d in user_dims]
    d = exp.select(*d_cols).from_("dims").subquery("d")

    value = q.zero_safe(metric.value())
    select = exp.select(
        exp.column(_UNIT, table="x").as_(USER), exp.column(_CELL, table="x").as_(CELL),
        *[exp.column(_dim_alias(n), table="x" if n in alloc_dims else "d").as_(n) for n in experiment.dimensions],
        exp.cast(value.copy(), DOUBLE).as_(VALUE),
        exp.cast(exp.column(_INDEX, table="x"), exp.DataType.build("SMALLINT")).as_(CELL_INDEX),
        exp.cast(exp.column(_CLUSTER, table="x"), exp.DataType.build("SMALLINT")).as_(CLUSTER),
    )
    select = select.from_(sources[metric.source].copy()).join(
        x, on=exp.column(spec.user_column).eq(exp.column(_UNIT, table="x")), join_type="INNER"
    )
    if user_dims:
        select = select.join(d, on=exp.column(_UNIT, table="x").eq(exp.column(_UNIT, table="d")), join_type="LEFT")
    conds: list[exp.Expr] = [win.analysis(exp.column(spec.date_column)), value.copy().is_(exp.null()).not_()]
    condition = metric.condition()
    if condition is not None:
        conds.append(exp.paren(q.zero_safe(condition)))
    select = select.where(exp.and_(*conds))
    steps: list[tuple[str, exp.Select]] = [("alloc", q._alloc_cte(experiment, sources))]
    if user_dims:
        steps.append(("dims", q._dims_cte(experiment, sources)))
    return Stage1Plan(steps=tuple(steps), final=select)


def slice_scan(table: exp.Table, cells: tuple[str, ...], clusters: int, predicate: exp.Expr | None,
               stored: bool = False) -> exp.Select:
    """Cell index, unit cluster and value of the events a slice selects (DuckDB; see the module docstring).

    ``stored``: the table has stage 1's ``_xp_cell`` and ``_xp_cluster`` columns (for these ``cells`` and
    ``EVENT_CLUSTERS`` clusters), read as they are; else both are computed here by the same rules.
    """
    conds: list[exp.Expr] = []
    if stored:
        cell: exp.Expr = exp.column(CELL_INDEX)
        cluster: exp.Expr = exp.column(CLUSTER)
    else:
        cell = exp.cast(cell_index_sql(exp.column(CELL), cells), exp.DataType.build("SMALLINT"))
        cluster = exp.cast(cluster_sql(digest_sql(exp.column(USER)), clusters), exp.DataType.build("SMALLINT"))
        conds.append(exp.column(CELL).isin(*[lit(c) for c in cells]))
    query = exp.select(cell.as_(CELL_INDEX), cluster.as_(CLUSTER), exp.column(VALUE)).from_(table.copy())
    if predicate is not None:
        conds.append(exp.paren(predicate))
    return query.where(exp.and_(*conds)) if conds else query


def histogram_query(scan: exp.Select, guide: exp.Table, scale: float, start: float, inverse: float,
                    cells: int) -> exp.Select:
    """The event histogram in SQL: (cell index, cluster, bucket) with events, smallest and largest value.

    The bucket comes from the guide table (``compression.events.Guide``) joined on the value's grid cell, then
    one step either way; the caller checks every bucket's values lie within its edges. Non-finite values do not
    count (as in the native route).
    """
    v = exp.column(VALUE)
    sign = exp.Case().when(v.copy() < exp.Literal.number(0), exp.Literal.number(-1)).else_(exp.Literal.number(1))
    t = exp.Mul(this=exp.paren(sign), expression=exp.Ln(this=exp.Add(
        this=exp.Literal.number(1), expression=exp.Div(this=exp.Abs(this=v.copy()), expression=double_lit(scale)))))
    raw = exp.Floor(this=exp.Mul(this=exp.paren(exp.Sub(this=t, expression=double_lit(start))),
                                 expression=double_lit(inverse)))
    g = exp.cast(exp.Least(this=exp.Greatest(this=raw, expressions=[exp.Literal.number(0)]),
                           expressions=[exp.Literal.number(cells - 1)]), exp.DataType.build("INT"))
    inner = exp.select(exp.column(CELL_INDEX), exp.column(CLUSTER), v.copy(), g.as_("_xp_g")).from_(
        scan.subquery("s")).where(exp.Anonymous(this="isfinite", expressions=[v.copy()]))
    step_down = exp.Case().when(exp.column(VALUE, table="e") < exp.column("below", table="gd"),
                                exp.Literal.number(1)).else_(exp.Literal.number(0))
    step_up = exp.Case().when(exp.column(VALUE, table="e") >= exp.column("above", table="gd"),
                              exp.Literal.number(1)).else_(exp.Literal.number(0))
    bucket = exp.Add(this=exp.Sub(this=exp.column("first", table="gd"), expression=step_down), expression=step_up)
    return (
        exp.select(
            exp.column(CELL_INDEX, table="e").as_(CELL_INDEX), exp.column(CLUSTER, table="e").as_(CLUSTER),
            bucket.as_("bucket"), exp.Count(this=exp.Star()).as_("n"),
            exp.Min(this=exp.column(VALUE, table="e")).as_("lo"), exp.Max(this=exp.column(VALUE, table="e")).as_("hi"),
        )
        .from_(inner.subquery("e"))
        .join(exp.alias_(guide.copy(), "gd"), on=exp.column("_xp_g", table="e").eq(exp.column("g", table="gd")))
        .group_by(exp.Literal.number(1), exp.Literal.number(2), exp.Literal.number(3))
    )


def double_lit(x: float) -> exp.Expr:
    """A double literal that round-trips exactly (repr of the float)."""
    return exp.cast(exp.Literal.number(repr(float(x))), DOUBLE)
