"""One headline estimate per metric and cell, with the metric's own units and formats.

An analysis fits several models per metric (a t-test, a regression-adjusted
OLS, a rank test...). A person reading a scorecard wants one number per metric
and cell, and wants it to be the best one: the CUPED (regression-adjusted)
estimate when the experiment declares pre-period covariates for the metric,
because it answers the same question with a smaller standard error; otherwise
the metric's primary model (proportion, then ratio, then t-test). The other
records are kept as ``details`` so that nothing is hidden, only ranked.

Numbers are formatted here, once, so the terminal table, the CSV and the JSON
show the same text:

* means use the metric's declared format (``"{:.2%}"``, ``"${:,.2f}"``);
* effects of proportions (and of any metric shown in percent) are in
  percentage points: a change from 10.00% to 12.00% reads ``+2.00 pp``, which
  a relative "+20%" would blur;
* an effect gets at least the metric's decimals, and more when its standard
  error needs them: a +0.0034 effect on a mean of 1,000,000.00 must not print
  as ``+0.00``. Two significant digits of the standard error decide.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from xpcompute.records import ResultRecord
from xpcompute.viz._common import clean, first_seen, is_overall, natural_key, quantile_label
from xpcompute.viz.scorecard import (
    MARKERS,
    MODEL_NAMES,
    Verdict,
    decision_p,
    format_effect,
    format_number,
    format_p,
    verdict_of,
)

if TYPE_CHECKING:
    from xpcompute.experiment import ExperimentSpec
    from xpcompute.metrics import Metric

MetricKind = Literal["simple", "proportion", "ratio", "quantile"]

_KINDS: dict[str, MetricKind] = {
    "simple": "simple", "proportion": "proportion", "ratio": "ratio", "quantile": "quantile", "event_quantile": "quantile",
}

#: Which model is a metric's headline when no CUPED estimate applies (lower ranks first).
PRIMARY_RANK: dict[str, int] = {"proportion": 0, "ratio": 1, "ttest": 2}

#: Unadjusted models whose standard error a CUPED estimate is compared against (same estimand: a difference in means).
UNADJUSTED_COMPARATORS: tuple[str, ...] = ("ttest", "proportion")

#: Most decimals an effect is given before it switches to scientific notation (a wider column helps nobody).
MAX_DECIMALS = 8

_FIELD = re.compile(r"^(?P<prefix>[^{}]*)\{[^:{}]*(?::(?P<spec>[^{}]*))?\}(?P<suffix>[^{}]*)$")
_SPEC = re.compile(
    r"^(?:.?[<>=^])?(?P<sign>[+\- ]?)#?0?\d*(?P<grouping>[,_]?)(?:\.(?P<precision>\d+))?(?P<type>[dfF%]?)$"
)
_DROPPED = re.compile(r"dropped collinear columns: (?P<names>.*)$")


@dataclass(frozen=True)
class MetricInfo:
    """What a scorecard needs to know about a metric beyond its records: how to show it and how it was adjusted.

    ``format`` is a Python format string for one value (``"{:,.2f}"``,
    ``"{:.2%}"``, ``"${:,.2f}"``). ``covariates`` are the covariates the
    experiment declares for the metric: when they are non-empty, the metric's
    ``ols`` record is its CUPED estimate and becomes the headline.
    """

    name: str
    description: str = ""
    unit: str = ""
    format: str = "{:,.3f}"
    kind: MetricKind = "simple"
    higher_is_better: bool | None = None
    covariates: tuple[str, ...] = ()
    #: the metric's role in the ship decision (goal, guardrail, secondary, diagnostic; ``None``: not given) and a
    #: guardrail's margin as text (``+2%``): the scorecard groups and tags rows by them
    role: str | None = None
    margin: str = ""

    @classmethod
    def from_metric(cls, metric: Metric, covariates: Sequence[str] = ()) -> MetricInfo:
        """The display metadata a catalog metric declares, plus the covariates an experiment gives it."""
        kind = type(metric).kind()
        return cls(
            name=metric.name,
            description=metric.description,
            unit=metric.unit,
            format=metric.format,
            kind=_KINDS.get(kind, "simple"),
            higher_is_better=metric.higher_is_better,
            covariates=tuple(covariates),
        )

    @property
    def number_format(self) -> NumberFormat:
        return NumberFormat.parse(self.format)

    @property
    def in_points(self) -> bool:
        """Effects shown in percentage points: proportions, and any metric whose values are shown in percent."""
        return self.kind == "proportion" or self.number_format.percent

    @property
    def label(self) -> str:
        """The metric's name with its unit, as the table's first column shows it."""
        return f"{self.name} ({self.unit})" if self.unit else self.name

    @property
    def role_tag(self) -> str:
        """``goal``, ``guardrail +2%`` (with its margin), or empty for secondary metrics and metrics without a role."""
        if self.role == "guardrail":
            return f"guardrail {self.margin}" if self.margin else "guardrail"
        return self.role if self.role in ("goal", "diagnostic") else ""


#: The order in which a scorecard built around the decision shows its metrics' roles.
ROLE_ORDER: dict[str | None, int] = {"goal": 0, "guardrail": 1, "secondary": 2, None: 2, "diagnostic": 3}


def with_roles(infos: Mapping[str, MetricInfo], roles: Mapping[str, Any]) -> dict[str, MetricInfo]:
    """``infos`` tagged with each metric's role (``decision.roles.MetricRole``) and ordered goals, guardrails, the
    rest (stable within a role), which is the order every scorecard shows them in."""
    from dataclasses import replace

    tagged = {}
    for name, info in infos.items():
        role = roles.get(name)
        if role is None:
            tagged[name] = info
            continue
        margin = role.margin_text()
        if role.margin is not None and not role.relative and info.in_points:  # a proportion's margin in pp
            margin = f"{'-' if role.higher_is_better else '+'}{role.margin * 100:g} pp"
        tagged[name] = replace(info, role=role.role, margin=margin)
    return dict(sorted(tagged.items(), key=lambda kv: ROLE_ORDER.get(kv[1].role, 2)))


def metric_infos(
    metrics: Iterable[str], experiment: ExperimentSpec | None = None
) -> dict[str, MetricInfo]:
    """``MetricInfo`` for catalog metrics, with the CUPED covariates ``experiment`` declares for each.

    Names the catalog does not know get a plain default (three decimals, no
    unit), so a local fit of an ad-hoc column still gets a scorecard.
    """
    from xpcompute.errors import XPError
    from xpcompute.metrics import get_metric

    out: dict[str, MetricInfo] = {}
    for name in metrics:
        covariates = experiment.covariates_for(name) if experiment is not None else ()
        try:
            out[name] = MetricInfo.from_metric(get_metric(name), covariates)
        except (XPError, KeyError):
            out[name] = MetricInfo(name=name, covariates=covariates)
    return out


@dataclass(frozen=True)
class NumberFormat:
    """The parts of a metric's format string that effects reuse: prefix, suffix, grouping, decimals, percent.

    Only fixed-point and percent formats are understood; anything else
    (``"{:.3g}"``, several fields) keeps its text for means and gets the
    generic four-significant-digit format for effects.
    """

    text: str
    prefix: str = ""
    suffix: str = ""
    grouping: str = ","
    precision: int | None = None
    percent: bool = False
    understood: bool = False

    @classmethod
    def parse(cls, text: str) -> NumberFormat:
        whole = _FIELD.match(text)
        spec = _SPEC.match(whole.group("spec") or "") if whole else None
        if whole is None or spec is None:
            return cls(text=text)
        precision = spec.group("precision")
        kind = spec.group("type")
        return cls(
            text=text,
            prefix=whole.group("prefix"),
            suffix=whole.group("suffix"),
            grouping=spec.group("grouping"),
            precision=int(precision) if precision is not None else (0 if kind == "d" else None),
            percent=kind == "%",
            understood=True,
        )

    def value(self, value: float | None) -> str:
        """A mean as the metric declares it; a dash when missing, the generic format if the string is unusable."""
        value = clean(value)
        if value is None:
            return "—"
        try:
            return self.text.format(value)
        except (ValueError, IndexError, KeyError):
            return format_number(value)


def decimals_for(scale: float | None, minimum: int) -> int:
    """Decimals that show two significant digits of ``scale`` (a standard error), never fewer than ``minimum``.

    Returns more than :data:`MAX_DECIMALS` when that is what it takes; callers
    switch to scientific notation then.
    """
    if scale is None or not math.isfinite(scale) or scale <= 0:
        return minimum
    return max(minimum, 1 - math.floor(math.log10(scale)))


def fixed(value: float, decimals: int, *, sign: bool, grouping: str = ",") -> str:
    """``value`` with ``decimals`` decimals (scientific beyond :data:`MAX_DECIMALS`), signed if asked."""
    plus = "+" if sign else "-"
    if decimals > MAX_DECIMALS:
        return f"{value:{plus}.1e}"
    return f"{value:{plus}{grouping}.{decimals}f}"


def _uncertainty(se: float | None, low: float | None, high: float | None) -> float | None:
    """The standard error, or the interval's half width over 1.96 when only the interval is known."""
    se = clean(se)
    if se is not None and se > 0:
        return se
    lo, hi = clean(low), clean(high)
    if lo is not None and hi is not None and hi > lo:
        return (hi - lo) / (2 * 1.959963984540054)
    return None


