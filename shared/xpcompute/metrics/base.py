"""Metric, Dimension and Covariate base classes: what a scientist subclasses to add one.

A metric is a Python class (the seed's ``NumStreamers`` example): an
event-level value built as a sqlglot expression, an optional event-level
condition, a per-user aggregation, the models to run, and display metadata.
The class never renders SQL itself; ``xpcompute.sql`` turns its expressions
into one query per engine dialect, so a metric is written once and runs on
DuckDB, Spark and Trino.

Every metric turns into one or more *per-user columns* of the analysis table
(``PerUserColumn``): a simple metric into one, a ratio metric into its
numerator (named like the metric) and its denominator (``{name}__den``), a
covariate into the pre-period value of a metric. Those columns are what stage 2
compresses, and what ``fit_specs`` points the models at.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, ClassVar, Literal, get_args

from xpcompute.columns import COVARIATE_RESIDUAL_SUFFIX, DENOMINATOR_SUFFIX, RESIDUAL_SUFFIX
from xpcompute.decision.roles import Role as MetricRoleName
from xpcompute.errors import InputError, UnsafeIdentifierError
from xpcompute.lazy import lazy
from xpcompute.spec import FitSpec, ModelName

if TYPE_CHECKING:
    from sqlglot import exp
else:  # sqlglot loads when SQL is first composed: the paths that never build SQL (a fit) skip its import
    exp = lazy("sqlglot", "exp")

Aggregation = Literal["sum", "count", "count_distinct", "max", "min", "mean", "any", "none"]
"""How event rows become one value per user.

