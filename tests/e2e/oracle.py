"""An independent pandas/statsmodels analysis of the e-commerce example, straight from its raw tables.

The end-to-end tests compare xpcompute's headline numbers with these, so
nothing here may share code with xpcompute: no SQL, no compression, no model
classes. Only pandas, NumPy, SciPy and statsmodels, and the metric
definitions of ``examples/ecommerce/experiment.yaml`` (and of its plugin
``shop_metrics.py``) written out again by hand in pandas. The YAML is read
only for its settings (window, cells, column names), so a change of window
moves both sides while a change of meaning in stage 1 shows up as a mismatch.

The exposure rule, as ``docs/experiment-yaml.md`` states it:

- a unit's first exposure ``e`` is the earliest exposure time over its
  allocation rows in declared cells; a unit in two declared cells is left
  out, and so is a unit first exposed after the window's last day;
- its analysis starts at ``start = max(e, window start 00:00)`` and ends
  before 00:00 of the day after the window's last day; a timestamp event
  counts when ``start <= t < end``; a date event when
  ``date(start) <= d <= last day``;
- its pre-period is the ``pre_days`` days before ``start``:
  ``start - pre_days <= t < start`` for timestamps,
  ``date(start) - pre_days <= d < date(start)`` for dates;
- timestamps are compared in UTC; naive timestamps are UTC.

``Rule`` can also break the rule the two ways stage 1 used to, so a test can
show that the comparison has the power to catch them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
import yaml
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

TREATMENT = "one_page"  # the example's treatment cell


@dataclass(frozen=True)
class Settings:
    """What the oracle reads from the experiment YAML: settings only, no metric logic."""

    cells: tuple[str, ...]
    control: str
    start: date
    end: date
    pre_days: int
    cell_column: str
    exposure_column: str
    user_columns: dict[str, str]
    time_columns: dict[str, str]
    shares: dict[str, float]

    @classmethod
    def from_yaml(cls, path: Path) -> Settings:
        raw = yaml.safe_load(path.read_text())
        sources = raw["sources"]
        return cls(
            cells=tuple(raw["cells"]), control=raw["control"],
            start=raw["window"]["start"], end=raw["window"]["end"], pre_days=int(raw["window"]["pre_days"]),
            cell_column=raw["allocation"]["cell_column"], exposure_column=raw["allocation"]["exposure_column"],
            user_columns={k: v["user_column"] for k, v in sources.items()},
            time_columns={k: v["date_column"] for k, v in sources.items() if "date_column" in v},
            shares={str(k): float(v) for k, v in (raw.get("shares") or {c: 1.0 for c in raw["cells"]}).items()},
        )


@dataclass(frozen=True)
class Rule:
    """How windows are drawn: ``exposure`` honours first exposures; ``midnight_end`` is the old end-day bug.

    ``exposure=False`` starts every allocated unit (late or not) at the window
    start, so events before a unit's exposure count; ``midnight_end=True`` ends
    timestamp windows at 00:00 of the last day, dropping that whole day.
    """

    exposure: bool = True
    midnight_end: bool = False


@dataclass(frozen=True)
class Estimate:
    """One headline number set, named like xpcompute's result-record fields."""

    effect: float
    se: float
    p_value: float
    n_cell: float
    n_control: float
    mean_cell: float
    mean_control: float


@dataclass
class Oracle:
    """Per-unit values and estimates for one treatment cell against control."""

    units: pd.DataFrame  # index: unit id (str); columns: cell, start, then one column per metric/covariate
    settings: Settings
    rule: Rule = field(default_factory=Rule)

    def column(self, name: str) -> pd.Series:
        return self.units[name]


def _utc(series: pd.Series) -> pd.Series:
    """Timestamps as UTC; naive ones are UTC already."""
    s = pd.to_datetime(series)
    return s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")


def _day(d: date) -> pd.Timestamp:
    return pd.Timestamp(d.isoformat(), tz="UTC")


