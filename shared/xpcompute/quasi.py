"""Quasi-experiments: no random assignment, a treated and a comparison group observed before and after a change.

An experiment YAML with ``design: quasi`` names, instead of an allocation
source and cells, a group column of the users source and the change::

    design: quasi
    quasi:
      group_column: region          # a column of users_source, one value per unit
      treated: [north, west]        # its values that got the change
      comparison: [south, east]     # optional; default every other (non-null) value
      change_date: 2026-03-16       # first day with the change
      period: week                  # day | week: the periods of the panel
      reference_period: -1          # optional: the event time effects are relative to (default -1)

Stage 1 then assigns each unit of the users source the cell ``treated`` or
``comparison`` (``sql.stage1._alloc_cte`` through ``group_cell``), and the
unit-by-period table's ``day`` column holds the *event time*: the period
relative to the change (``-1`` is the last period before it, ``0`` the first
period with it; ``event_period``). The analysis window must start a whole
number of periods before the change and cover whole periods, so no period
straddles the change. Every metric is analysed by model ``did``
(``models/did.py``: period effects, group-by-period effects, errors clustered
by unit) with the reference period ``quasi.reference_period`` (default
``-1``; an analysis request may choose another); nothing else applies, since the
groups were not randomised (their levels may differ; only changes are
compared). For the same reason the sample-ratio check does not apply: the
coordinator does not run it on a quasi-experiment's slices and the scorecard
says so (``SRM_NOT_APPLICABLE``).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from sqlglot import exp

    from xpcompute.experiment import ExperimentSpec
    from xpcompute.spec import FitSpec

TREATED = "treated"
COMPARISON = "comparison"
#: the default reference period of a quasi-experiment's DiD: the last period before the change (event time -1)
REFERENCE = "-1"
PERIOD_DAYS = {"day": 1, "week": 7}
#: what the scorecard says in place of the sample-ratio check
SRM_NOT_APPLICABLE = (
    "Quasi-experiment: the groups were not randomly assigned, so the sample-ratio check does not apply and was not "
    "run (it cannot block a decision). Group sizes and levels may differ by design; difference in differences "
    "compares their changes over time relative to a reference period (by default the last one before the "
    "change), which assumes parallel trends: see the pre-trend test."
)

__all__ = [
    "COMPARISON",
    "REFERENCE",
    "SRM_NOT_APPLICABLE",
    "TREATED",
    "QuasiSpec",
    "check_experiment",
    "event_period",
    "event_times",
    "fit_specs",
    "group_cell",
    "request_problems",
    "with_quasi_defaults",
]


class QuasiSpec(BaseModel):
    """The ``quasi:`` block: which units are treated (a group column) and when the change happened."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group_column: str = Field(description="Column of the users source whose value puts a unit in a group.")
    treated: tuple[str, ...] = Field(min_length=1, description="Values of group_column that got the change.")
    comparison: tuple[str, ...] = Field(
        default=(), description="Values of group_column that did not; default every other non-null value."
    )
    change_date: date = Field(description="First day with the change (the first post-change period starts here).")
    period: Literal["day", "week"] = Field(default="day", description="Length of one period of the panel.")
    reference_period: int = Field(
        default=-1, description="Event time the effects are relative to; default -1, the last period before the change."
    )

    @field_validator("group_column")
    @classmethod
    def _column(cls, v: str) -> str:
        from xpcompute.metrics.base import IDENTIFIER

        if not IDENTIFIER.match(v):
            raise ValueError(f"group_column {v!r} must be a lowercase identifier (a column of the users source)")
        return v

    @field_validator("treated", "comparison", mode="before")
    @classmethod
    def _values(cls, v: Any) -> Any:
        if isinstance(v, str | int):  # one value may be written without a list
            v = [v]
        if isinstance(v, list | tuple):
            return tuple(str(x) for x in v)
        return v

    @model_validator(mode="after")
    def _disjoint(self) -> QuasiSpec:
        for name, values in (("treated", self.treated), ("comparison", self.comparison)):
            if len(set(values)) != len(values):
                raise ValueError(f"quasi.{name} lists a value twice: {list(values)}")
        both = sorted(set(self.treated) & set(self.comparison))
        if both:
            raise ValueError(f"values {both} are both treated and comparison; list each in one of them")
        return self

    @property
    def period_days(self) -> int:
        return PERIOD_DAYS[self.period]