``any``: 1 if at least one event in the window matches the condition, else 0.
``none``: 1 if no event in the window matches the condition, else 0 (e.g. retained = no cancel event).
``mean``: ``sum(value) / count(value)``, written out so that every engine divides the same exact sum.
"""

ColumnType = Literal["double", "bigint"]
DimensionType = Literal["string", "bigint", "boolean"]
Window = Literal["analysis", "pre"]

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
PER_METRIC_MODELS: frozenset[str] = frozenset(
    {"ttest", "proportion", "ols", "mannwhitney", "quantile", "ratio", "event_quantile"}
)

# Default fill for users with no event in the window: counts and sums are 0 for
# them, "any" is 0 and "none" is 1; a mean or an extreme of nothing stays null.
_DEFAULT_FILL: dict[str, float | None] = {
    "sum": 0.0,
    "count": 0.0,
    "count_distinct": 0.0,
    "any": 0.0,
    "none": 1.0,
    "max": None,
    "min": None,
    "mean": None,
}


def check_identifier(name: str, role: str) -> str:
    """Refuse a name that could not be a plain, unquoted column name in every dialect.

    Names reach SQL as identifiers, so they are held to a closed pattern rather
    than escaped; ``__`` is reserved for the compressed schema's column names.
    """
    if not isinstance(name, str) or not IDENTIFIER.match(name) or "__" in name:
        raise UnsafeIdentifierError(
            f"{role} name {name!r} is not allowed: use lowercase letters, digits and single underscores, "
            "starting with a letter (at most 63 characters), e.g. 'streaming_hours'"
        )
    return name


def col(name: str) -> exp.Column:
    """An unqualified column reference (for metric and dimension expressions)."""
    return exp.column(name)


def lit(value: str | int | float | bool) -> exp.Expr:
    """A SQL literal built as an expression (strings are escaped by sqlglot per dialect)."""
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, str):
        return exp.Literal.string(value)
    return exp.Literal.number(value)


@dataclass(frozen=True)
class Aggregate:
    """One per-user aggregation over one event source: ``how(value) WHERE condition``."""

    source: str
    value: exp.Expr
    how: Aggregation
    condition: exp.Expr | None = None

    def columns(self) -> set[str]:
        """Source columns the value and condition read (checked against the source schema)."""
        names = {c.name for c in self.value.find_all(exp.Column)}
        if self.condition is not None:
            names |= {c.name for c in self.condition.find_all(exp.Column)}
        return names


@dataclass(frozen=True)
class PerUserColumn:
    """One column of the analysis table: an aggregate over a window, scaled, filled and typed."""

    name: str
    aggregate: Aggregate
    window: Window = "analysis"
    divisor: float = 1.0
    fill: float | None = 0.0
    dtype: ColumnType = "double"


CapKind = Literal["percentile", "absolute"]


@dataclass(frozen=True)
class Cap:
    """Outlier capping (winsorization) of a metric's per-unit values, applied in stage 1 before compression.

    ``kind="percentile"``: ``upper``/``lower`` are probabilities in (0, 1) and the limits are the
    linearly interpolated quantiles (``numpy.quantile(..., method="linear")``) of the per-unit
    values pooled over every analysed unit of every cell, so they do not depend on the treatment.
    ``kind="absolute"``: ``upper``/``lower`` are the limits themselves. Either side may be None
    (not capped). Why in stage 1: every slice, model and compression then reads the same capped
    values, and compression stays lossless on them.
    """

    upper: float | None = None
    lower: float | None = None
    kind: CapKind = "percentile"

    def __post_init__(self) -> None:
        if self.kind not in ("percentile", "absolute"):
            raise InputError(f"cap kind {self.kind!r} is not known; use 'percentile' or 'absolute'")
        if self.upper is None and self.lower is None:
            raise InputError("a cap needs an upper or a lower limit (or both), e.g. {upper: 0.99}")
        for side, v in (("upper", self.upper), ("lower", self.lower)):
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or v != v or v in (float("inf"), float("-inf")):
                raise InputError(f"cap {side} must be a finite number, got {v!r}")
            if self.kind == "percentile" and not 0.0 < float(v) < 1.0:
                raise InputError(
                    f"percentile cap {side}={v!r} must be a probability strictly between 0 and 1, e.g. 0.99 for p99 "
                    "(for a limit in the metric's units use kind: absolute)"
                )
        if self.upper is not None and self.lower is not None and not float(self.lower) < float(self.upper):
            raise InputError(f"cap lower ({self.lower!r}) must be below upper ({self.upper!r})")

    def side_label(self, side: Literal["upper", "lower"]) -> str:
        """``p99`` for a percentile limit, the value for an absolute one (for notes)."""
        v = self.upper if side == "upper" else self.lower
        assert v is not None
        return f"p{round(float(v) * 100, 10):g}" if self.kind == "percentile" else f"{float(v):.10g}"


def cap_note(metric: str, limits: Mapping[str, object]) -> str:
    """The note a fit of a capped metric carries, from the limits stage 1 recorded (``pipeline.stage1.cap_limits``).

    E.g. ``revenue: capped at p99 = 1234.5 (pooled over all cells; 41 units at the limit)``.
    """
    kind = limits.get("kind")
    parts: list[str] = []
    for side, word in (("upper", "at"), ("lower", "below at")):
        value = limits.get(side)
        if value is None:
            continue
        q = limits.get(f"{side}_q")
        at = limits.get(f"units_at_{side}")
        label = f"p{round(float(q) * 100, 10):g} = {float(value):.10g}" if isinstance(q, int | float) else f"{float(value):.10g}"  # type: ignore[arg-type]
        parts.append(f"{word} {label}" + (f" ({at} units at the limit)" if at is not None else ""))
    how = "percentiles pooled over all cells" if kind == "percentile" else "absolute limits"
    return f"{metric}: capped {' and '.join(parts) or '(no limit recorded)'} ({how}, per unit before compression)"


@dataclass(frozen=True)
class SqlContext:
    """What an expression may depend on besides its source's columns: the analysis window."""

    window_start: date
    window_end: date


