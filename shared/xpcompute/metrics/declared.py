"""Metrics, ratios, covariates and dimensions declared in an experiment's YAML instead of in Python.

Most teams' metrics are "sum (or count, max, any ...) of one column of one
table, maybe with a filter". Writing a Python class for each is a barrier, so
the experiment YAML may declare them. A declaration becomes the same kind of
object a Python class gives (a ``Metric``, ``Covariate`` or ``Dimension``
instance), so stage 1, stage 2 and the models cannot tell them apart.

Expressions (``value``, ``where``) are text the user wrote, so they are held
to a closed grammar: sqlglot parses them, and only column references,
literals, arithmetic, comparisons, ``AND``/``OR``/``NOT``, ``IN``/``BETWEEN``/
``IS NULL``, ``CASE`` and an allow-list of scalar functions are accepted. No
subqueries, no ``*``, no qualified names, no other functions: the parsed tree
is what reaches every engine, rendered per dialect by sqlglot, so no text the
user wrote is ever pasted into SQL.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from xpcompute.errors import InputError
from xpcompute.lazy import lazy
from xpcompute.metrics.base import (
    PER_METRIC_MODELS,
    Aggregation,
    Cap,
    ColumnType,
    Covariate,
    Dimension,
    DimensionType,
    Metric,
    Part,
    RatioMetric,
    SqlContext,
    check_identifier,
    col,
)
from xpcompute.spec import ModelName

if TYPE_CHECKING:
    import sqlglot
    from sqlglot import exp
else:  # sqlglot loads when an expression is first parsed: a spec without declared expressions never needs it
    sqlglot = lazy("sqlglot")
    exp = lazy("sqlglot", "exp")

@cache
def _grammar() -> tuple[tuple[type[exp.Expr], ...], tuple[type[exp.Expr], ...], frozenset[object]]:
    """(functions, other nodes, cast types) a declared expression may contain, as sqlglot classes.

    Built on first use (sqlglot loads with it): importing this module, as every experiment spec does, must not
    cost a function that never parses an expression the import of sqlglot.
    """
    functions = (  # scalar functions a declared expression may call
        exp.Coalesce, exp.Abs, exp.Round, exp.Floor, exp.Ceil, exp.Greatest, exp.Least, exp.Nullif,
        exp.Lower, exp.Upper, exp.Length, exp.Ln, exp.Exp, exp.Sqrt, exp.Pow, exp.If, exp.Cast, exp.TryCast,
    )
    nodes = (  # everything else: the grammar of arithmetic, logic and CASE
        exp.Column, exp.Identifier, exp.Literal, exp.Boolean, exp.Null, exp.Paren, exp.Neg,
        exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.IntDiv,
        exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Is, exp.In, exp.Between, exp.Like, exp.ILike,
        exp.And, exp.Or, exp.Not, exp.Case, exp.DataType, exp.DataTypeParam, exp.Tuple,
    )
    t = exp.DataType.Type
    casts = frozenset({t.DOUBLE, t.FLOAT, t.BIGINT, t.INT, t.SMALLINT, t.DECIMAL, t.VARCHAR, t.TEXT, t.BOOLEAN,
                       t.DATE, t.TIMESTAMP})
    return functions, nodes, casts


def __getattr__(name: str) -> object:
    """``ALLOWED_FUNCTIONS`` and ``ALLOWED_NODES``, the allow-lists, built on first read (``_grammar``)."""
    if name == "ALLOWED_FUNCTIONS":
        return _grammar()[0]
    if name == "ALLOWED_NODES":
        return _grammar()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


MAX_EXPRESSION_CHARS = 2000
_FUNCTION_NAMES = "coalesce, abs, round, floor, ceil, greatest, least, nullif, lower, upper, length, ln, exp, sqrt, power, if, cast"


@cache
def parse_expression(text: str, role: str = "expression") -> exp.Expr:
    """Parse and check one declared expression; raise ``InputError`` naming what is not allowed.

    Cached: the same text parses to the same tree, and callers copy before changing it.
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{role} is empty; write a column name or an expression such as 'amount * quantity'")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise InputError(f"{role} is {len(text)} characters long; at most {MAX_EXPRESSION_CHARS} are allowed")
    if ";" in text:
        raise InputError(f"{role} {text!r} contains ';'; write one expression, not statements")
    functions, nodes, casts = _grammar()
    try:
        tree = sqlglot.parse_one(text, read="duckdb", into=exp.Condition)
    except (sqlglot.errors.ParseError, ValueError) as exc:
        raise InputError(f"{role} {text!r} is not a valid expression: {str(exc).splitlines()[0]}") from None
    for node in tree.walk():
        if isinstance(node, exp.Column):
            if node.table or node.args.get("db") or node.args.get("catalog"):
                raise InputError(f"{role} {text!r}: write column {node.name!r} without a table prefix")
            if isinstance(node.this, exp.Star):
                raise InputError(f"{role} {text!r}: '*' is not allowed; name the column")
            check_identifier(node.name, f"{role} {text!r}: column")
            continue
        if isinstance(node, exp.DataType):
            if node.this not in casts:
                raise InputError(f"{role} {text!r}: cast to {node.sql()} is not allowed; use a number, string, "
                                 "boolean, date or timestamp type")
            continue
        if isinstance(node, functions + nodes):
            continue
        what = node.sql_name() if isinstance(node, exp.Func) else type(node).__name__
        raise InputError(
            f"{role} {text!r}: {what!r} is not allowed; declared expressions may use columns, literals, "
            f"arithmetic, comparisons, AND/OR/NOT, IN, BETWEEN, IS NULL, LIKE, CASE and the functions {_FUNCTION_NAMES}. "
            "Anything else belongs in a Python metric in your metrics repo"
        )
    return tree


