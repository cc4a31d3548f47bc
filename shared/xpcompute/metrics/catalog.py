"""The streaming-service catalog: metrics, dimensions and covariates over the raw event sources.

Sources (their columns are what ``xpcompute.synthetic`` generates):
- ``playback``: user_id, event_date, watch_seconds, rebuffer_seconds, startup_latency_ms, title_id (one row per playback session)
- ``billing``: user_id, event_date, amount_cents, kind ('subscription' or 'rental')
- ``account``: user_id, event_date, event_type ('cancel' or 'profile_edit')
- ``users``: user_id, country, device, plan, signup_date

Event values are integers (seconds, cents, milliseconds) and unit conversion
happens after aggregating (``divisor``), so per-user sums are exact on every
engine and DuckDB and Spark write identical analysis tables.

Adding a metric means adding one class here with ``@register_metric``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from xpcompute.lazy import lazy
from xpcompute.metrics.base import (
    Aggregation,
    ColumnType,
    Covariate,
    Dimension,
    Metric,
    Part,
    QuantileMetric,
    RatioMetric,
    SqlContext,
    col,
    lit,
)
from xpcompute.metrics.registry import register_covariate, register_dimension, register_metric
from xpcompute.spec import ModelName

if TYPE_CHECKING:
    from sqlglot import exp
else:  # sqlglot loads when SQL is first composed: the paths that never build SQL (a fit) skip its import
    exp = lazy("sqlglot", "exp")

SECONDS_PER_HOUR = 3600.0
CENTS_PER_DOLLAR = 100.0


# ----------------------------------------------------------------------------- metrics: playback


@register_metric
class StreamingHours(Metric):
    name = "streaming_hours"
    source = "playback"
    aggregation: ClassVar[Aggregation] = "sum"
    models: ClassVar[tuple[ModelName, ...]] = ("ttest", "ols")
    description = "Hours streamed per member in the analysis window."
    unit = "hours"
    format = "{:,.2f}"
    divisor = SECONDS_PER_HOUR
    role = "goal"  # what most streaming changes are meant to move (an experiment's roles: may say otherwise)

    def value(self) -> exp.Expr:
        return col("watch_seconds")


@register_metric
class IsStreamer(Metric):
    """The seed's NumStreamers: did the member stream at all?"""

    name = "is_streamer"
    source = "playback"
    aggregation: ClassVar[Aggregation] = "any"
    models: ClassVar[tuple[ModelName, ...]] = ("proportion",)
    description = "Share of members with at least one playback in the analysis window."
    unit = "share"
    format = "{:.2%}"
    dtype: ClassVar[ColumnType] = "bigint"

    def condition(self) -> exp.Expr:
        return col("watch_seconds") > 0


@register_metric
class Sessions(Metric):
    name = "sessions"
    source = "playback"
    aggregation: ClassVar[Aggregation] = "count"
    models: ClassVar[tuple[ModelName, ...]] = ("ttest", "ols", "mannwhitney")
    description = "Playback sessions per member."
    unit = "sessions"
    format = "{:,.2f}"
    dtype: ClassVar[ColumnType] = "bigint"


@register_metric
class LongSessions(Metric):
    name = "long_sessions"
    source = "playback"
    aggregation: ClassVar[Aggregation] = "count"
    models: ClassVar[tuple[ModelName, ...]] = ("ttest",)
    description = "Playback sessions of one hour or more per member."
    unit = "sessions"
    format = "{:,.2f}"
    dtype: ClassVar[ColumnType] = "bigint"

    def condition(self) -> exp.Expr:
        return col("watch_seconds") >= lit(3600)


@register_metric
class ActiveDays(Metric):
    name = "active_days"
    source = "playback"
    aggregation: ClassVar[Aggregation] = "count_distinct"
    models: ClassVar[tuple[ModelName, ...]] = ("ttest", "mannwhitney")
    description = "Distinct days with a playback."
    unit = "days"
    format = "{:,.2f}"
    dtype: ClassVar[ColumnType] = "bigint"

    def value(self) -> exp.Expr:
        return col("event_date")