class Metric:
    """A per-user metric. Subclass it, set the class attributes and implement ``value``.

    ``value`` is the event-level expression over the columns of ``source``;
    ``condition`` (optional) keeps only matching events; ``aggregation`` turns the
    events of one user in the analysis window into one number; ``divisor``
    converts units after aggregating (seconds to hours), so that the sum itself
    stays exact over integer event values.
    """

    name: ClassVar[str]
    source: ClassVar[str]
    aggregation: ClassVar[Aggregation] = "sum"
    models: ClassVar[tuple[ModelName, ...]] = ("ttest",)
    description: ClassVar[str] = ""
    unit: ClassVar[str] = ""
    format: ClassVar[str] = "{:,.3f}"
    higher_is_better: ClassVar[bool | None] = True
    divisor: ClassVar[float] = 1.0
    dtype: ClassVar[ColumnType] = "double"
    #: Outlier capping of the per-unit values (``Cap``); None: not capped.
    cap: ClassVar[Cap | None] = None
    #: Role in a ship decision (``xpcompute.decision``): "goal", "guardrail", "secondary", "diagnostic"; None:
    #: secondary unless the experiment's ``roles:`` names it. An experiment or a request may override it.
    role: ClassVar[MetricRoleName | None] = None
    #: A guardrail's non-inferiority margin (> 0): relative to the control mean (0.02 = 2%) when
    #: ``margin_relative``, else in the metric's units.
    margin: ClassVar[float | None] = None
    margin_relative: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("role") is not None and cls.role not in get_args(MetricRoleName):
            raise InputError(f"metric {cls.__name__}: role {cls.role!r} is not one of {get_args(MetricRoleName)}")
        if cls.__dict__.get("margin") is not None and not (isinstance(cls.margin, int | float) and cls.margin > 0):
            raise InputError(f"metric {cls.__name__}: margin must be a positive number (e.g. 0.02), got {cls.margin!r}")
        if cls.__dict__.get("cap") is not None and not isinstance(cls.cap, Cap):
            raise InputError(f"metric {cls.__name__}: cap must be a xpcompute.metrics.base.Cap, got {cls.cap!r}")
        if "name" in cls.__dict__:
            check_identifier(cls.name, "metric")
            bad = [m for m in cls.models if m not in PER_METRIC_MODELS]
            if bad:
                raise InputError(
                    f"metric {cls.name!r}: models {bad} cannot be declared on a metric; "
                    f"choose from {sorted(PER_METRIC_MODELS)} (cate and dte are chosen per analysis)"
                )
            if cls.aggregation not in get_args(Aggregation):
                raise InputError(f"metric {cls.name!r}: aggregation {cls.aggregation!r} is not one of {get_args(Aggregation)}")

    # -- what a subclass writes -------------------------------------------------
    def value(self) -> exp.Expr:
        """Event-level value; the default counts events (1 per row)."""
        return exp.Literal.number(1)

    def condition(self) -> exp.Expr | None:
        """Event-level filter; ``None`` keeps every event of the source in the window."""
        return None

    @property
    def fill(self) -> float | None:
        """Value for a user with no matching event (see ``_DEFAULT_FILL``)."""
        return _DEFAULT_FILL[self.aggregation]

    # -- what the pipeline reads ------------------------------------------------
    def aggregate(self) -> Aggregate:
        return Aggregate(self.source, self.value(), self.aggregation, self.condition())

    def columns(self) -> tuple[PerUserColumn, ...]:
        """The analysis-table columns this metric produces."""
        return (PerUserColumn(self.name, self.aggregate(), "analysis", self.divisor, self.fill, self.dtype),)

    def sources(self) -> set[str]:
        return {c.aggregate.source for c in self.columns()}

    def compressed_covariates(self, covariates: Sequence[str] = ()) -> tuple[str, ...]:
        """Continuous columns whose cross-moments stage 2 must keep for this metric."""
        return tuple(covariates)

    def fit_specs(self, covariates: Sequence[str] = (), treatment: str = "cell", control: str | None = None) -> list[FitSpec]:
        """One ``FitSpec`` per declared model, pointed at this metric's analysis-table columns."""
        specs = []
        for model in self.models:
            covs = tuple(covariates) if model == "ols" else ()
            specs.append(FitSpec(metric=self.name, treatment=treatment, control=control, model=model, covariates=covs))
        return specs

    def display(self) -> dict[str, object]:
        """Display metadata for scorecards and the API."""
        return {
            "name": self.name,
            "description": self.description,
            "unit": self.unit,
            "format": self.format,
            "higher_is_better": self.higher_is_better,
            "models": list(self.models),
            "kind": type(self).kind(),
        }

    @classmethod
    def kind(cls) -> str:
        return "simple"

    def __repr__(self) -> str:
        return f"<metric {self.name}>"