@dataclass(frozen=True)
class Shown:
    """The text of one headline row, column by column, exactly as every writer prints it."""

    mean_control: str
    mean_cell: str
    effect: str
    ci_low: str
    ci_high: str
    relative: str
    p: str

    @property
    def ci(self) -> str:
        return "—" if self.ci_low == "—" else f"[{self.ci_low}, {self.ci_high}]"


@dataclass(frozen=True)
class Headline:
    """The one estimate a scorecard shows for a metric and cell in a slice, and what backs it.

    ``record`` is the headline record; ``adjusted`` says it is CUPED (OLS on
    ``covariates``); ``unadjusted`` is the plain record it is compared with and
    ``se_reduction = 1 - se(record) / se(unadjusted)`` how much the covariates
    cut the standard error (negative when they inflated it). ``details`` are the
    metric's other records for this cell: other models, quantiles, segments,
    periods.
    """

    info: MetricInfo
    record: ResultRecord
    adjusted: bool = False
    covariates: tuple[str, ...] = ()
    unadjusted: ResultRecord | None = None
    se_reduction: float | None = None
    details: tuple[ResultRecord, ...] = field(default=())

    @property
    def metric(self) -> str:
        return self.record.metric

    @property
    def slice(self) -> str | None:
        return self.record.slice

    @property
    def cell(self) -> str:
        return self.record.cell

    @property
    def control(self) -> str:
        return self.record.control

    @property
    def model(self) -> str:
        return self.record.model

    @property
    def estimator(self) -> str:
        """How the headline was estimated, in words (``CUPED on pre_revenue``, ``Welch t-test``, ``p50``)."""
        if self.adjusted:
            return f"CUPED on {', '.join(self.covariates)}" if self.covariates else "CUPED"
        name = MODEL_NAMES.get(self.model, self.model)
        return f"{name}, {quantile_label(self.record.quantile)}" if self.record.quantile is not None else name

    @property
    def scale(self) -> float:
        """What an effect is multiplied by to be shown: 100 for percentage points, else 1."""
        return 100.0 if self.info.in_points else 1.0

    @property
    def effect_unit(self) -> str:
        """The unit an effect is shown in: ``pp`` for proportions, else the metric's unit."""
        return "pp" if self.info.in_points else self.info.unit

    @property
    def effect_decimals(self) -> int:
        """Decimals of the effect and its interval: the metric's own, more if the standard error needs them."""
        fmt = self.info.number_format
        base = fmt.precision if fmt.precision is not None else 2
        scale = _uncertainty(self.record.se, self.record.ci_low, self.record.ci_high)
        return decimals_for(None if scale is None else scale * self.scale, base)

    @property
    def relative_decimals(self) -> int:
        """Decimals of the relative effect in percent: one at least, two significant digits of its standard error."""
        r = self.record
        scale = _uncertainty(r.relative_se, r.relative_ci_low, r.relative_ci_high)
        return decimals_for(None if scale is None else scale * 100, 1)

    @property
    def verdict(self) -> Verdict:
        hib = None if self.info.higher_is_better is None else {self.metric: self.info.higher_is_better}
        return verdict_of(self.record, hib)

    @property
    def marker(self) -> str:
        return MARKERS[self.verdict]

    @property
    def p(self) -> float | None:
        """The p-value that decides: adjusted when the analysis corrected for multiple comparisons."""
        return decision_p(self.record)

    def shown(self) -> Shown:
        """Every number of the row as text, in the metric's units and formats."""
        r, fmt = self.record, self.info.number_format
        decimals = self.effect_decimals

        def effect_text(value: float | None, sign: bool) -> str:
            value = clean(value)
            if value is None:
                return "—"
            if self.info.in_points:
                return fixed(value * 100, decimals, sign=sign)
            if not fmt.understood:
                return format_effect(value) if sign else format_number(value)
            return fixed(value, decimals, sign=sign, grouping=fmt.grouping)

        effect = effect_text(r.effect, True)
        if effect != "—":
            effect = f"{effect} pp" if self.info.in_points else _affix(effect, fmt)
        rel = clean(r.relative_effect)
        relative = "—" if rel is None else fixed(rel * 100, self.relative_decimals, sign=True) + "%"
        # a sequential analysis shows its always-valid / repeated interval: the fixed one is not valid at a look
        low, high = ((r.sequential_ci_low, r.sequential_ci_high) if clean(r.sequential_ci_low) is not None
                     else (r.ci_low, r.ci_high))
        has_ci = clean(low) is not None and clean(high) is not None
        return Shown(
            mean_control=fmt.value(r.mean_control),
            mean_cell=fmt.value(r.mean_cell),
            effect=effect,
            ci_low=effect_text(low, False) if has_ci else "—",
            ci_high=effect_text(high, False) if has_ci else "—",
            relative=relative,
            p=format_p(self.p),
        )