def with_quasi_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """A raw spec mapping with what ``design: quasi`` implies filled in (before validation).

    The cells are ``comparison`` (the control) and ``treated``; the allocation
    source is the users source and its cell column the group column; the
    unit-by-period table is built. A value given explicitly must equal the
    implied one (the stored form repeats them), else the message says to drop it.
    """
    if raw.get("design") != "quasi":
        return raw
    quasi = raw.get("quasi")
    if not isinstance(quasi, dict | QuasiSpec):
        raise ValueError("quasi: design: quasi needs a quasi block: {group_column, treated, change_date, period}")
    group = quasi.group_column if isinstance(quasi, QuasiSpec) else quasi.get("group_column")
    users = raw.get("users_source", "users")
    implied: dict[str, Any] = {
        "cells": [COMPARISON, TREATED],
        "control": COMPARISON,
        "allocation": {"source": users, "cell_column": group},
        "daily": True,
    }
    out = dict(raw)
    problems = []
    for field, value in implied.items():
        given = out.get(field)
        if given is None:
            out[field] = value
            continue
        if hasattr(given, "model_dump"):
            given = given.model_dump(exclude_defaults=True)
        if isinstance(given, tuple):
            given = list(given)
        if field == "allocation" and isinstance(given, dict):  # an exposure column is refused by check_experiment
            value = {**value, **{k: v for k, v in given.items() if k not in ("source", "cell_column")}}
            out[field] = {**given, **value}
            given = {"source": given.get("source", "allocations"), "cell_column": given.get("cell_column", "cell"),
                     **{k: v for k, v in given.items() if k not in ("source", "cell_column")}}
        if given != value:
            problems.append(f"{field}: a quasi-experiment implies {field} = {value!r} (from quasi.group_column and "
                            f"users_source), got {given!r}; drop {field}")
    if problems:
        raise ValueError("; ".join(problems))
    return out


def check_experiment(spec: ExperimentSpec) -> list[str]:
    """What is wrong with a spec's design (empty when nothing is): quasi block, change date, window alignment."""
    quasi = spec.quasi
    if spec.design != "quasi":
        return ["quasi: only a quasi-experiment has a quasi block; set design: quasi or drop quasi"] if quasi else []
    if quasi is None:
        return ["quasi: design: quasi needs a quasi block: {group_column, treated, change_date, period}"]
    problems = []
    w = spec.window
    if spec.allocation.exposure_column is not None:
        problems.append("allocation.exposure_column: a quasi-experiment has no exposure; every unit is observed over "
                        "the whole window. Drop it")
    if spec.covariates:
        problems.append("covariates: model did on a quasi-experiment does not adjust for CUPED covariates (the "
                        "unit-level differences are absorbed by comparing changes); drop covariates")
    if spec.shares is not None:
        problems.append("shares: a quasi-experiment has no planned shares (no random assignment, no sample-ratio "
                        "check). Drop shares")
    if not w.start < quasi.change_date <= w.end:
        problems.append(f"quasi.change_date {quasi.change_date} must be after window.start {w.start} (at least one "
                        f"period before the change) and on or before window.end {w.end} (one period after)")
        return problems
    k = quasi.period_days
    before = (quasi.change_date - w.start).days
    if before % k:
        problems.append(f"window.start {w.start} is {before} days before quasi.change_date {quasi.change_date}; with "
                        f"period: {quasi.period} it must be a whole number of {quasi.period}s before it, so no period "
                        "straddles the change")
    if w.days % k:
        problems.append(f"the window covers {w.days} days, not a whole number of {quasi.period}s; move window.end")
    if not problems and before // k + (w.days - before) // k > _max_periods():
        problems.append(f"the window holds {w.days // k} {quasi.period}s; a panel keeps at most {_max_periods()} "
                        "periods: use period: week or a shorter window")
    if not problems and (w.days - before) // k < 1:
        problems.append("the window has no whole period after quasi.change_date; move window.end")
    if not problems and quasi.reference_period not in event_times(spec):
        times = event_times(spec)
        problems.append(f"quasi.reference_period {quasi.reference_period} is not a period of the window: its event "
                        f"times run from {times[0]} to {times[-1]} ({quasi.period}s relative to the change)")
    return problems