def _name(value: str, role: str) -> str:
    try:
        return check_identifier(value, role)
    except InputError as exc:
        raise ValueError(str(exc)) from None


class _Declared(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        return _name(v, "name")


class _Display(_Declared):
    unit: str = ""
    format: str | None = Field(default=None, description="Python format for values, e.g. '{:,.2f}' or '{:.2%}'.")
    higher_is_better: bool | None = True
    models: tuple[ModelName, ...] | None = None

    @field_validator("format")
    @classmethod
    def _format(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                v.format(1.5)
            except (ValueError, IndexError, KeyError) as exc:
                raise ValueError(f"format {v!r} cannot format a number ({exc}); write e.g. '{{:,.2f}}'") from None
        return v

    @field_validator("models")
    @classmethod
    def _models(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        bad = [m for m in v or () if m not in PER_METRIC_MODELS]
        if bad:
            raise ValueError(f"models {bad} cannot be declared on a metric; choose from {sorted(PER_METRIC_MODELS)}")
        return v


class DeclaredCap(BaseModel):
    """Outlier capping of a metric's per-unit values (``metrics.base.Cap``): ``{upper: 0.99}``, ``{lower: 0, kind: absolute}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    upper: float | None = Field(default=None, description="Upper limit: a probability (percentile) or a value (absolute).")
    lower: float | None = Field(default=None, description="Lower limit, likewise; None: that side is not capped.")
    kind: Literal["percentile", "absolute"] = "percentile"

    def to_cap(self) -> Cap:
        return Cap(upper=self.upper, lower=self.lower, kind=self.kind)


class DeclaredMetric(_Display):
    """A per-unit metric: ``aggregation`` of ``value`` over the rows of ``source`` that match ``where``."""

    kind: Literal["metric"] = "metric"
    source: str
    value: str = Field(default="1", description="Row-level expression over the source's columns (default 1: count rows).")
    where: str | None = Field(default=None, description="Row-level condition; only matching rows count.")
    aggregation: Aggregation = "sum"
    divisor: float = Field(default=1.0, gt=0, description="Divide the per-unit value by this (unit conversion).")
    cap: DeclaredCap | None = Field(default=None, description="Outlier capping (winsorization) of the per-unit values.")

    @field_validator("cap")
    @classmethod
    def _cap(cls, v: DeclaredCap | None) -> DeclaredCap | None:
        if v is not None:
            try:
                v.to_cap()
            except InputError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        return _name(v, "source")

    @field_validator("value")
    @classmethod
    def _value(cls, v: str) -> str:
        try:
            parse_expression(v, "value")
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("where")
    @classmethod
    def _where(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_expression(v, "where")
            except InputError as exc:
                raise ValueError(str(exc)) from None
        return v


class DeclaredRatio(_Display):
    """A ratio of two metrics' totals (``numerator`` / ``denominator``), analysed by the delta method."""

    kind: Literal["ratio"] = "ratio"
    numerator: str
    denominator: str
    covariates: tuple[str, str] | None = Field(
        default=None,
        description="CUPED for the ratio: [numerator's pre-period covariate, denominator's], e.g. "
        "[pre_revenue, pre_orders]; each must be a declared covariate that adjusts this ratio.",
    )


class DeclaredCovariate(_Declared):
    """A metric's value in the pre-period (the days before each unit's exposure), for CUPED."""

    metric: str
    adjusts: tuple[str, ...] = Field(default=(), description="Metrics it adjusts (default: the metric itself).")


class DeclaredDimension(_Declared):
    """A column to slice and segment by, read from the users source or the allocation source."""

    column: str | None = Field(default=None, description="Source column (default: the dimension's name).")
    source: str | None = Field(default=None, description="Source holding it (default: users_source).")
    type: DimensionType = "string"
    values: tuple[str, ...] | None = Field(default=None, description="Closed set of allowed slice values.")

    @field_validator("column")
    @classmethod
    def _column(cls, v: str | None) -> str | None:
        return None if v is None else _name(v, "column")


class DeclaredEventQuantile(_Display):
    """An event-level quantile metric: ``quantiles`` of ``value`` over the events of ``source`` matching ``where``
    (each event counts once; ``metrics/events.py``). Written ``aggregation: event_quantile``."""

    kind: Literal["event_quantile"] = "event_quantile"
    source: str
    value: str = Field(description="Event-level numeric expression over the source's columns, e.g. 'amount'.")
    where: str | None = Field(default=None, description="Event-level condition; only matching events count.")
    #: required (no default), so the stored spec, which leaves defaults out, still says what this is
    aggregation: Literal["event_quantile"]
    quantiles: tuple[float, ...] = Field(default=(0.5, 0.9), description="Probabilities in (0, 1), e.g. [0.5, 0.9].")
    higher_is_better: bool | None = None

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        return _name(v, "source")

    @field_validator("value", "where")
    @classmethod
    def _expression(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_expression(v, "value")
            except InputError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("quantiles")
    @classmethod
    def _quantiles(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not 0 < q < 1 for q in v):
            raise ValueError(f"quantiles must be probabilities strictly between 0 and 1, e.g. [0.5, 0.9]; got {list(v)}")
        return v

    @field_validator("models")
    @classmethod
    def _only_event_model(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None and tuple(v) != ("event_quantile",):
            raise ValueError("an event-level quantile metric is analysed by model 'event_quantile' only; drop 'models'")
        return v


MetricDeclaration = Annotated[DeclaredMetric | DeclaredRatio | DeclaredEventQuantile, Field(discriminator="kind")]


def _default_models(aggregation: str) -> tuple[ModelName, ...]:
    return ("proportion",) if aggregation in ("any", "none") else ("ttest",)


def _default_format(aggregation: str) -> str:
    return "{:.2%}" if aggregation in ("any", "none") else "{:,.3f}"


def build_metric(decl: DeclaredMetric) -> Metric:
    """A ``Metric`` instance that behaves exactly like a Python-declared one."""
    value = parse_expression(decl.value, f"metric {decl.name!r} value")
    where = parse_expression(decl.where, f"metric {decl.name!r} where") if decl.where else None
    dtype: ColumnType = "bigint" if decl.aggregation in ("count", "count_distinct", "any", "none") and decl.divisor == 1 else "double"
    attrs: dict[str, object] = {
        "name": decl.name, "source": decl.source, "aggregation": decl.aggregation,
        "models": decl.models or _default_models(decl.aggregation), "description": decl.description,
        "unit": decl.unit or ("share" if decl.aggregation in ("any", "none") else ""),
        "format": decl.format or _default_format(decl.aggregation), "higher_is_better": decl.higher_is_better,
        "divisor": decl.divisor, "dtype": dtype, "cap": None if decl.cap is None else decl.cap.to_cap(),
        "value": lambda self: value.copy(),
        "condition": lambda self: None if where is None else where.copy(),
    }
    cls = type(f"Declared_{decl.name}", (Metric,), attrs)
    return cls()


def build_event_quantile(decl: DeclaredEventQuantile) -> Metric:
    """An ``EventQuantileMetric`` instance, like a Python-declared one."""
    from xpcompute.metrics.events import EventQuantileMetric

    value = parse_expression(decl.value, f"metric {decl.name!r} value")
    where = parse_expression(decl.where, f"metric {decl.name!r} where") if decl.where else None
    attrs: dict[str, object] = {
        "name": decl.name, "source": decl.source, "quantiles": tuple(decl.quantiles),
        "description": decl.description or f"quantiles of {decl.value} over the events of {decl.source}",
        "unit": decl.unit, "format": decl.format or "{:,.3f}", "higher_is_better": decl.higher_is_better,
        "value": lambda self: value.copy(),
        "condition": lambda self: None if where is None else where.copy(),
    }
    return type(f"Declared_{decl.name}", (EventQuantileMetric,), attrs)()


def build_ratio(decl: DeclaredRatio, numerator: Metric, denominator: Metric) -> Metric:
    """A ``RatioMetric`` over two (declared or Python) simple metrics."""
    for role, m in (("numerator", numerator), ("denominator", denominator)):
        if isinstance(m, RatioMetric):
            raise InputError(f"ratio {decl.name!r}: its {role} {m.name!r} is itself a ratio; name a simple metric")
    num = numerator.aggregate()
    den = denominator.aggregate()
    num_part = Part(num.source, num.value, num.how, num.condition, numerator.divisor)
    den_part = Part(den.source, den.value, den.how, den.condition, denominator.divisor)
    attrs: dict[str, object] = {
        "name": decl.name, "source": num.source, "models": decl.models or ("ratio",),
        "description": decl.description or f"{numerator.name} per {denominator.name} (ratio of totals)",
        "unit": decl.unit, "format": decl.format or "{:,.4f}", "higher_is_better": decl.higher_is_better,
        "numerator": lambda self: num_part, "denominator": lambda self: den_part,
        "part_covariates": decl.covariates,
    }
    cls = type(f"Declared_{decl.name}", (RatioMetric,), attrs)
    return cls()


def build_covariate(decl: DeclaredCovariate, metric: Metric) -> Covariate:
    """A pre-period covariate of ``metric`` (its first analysis column, read over the pre-period)."""
    if isinstance(metric, RatioMetric):
        raise InputError(f"covariate {decl.name!r}: metric {metric.name!r} is a ratio; a covariate is the "
                         "pre-period value of a simple metric")
    attrs: dict[str, object] = {
        "name": decl.name, "metric": type(metric), "adjusts": decl.adjusts,
        "description": decl.description or f"{metric.name} in the pre-period",
    }
    return type(f"Declared_{decl.name}", (Covariate,), attrs)()


def build_dimension(decl: DeclaredDimension, default_source: str) -> Dimension:
    """A column dimension: the value of ``column`` in ``source``."""
    column = decl.column or decl.name
    attrs: dict[str, object] = {
        "name": decl.name, "source": decl.source or default_source, "dtype": decl.type, "values": decl.values,
        "description": decl.description or f"column {column} of {decl.source or default_source}",
        "expression": lambda self, ctx: col(column),
    }
    return type(f"Declared_{decl.name}", (Dimension,), attrs)()


__all__ = [
    "DeclaredCap",
    "DeclaredCovariate",
    "DeclaredDimension",
    "DeclaredEventQuantile",
    "DeclaredMetric",
    "DeclaredRatio",
    "MetricDeclaration",
    "SqlContext",
    "build_covariate",
    "build_dimension",
    "build_event_quantile",
    "build_metric",
    "build_ratio",
    "parse_expression",
]