@register_metric
class TitlesStarted(Metric):
    name = "titles_started"
    source = "playback"
    aggregation: ClassVar[Aggregation] = "count_distinct"
    models: ClassVar[tuple[ModelName, ...]] = ("ttest",)
    description = "Distinct titles started per member."
    unit = "titles"
    format = "{:,.2f}"
    dtype: ClassVar[ColumnType] = "bigint"

    def value(self) -> exp.Expr:
        return col("title_id")


@register_metric
class RebufferRate(RatioMetric):
    name = "rebuffer_rate"
    source = "playback"
    description = "Seconds spent rebuffering per second played, over all members' playback (ratio of sums)."
    unit = "share"
    format = "{:.3%}"
    higher_is_better = False
    role = "guardrail"  # playback quality must not get worse by more than 2% (relative)
    margin = 0.02

    def numerator(self) -> Part:
        return Part("playback", col("rebuffer_seconds"), "sum")

    def denominator(self) -> Part:
        return Part("playback", col("watch_seconds"), "sum")


@register_metric
class HoursPerSession(RatioMetric):
    name = "hours_per_session"
    source = "playback"
    description = "Hours streamed per playback session (ratio of sums)."
    unit = "hours"
    format = "{:,.3f}"

    def numerator(self) -> Part:
        return Part("playback", col("watch_seconds"), "sum", divisor=SECONDS_PER_HOUR)

    def denominator(self) -> Part:
        return Part("playback", exp.Literal.number(1), "count")


@register_metric
class PlaybackStartLatency(QuantileMetric):
    name = "playback_start_latency"
    source = "playback"
    aggregation: ClassVar[Aggregation] = "mean"
    models: ClassVar[tuple[ModelName, ...]] = ("quantile", "ttest")
    quantiles: ClassVar[tuple[float, ...]] = (0.5, 0.9)
    description = "Mean time from play press to first frame, per member; compared at p50 and p90 across members."
    unit = "ms"
    format = "{:,.0f}"
    higher_is_better = False

    def value(self) -> exp.Expr:
        return col("startup_latency_ms")


@register_metric
class RebufferedSessionRate(RatioMetric):
    """Share of sessions with a stall members notice.

    A second or two of rebuffering happens in most sessions (it is part of
    adapting the bitrate), so counting every session with any rebuffering
    would sit near 100% and hide a change; the threshold counts sessions that
    stalled for half a minute or more in total.
    """

    name = "rebuffered_session_rate"
    source = "playback"
    description = "Share of playback sessions with 30 seconds or more of rebuffering (ratio of counts)."
    unit = "share"
    format = "{:.2%}"
    higher_is_better = False
    MIN_REBUFFER_SECONDS: ClassVar[int] = 30

    def numerator(self) -> Part:
        stalled = col("rebuffer_seconds") >= lit(self.MIN_REBUFFER_SECONDS)
        return Part("playback", exp.Literal.number(1), "count", condition=stalled)

    def denominator(self) -> Part:
        return Part("playback", exp.Literal.number(1), "count")


@register_metric
class SlowStartRate(RatioMetric):
    """Share of sessions whose first frame took longer than two seconds.

    The tail that ``playback_start_latency``'s per-member mean smooths over.
    The denominator counts only sessions with a recorded latency, so a
    session that never started neither counts as slow nor dilutes the rate.
    """

    name = "slow_start_rate"
    source = "playback"
    description = "Share of playback sessions taking over 2 s from play press to first frame (ratio of counts)."
    unit = "share"
    format = "{:.2%}"
    higher_is_better = False
    SLOW_START_MS: ClassVar[int] = 2000

    def numerator(self) -> Part:
        slow = col("startup_latency_ms") > lit(self.SLOW_START_MS)
        return Part("playback", exp.Literal.number(1), "count", condition=slow)

    def denominator(self) -> Part:
        measured = col("startup_latency_ms").is_(exp.null()).not_()
        return Part("playback", exp.Literal.number(1), "count", condition=measured)


