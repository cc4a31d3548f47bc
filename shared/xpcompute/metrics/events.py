"""Event-level quantile metrics: a quantile of a value over the *events* of a cell, not over per-unit values.

"p90 of order value" is the 90th percentile over every order placed by the cell's units in their analysis
windows; a unit with ten orders counts ten times. Stage 1 writes one events table per such metric (one row per
event in its unit's window, with the unit's cell and dimensions: ``sql/events.py``), stage 2 compresses a slice
of it into an event histogram (``compression/events.py``) and the ``event_quantile`` model fits it
(``models/event_quantile.py``).

Declare one in the experiment YAML (``aggregation: event_quantile``, ``metrics/declared.py``) or in Python::

    class OrderValueP90(EventQuantileMetric):
        name = "order_value_q"
        source = "orders"
        quantiles = (0.5, 0.9)
        def value(self): return col("amount")

It has no column in the analysis table (``columns()`` is empty): its unit of analysis is the event.
"""

from __future__ import annotations

from typing import ClassVar

from xpcompute.errors import InputError
from xpcompute.metrics.base import PerUserColumn, QuantileMetric
from xpcompute.spec import ModelName


class EventQuantileMetric(QuantileMetric):
    """Quantiles ``quantiles`` of ``value()`` over the events of ``source`` (filtered by ``condition()``).

    A ``QuantileMetric`` (the quantiles' check, the fit specs, the display) whose only model is ``event_quantile``.
    """

    models: ClassVar[tuple[ModelName, ...]] = ("event_quantile",)
    higher_is_better: ClassVar[bool | None] = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "models" in cls.__dict__ and tuple(cls.models) != ("event_quantile",):
            raise InputError(f"event quantile metric {cls.__name__}: its only model is 'event_quantile' (the others "
                             "compare per-unit values, which this metric does not have)")

    def columns(self) -> tuple[PerUserColumn, ...]:
        """None: the metric's rows are events, in its own stage-1 table (``sql/events.py``)."""
        return ()

    def sources(self) -> set[str]:
        return {self.source}

    @classmethod
    def kind(cls) -> str:
        return "event_quantile"


def event_metrics(experiment: object) -> list[EventQuantileMetric]:
    """The experiment's event-level quantile metrics, in its order."""
    return [m for m in experiment.metric_objects() if isinstance(m, EventQuantileMetric)]  # type: ignore[attr-defined]
