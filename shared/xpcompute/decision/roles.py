"""Metric roles: which metrics decide a ship call, and how each one is tested.

A scorecard of twenty metrics is not a decision. The risk-aware rule
(Schultzberg, Ankargren & Frånberg 2024) reads an experiment through the role
each metric plays:

* **goal** (the paper's *success* metric): the change is meant to move it in
  its desired direction (the metric's ``higher_is_better``); it gets a
  superiority test, and alpha is corrected across the goal metrics only;
* **guardrail**: it must not get worse by more than a margin (absolute, in the
  metric's units, or relative to the control mean); it gets a one-sided
  non-inferiority test at the unadjusted alpha;
* **secondary**: shown, not decisive;
* **diagnostic**: checks of the experiment itself, shown, not decisive (the
  sample-ratio check and failed jobs are diagnostics that *can* block).

Roles come from three places, later ones winning per metric: the metric's
Python class (``role``, ``margin``), the experiment YAML's ``roles:`` block and
an analysis request's ``roles``. Anything not named is secondary.

This module is pydantic only (no scipy): the experiment spec imports it, and
a function's cold start must not pay for the statistics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["goal", "guardrail", "secondary", "diagnostic"]
ROLES: tuple[str, ...] = get_args(Role)

GoalTest = Literal["two_sided", "one_sided"]
"""Superiority test of a goal: two-sided at alpha / goals (significant in the desired direction), or
one-sided in the desired direction at alpha / goals."""


class GuardrailSpec(BaseModel):
    """A guardrail's non-inferiority margin: how much worse the metric may get and still count as not worse.

    ``relative: true`` reads ``margin`` as a fraction of the control mean (0.02 = 2%), tested on the
    record's relative effect and its delta-method SE; otherwise in the metric's own units (for a
    proportion: a difference in proportions, 0.005 = 0.5 pp).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    margin: float = Field(gt=0, description="Largest tolerated deterioration (> 0), in the metric's units or "
                                            "relative to the control mean.")
    relative: bool = Field(default=False, description="Read margin as a fraction of the control mean.")

    @field_validator("margin")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError(f"margin must be a finite positive number, got {v!r}")
        return v


def _example(entries: Sequence[object]) -> str:
    """A metric name from a list the user gave, for an error message's example."""
    for entry in entries:
        if isinstance(entry, str):
            return entry
        if isinstance(entry, dict) and isinstance(entry.get("metric"), str):
            return str(entry["metric"])
    return "my_metric"


class RolesSpec(BaseModel):
    """The ``roles:`` block of an experiment (or an analysis request's override).

    ``goal``: list of metric names. ``guardrails``: metric -> ``{margin, relative}``.
    ``secondary`` and ``diagnostic``: lists. A metric may be listed under one role only.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    goal: tuple[str, ...] = Field(default=(), description="Goal (success) metrics: superiority tests.")
    guardrails: dict[str, GuardrailSpec] = Field(
        default_factory=dict, description="Guardrail metrics and their non-inferiority margins."
    )
    secondary: tuple[str, ...] = Field(default=(), description="Shown, not decisive.")
    diagnostic: tuple[str, ...] = Field(default=(), description="Checks of the experiment; shown, not decisive.")
    higher_is_better: dict[str, bool] = Field(
        default_factory=dict,
        description="Direction of metrics the metrics repo does not describe (columns of an ad-hoc table); it "
        "overrides a metric's declared direction for this decision only.",
    )

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, raw: object) -> object:
        """Accept ``goals:`` for ``goal:`` and ``guardrail:``/``diagnostics:`` likewise (a common slip)."""
        if isinstance(raw, dict):
            out = dict(raw)
            for alias, name in (("goals", "goal"), ("guardrail", "guardrails"), ("diagnostics", "diagnostic")):
                if alias in out and name not in out:
                    out[name] = out.pop(alias)
            guardrails = out.get("guardrails")
            if isinstance(guardrails, list | tuple):
                raise ValueError(
                    f"guardrails must map each metric to its margin, e.g. guardrails: {{{_example(guardrails)}: "
                    "{margin: 0.02, relative: true}}, not a list"
                )
            if isinstance(guardrails, dict):
                for metric, margin in guardrails.items():
                    if isinstance(margin, int | float) and not isinstance(margin, bool):
                        # a bare number is ambiguous (2% of the control mean, or 0.02 in the metric's units)
                        raise ValueError(
                            f"guardrail {metric!r}: say how to read the margin {margin}: write "
                            f"{{margin: {margin}, relative: true}} for a fraction of the control mean, or "
                            f"{{margin: {margin}}} for the metric's own units"
                        )
            return out
        return raw

    @model_validator(mode="after")
    def _once(self) -> RolesSpec:
        seen: dict[str, str] = {}
        clashes: list[str] = []
        for role, names in (("goal", self.goal), ("guardrails", tuple(self.guardrails)),
                            ("secondary", self.secondary), ("diagnostic", self.diagnostic)):
            for name in names:
                if name in seen:
                    clashes.append(f"{name!r} under {seen[name]} and {role}")
                seen[name] = role
        if clashes:
            raise ValueError(f"roles lists a metric under two roles ({'; '.join(clashes)}); give each metric one role")
        return self

    def names(self) -> list[str]:
        """Every metric the block names (roles and directions)."""
        return list(dict.fromkeys([*self.goal, *self.guardrails, *self.secondary, *self.diagnostic,
                                   *self.higher_is_better]))

    def unknown(self, metrics: Iterable[str]) -> list[str]:
        """Names the block gives that are not in ``metrics`` (sorted)."""
        known = set(metrics)
        return sorted(n for n in self.names() if n not in known)

    def role_of(self, metric: str) -> tuple[Role, GuardrailSpec | None] | None:
        """The role (and margin) this block gives ``metric``; ``None`` when it does not name it."""
        if metric in self.goal:
            return "goal", None
        if metric in self.guardrails:
            return "guardrail", self.guardrails[metric]
        if metric in self.secondary:
            return "secondary", None
        if metric in self.diagnostic:
            return "diagnostic", None
        return None


class DecisionSpec(BaseModel):
    """The ``decision:`` block of an experiment: which rule turns the results into a ship call, and its settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str = Field(default="risk_aware", min_length=1, max_length=64,
                      description="A registered decision rule (xpcompute.decision.register_rule).")
    goal_test: GoalTest = Field(
        default="two_sided",
        description="Superiority test of the goal metrics: 'two_sided' (significant and in the desired direction) "
        "or 'one_sided' (in the desired direction only).",
    )
    alpha: float | None = Field(default=None, gt=0, lt=1,
                                description="Decision level; default the analysis's alpha.")
    deterioration_alpha: float | None = Field(
        default=None, gt=0, lt=1,
        description="Level of the one-sided deterioration tests of goals and guardrails; default the decision's "
        "alpha. Each one at a metric with no true effect costs this much power (a false alarm blocks a ship).",
    )
    power: float = Field(default=0.8, gt=0, lt=1,
                         description="Planned power of the ship decision (per-guardrail power is derived from it).")
    srm_blocks: bool = Field(default=True, description="A sample-ratio mismatch blocks shipping.")
    pretrend_blocks: bool = Field(
        default=True,
        description="In a difference-in-differences analysis (quasi-experiment), a goal or guardrail whose "
        "pre-trend test rejects parallel trends at the decision's alpha blocks shipping.",
    )


