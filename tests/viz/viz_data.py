"""Result records from real fits, the only input the visualisation layer gets.

The figures and the report are tested on what the models actually produce
(``fit_table`` on seeded data), not on hand-written records, so a change in
what a model puts in its records shows up here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datagen import make_experiment

from xpcompute.models import fit_table, model_data
from xpcompute.models.quantile import QuantileModel
from xpcompute.postprocess import SRMResult, adjust_pvalues, srm_test
from xpcompute.records import CellSummary, ResultRecord
from xpcompute.spec import FitSpec
from xpcompute.summary import cell_summaries

CELLS = ("control", "a", "b")
SLICES: tuple[tuple[str, str | None], ...] = (("all users", None), ("device=ios", "ios"), ("device=tv", "tv"))


def make_panel(n_users: int = 600, n_periods: int = 7, seed: int = 3) -> pa.Table:
    """User-by-day rows (some days missing) with an effect in cell ``a`` that grows over time."""
    rng = np.random.default_rng(seed)
    cell_u = rng.choice(len(CELLS), size=n_users, p=[0.5, 0.3, 0.2])
    user_effect = rng.normal(size=n_users)
    uu, tt = np.meshgrid(np.arange(n_users), np.arange(n_periods), indexing="ij")
    keep = rng.random(uu.shape) < 0.8
    u, t = uu[keep], tt[keep]
    y = 2.0 + 0.1 * t + user_effect[u] + 0.08 * t * (cell_u[u] == 1) - 0.1 * (cell_u[u] == 2) + rng.normal(size=len(u))
    return pa.table({
        "user": u.astype(np.int64),
        "day": t.astype(np.int64),
        "cell": pa.array(np.asarray(CELLS)[cell_u[u]].tolist(), pa.string()),
        "watch_hours": y,
    })


@dataclass(frozen=True)
class Analysis:
    """What a finished analysis hands the viz layer: corrected records, summaries and the SRM check."""

    records: list[ResultRecord]
    summaries: list[CellSummary]
    srm: list[tuple[str, SRMResult]]


def _filter(table: pa.Table, device: str | None) -> pa.Table:
    return table if device is None else table.filter(pc.equal(table.column("device"), device))


def build_analysis(n: int = 6000, seed: int = 1, bootstrap_reps: int = 200) -> Analysis:
    """An analysis over three slices: ttest, proportion, ols, cate, quantile and dte fits, BH-corrected."""
    base = make_experiment(n=n, seed=seed, effects=(0.0, 0.3, -0.15))
    base = base.rename_columns(["cell", "country", "device", "pre", "revenue", "sessions", "hours", "converted"])
    records: list[ResultRecord] = []
    summaries: list[CellSummary] = []
    srm: list[tuple[str, SRMResult]] = []
    for label, device in SLICES:
        table = _filter(base, device)
        specs = [
            FitSpec(metric="revenue", treatment="cell", model="ols", covariates=("pre", "country")),
            FitSpec(metric="hours", treatment="cell", model="ttest"),
            FitSpec(metric="converted", treatment="cell", model="proportion"),
        ]
        if device is None:
            specs += [
                FitSpec(metric="revenue", treatment="cell", model="cate", segment="country"),
                FitSpec(metric="revenue", treatment="cell", model="quantile", quantiles=(0.1, 0.25, 0.5, 0.75, 0.9),
                        bootstrap_reps=bootstrap_reps),
            ]
        for spec in specs:
            out = fit_table(table, spec)
            records += [r.model_copy(update={"slice": label}) for r in out.records]
            data = model_data(out.compressed, spec)
            if spec.model in ("ttest", "ols", "proportion"):
                summaries += [s.model_copy(update={"slice": label}) for s in cell_summaries(data)]
            elif spec.model == "quantile":
                summaries += [s.model_copy(update={"slice": label}) for s in QuantileModel().summaries(data)]
        counts = {c: float(pc.sum(pc.equal(table.column("cell"), c)).as_py()) for c in CELLS}
        srm.append((label, srm_test(counts, {"control": 0.5, "a": 0.3, "b": 0.2})))
    panel = make_panel()
    dte = fit_table(panel, FitSpec(metric="watch_hours", treatment="cell", model="dte", time="day", cluster="user"))
    records += [r.model_copy(update={"slice": "all users"}) for r in dte.records]
    return Analysis(records=adjust_pvalues(records, "bh"), summaries=summaries, srm=srm)