@register_metric
class EarlyAbandons(Metric):
    """Sessions given up within two minutes: a wrong pick, a slow start or an autoplay nobody wanted."""

    name = "early_abandons"
    source = "playback"
    aggregation: ClassVar[Aggregation] = "count"
    models: ClassVar[tuple[ModelName, ...]] = ("ttest",)
    description = "Playback sessions under two minutes per member."
    unit = "sessions"
    format = "{:,.3f}"
    higher_is_better = False
    dtype: ClassVar[ColumnType] = "bigint"

    def condition(self) -> exp.Expr:
        return col("watch_seconds") < lit(120)


@register_metric
class LongestSessionHours(Metric):
    """The member's longest single session (binge depth); members without playback have none (null)."""

    name = "longest_session_hours"
    source = "playback"
    aggregation: ClassVar[Aggregation] = "max"
    models: ClassVar[tuple[ModelName, ...]] = ("ttest", "ols")
    description = "Longest playback session per member in the analysis window, among members who streamed."
    unit = "hours"
    format = "{:,.2f}"
    divisor = SECONDS_PER_HOUR

    def value(self) -> exp.Expr:
        return col("watch_seconds")


# ----------------------------------------------------------------------------- metrics: billing and account


@register_metric
class Revenue(Metric):
    name = "revenue"
    source = "billing"
    aggregation: ClassVar[Aggregation] = "sum"
    models: ClassVar[tuple[ModelName, ...]] = ("ttest", "ols")
    description = "Billed revenue per member (subscriptions and rentals)."
    unit = "USD"
    format = "${:,.2f}"
    divisor = CENTS_PER_DOLLAR

    def value(self) -> exp.Expr:
        return col("amount_cents")


@register_metric
class Rentals(Metric):
    name = "rentals"
    source = "billing"
    aggregation: ClassVar[Aggregation] = "count"
    models: ClassVar[tuple[ModelName, ...]] = ("ttest", "mannwhitney")
    description = "Pay-per-view rentals per member."
    unit = "rentals"
    format = "{:,.3f}"
    dtype: ClassVar[ColumnType] = "bigint"

    def condition(self) -> exp.Expr:
        return col("kind").eq(lit("rental"))


@register_metric
class RentalRevenue(Metric):
    name = "rental_revenue"
    source = "billing"
    aggregation: ClassVar[Aggregation] = "sum"
    models: ClassVar[tuple[ModelName, ...]] = ("ttest",)
    description = "Revenue from pay-per-view rentals per member (subscriptions left out)."
    unit = "USD"
    format = "${:,.2f}"
    divisor = CENTS_PER_DOLLAR

    def value(self) -> exp.Expr:
        return col("amount_cents")

    def condition(self) -> exp.Expr:
        return col("kind").eq(lit("rental"))


@register_metric
class IsRenter(Metric):
    name = "is_renter"
    source = "billing"
    aggregation: ClassVar[Aggregation] = "any"
    models: ClassVar[tuple[ModelName, ...]] = ("proportion",)
    description = "Share of members with at least one pay-per-view rental in the analysis window."
    unit = "share"
    format = "{:.2%}"
    dtype: ClassVar[ColumnType] = "bigint"

    def condition(self) -> exp.Expr:
        return col("kind").eq(lit("rental"))


@register_metric
class Cancelled(Metric):
    name = "cancelled"
    source = "account"
    aggregation: ClassVar[Aggregation] = "any"
    models: ClassVar[tuple[ModelName, ...]] = ("proportion",)
    description = "Share of members who cancelled in the analysis window."
    unit = "share"
    format = "{:.2%}"
    higher_is_better = False
    dtype: ClassVar[ColumnType] = "bigint"

    def condition(self) -> exp.Expr:
        return col("event_type").eq(lit("cancel"))