def _max_periods() -> int:
    from xpcompute.compression.panel import MAX_PERIODS

    return MAX_PERIODS


def event_times(spec: ExperimentSpec) -> list[int]:
    """The event times of a quasi-experiment's periods, in order: ``-pre, ..., -1, 0, ..., post - 1``."""
    assert spec.quasi is not None
    k = spec.quasi.period_days
    before = (spec.quasi.change_date - spec.window.start).days // k
    return list(range(-before, spec.window.days // k - before))


def period_labels(spec: ExperimentSpec) -> list[str] | None:
    """The labels of the unit-by-period table's ``day`` column as the did model sees them (None: no table)."""
    if spec.quasi is not None:
        return [str(t) for t in event_times(spec)]
    if spec.daily and spec.allocation.exposure_column is None:
        return [str(d) for d in range(spec.window.days)]
    return None  # with exposure a unit's first day varies; the periods are known only from the table


def event_period(spec: ExperimentSpec, days_since_start: exp.Expr) -> exp.Expr:
    """The event time of an event ``days_since_start`` days after the window start (an INT expression).

    ``FLOOR(d / k) - before`` with ``d >= 0`` inside the window, so the floor of a
    non-negative quotient is the same in every dialect.
    """
    from sqlglot import exp

    from xpcompute.metrics.base import lit

    assert spec.quasi is not None
    k = spec.quasi.period_days
    before = (spec.quasi.change_date - spec.window.start).days // k
    index: exp.Expr = days_since_start
    if k != 1:
        quotient = exp.Div(this=exp.cast(days_since_start, exp.DataType.build("DOUBLE")),
                           expression=exp.cast(lit(k), exp.DataType.build("DOUBLE")))
        index = exp.cast(exp.Floor(this=quotient), exp.DataType.build("INT"))
    return exp.cast(exp.Sub(this=index, expression=lit(before)), exp.DataType.build("INT"))


def group_cell(spec: ExperimentSpec) -> exp.Expr:
    """``CASE WHEN group IN (treated) THEN 'treated' WHEN group IN (comparison) THEN 'comparison' END``.

    Compared as strings; without listed comparison values every other non-null
    value is comparison. Units whose value is neither (or null) get NULL and are
    left out by the allocation step's filter on the cells.
    """
    from sqlglot import exp

    from xpcompute.metrics.base import lit

    assert spec.quasi is not None
    q = spec.quasi
    value = exp.cast(exp.column(q.group_column), exp.DataType.build("VARCHAR"))
    case = exp.Case().when(value.copy().isin(*[lit(v) for v in q.treated]), lit(TREATED))
    other: exp.Expr = (value.copy().isin(*[lit(v) for v in q.comparison]) if q.comparison
                       else value.copy().is_(exp.null()).not_())
    return case.when(other, lit(COMPARISON))


def fit_specs(spec: ExperimentSpec, metric: str, treatment: str = "cell", control: str | None = None) -> list[FitSpec]:
    """A quasi-experiment's fits of one metric: model ``did`` on the unit-by-period table, reference ``-1``."""
    from xpcompute.spec import FitSpec

    assert spec.quasi is not None
    return [FitSpec(metric=metric, treatment=treatment, control=control or COMPARISON, model="did", time="day",
                    cluster="user_id", reference_period=str(spec.quasi.reference_period))]


def request_problems(spec: ExperimentSpec, models: tuple[str, ...], reference: str | None) -> list[str]:
    """What an analysis request asks that the experiment's design cannot give (models, reference period)."""
    problems = []
    if spec.quasi is not None:
        wrong = [m for m in models if m != "did"]
        if wrong:
            problems.append(f"models {wrong} need random assignment; experiment {spec.id!r} is a quasi-experiment, "
                            "analysed by difference in differences only: drop 'models' or ask for 'did'")
    elif reference is not None and "did" not in models:
        problems.append("reference_period only applies to model 'did'; add 'did' to models or drop reference_period")
    if reference is not None:
        labels = period_labels(spec)
        if labels is not None and reference not in labels:
            what = "event times (periods relative to the change)" if spec.quasi is not None else "days of the window"
            problems.append(f"reference_period {reference!r} is not a period of experiment {spec.id!r}; its {what} "
                            f"are {', '.join(labels)}")
    return problems
