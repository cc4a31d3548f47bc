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

from collections.abc import Sequence
from typing import ClassVar

from xpcompute.errors import InputError
from xpcompute.metrics.base import Metric, PerUserColumn
from xpcompute.spec import FitSpec, ModelName


class EventQuantileMetric(Metric):
    """Quantiles ``quantiles`` of ``value()`` over the events of ``source`` (filtered by ``condition()``)."""

    quantiles: ClassVar[tuple[float, ...]] = (0.5, 0.9)
    models: ClassVar[tuple[ModelName, ...]] = ("event_quantile",)
    higher_is_better: ClassVar[bool | None] = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "quantiles" in cls.__dict__ and (not cls.quantiles or any(not 0 < q < 1 for q in cls.quantiles)):
            raise InputError(f"event quantile metric {cls.__name__}: quantiles must be in (0, 1), e.g. (0.5, 0.9), "
                             f"got {cls.quantiles!r}")
        if "models" in cls.__dict__ and tuple(cls.models) != ("event_quantile",):
            raise InputError(f"event quantile metric {cls.__name__}: its only model is 'event_quantile' (the others "
                             "compare per-unit values, which this metric does not have)")

    def columns(self) -> tuple[PerUserColumn, ...]:
        """None: the metric's rows are events, in its own stage-1 table (``sql/events.py``)."""
        return ()

    def sources(self) -> set[str]:
        return {self.source}

    def fit_specs(self, covariates: Sequence[str] = (), treatment: str = "cell", control: str | None = None) -> list[FitSpec]:
        return [FitSpec(metric=self.name, treatment=treatment, control=control, model="event_quantile",
                        quantiles=self.quantiles)]

    def display(self) -> dict[str, object]:
        out = super().display()
        out["quantiles"] = list(self.quantiles)
        return out

    @classmethod
    def kind(cls) -> str:
        return "event_quantile"


def event_metrics(experiment: object) -> list[EventQuantileMetric]:
    """The experiment's event-level quantile metrics, in its order."""
    return [m for m in experiment.metric_objects() if isinstance(m, EventQuantileMetric)]  # type: ignore[attr-defined]