class QuantileMetric(Metric):
    """A metric whose distribution across users is compared at ``quantiles`` (e.g. p50, p90)."""

    quantiles: ClassVar[tuple[float, ...]] = (0.5, 0.9)
    models: ClassVar[tuple[ModelName, ...]] = ("quantile",)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "quantiles" in cls.__dict__ and (not cls.quantiles or any(not 0 < q < 1 for q in cls.quantiles)):
            raise InputError(f"{cls.kind().replace('_', ' ')} metric {cls.__name__}: quantiles must be in (0, 1), "
                             f"e.g. (0.5, 0.9), got {cls.quantiles!r}")

    def fit_specs(self, covariates: Sequence[str] = (), treatment: str = "cell", control: str | None = None) -> list[FitSpec]:
        specs = []
        for model in self.models:
            covs = tuple(covariates) if model == "ols" else ()
            specs.append(
                FitSpec(
                    metric=self.name, treatment=treatment, control=control, model=model,
                    covariates=covs, quantiles=self.quantiles,
                )
            )
        return specs

    def display(self) -> dict[str, object]:
        out = super().display()
        out["quantiles"] = list(self.quantiles)
        return out

    @classmethod
    def kind(cls) -> str:
        return "quantile"


@dataclass(frozen=True)
class Part:
    """Numerator or denominator of a ratio metric: an aggregate with its unit divisor."""

    source: str
    value: exp.Expr
    aggregation: Aggregation = "sum"
    condition: exp.Expr | None = None
    divisor: float = 1.0


class RatioMetric(Metric, ABC):
    """A ratio of two per-user sums, e.g. rebuffer seconds over playback seconds.

    The analysis table holds the numerator as ``{name}`` and the denominator as
    ``{name}__den``; stage 2 keeps the denominator as the metric's first
    continuous covariate, so the compressed row has ``sum y``, ``sum d``,
    ``sum y^2``, ``sum y d`` and ``sum d^2``: what the delta method needs.
    ``part_covariates`` (optional) adds CUPED: the numerator's and the denominator's
    pre-period covariates, kept next to the denominator with all their cross-moments.
    """

    models: ClassVar[tuple[ModelName, ...]] = ("ratio",)
    #: CUPED for the ratio: the covariates (pre-period values) of its numerator and of its
    #: denominator, by name, e.g. ``("pre_revenue", "pre_orders")``. Both must be declared
    #: covariates that adjust this metric; the ratio model then regression-adjusts each part by
    #: its own covariate and carries that through the delta method (``models/ratio.py``).
    part_covariates: ClassVar[tuple[str, str] | None] = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.cap is not None:
            raise InputError(
                f"ratio metric {cls.__name__}: cap applies to per-unit values of a simple metric; cap the numerator "
                "or denominator metric instead"
            )

    @abstractmethod
    def numerator(self) -> Part:
        """The per-user sum on top: its source, event expression and condition."""

    @abstractmethod
    def denominator(self) -> Part:
        """The per-user sum below."""

    @property
    def denominator_column(self) -> str:
        return self.name + DENOMINATOR_SUFFIX

    @property
    def residual_column(self) -> str:
        """``numerator - c * denominator`` per unit, ``c`` one table-wide constant near the ratio (stage 1 writes
        it to the analysis table): the ratio's variance is that of this column's ratio to the denominator."""
        return self.name + RESIDUAL_SUFFIX

    @property
    def covariate_residual_column(self) -> str:
        """The residual column of the ratio of its part covariates (``x - c w``): what keeps ratio CUPED exact."""
        return self.name + COVARIATE_RESIDUAL_SUFFIX

    def sources(self) -> set[str]:
        return {self.numerator().source, self.denominator().source}

    def columns(self) -> tuple[PerUserColumn, ...]:
        num, den = self.numerator(), self.denominator()
        return (
            PerUserColumn(
                self.name, Aggregate(num.source, num.value, num.aggregation, num.condition), "analysis",
                num.divisor, _DEFAULT_FILL[num.aggregation], "double",
            ),
            PerUserColumn(
                self.denominator_column, Aggregate(den.source, den.value, den.aggregation, den.condition), "analysis",
                den.divisor, _DEFAULT_FILL[den.aggregation], "double",
            ),
        )

    def aggregate(self) -> Aggregate:
        num = self.numerator()
        return Aggregate(num.source, num.value, num.aggregation, num.condition)

    def covariates_for_parts(self, covariates: Sequence[str] = ()) -> tuple[str, str] | None:
        """(numerator covariate, denominator covariate) for CUPED, or None when the ratio names none.

        ``covariates`` are the experiment's covariates that adjust this metric: a part covariate
        missing from them would be absent from the compressed data, so that is refused with what
        to declare. Covariates that adjust a ratio without being its part covariates are not used
        (a ratio is adjusted part by part, not by arbitrary columns).
        """
        parts = self.part_covariates
        if parts is None:
            return None
        if len(parts) != 2 or parts[0] == parts[1]:
            raise InputError(
                f"ratio metric {self.name!r}: part_covariates must name two different covariates, "
                f"(numerator's, denominator's), got {parts!r}"
            )
        missing = [c for c in parts if c not in covariates]
        if missing:
            raise InputError(
                f"ratio metric {self.name!r}: its part covariate(s) {', '.join(missing)} do not adjust it; declare "
                f"each under the experiment's covariates with adjusts: [{self.name}] (or drop the ratio's covariates)"
            )
        return (parts[0], parts[1])

    def compressed_covariates(self, covariates: Sequence[str] = ()) -> tuple[str, ...]:
        """The denominator first (the ratio model reads it as the first covariate), the residual column, then the
        part covariates and their ratio's residual column.

        With part covariates the compressed rows keep every cross-moment of numerator, denominator
        and the two pre-period values up to degree two, which is what ratio CUPED needs.
        """
        parts = self.covariates_for_parts(covariates)
        return (self.denominator_column, self.residual_column,
                *((*parts, self.covariate_residual_column) if parts else ()))

    def fit_specs(self, covariates: Sequence[str] = (), treatment: str = "cell", control: str | None = None) -> list[FitSpec]:
        parts = self.covariates_for_parts(covariates)
        return [
            FitSpec(
                metric=self.name, treatment=treatment, control=control, model=model,
                denominator=self.denominator_column if model == "ratio" else None,
                covariates=tuple(covariates) if model == "ols" else tuple(parts or ()) if model == "ratio" else (),
            )
            for model in self.models
        ]

    @classmethod
    def kind(cls) -> str:
        return "ratio"