def _affix(signed: str, fmt: NumberFormat) -> str:
    """Put a metric's prefix (``$``) after the sign and its suffix at the end: ``+$1.25``."""
    if not fmt.understood or not (fmt.prefix or fmt.suffix):
        return signed
    if signed[:1] in "+-":
        return f"{signed[0]}{fmt.prefix}{signed[1:]}{fmt.suffix}"
    return f"{fmt.prefix}{signed}{fmt.suffix}"


def _guess_kind(records: Sequence[ResultRecord]) -> MetricKind:
    models = {r.model for r in records}
    if "proportion" in models:
        return "proportion"
    if "ratio" in models:
        return "ratio"
    return "quantile" if models and models <= {"quantile", "event_quantile"} else "simple"


def dropped_covariates(record: ResultRecord, covariates: Sequence[str]) -> tuple[str, ...]:
    """Covariates the OLS fit dropped as collinear (its notes say so): they did not adjust anything."""
    dropped: set[str] = set()
    for note in record.notes:
        match = _DROPPED.search(note)
        if match:
            dropped |= {name.strip() for name in match.group("names").split(",")}
    return tuple(c for c in covariates if c in dropped)


def _headline_for(info: MetricInfo, records: Sequence[ResultRecord]) -> Headline:
    """Choose the headline among one (slice, metric, cell)'s records; the rest become details."""
    overall = [r for r in records if is_overall(r)]
    candidates = overall or list(records)
    ols = [r for r in candidates if r.model == "ols" and r.quantile is None]
    comparators = [r for m in UNADJUSTED_COMPARATORS for r in candidates if r.model == m and r.quantile is None]
    unadjusted = comparators[0] if comparators else None
    used = tuple(c for c in info.covariates if not ols or c not in dropped_covariates(ols[0], info.covariates))
    if used and ols:
        # CUPED; when the fit dropped every covariate as collinear it is a plain regression, so the primary wins
        chosen = ols[0]
        reduction = None
        se, se0 = clean(chosen.se), clean(unadjusted.se) if unadjusted is not None else None
        if se is not None and se0 is not None and se0 > 0:
            reduction = 1.0 - se / se0
        return Headline(
            info=info, record=chosen, adjusted=True, covariates=used, unadjusted=unadjusted,
            se_reduction=reduction, details=tuple(r for r in records if r is not chosen),
        )

    def rank(r: ResultRecord) -> tuple[float, float]:
        q = 0.0 if r.quantile is None else abs(r.quantile - 0.5) + 1e-9 * r.quantile
        return (PRIMARY_RANK.get(r.model, len(PRIMARY_RANK) + (r.model == "ols")), q)

    chosen = min(candidates, key=rank)
    return Headline(info=info, record=chosen, details=tuple(r for r in records if r is not chosen))


