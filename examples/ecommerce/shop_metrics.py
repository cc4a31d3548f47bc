"""The shop team's metrics repo, in one module: what their experiments share and YAML cannot say.

An experiment YAML names this module under ``plugins:``; xpcompute imports it
(from the YAML's folder, or wherever ``XPCOMPUTE_PLUGIN_PATH`` or an installed
package puts it) before it resolves metric and dimension names, in the CLI,
the API server and every worker alike.

- ``net_revenue``: the finance team's definition of revenue, kept in one place
  so every experiment reports the same number: completed orders count in
  full, refunded orders count against it, cancelled ones not at all.
- ``tenure``: how long a customer had been signed up when the experiment
  started, in buckets. It depends on the window start, which a declared
  dimension cannot read (``SqlContext`` is only given to Python dimensions).
"""

from __future__ import annotations

from typing import ClassVar

from sqlglot import exp

from xpcompute.metrics import Dimension, Metric, SqlContext, register_dimension, register_metric
from xpcompute.metrics.base import Aggregation, col, lit
from xpcompute.spec import ModelName


@register_metric
class NetRevenue(Metric):
    """Completed revenue minus refunds, per customer, in USD."""

    name = "net_revenue"
    source = "orders"
    aggregation: ClassVar[Aggregation] = "sum"
    models: ClassVar[tuple[ModelName, ...]] = ("ttest",)
    description = "Revenue of completed orders minus refunded orders, per customer (finance's definition)."
    unit = "USD"
    format = "${:,.2f}"

    def value(self) -> exp.Expr:
        status, amount = col("status"), col("amount_usd")
        return (
            exp.Case()
            .when(status.eq(lit("completed")), amount)
            .when(status.eq(lit("refunded")), exp.Neg(this=amount.copy()))
            .else_(lit(0))
        )


@register_dimension
class Tenure(Dimension):
    """Days from signup to the window start, bucketed: new (< 90), regular (< 365), loyal."""

    name = "tenure"
    source = "customers"
    values = ("new", "regular", "loyal")
    description = "How long the customer had been signed up when the experiment started."

    def expression(self, ctx: SqlContext) -> exp.Expr:
        start = exp.cast(lit(ctx.window_start.isoformat()), exp.DataType.Type.DATE)
        days = exp.DateDiff(this=start, expression=col("signup_date"), unit=exp.var("DAY"))
        return (
            exp.Case()
            .when(days < 90, lit("new"))
            .when(days < 365, lit("regular"))
            .else_(lit("loyal"))
        )
