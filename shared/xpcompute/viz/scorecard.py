"""Scorecard rows: the one reading of result records that the HTML report and the terminal share.

A scorecard answers, per metric and slice, "did the treatment move it, by how
much, and can we trust that?". The decision rules live here, once, so the page
and the terminal can never disagree:

* the p-value that decides is the adjusted one (``p_value_adjusted``, after the
  analysis-wide correction) when the record has it, else the raw ``p_value``;
* significant means that p-value is below the record's own ``alpha``;
* good or bad needs to know which way is up for the metric
  (``higher_is_better``); without it a significant effect is only "up"/"down".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from xpcompute.records import ResultRecord
from xpcompute.viz._common import clean, first_seen, natural_key, quantile_label

Direction = Literal["good", "bad"]
Verdict = Literal["good", "bad", "up", "down", "flat", "none"]

#: One character per verdict, used in both the HTML table and the terminal.
MARKERS: dict[Verdict, str] = {"good": "✓", "bad": "✗", "up": "▲", "down": "▼", "flat": "·", "none": "–"}

#: What each verdict means, in words a newcomer reads in the legend.
VERDICT_LABELS: dict[Verdict, str] = {
    "good": "significant, good",
    "bad": "significant, bad",
    "up": "significant increase",
    "down": "significant decrease",
    "flat": "not significant",
    "none": "no p-value",
}

#: Colours of verdicts in figures and on the page (green good, red bad, blue when no direction is declared).
VERDICT_COLORS: dict[Verdict, str] = {
    "good": "#2b8a3e",
    "bad": "#c92a2a",
    "up": "#1c7ed6",
    "down": "#1c7ed6",
    "flat": "#868e96",
    "none": "#adb5bd",
}

#: How models are named for a reader who does not know the registry's short names.
MODEL_NAMES: dict[str, str] = {
    "ttest": "Welch t-test",
    "proportion": "two-proportion z-test",
    "ols": "regression-adjusted (OLS, HC1)",
    "cate": "effect by segment (CATE)",
    "dte": "effect over time (DTE, clustered by user)",
    "mannwhitney": "Mann–Whitney rank test",
    "quantile": "quantile effects (bootstrap)",
    "event_quantile": "event-level quantile effects (bootstrap clustered by unit)",
    "ratio": "ratio metric (delta method)",
}

CORRECTION_NAMES: dict[str, str] = {
    "bh": "Benjamini–Hochberg (false discovery rate)",
    "holm": "Holm (family-wise error rate)",
    "none": "no correction",
}


@dataclass(frozen=True)
class ScorecardRow:
    """One line of a scorecard: one treatment cell against control, for one metric in one slice.

    ``detail`` names what the effect refers to when it is not the plain
    average effect (``p90`` for a quantile, ``segment US``, ``period 3``); it
    is empty for the headline effect. ``p`` is the raw p-value and
    ``p_adjusted`` the corrected one; ``decision_p`` is the one that decides.
    """

    metric: str
    model: str
    slice: str | None
    cell: str
    control: str
    detail: str
    effect: float | None
    ci: tuple[float, float] | None
    relative: float | None
    relative_ci: tuple[float, float] | None
    p: float | None
    p_adjusted: float | None
    correction: str | None
    alpha: float
    significant: bool | None
    direction: Direction | None
    verdict: Verdict
    marker: str
    n_cell: float
    n_control: float
    mean_cell: float | None
    mean_control: float | None
    notes: tuple[str, ...] = ()

    @property
    def decision_p(self) -> float | None:
        """The p-value the marker is based on: adjusted when available, else raw."""
        return self.p_adjusted if self.p_adjusted is not None else self.p


def decision_p(record: ResultRecord) -> float | None:
    """``p_value_adjusted`` when present and finite, else ``p_value`` (``None`` if neither is usable).

    A record of a sequential analysis decides on its sequential p-value (adjusted when corrected): the
    fixed-horizon one is not valid when the test is looked at more than once.
    """
    sequential = clean(record.sequential_p_value)
    if sequential is not None:
        seq_adjusted = clean(record.sequential_p_value_adjusted)
        return seq_adjusted if seq_adjusted is not None else sequential
    adjusted = clean(record.p_value_adjusted)
    return adjusted if adjusted is not None else clean(record.p_value)


def direction_of(effect: float | None, metric: str, higher_is_better: Mapping[str, bool] | None) -> Direction | None:
    """Whether the effect moves the metric the desired way; ``None`` if unknown or there is no effect."""
    effect = clean(effect)
    if effect is None or effect == 0 or not higher_is_better or metric not in higher_is_better:
        return None
    return "good" if (effect > 0) == bool(higher_is_better[metric]) else "bad"


def verdict_of(record: ResultRecord, higher_is_better: Mapping[str, bool] | None = None) -> Verdict:
    """The reading of one record: significant good/bad (or up/down), not significant, or untestable."""
    p = decision_p(record)
    if p is None:
        return "none"
    if p >= record.alpha:
        return "flat"
    direction = direction_of(record.effect, record.metric, higher_is_better)
    if direction is not None:
        return direction
    effect = clean(record.effect)
    return "down" if effect is not None and effect < 0 else "up"


def record_detail(record: ResultRecord) -> str:
    """What sub-population or statistic an effect refers to, empty for the plain average effect."""
    parts: list[str] = []
    if record.quantile is not None:
        parts.append(quantile_label(record.quantile))
    if record.segment is not None:
        parts.append(f"segment {record.segment}")
    if record.time is not None:
        parts.append(f"period {record.time}")
    return ", ".join(parts)


def interval(low: float | None, high: float | None) -> tuple[float, float] | None:
    """Both bounds, or ``None`` when either is missing (half an interval reads as a whole one)."""
    lo, hi = clean(low), clean(high)
    return None if lo is None or hi is None else (lo, hi)


def _sequential_view(record: ResultRecord) -> tuple[tuple[float, float] | None, tuple[float, float] | None,
                                                    float | None, float | None] | None:
    """(interval, relative interval, p, p adjusted) of a sequential record, else ``None``.

    The relative interval is the fixed one widened by the same factor as the absolute one (both are the estimate
    +- a multiple of its standard error, and the sequential multiple depends only on the look), so the row never
    pairs a sequential absolute interval with a fixed-horizon relative one.
    """
    low, high = clean(record.sequential_ci_low), clean(record.sequential_ci_high)
    if low is None or high is None:
        return None
    rel, rlo, rhi = clean(record.relative_effect), clean(record.relative_ci_low), clean(record.relative_ci_high)
    flo, fhi = clean(record.ci_low), clean(record.ci_high)
    rel_ci = None
    if rel is not None and rlo is not None and rhi is not None and flo is not None and fhi is not None and fhi > flo:
        k = (high - low) / (fhi - flo)
        rel_ci = (rel - k * (rel - rlo), rel + k * (rhi - rel))
    return (low, high), rel_ci, clean(record.sequential_p_value), clean(record.sequential_p_value_adjusted)


def to_row(record: ResultRecord, higher_is_better: Mapping[str, bool] | None = None) -> ScorecardRow:
    """One record as a scorecard row (missing or non-finite numbers become ``None``); a sequential record shows
    its sequential interval and p-values (the ones that decide)."""
    p_adj = clean(record.p_value_adjusted)
    verdict = verdict_of(record, higher_is_better)
    ci = interval(record.ci_low, record.ci_high)
    rel_ci = interval(record.relative_ci_low, record.relative_ci_high)
    p = clean(record.p_value)
    seq = _sequential_view(record)
    if seq is not None:
        ci, rel_ci, p, p_adj = seq
    return ScorecardRow(
        metric=record.metric,
        model=record.model,
        slice=record.slice,
        cell=record.cell,
        control=record.control,
        detail=record_detail(record),
        effect=clean(record.effect),
        ci=ci,
        relative=clean(record.relative_effect),
        relative_ci=rel_ci,
        p=p,
        p_adjusted=p_adj,
        correction=record.correction,
        alpha=record.alpha,
        significant=None if verdict == "none" else verdict != "flat",
        direction=direction_of(record.effect, record.metric, higher_is_better),
        verdict=verdict,
        marker=MARKERS[verdict],
        n_cell=record.n_cell,
        n_control=record.n_control,
        mean_cell=clean(record.mean_cell),
        mean_control=clean(record.mean_control),
        notes=tuple(record.notes),
    )


def scorecard_rows(
    records: Sequence[ResultRecord],
    higher_is_better: Mapping[str, bool] | None = None,
    *,
    detail: bool = False,
) -> list[ScorecardRow]:
    """Rows for a scorecard, grouped by metric, model and slice, in the order the records first name them.

    By default only headline effects are kept: per-segment (CATE) and
    per-period (DTE) breakdowns belong in the figures, where they can be read
    as a shape; a table of 40 segment rows hides the answer. Quantile effects
    stay, since each quantile is a headline of its own. ``detail=True`` keeps
    every record.
    """
    kept = [r for r in records if detail or (r.segment is None and r.time is None)]
    metric_rank = {m: i for i, m in enumerate(first_seen(r.metric for r in kept))}
    model_rank = {m: i for i, m in enumerate(first_seen(r.model for r in kept))}
    slice_rank = {s: i for i, s in enumerate(first_seen(r.slice for r in kept))}

    def key(r: ResultRecord) -> tuple[object, ...]:
        return (
            metric_rank[r.metric], model_rank[r.model], slice_rank[r.slice], natural_key(r.cell),
            r.segment is not None, natural_key(r.segment), r.time is not None, natural_key(r.time),
            -1.0 if r.quantile is None else r.quantile,
        )

    return [to_row(r, higher_is_better) for r in sorted(kept, key=key)]


def model_name(model: str) -> str:
    """A model's readable name, or its short name when it is not one of the built-in models."""
    return MODEL_NAMES.get(model, model)