def headlines(records: Sequence[ResultRecord], infos: Mapping[str, MetricInfo] | None = None) -> list[Headline]:
    """One headline per (slice, metric, cell): CUPED when declared and fitted, else the metric's primary model.

    Order: slices as the records first name them, metrics in ``infos`` order
    (then any others as first seen), cells in natural order. A metric missing
    from ``infos`` gets a default ``MetricInfo`` whose kind is guessed from its
    models, so an unknown metric is still shown, only without units.
    """
    infos = dict(infos or {})
    groups: dict[tuple[str | None, str, str], list[ResultRecord]] = {}
    for r in records:
        groups.setdefault((r.slice, r.metric, r.cell), []).append(r)
    by_metric: dict[str, list[ResultRecord]] = {}
    for r in records:
        by_metric.setdefault(r.metric, []).append(r)
    for metric, recs in by_metric.items():
        if metric not in infos:
            infos[metric] = MetricInfo(name=metric, kind=_guess_kind(recs))
    metric_rank: dict[str, int] = {}
    for m in [*infos, *first_seen(r.metric for r in records)]:
        metric_rank.setdefault(m, len(metric_rank))  # the first mention wins: ``infos`` order leads
    slice_rank = {s: i for i, s in enumerate(first_seen(r.slice for r in records))}
    keys = sorted(groups, key=lambda k: (slice_rank[k[0]], metric_rank[k[1]], natural_key(k[2])))
    return [_headline_for(infos[k[1]], groups[k]) for k in keys]