@register_metric
class Retained(Metric):
    name = "retained"
    source = "account"
    aggregation: ClassVar[Aggregation] = "none"
    models: ClassVar[tuple[ModelName, ...]] = ("proportion",)
    description = "Share of members with no cancellation in the analysis window."
    unit = "share"
    format = "{:.2%}"
    dtype: ClassVar[ColumnType] = "bigint"
    role = "guardrail"  # may not lose more than 0.5 pp of members
    margin = 0.005
    margin_relative = False

    def condition(self) -> exp.Expr:
        return col("event_type").eq(lit("cancel"))


@register_metric
class ProfileEdits(Metric):
    """Edits to a profile (name, avatar, language, maturity settings).

    Read as engagement with personalisation, so more is better; a large move
    usually means a settings screen got easier or harder to reach.
    """

    name = "profile_edits"
    source = "account"
    aggregation: ClassVar[Aggregation] = "count"
    models: ClassVar[tuple[ModelName, ...]] = ("ttest",)
    description = "Profile edits per member in the analysis window."
    unit = "edits"
    format = "{:,.3f}"
    dtype: ClassVar[ColumnType] = "bigint"

    def condition(self) -> exp.Expr:
        return col("event_type").eq(lit("profile_edit"))


# ----------------------------------------------------------------------------- dimensions


@register_dimension
class Country(Dimension):
    name = "country"
    values: ClassVar[tuple[str, ...] | None] = ("BR", "CA", "DE", "GB", "IN", "JP", "MX", "US")
    description = "Billing country (ISO 3166 alpha-2)."


@register_dimension
class Device(Dimension):
    name = "device"
    values: ClassVar[tuple[str, ...] | None] = ("android", "ios", "tv", "web")
    description = "Primary device class."


@register_dimension
class Plan(Dimension):
    name = "plan"
    values: ClassVar[tuple[str, ...] | None] = ("basic", "premium", "standard")
    description = "Subscription plan at allocation."


@register_dimension
class TenureBucket(Dimension):
    """Membership age at the start of the analysis window, bucketed."""

    name = "tenure_bucket"
    values: ClassVar[tuple[str, ...] | None] = ("0-3m", "1-3y", "3-12m", "3y+")
    description = "Membership age at the start of the analysis window."
    BOUNDS: ClassVar[tuple[tuple[int, str], ...]] = ((90, "0-3m"), (365, "3-12m"), (1095, "1-3y"))

    def expression(self, ctx: SqlContext) -> exp.Expr:
        age = exp.DateDiff(
            this=exp.cast(lit(ctx.window_start.isoformat()), exp.DataType.Type.DATE),
            expression=col("signup_date"),
            unit=exp.var("DAY"),
        )
        case = exp.Case().when(col("signup_date").is_(exp.null()), exp.null())
        for bound, label in self.BOUNDS:
            case = case.when(age < lit(bound), lit(label))
        return case.else_(lit("3y+"))

    def columns(self, ctx: SqlContext) -> set[str]:
        return {"signup_date"}


# ----------------------------------------------------------------------------- covariates (CUPED)


@register_covariate
class PreStreamingHours(Covariate):
    name = "pre_streaming_hours"
    metric = StreamingHours
    adjusts: ClassVar[tuple[str, ...]] = ("streaming_hours", "longest_session_hours")
    description = "Hours streamed in the pre-period."


@register_covariate
class PreSessions(Covariate):
    name = "pre_sessions"
    metric = Sessions
    adjusts: ClassVar[tuple[str, ...]] = ("sessions", "long_sessions")
    description = "Playback sessions in the pre-period."


@register_covariate
class PreActiveDays(Covariate):
    name = "pre_active_days"
    metric = ActiveDays
    adjusts: ClassVar[tuple[str, ...]] = ("active_days", "is_streamer", "titles_started")
    description = "Days with a playback in the pre-period."


@register_covariate
class PreRevenue(Covariate):
    name = "pre_revenue"
    metric = Revenue
    description = "Billed revenue in the pre-period."
