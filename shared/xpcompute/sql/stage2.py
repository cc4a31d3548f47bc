"""The stage-2 query: filter the analysis table to one slice and GROUP BY into the compressed schema.

For keys ``K`` (the cell first) and each metric ``m`` with continuous
covariates ``c1..ck`` it selects, per group:

- ``_n``: every row of the group, as DOUBLE (``compress_moments`` counts in float64);
- ``{m}__m_{ey}_{e1}..`` for each monomial of ``schema.monomials(k)``: the sum
  over rows where ``m`` and every ``ci`` are non-null of ``m^ey * c1^e1 ...``;
  the all-zero monomial is the metric's row count.

The ``src`` CTE filters the slice and casts each metric's variables to DOUBLE,
masked to the rows where all of them are present (``_xp_{metric}_{var}``),
and, given the analysis table's per-column constants (``compression/transform.py``),
shifts and scales them: ``(CAST(x AS DOUBLE) - shift) * inv_scale`` with both
constants as DOUBLE literals in exponent notation (every dialect reads those
as DOUBLE, correctly rounded), the two operations ``compress_moments`` runs;
powers are repeated products of those, so integer columns cannot overflow and
every dialect computes the same terms. Groups with
a null key and groups where no metric has a value are removed by the caller
(``pipeline/stage2.py``), which also sorts, exactly as ``compress_moments``
does, so one query serves every engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlglot import exp

from xpcompute.compression.schema import COUNT_COLUMN, moment_column, monomials
from xpcompute.compression.transform import IDENTITY, ColumnTransform
from xpcompute.metrics.base import lit

DOUBLE = exp.DataType.build("DOUBLE")


@dataclass(frozen=True)
class MetricMoments:
    """One metric of a stage-2 query and its continuous covariates (the compressed layout's order)."""

    metric: str
    covariates: tuple[str, ...] = ()
    #: per-variable (metric, then covariates) shift and scale; empty: every variable as it is
    transforms: tuple[ColumnTransform, ...] = ()

    @property
    def variables(self) -> tuple[str, ...]:
        return (self.metric, *self.covariates)

    def transform(self, j: int) -> ColumnTransform:
        return self.transforms[j] if self.transforms else IDENTITY


def double_literal(value: float) -> exp.Expr:
    """``value`` as a DOUBLE literal that every dialect parses back to the same float64.

    Exponent notation (17 significant digits) makes it a DOUBLE literal in
    DuckDB, Trino and Spark alike (a plain ``0.1`` is a DECIMAL in some of them,
    whose conversion to DOUBLE need not round correctly).
    """
    return exp.cast(exp.Literal.number(format(float(value), ".17e")), DOUBLE)


def transformed(value: exp.Expr, transform: ColumnTransform) -> exp.Expr:
    """``(value - shift) * inv_scale``, or ``value`` itself for the identity."""
    if transform.is_identity:
        return value
    shifted = exp.paren(exp.Sub(this=value, expression=double_literal(transform.shift)))
    return exp.Mul(this=shifted, expression=double_literal(transform.inv_scale))


def _var(i: int, j: int) -> str:
    """Internal name of variable ``j`` (0 = the metric) of metric ``i``, masked to the metric's valid rows."""
    return f"_xp_{i}_{j}"


def _term(names: Sequence[str], exponents: Sequence[int]) -> exp.Expr:
    factors: list[exp.Expr] = []
    for name, e in zip(names, exponents, strict=True):
        factors += [exp.column(name)] * e
    term: exp.Expr = factors[0].copy()
    for f in factors[1:]:
        term = exp.Mul(this=term, expression=f.copy())
    return term


def masked_variables(i: int, moments: MetricMoments) -> list[exp.Expr]:
    """The metric and its covariates as DOUBLE, null on every row where any of them is null.

    Masking once per row (rather than guarding every monomial with a CASE)
    makes each aggregate a plain SUM of products: a row that lacks the metric
    or a covariate drops out of every monomial, and ``COUNT`` of the masked
    metric is the metric's row count, as ``compress_moments`` defines them.
    """
    variables = moments.variables
    valid: exp.Expr | None = None
    if moments.covariates:
        valid = exp.and_(*[exp.Not(this=exp.column(v).is_(exp.null())) for v in variables])
    out: list[exp.Expr] = []
    for j, v in enumerate(variables):
        value: exp.Expr = transformed(exp.cast(exp.column(v), DOUBLE), moments.transform(j))
        if valid is not None:
            value = exp.Case().when(valid.copy(), value)
        out.append(value.as_(_var(i, j)))
    return out


def moment_selects(i: int, moments: MetricMoments) -> list[exp.Expr]:
    """The aggregate expressions of metric ``i``, aliased to its compressed column names."""
    names = [_var(i, j) for j in range(len(moments.variables))]
    out: list[exp.Expr] = []
    for exps in monomials(len(moments.covariates)):
        alias = moment_column(moments.metric, exps)
        if not any(exps):
            out.append(exp.cast(exp.Count(this=exp.column(names[0])), DOUBLE).as_(alias))
        else:
            out.append(exp.Coalesce(this=exp.Sum(this=_term(names, exps)), expressions=[exp.cast(lit(0), DOUBLE)]).as_(alias))
    return out


def slice_query(
    table: exp.Table,
    keys: Sequence[str],
    metrics: Sequence[MetricMoments],
    where: exp.Expr | None,
) -> exp.Select:
    """``WITH src AS (SELECT keys, masked vars FROM table WHERE slice) SELECT keys, moments GROUP BY keys``."""
    src = exp.select(*[exp.column(k) for k in keys])
    for i, m in enumerate(metrics):
        src = src.select(*masked_variables(i, m))
    src = src.from_(table.copy())
    if where is not None:
        src = src.where(where.copy())
    query = exp.select(*[exp.column(k) for k in keys])
    query = query.select(exp.cast(exp.Count(this=exp.Star()), DOUBLE).as_(COUNT_COLUMN))
    for i, m in enumerate(metrics):
        query = query.select(*moment_selects(i, m))
    query = query.from_("src").group_by(*[exp.column(k) for k in keys]).order_by(*[exp.column(k) for k in keys])
    return query.with_("src", as_=src)


def distribution_query(table: exp.Table, keys: Sequence[str], metric: str, value_column: str, where: exp.Expr | None) -> exp.Select:
    """GROUP BY the keys and the metric's exact value: ``compression.distribution``'s lossless schema.

    One row per (keys, value) with ``_n`` and ``{metric}__m_0/1/2`` (count,
    sum y, sum y^2); rows with a null value form a null-value group that the
    caller drops and counts, as ``compress_values`` does.
    """
    src = exp.select(*[exp.column(k) for k in keys], exp.cast(exp.column(metric), DOUBLE).as_("_xp_v")).from_(table.copy())
    if where is not None:
        src = src.where(where.copy())
    v = exp.column("_xp_v")
    group = [*[exp.column(k) for k in keys], v]
    query = exp.select(*[exp.column(k) for k in keys], v.copy().as_(value_column))
    query = query.select(exp.cast(exp.Count(this=exp.Star()), DOUBLE).as_(COUNT_COLUMN))
    for e in range(3):
        alias = moment_column(metric, (e,))
        if e == 0:
            query = query.select(exp.cast(exp.Count(this=v.copy()), DOUBLE).as_(alias))
        else:
            term: exp.Expr = v.copy() if e == 1 else exp.Mul(this=v.copy(), expression=v.copy())
            query = query.select(exp.Coalesce(this=exp.Sum(this=term), expressions=[exp.cast(lit(0), DOUBLE)]).as_(alias))
    query = query.from_("src").group_by(*group).order_by(*[g.copy() for g in group])
    return query.with_("src", as_=src)