def exposed_units(assignments: pd.DataFrame, s: Settings, rule: Rule) -> pd.DataFrame:
    """One row per analysed unit: its cell and the start of its analysis (UTC), by the exposure rule."""
    user = s.user_columns["assignments"]
    rows = assignments[assignments[s.cell_column].isin(s.cells)].copy()
    rows["_t"] = _utc(rows[s.exposure_column])
    g = rows.groupby(user, sort=True)
    units = pd.DataFrame({"cell": g[s.cell_column].first(), "n_cells": g[s.cell_column].nunique(),
                          "first": g["_t"].min()})
    units = units[units["n_cells"] == 1]
    window_start = _day(s.start)
    end_excl = _day(s.end) + pd.Timedelta(days=1)
    if rule.exposure:
        units = units[units["first"] < end_excl]
        units["start"] = units["first"].where(units["first"] > window_start, window_start)
    else:
        units["start"] = window_start
    units.index = units.index.astype(str)
    return units[["cell", "start"]]


def in_window(events: pd.DataFrame, source: str, units: pd.DataFrame, s: Settings, rule: Rule,
              period: str, is_date: bool) -> pd.DataFrame:
    """The events of analysed units that fall in each unit's analysis window (``period='analysis'``) or pre-period."""
    user = s.user_columns[source]
    ev = events[events[user].isin(units.index)].copy()
    start = ev[user].map(units["start"])
    pre = pd.Timedelta(days=s.pre_days)
    if is_date:
        d = pd.to_datetime(ev[s.time_columns[source]]).dt.tz_localize("UTC")
        first_day = start.dt.floor("D")
        if period == "analysis":
            keep = (d >= first_day) & (d <= _day(s.end))
        else:
            keep = (d >= first_day - pre) & (d < first_day)
    else:
        t = _utc(ev[s.time_columns[source]])
        end = _day(s.end) if rule.midnight_end else _day(s.end) + pd.Timedelta(days=1)
        keep = (t >= start) & (t < end) if period == "analysis" else (t >= start - pre) & (t < start)
    out = ev[keep].copy()
    out["_unit"] = out[user].astype(str)
    return out


def per_unit(units: pd.DataFrame, events: pd.DataFrame, how: Callable[[pd.core.groupby.DataFrameGroupBy], pd.Series],
             fill: float | None) -> pd.Series:
    """Aggregate ``events`` per unit with ``how``; units without events get ``fill`` (None keeps NaN)."""
    values = how(events.groupby("_unit")) if len(events) else pd.Series(dtype=float)
    out = values.reindex(units.index).astype(float)
    return out if fill is None else out.fillna(fill)


def compute(data_dir: Path, yaml_path: Path, rule: Rule | None = None) -> Oracle:
    """Every metric and covariate of the example, per unit, from the Parquet files in ``data_dir``."""
    rule = rule or Rule()
    s = Settings.from_yaml(yaml_path)
    read = {name: pd.read_parquet(data_dir / f"{name}.parquet")
            for name in ("assignments", "orders", "page_views", "returns")}
    units = exposed_units(read["assignments"], s, rule)

    def window(source: str, period: str = "analysis", is_date: bool = False) -> pd.DataFrame:
        return in_window(read[source], source, units, s, rule, period, is_date)

    orders, orders_pre = window("orders"), window("orders", "pre")
    views, views_pre = window("page_views"), window("page_views", "pre")
    returns = window("returns", is_date=True)
    done, done_pre = orders[orders["status"] == "completed"], orders_pre[orders_pre["status"] == "completed"]

    out = units.copy()
    out["revenue"] = per_unit(units, done, lambda g: g["amount_usd"].sum(), 0.0)
    out["orders"] = per_unit(units, done, lambda g: g.size(), 0.0)
    out["purchaser"] = (out["orders"] > 0).astype(float)
    out["page_views"] = per_unit(units, views, lambda g: g.size(), 0.0)
    views_day = views.assign(_d=_utc(views[s.time_columns["page_views"]]).dt.floor("D"))
    out["active_days"] = per_unit(units, views_day, lambda g: g["_d"].nunique(), 0.0)
    out["avg_basket_cents"] = per_unit(units, done, lambda g: g["basket_size_cents"].sum() / g.size(), None)
    out["returned_items"] = per_unit(units, returns, lambda g: g["items"].sum(), 0.0)
    signed = orders.assign(_net=np.select([orders["status"] == "completed", orders["status"] == "refunded"],
                                          [orders["amount_usd"], -orders["amount_usd"]], 0.0))
    out["net_revenue"] = per_unit(units, signed, lambda g: g["_net"].sum(), 0.0)
    out["pre_revenue"] = per_unit(units, done_pre, lambda g: g["amount_usd"].sum(), 0.0)
    out["pre_page_views"] = per_unit(units, views_pre, lambda g: g.size(), 0.0)
    for name, values in dimensions(read["assignments"], pd.read_parquet(data_dir / "customers.parquet"), s).items():
        out[name] = values.reindex(units.index)
    return Oracle(units=out, settings=s, rule=rule)