def format_number(value: float | None, digits: int = 4) -> str:
    """Four significant digits, no scientific notation for everyday magnitudes; a dash when missing."""
    value = clean(value)
    if value is None:
        return "—"
    if value == 0:
        return "0"
    if 1e-4 <= abs(value) < 1e7:
        text = f"{value:.{digits}g}"
        return text if "e" not in text else f"{value:,.0f}"
    return f"{value:.{max(digits - 1, 1)}e}"


def format_effect(value: float | None, digits: int = 4) -> str:
    """An effect with its sign, so that a decrease is visible at a glance."""
    text = format_number(value, digits)
    return f"+{text}" if clean(value) is not None and value is not None and value > 0 else text


def format_percent(value: float | None) -> str:
    """A relative effect as a signed percentage (``0.0869`` -> ``+8.69%``)."""
    value = clean(value)
    if value is None:
        return "—"
    pct = value * 100
    if abs(pct) >= 100:
        text = f"{pct:,.0f}"
    elif abs(pct) >= 10:
        text = f"{pct:.1f}"
    else:
        text = f"{pct:.2f}"
    return f"+{text}%" if pct > 0 else f"{text}%"


def format_interval(ci: tuple[float, float] | None, *, percent: bool = False, digits: int = 4) -> str:
    """``[low, high]`` in the same format as the point estimate."""
    if ci is None:
        return "—"
    if percent:
        return f"[{format_percent(ci[0])}, {format_percent(ci[1])}]"
    return f"[{format_number(ci[0], digits)}, {format_number(ci[1], digits)}]"


def format_p(value: float | None) -> str:
    """A p-value: ``<0.0001`` for tiny ones (more digits there only suggest false precision)."""
    value = clean(value)
    if value is None:
        return "—"
    if value < 1e-4:
        return "<0.0001"
    if value >= 0.1:
        return f"{value:.2f}"
    return f"{value:.2g}" if value < 0.01 else f"{value:.3f}"


def format_count(value: float | None) -> str:
    """A (weighted) count with thousands separators."""
    value = clean(value)
    if value is None:
        return "—"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