def headline_dict(h: Headline) -> dict[str, Any]:
    """One headline as a flat, JSON-safe dict: raw numbers (non-finite -> ``None``) and the text the table shows."""
    r, shown = h.record, h.shown()
    return {
        "slice": r.slice,
        "metric": r.metric,
        "unit": h.info.unit,
        "kind": h.info.kind,
        "cell": r.cell,
        "control": r.control,
        "model": r.model,
        "estimator": h.estimator,
        "covariates": list(h.covariates),
        "se_reduction": clean(h.se_reduction),
        "se_unadjusted": clean(h.unadjusted.se) if h.unadjusted is not None else None,
        "n_control": clean(r.n_control),
        "n_cell": clean(r.n_cell),
        "mean_control": clean(r.mean_control),
        "mean_cell": clean(r.mean_cell),
        "effect": clean(r.effect),
        "se": clean(r.se),
        "ci_low": clean(r.ci_low),
        "ci_high": clean(r.ci_high),
        "alpha": r.alpha,
        "relative_effect": clean(r.relative_effect),
        "relative_ci_low": clean(r.relative_ci_low),
        "relative_ci_high": clean(r.relative_ci_high),
        "p_value": clean(r.p_value),
        "p_value_adjusted": clean(r.p_value_adjusted),
        "correction": r.correction,
        "inference": r.inference,
        "sequential_ci_low": clean(r.sequential_ci_low),
        "sequential_ci_high": clean(r.sequential_ci_high),
        "sequential_p_value": clean(r.sequential_p_value),
        "sequential_p_value_adjusted": clean(r.sequential_p_value_adjusted),
        "look": r.look,
        "boundary_crossed": r.boundary_crossed,
        "chance_to_beat_control": clean(r.chance_to_beat_control),
        "shrunk_effect": clean(r.shrunk_effect),
        "verdict": h.verdict,
        "role": h.info.role,
        "margin": h.info.margin or None,
        "effect_unit": h.effect_unit,
        "shown_mean_control": shown.mean_control,
        "shown_mean_cell": shown.mean_cell,
        "shown_effect": shown.effect,
        "shown_ci": shown.ci,
        "shown_relative": shown.relative,
        "shown_p": shown.p,
        "details": [f"{d.model}{'' if d.quantile is None else ' ' + quantile_label(d.quantile)}"
                    f"{'' if d.segment is None else ' segment ' + d.segment}"
                    f"{'' if d.time is None else ' period ' + d.time}" for d in h.details],
    }