def dimensions(assignments: pd.DataFrame, customers: pd.DataFrame, s: Settings) -> dict[str, pd.Series]:
    """The example's dimensions per unit: customers' country and tier, the assignment platform, tenure at launch.

    A unit listed twice keeps the smallest value; the platform is the
    smallest over the unit's rows in declared cells. ``tenure`` is
    ``shop_metrics.Tenure``: days from signup to the window start, < 90 new,
    < 365 regular, else loyal.
    """
    by_customer = customers.groupby(s.user_columns["customers"])
    rows = assignments[assignments[s.cell_column].isin(s.cells)]
    signup = pd.to_datetime(by_customer["signup_date"].min())
    days = (pd.Timestamp(s.start.isoformat()) - signup).dt.days
    tenure = pd.Series(np.select([days < 90, days < 365], ["new", "regular"], "loyal"), index=days.index)
    return {
        "country": by_customer["country"].min(),
        "tier": by_customer["loyalty_tier"].min(),
        "platform": rows.groupby(s.user_columns["assignments"])["platform"].min(),
        "tenure": tenure,
    }


def subset(o: Oracle, **where: tuple[str, ...]) -> Oracle:
    """The units whose dimension ``name`` is one of ``values``, for each ``name=values`` (a slice)."""
    keep = np.ones(len(o.units), dtype=bool)
    for name, values in where.items():
        keep &= o.units[name].isin(values).to_numpy()
    return Oracle(units=o.units[keep], settings=o.settings, rule=o.rule)


# ----------------------------------------------------------------------------- estimators, from their formulas


def _split(o: Oracle, column: str, cell: str) -> tuple[pd.Series, pd.Series]:
    y = o.units[column]
    return y[o.units["cell"] == cell].dropna(), y[o.units["cell"] == o.settings.control].dropna()


def welch(o: Oracle, metric: str, cell: str) -> Estimate:
    """Difference in means, Welch's SE, and SciPy's Welch p-value."""
    a, b = _split(o, metric, cell)
    res = stats.ttest_ind(a, b, equal_var=False)
    se = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    return Estimate(float(a.mean() - b.mean()), se, float(res.pvalue), len(a), len(b), float(a.mean()), float(b.mean()))


def proportion(o: Oracle, metric: str, cell: str) -> Estimate:
    """Difference in proportions, unpooled (Wald) SE, pooled z-test p-value (statsmodels' proportions_ztest)."""
    a, b = _split(o, metric, cell)
    pa_, pb = float(a.mean()), float(b.mean())
    se = float(np.sqrt(pa_ * (1 - pa_) / len(a) + pb * (1 - pb) / len(b)))
    _, p = proportions_ztest([a.sum(), b.sum()], [len(a), len(b)])
    return Estimate(pa_ - pb, se, float(p), len(a), len(b), pa_, pb)