@dataclass(frozen=True)
class MetricRole:
    """One metric's resolved role: where it came from, its desired direction and (guardrails) its margin."""

    metric: str
    role: Role
    higher_is_better: bool | None = None
    margin: float | None = None
    relative: bool = False
    source: str = "default"

    def margin_text(self) -> str:
        """The margin as a reader sees it: ``±2%`` relative, else the number, with the bad direction's sign."""
        if self.margin is None:
            return ""
        sign = "-" if self.higher_is_better else "+"
        return f"{sign}{self.margin * 100:g}%" if self.relative else f"{sign}{self.margin:g}"

    def to_json_dict(self) -> dict[str, object]:
        return {"metric": self.metric, "role": self.role, "higher_is_better": self.higher_is_better,
                "margin": self.margin, "relative": self.relative, "source": self.source}


@dataclass(frozen=True)
class ClassRole:
    """A role as a metric class declares it (``role``, ``margin`` class attributes)."""

    role: Role | None
    margin: float | None = None
    relative: bool = True


def resolve_roles(
    metrics: Iterable[str],
    higher_is_better: Mapping[str, bool | None],
    declared: Mapping[str, ClassRole] | None = None,
    experiment: RolesSpec | None = None,
    request: RolesSpec | None = None,
) -> dict[str, MetricRole]:
    """Each metric's role: the request's, else the experiment YAML's, else its class's, else secondary.

    Raises ``ValueError`` (the callers turn it into a 4xx) when a goal or guardrail has no direction
    (``higher_is_better: null``): "better" and "worse" would mean nothing, or when a guardrail has no margin.
    """
    out: dict[str, MetricRole] = {}
    problems: list[str] = []
    for metric in metrics:
        hib = higher_is_better.get(metric)
        role: Role = "secondary"
        spec: GuardrailSpec | None = None
        source = "default"
        cls = (declared or {}).get(metric)
        if cls is not None and cls.role is not None:
            role, source = cls.role, "metric class"
            if cls.margin is not None:
                spec = GuardrailSpec(margin=cls.margin, relative=cls.relative)
        for where, block in (("experiment", experiment), ("request", request)):
            if block is not None and metric in block.higher_is_better:
                hib = block.higher_is_better[metric]
            found = block.role_of(metric) if block is not None else None
            if found is not None:
                role, spec = found
                source = where
        if role in ("goal", "guardrail") and hib is None:
            problems.append(f"{role} {metric!r} has no direction (higher_is_better is null); declare "
                            f"higher_is_better on the metric, or in roles: {{higher_is_better: {{{metric}: true}}}}, "
                            "or give it another role")
        if role == "guardrail" and spec is None:
            problems.append(f"guardrail {metric!r} needs a margin, e.g. roles: {{guardrails: {{{metric}: "
                            "{margin: 0.02, relative: true}}}}")
        out[metric] = MetricRole(
            metric=metric, role=role, higher_is_better=hib,
            margin=spec.margin if spec is not None and role == "guardrail" else None,
            relative=bool(spec.relative) if spec is not None and role == "guardrail" else False, source=source,
        )
    if problems:
        raise ValueError("; ".join(problems))
    return out


__all__ = [
    "ROLES", "ClassRole", "DecisionSpec", "GoalTest", "GuardrailSpec", "MetricRole", "Role", "RolesSpec",
    "resolve_roles",
]