class Dimension:
    """A per-user attribute to slice and segment by, computed from the user-dimension source.

    ``values`` (optional) is the closed set of allowed values: slice filters on
    this dimension are checked against it before any SQL is built.
    """

    name: ClassVar[str]
    source: ClassVar[str] = "users"
    dtype: ClassVar[DimensionType] = "string"
    values: ClassVar[tuple[str, ...] | None] = None
    description: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            check_identifier(cls.name, "dimension")

    def expression(self, ctx: SqlContext) -> exp.Expr:
        """Value over the user-dimension source's columns; default: the column named like the dimension."""
        return col(self.name)

    def columns(self, ctx: SqlContext) -> set[str]:
        return {c.name for c in self.expression(ctx).find_all(exp.Column)}

    def __repr__(self) -> str:
        return f"<dimension {self.name}>"


class Covariate:
    """A per-user continuous covariate; the catalog's are pre-period values of a metric (for CUPED).

    ``adjusts`` names the metrics whose regression-adjusted estimates use it
    (default: the metric it is the pre-period value of).
    """

    name: ClassVar[str]
    metric: ClassVar[type[Metric]]
    adjusts: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            check_identifier(cls.name, "covariate")

    @property
    def targets(self) -> tuple[str, ...]:
        return self.adjusts or (self.metric.name,)

    def sources(self) -> set[str]:
        return self.metric().sources()

    def columns(self) -> tuple[PerUserColumn, ...]:
        base = self.metric().columns()[0]
        return (PerUserColumn(self.name, base.aggregate, "pre", base.divisor, base.fill, "double"),)

    def __repr__(self) -> str:
        return f"<covariate {self.name}>"