def delta_ratio(o: Oracle, numerator: str, denominator: str, cell: str) -> Estimate:
    """Ratio of totals per cell; Var(R) = (s_yy - 2 R s_yd + R^2 s_dd) / (n mean_d^2), cells independent."""
    def one(c: str) -> tuple[int, float, float]:
        rows = o.units[o.units["cell"] == c]
        y, d = rows[numerator].to_numpy(float), rows[denominator].to_numpy(float)
        n = len(y)
        r = y.mean() / d.mean()
        cov = np.cov(y, d, ddof=1)
        return n, float(r), float((cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (n * d.mean() ** 2))

    n1, r1, v1 = one(cell)
    n0, r0, v0 = one(o.settings.control)
    se = float(np.sqrt(v1 + v0))
    p = float(2 * stats.norm.sf(abs((r1 - r0) / se)))
    return Estimate(r1 - r0, se, p, n1, n0, r1, r0)


def ols_hc1(o: Oracle, metric: str, covariates: tuple[str, ...], cell: str) -> Estimate:
    """Regression of the metric on an intercept, a dummy per treatment cell and the covariates; HC1 errors."""
    rows = o.units.dropna(subset=[metric, *covariates])
    design = pd.DataFrame({"const": 1.0}, index=rows.index)
    for c in o.settings.cells:
        if c != o.settings.control:
            design[f"cell_{c}"] = (rows["cell"] == c).astype(float)
    for cov in covariates:
        design[cov] = rows[cov]
    fit = sm.OLS(rows[metric].astype(float), design).fit(cov_type="HC1")
    name = f"cell_{cell}"
    a, b = _split(o, metric, cell)
    return Estimate(float(fit.params[name]), float(fit.bse[name]), float(fit.pvalues[name]),
                    len(a), len(b), float(a.mean()), float(b.mean()))


def headline(o: Oracle, cell: str) -> dict[tuple[str, str], Estimate]:
    """Every (metric, model) estimate the example declares, keyed like xpcompute's records."""
    out: dict[tuple[str, str], Estimate] = {}
    for metric in ("revenue", "orders", "page_views", "active_days", "avg_basket_cents", "returned_items",
                   "net_revenue"):
        out[(metric, "ttest")] = welch(o, metric, cell)
    out[("purchaser", "proportion")] = proportion(o, "purchaser", cell)
    out[("aov", "ratio")] = delta_ratio(o, "revenue", "orders", cell)
    out[("revenue", "ols")] = ols_hc1(o, "revenue", ("pre_revenue",), cell)
    out[("page_views", "ols")] = ols_hc1(o, "page_views", ("pre_page_views",), cell)
    out[("purchaser", "ols")] = ols_hc1(o, "purchaser", ("pre_page_views",), cell)
    return out


FIELDS: tuple[str, ...] = ("effect", "se", "p_value", "n_cell", "n_control", "mean_cell", "mean_control")


def as_dict(e: Estimate) -> dict[str, Any]:
    return {f: getattr(e, f) for f in FIELDS}


def sample_ratio_p(o: Oracle) -> tuple[dict[str, float], float]:
    """Observed units per cell and the chi-square goodness-of-fit p-value against the planned shares."""
    counts = o.units["cell"].value_counts()
    cells = sorted(o.settings.shares)
    observed = [float(counts.get(c, 0)) for c in cells]
    total = sum(o.settings.shares.values())
    planned = [sum(observed) * o.settings.shares[c] / total for c in cells]
    return dict(zip(cells, observed, strict=True)), float(stats.chisquare(observed, planned).pvalue)


def relative_differences(
    got: dict[tuple[str, str], dict[str, float]], expected: dict[tuple[str, str], Estimate]
) -> dict[tuple[str, str, str], float]:
    """``|got - expected| / |expected|`` for every field of every expected estimate (inf where one is missing).

    P-values are compared on the scale of their test statistic, as the
    normal score ``z = isf(p / 2)``: ``|z_got - z_expected| / max(1, |z_expected|)``.
    A p-value in the tail is ill-conditioned (its relative error is about
    ``z^2`` times the statistic's), and the statistic of a mean near 1e6 with
    a spread near 1 is itself only known to about 1e-10 in double precision,
    on either side; on the statistic's scale "the same p-value" is well defined.
    """
    out: dict[tuple[str, str, str], float] = {}
    for key, estimate in expected.items():
        for f in FIELDS:
            want = float(getattr(estimate, f))
            have = got.get(key, {}).get(f)
            if have is None or not np.isfinite(have):
                out[(*key, f)] = float("inf")
            elif f == "p_value" and want > 0 and have > 0:
                z_have, z_want = float(stats.norm.isf(have / 2)), float(stats.norm.isf(want / 2))
                out[(*key, f)] = abs(z_have - z_want) / max(1.0, abs(z_want))
            elif want == 0:
                out[(*key, f)] = abs(have - want)
            else:
                out[(*key, f)] = abs(have - want) / abs(want)
    return out
