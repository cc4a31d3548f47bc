"""Power for a registered experiment's metric: variance from its pre-period data, then ``inference.power``.

Why from the experiment's own table: the variance that decides power is the metric's variance over the
experiment's units, and CUPED shrinks it by the R^2 of the metric on the covariates the experiment declares for
it. Stage 1 already writes, per unit, the metric's pre-period value (a covariate whose ``metric`` is this metric)
next to the metric itself, so one streaming pass over those few columns of the published analysis table gives
every sum needed (one DuckDB aggregate, ``_moment_query``; no per-unit data leaves it; ``preperiod_variance``
works on sums):

* raw variance: the sample variance of the metric's pre-period column over every unit (all cells: the
  pre-period is before exposure, so no cell is treated yet). Without a pre-period column of the metric, the
  variance of the metric itself in the control cell is used, and the result says so.
* CUPED: R^2 of the metric on its declared covariates (with an intercept) in the control cell (untreated), and
  ``cuped_variance = variance * (1 - R^2)``. The plan uses the CUPED variance when the metric has covariates
  (the analysis' headline is then CUPED); both are reported.
* daily units: units in the table over the days it covers (window start to the last day with data, from the
  sources' Parquet footers), for ``days`` and for "days still needed"; a caller may pass its own rate.

Exactly one of ``mde`` (-> units and days needed), ``users`` or ``days`` (-> the MDE at that size) is given.
The split between control and one treatment cell follows the experiment's shares. With a sequential method the
power of that design is simulated (``power.simulated_sequential_power``, looks equally spaced up to the planned
size) and the result says ``simulated``. While the test runs (the table has units in both cells and data inside
the window) the result adds the power reached at the current n and the days still needed (``power.progress``).

Roles (``decision/``): the plan tests a metric the way the ship decision will (``role_design``), as Schultzberg,
Ankargren & Frånberg (2024) derive. A **goal** gets the superiority test at ``alpha / goals`` (alpha is
corrected across the goal metrics only; one- or two-sided as ``decision.goal_test`` says). A **guardrail** gets
the one-sided non-inferiority test at the unadjusted alpha, planned at its margin (true effect 0: the change is
harmless, and the test must show it is not worse by the margin), with the type II error corrected across the
guardrails: power ``1 - guardrail_power_beta(G, 1 - power)``, so that all G guardrails pass together with at
least the target power. Secondary metrics keep the two-sided test at alpha. ``by_role=False`` plans every metric
as secondary.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from typing import Any, Literal

import numpy as np

from xpcompute.errors import ConflictError, InputError, NotFoundError
from xpcompute.experiment import ExperimentSpec
from xpcompute.inference.power import (
    MetricDesign,
    PrePeriodVariance,
    SequentialMethod,
    minimum_detectable_effect,
    power_at,
    preperiod_variance,
    progress,
    sample_size,
    simulated_sequential_power,
)
from xpcompute.inference.sequential import Spending
from xpcompute.storage import keys
from xpcompute.storage.objects import ObjectStore

PlanSequential = Literal["none", "always_valid", "group_sequential"]
CELL = "cell"


@dataclass(frozen=True)
class TableMoments:
    """The sums one pass over the analysis table gives (see the module docstring)."""

    pre: PrePeriodVariance  # raw: the pre-period column over all units (R^2 unused here)
    cuped: PrePeriodVariance  # the metric on its covariates in the control cell
    cell_counts: dict[str, float]
    variance_source: str


def _moment_query(view: str, y: str, pre: str | None, covs: list[str]) -> str:
    """One aggregate over the table, grouped by cell (sqlglot): per cell, the count, the pre-period column's sums
    and the metric's and covariates' sums and cross-products. Grouping is the cheapest scan (no per-row CASE);
    ``fsum`` (Kahan-Babuska) keeps the sums of squares exact enough for the centred moments."""
    from sqlglot import exp

    def value(name: str) -> exp.Expr:
        return exp.Coalesce(this=exp.cast(exp.column(name, quoted=True), "DOUBLE"),
                            expressions=[exp.Literal.number(0)])

    def fsum(e: exp.Expr) -> exp.Expr:
        return exp.Anonymous(this="fsum", expressions=[e])

    def product(a: str, b: str) -> exp.Expr:
        return exp.Mul(this=value(a), expression=value(b))

    cols: list[exp.Expr] = [exp.column(CELL, quoted=True), exp.alias_(exp.Count(this=exp.Star()), "n")]
    if pre is not None:
        cols += [exp.alias_(fsum(value(pre)), "s_pre"), exp.alias_(fsum(product(pre, pre)), "s_pre2")]
    cols += [exp.alias_(fsum(value(y)), "s_y"), exp.alias_(fsum(product(y, y)), "s_y2")]
    for j, a in enumerate(covs):
        cols += [exp.alias_(fsum(value(a)), f"s_x{j}"), exp.alias_(fsum(product(a, y)), f"s_xy{j}")]
        cols += [exp.alias_(fsum(product(a, b)), f"s_xx{j}_{k}") for k, b in enumerate(covs) if k >= j]
    return exp.select(*cols).from_(exp.to_table(view)).group_by(exp.column(CELL, quoted=True)).sql(dialect="duckdb")


def table_moments(experiment: ExperimentSpec, metric: str, store: ObjectStore) -> TableMoments:
    """The metric's moments from the published analysis table: one DuckDB aggregate over its few columns."""
    import duckdb

    from xpcompute.pipeline.tables import open_table

    m = experiment.metric(metric)
    try:
        table = open_table(keys.analysis_table(experiment.id), store)
    except NotFoundError:
        raise ConflictError(
            f"experiment {experiment.id!r} has no analysis table yet: power reads the metric's pre-period values "
            "from it; submit an analysis (stage 1 builds it) or run `xpcompute power` locally, which builds it"
        ) from None
    names = set(table.schema.names)
    y_col = m.columns()[0].name
    pre_cols = [c for c in experiment.covariates if experiment.covariate(c).metric.name == metric]
    covs = [experiment.covariate(c).columns()[0].name for c in experiment.covariates_for(metric)]
    pre_col = experiment.covariate(pre_cols[0]).columns()[0].name if pre_cols else None
    needed = list(dict.fromkeys([CELL, y_col, *covs, *([pre_col] if pre_col else [])]))
    missing = [c for c in needed if c not in names]
    if missing:
        raise InputError(f"the analysis table of {experiment.id!r} lacks column(s) {missing}; re-run stage 1 "
                         "(submit an analysis with refresh) so it matches the spec")
    control = experiment.control
    con = duckdb.connect(":memory:")
    try:
        if table.is_local:
            con.read_parquet(table.paths()).create_view("analysis_table")
        else:
            con.register("analysis_table", table.dataset())
        cursor = con.execute(_moment_query("analysis_table", y_col, pre_col, covs))
        names_out = [d[0] for d in cursor.description]
        groups: list[dict[str, Any]] = [dict(zip(names_out, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()
    k = len(covs)
    by_cell = {str(g[CELL]): g for g in groups}
    counts = {str(c): float(g["n"]) for c, g in by_cell.items()}
    ctl = by_cell.get(control, {})

    def f(key: str, group: dict[str, Any] = ctl) -> float:
        v = group.get(key)
        return 0.0 if v is None else float(v)

    n_c = f("n")
    if n_c < 2:
        raise InputError(f"the analysis table of {experiment.id!r} has fewer than 2 units in the control cell "
                         f"{control!r}: no variance to plan from")
    s_x = np.array([f(f"s_x{j}") for j in range(k)])
    s_xy = np.array([f(f"s_xy{j}") for j in range(k)])
    s_xx = np.zeros((k, k))
    for j in range(k):
        for i in range(j, k):
            s_xx[j, i] = s_xx[i, j] = f(f"s_xx{j}_{i}")
    cuped = preperiod_variance(n_c, f("s_y"), f("s_y2"), s_x if k else None, s_xx if k else None,
                               s_xy if k else None)
    n_all = float(sum(counts.values()))
    if pre_col is not None and n_all >= 2:
        pre = preperiod_variance(n_all, sum(f("s_pre", g) for g in groups), sum(f("s_pre2", g) for g in groups))
        source = f"pre-period column {pre_col!r} of the analysis table, all {n_all:,.0f} units"
    else:
        pre = preperiod_variance(n_c, f("s_y"), f("s_y2"))
        source = (f"metric {metric!r} in the control cell ({n_c:,.0f} units): the experiment declares no "
                  "pre-period covariate of it")
    return TableMoments(pre, cuped, counts, source)


@dataclass(frozen=True)
class RoleDesign:
    """How the decision will test one metric: which test, at what level, and with what per-test power."""

    role: str
    test: str  # "two-sided", "superiority (one-sided)", "non-inferiority (one-sided)"
    alpha: float  # the level of this one test
    sides: int
    power: float  # the power this one test must reach
    margin: float | None = None
    margin_relative: bool = False
    note: str = ""


def role_design(experiment: ExperimentSpec, metric: str, alpha: float, power: float,
                by_role: bool = True) -> RoleDesign:
    """The test the ship decision applies to ``metric`` (module docstring), planned at the decision's power.

    ``power`` is the planned power of the *decision*: a goal gets it as it is, each of G guardrails gets
    ``1 - (1 - power) / G`` (``decision.tests.guardrail_power_beta``).
    """
    plain = RoleDesign(role="secondary", test="two-sided", alpha=alpha, sides=2, power=power)
    if not by_role:
        return plain
    from xpcompute.decision import roles_for
    from xpcompute.decision.tests import goal_alpha, guardrail_power_beta

    try:
        roles = roles_for(experiment.metrics, experiment)
    except ValueError as exc:
        raise InputError(f"the experiment's roles are not valid: {exc}") from exc
    mine = roles[metric]
    if mine.role == "goal":
        goals = sum(1 for r in roles.values() if r.role == "goal")
        level = goal_alpha(alpha, goals)
        one_sided = experiment.decision.goal_test == "one_sided"
        return RoleDesign(
            role="goal", test="superiority (one-sided)" if one_sided else "superiority (two-sided)", alpha=level,
            sides=1 if one_sided else 2, power=power,
            note=f"goal: superiority test at alpha {alpha:g} / {goals} goal metric(s) = {level:.6g}",
        )
    if mine.role == "guardrail" and mine.margin is not None:
        guardrails = sum(1 for r in roles.values() if r.role == "guardrail")
        beta = guardrail_power_beta(guardrails, 1.0 - power)
        return RoleDesign(
            role="guardrail", test="non-inferiority (one-sided)", alpha=alpha, sides=1, power=1.0 - beta,
            margin=mine.margin, margin_relative=mine.relative,
            note=(f"guardrail: one-sided non-inferiority test at alpha {alpha:g} (not corrected: shipping needs "
                  f"every guardrail), margin {mine.margin_text()}, true effect 0; beta corrected across "
                  f"{guardrails} guardrail(s): power {1.0 - beta:.4g} each, so all pass with power >= {power:g}"),
        )
    return replace(plain, role=mine.role)


@dataclass
class PowerPlan:
    """The answer of ``plan_power``: inputs, variances (raw and CUPED), sizes, power, and how it was computed."""

    experiment_id: str
    metric: str
    kind: str
    solve_for: str  # "users" (mde given) or "mde" (users or days given)
    alpha: float
    target_power: float
    relative: bool
    baseline_mean: float
    variance_raw: float
    variance_cuped: float
    r_squared: float
    covariates: list[str]
    variance_source: str
    variance_used: str  # "cuped" or "raw"
    mde_absolute: float
    mde_relative: float | None
    users: int
    n_control: float
    n_treatment: float
    days: float | None
    daily_units: float | None
    power: float
    method: str
    role: str = "secondary"
    test: str = "two-sided"
    test_alpha: float | None = None
    test_power: float | None = None
    sequential: dict[str, Any] | None = None
    running: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = None
        return out


def _days_covered(experiment: ExperimentSpec) -> tuple[int, date | None]:
    """Days from the window start to the last day with data (footers only), and that day (None: no data)."""
    from xpcompute.pipeline.stage1 import data_through

    try:
        last = data_through(experiment)
    except (NotFoundError, OSError, InputError):
        last = None
    if last is None or last < experiment.window.start:
        return experiment.window.days, None
    return (last - experiment.window.start).days + 1, last


def plan_power(
    experiment: ExperimentSpec,
    metric: str,
    *,
    mde: float | None = None,
    users: int | None = None,
    days: float | None = None,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    sequential: PlanSequential | None = None,
    looks: int | None = None,
    spending: Spending | None = None,
    daily_units: float | None = None,
    store: ObjectStore,
    n_sims: int = 20_000,
    seed: int = 0,
    by_role: bool = True,
) -> PowerPlan:
    """Power, sample size or MDE of ``metric`` with variance from the experiment's table (module docstring).

    ``sequential`` defaults to the experiment's ``inference.sequential`` (``looks`` and ``spending`` likewise);
    ``InputError`` names what to fix (no or several of mde/users/days, a ratio metric, an unknown metric);
    ``ConflictError`` when the experiment has no analysis table yet.
    """
    if metric not in experiment.metrics:
        raise InputError(f"metric {metric!r} is not a metric of {experiment.id!r}; choose one of "
                         f"{list(experiment.metrics)}")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise InputError(f"alpha and power must be in (0, 1), got alpha={alpha}, power={power}")
    test = role_design(experiment, metric, alpha, power, by_role)
    given = [name for name, v in (("mde", mde), ("users", users), ("days", days)) if v is not None]
    if not given and test.margin is not None:  # a guardrail is planned at its margin unless told otherwise
        mde, relative, given = test.margin, test.margin_relative, ["margin"]
    if len(given) != 1:
        raise InputError(f"give exactly one of mde, users or days (got {given or 'none'})")
    info = experiment.metric_info(metric)
    if info.get("kind") == "ratio":
        raise InputError(f"metric {metric!r} is a ratio: power for ratio metrics is not supported; plan on its "
                         "numerator and denominator metrics")
    moments = table_moments(experiment, metric, store)
    covariates = list(experiment.covariates_for(metric))
    r2 = moments.cuped.r_squared if covariates else 0.0
    raw = moments.pre
    reduction = max(1.0 - r2, 1e-12)
    notes: list[str] = []
    proportion = info.get("kind") == "proportion" and 0 < raw.mean < 1
    design = (MetricDesign.proportion(raw.mean, reduction) if proportion
              else MetricDesign(raw.mean, raw.variance, "mean", reduction))
    if proportion and test.role == "guardrail":
        # non-inferiority is planned at a true effect of 0: both cells have the control's p(1 - p)
        design = MetricDesign(raw.mean, raw.mean * (1.0 - raw.mean), "mean", reduction)
    shares = experiment.shares or {c: 1.0 for c in experiment.cells}
    total_share = sum(shares.values())
    treated = next(c for c in experiment.cells if c != experiment.control)
    share_c, share_t = shares[experiment.control] / total_share, shares[treated] / total_share
    ratio = share_t / share_c
    if len(experiment.cells) > 2:
        notes.append(f"{len(experiment.cells)} cells: sizes are for the whole test, power for control vs "
                     f"{treated!r} (each treatment cell is compared with control)")
    days_covered, last_day = _days_covered(experiment)
    n_table = sum(moments.cell_counts.values())
    rate = daily_units if daily_units is not None else (n_table / days_covered if days_covered else None)
    if days is not None and not rate:
        raise InputError("days needs a daily enrollment rate: the table has no units yet; pass daily_units")

    if mde is not None:
        if mde == 0:
            raise InputError("mde must be non-zero")
        need = sample_size(design, mde, relative=relative, power=test.power, ratio=ratio, alpha=test.alpha,
                           sides=test.sides)
        n_c, n_t = need.n_control, need.n_treatment
        total = math.ceil(n_c / share_c - 1e-9)
        achieved, mde_abs = need.detail.power, need.detail.effect
        solve_for = "users"
    else:
        total = int(users) if users is not None else math.floor((rate or 0.0) * float(days or 0.0))
        if total < 4:
            raise InputError(f"{total} users are too few to plan a test; give more users or days")
        n_c, n_t = total * share_c, total * share_t
        found = minimum_detectable_effect(design, n_c, power=test.power, ratio=ratio, alpha=test.alpha,
                                          sides=test.sides)
        mde_abs, achieved = found.mde_absolute, found.detail.power
        solve_for = "mde"
    plan = PowerPlan(
        experiment_id=experiment.id, metric=metric, kind=design.kind, solve_for=solve_for, alpha=alpha,
        target_power=power, relative=relative, baseline_mean=raw.mean, variance_raw=raw.variance,
        variance_cuped=raw.variance * (1.0 - r2), r_squared=r2, covariates=covariates,
        variance_source=moments.variance_source, variance_used="cuped" if covariates else "raw",
        mde_absolute=mde_abs, mde_relative=mde_abs / raw.mean if raw.mean else None, users=total,
        n_control=n_c, n_treatment=n_t, days=(total / rate) if rate else None, daily_units=rate, power=achieved,
        method=f"analytic: two-sample z-test ({test.test}), normal approximation", notes=notes, role=test.role,
        test=test.test, test_alpha=test.alpha, test_power=test.power,
    )
    if test.note:
        notes.append(test.note)
    if covariates:
        notes.append(f"CUPED R^2 {r2:.4f} from the metric on {covariates} in the control cell "
                     f"({moments.cuped.n:,.0f} units)")

    method = sequential if sequential is not None else experiment.inference.sequential
    if method != "none":
        k = looks or experiment.inference.planned_looks or 1
        sim_method: SequentialMethod = ("confidence_sequence" if method == "always_valid"
                                        else (spending or experiment.inference.spending))
        se = power_at(design, mde_abs, n_c, ratio=ratio, alpha=test.alpha, sides=test.sides).se
        fractions = [(i + 1) / k for i in range(k)]
        # the simulated boundaries are two-sided; a one-sided test at a is (to the far tail's mass) two-sided at 2a
        sim = simulated_sequential_power(abs(mde_abs) / se, fractions, sim_method, alpha=test.alpha * (3 - test.sides),
                                         n_sims=n_sims, seed=seed)
        plan.sequential = {
            "method": method, "simulated_method": sim_method, "looks": k, "power": sim.power, "mc_se": sim.mc_se,
            "n_sims": sim.n_sims, "seed": sim.seed, "simulated": True, "note": sim.note,
            "fixed_horizon_power": achieved,
        }
        notes.append(f"sequential ({method}, {k} look(s)): power simulated with {n_sims:,} seeded experiments, "
                     f"{sim.power:.3f} +- {sim.mc_se:.3f} at the same size (fixed horizon: {achieved:.3f})")

    n_c_now = moments.cell_counts.get(experiment.control, 0.0)
    n_t_now = moments.cell_counts.get(treated, 0.0)
    if last_day is not None and n_c_now > 0 and n_t_now > 0 and rate:
        prog = progress(design, mde_abs, n_c_now, n_t_now, rate, power=test.power, alpha=test.alpha,
                        sides=test.sides)
        plan.running = {
            "data_through": last_day.isoformat(), "n_now": n_table, "power_now": prog.power_now,
            "units_required": math.ceil((prog.n_total_required) / (share_c + share_t) - 1e-9),
            "units_remaining": prog.units_remaining / (share_c + share_t), "daily_units": rate,
            "days_remaining": math.ceil(prog.units_remaining / (share_c + share_t) / rate - 1e-12),
        }
    return plan


__all__ = ["PlanSequential", "PowerPlan", "RoleDesign", "TableMoments", "plan_power", "role_design", "table_moments"]
