"""Difference in differences (event study) on a unit-by-period panel, errors clustered by unit, from compressed sums.

For quasi-experiments: the treatment column names the *group* (treated cells
against the comparison group, which is the control cell), ``time`` the period
and ``cluster`` the unit. On unit-by-period rows ``(u, t)`` the model is::

    y_ut = alpha_t + beta_{g(u)} + sum_{t != r} delta_{t, g(u)} [t] + sum_k gamma_k [key_k(u)] + e_ut

with period effects ``alpha_t``, group effects ``beta_g`` and group-by-period
effects ``delta_{t,g}`` for every period but the reference period ``r``
(both zero for the comparison group), plus optional dummies of discrete
unit-level covariates. ``delta_{t,g}`` is the event-study effect of period
``t`` relative to ``r``: after the change, the estimated effect; before it, a
placebo that is zero under parallel trends.

Reference period. ``FitSpec.reference_period`` (``--reference-period`` of
``xpcompute fit``, a quasi-experiment's last pre-change period in the service)
or ``DiDModel(reference=...)`` (which wins) names it: a period label as stored,
e.g. ``"2"``, ``"-1"`` or ``"2024-01-03"``; the default is the *first* period in
sorted order. The reference should be the last
period before the change; periods sorted before it are the pre-periods.

Why it is exact on compressed data. The design spans the same columns as the
DTE model's (``models/dte.py``: one dummy per period and per (treated cell,
period)), since ``beta_g + delta_{t,g}`` for ``t != r`` and ``beta_g`` at
``r`` are exactly its ``tau_{t,g}``. So the fit, residuals and rank are the
same, and ``delta_{t,g} = tau_{t,g} - tau_{r,g}`` is a linear contrast
``L b`` of the DTE coefficients, with clustered covariance ``L V L'``. ``V``
is statsmodels' ``cov_type='cluster'`` (``G/(G-1) (N-1)/(N-K)`` correction),
computed losslessly from the per-unit period vectors of ``compression/panel.py``.
Intervals and p-values are normal (statsmodels' default for clustered errors).

Pre-trend test. A joint Wald test that every pre-period ``delta_{t,g}`` (``t``
before ``r``, every treated cell) is zero: ``W = d' (L V L')^-1 d``, chi-squared
with as many degrees of freedom as pre-period coefficients (statsmodels'
``wald_test(..., use_f=False)`` on the raw rows). It is reported as a dedicated
record with ``segment="pre-trend"`` (``time`` None, ``statistic`` = W, ``df`` its
degrees of freedom, ``p_value``; ``effect`` is the mean of the tested
coefficients, without SE), one per analysis, appended last, and only when
there is at least one pre-period.

Average effect after the reference. Per treated cell, one record with
``time`` and ``segment`` None (so it is the metric's headline in scorecards and
what the ship decision reads): the mean of the cell's ``delta_{t,g}`` over the
periods after the reference, each period weighted equally, i.e. the contrast
``l = mean of those rows of L``, with variance ``l V l'`` and a normal test
(statsmodels' ``t_test`` of that contrast on the raw rows). It follows the
per-period records; none when the reference is the last period.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from xpcompute.errors import InputError
from xpcompute.models import dist
from xpcompute.models.base import check_min_count, raw_mean
from xpcompute.models.data import ModelData
from xpcompute.models.dte import F64, DTEModel
from xpcompute.models.panel_data import PanelData
from xpcompute.records import ResultRecord

__all__ = ["PRE_TREND", "DiDModel"]

#: ``segment`` of the pre-trend test's record.
PRE_TREND = "pre-trend"


class DiDModel(DTEModel):
    """Event-study difference in differences: one record per (treated cell, non-reference period), then the pre-trend test."""

    name: ClassVar[str] = "did"
    compression = "panel"

    def __init__(self, reference: str | None = None) -> None:
        super().__init__()
        self.reference = reference

    def reference_index(self, panel: PanelData) -> int:
        """Index of the reference period in the sorted periods (default: the first)."""
        reference = self.reference if self.reference is not None else panel.spec.reference_period
        if reference is None:
            return 0
        if reference not in panel.periods:
            raise InputError(
                f"reference period {reference!r} is not a period of the panel ({', '.join(panel.periods)}); "
                "choose one of these labels"
            )
        return panel.periods.index(reference)

    def contrasts(self, panel: PanelData) -> tuple[F64, list[tuple[str, int]]]:
        """``L`` with ``delta = L b`` (in the panel's ``z`` units), and the (cell, period index) of each row."""
        ref = self.reference_index(panel)
        k = len(self.fit.coef)
        rows, keys = [], []
        for cell in self.design.cells[1:]:
            for t in range(len(self.design.periods)):
                if t == ref:
                    continue
                row = np.zeros(k)
                row[self.design.effect_index(cell, t)] += 1.0
                row[self.design.effect_index(cell, ref)] -= 1.0
                rows.append(row)
                keys.append((cell, t))
        return np.vstack(rows) if rows else np.zeros((0, k)), keys

    def estimate(self, data: ModelData) -> list[ResultRecord]:
        self.notes = []
        panel = PanelData.of(data)
        panel.check_cells_nonempty()
        check_min_count(panel)
        if panel.n_periods < 2:
            raise InputError(
                f"model 'did' needs at least two periods, the panel has {panel.n_periods}; widen the date range"
            )
        self.train(panel)
        ref = self.reference_index(panel)
        contrast, keys = self.contrasts(panel)
        units = self.outcome_units(panel)
        scale = units.scale
        est = contrast @ self.fit.coef
        cov = contrast @ self.fit.cov @ contrast.T
        alpha = panel.spec.alpha
        q = dist.norm_ppf(1 - alpha / 2)
        cluster = panel.compressed.layout.extra.get("cluster")
        ref_label = panel.periods[ref]
        note = (
            f"difference in differences relative to reference period {ref_label!r}; standard errors clustered by "
            f"{cluster} ({self.fit.clusters:g} clusters, correction G/(G-1)*(N-1)/(N-K) = {self.fit.correction:.6g})"
        )
        notes = [*self.notes, note]
        period_of_row = np.tile(np.arange(panel.n_periods), panel.n_groups)
        records = []
        for i, (cell, t) in enumerate(keys):
            effect = scale * float(est[i])
            var = float(cov[i, i])
            se = scale * float(np.sqrt(var)) if var >= 0 else float("nan")
            stat = effect / se if se > 0 else float("nan")
            p = 2 * dist.norm_sf(abs(stat)) if se > 0 else float("nan")
            mask = period_of_row == t
            n1, m1 = raw_mean(panel, mask, cell)
            n0, m0 = raw_mean(panel, mask, panel.control)
            records.append(ResultRecord(
                metric=panel.spec.metric, model=self.name, cell=cell, control=panel.control,
                effect=effect, se=se, ci_low=effect - q * se, ci_high=effect + q * se, p_value=p,
                relative_effect=None, relative_ci_low=None, relative_ci_high=None,
                n_cell=n1, n_control=n0, mean_cell=m1, mean_control=m0, alpha=alpha, statistic=stat,
                time=panel.periods[t], notes=[*notes, "pre-period (placebo)" if t < ref else "post-reference period"],
            ))
        records += self._post_averages(panel, contrast, keys, ref, scale, q, notes)
        pre = [i for i, (_, t) in enumerate(keys) if t < ref]
        if pre:
            records.append(self._pre_trend(panel, est[pre], cov[np.ix_(pre, pre)], scale, notes))
        return records

    def _post_averages(self, panel: PanelData, contrast: F64, keys: list[tuple[str, int]], ref: int, scale: float,
                       q: float, notes: list[str]) -> list[ResultRecord]:
        """Per treated cell, the mean of its effects in the periods after the reference (``time`` None): the
        contrast ``l = mean of L's post rows``, ``l b`` with clustered variance ``l V l'``; normal test."""
        out = []
        alpha = panel.spec.alpha
        groups = panel.group_labels(panel.spec.treatment)
        users = panel.sums.users
        post_rows = np.tile(np.arange(panel.n_periods), panel.n_groups) > ref
        for cell in self.design.cells[1:]:
            post = [i for i, (c, t) in enumerate(keys) if c == cell and t > ref]
            if not post:
                continue
            row = contrast[post].mean(axis=0)
            effect = scale * float(row @ self.fit.coef)
            var = float(row @ self.fit.cov @ row)
            se = scale * float(np.sqrt(var)) if var >= 0 else float("nan")
            stat = effect / se if se > 0 else float("nan")
            p = 2 * dist.norm_sf(abs(stat)) if se > 0 else float("nan")
            _, m1 = raw_mean(panel, post_rows, cell)
            _, m0 = raw_mean(panel, post_rows, panel.control)
            first, last = panel.periods[ref + 1], panel.periods[-1]
            out.append(ResultRecord(
                metric=panel.spec.metric, model=self.name, cell=cell, control=panel.control,
                effect=effect, se=se, ci_low=effect - q * se, ci_high=effect + q * se, p_value=p,
                relative_effect=None, relative_ci_low=None, relative_ci_high=None,
                n_cell=float(users[groups == cell].sum()), n_control=float(users[groups == panel.control].sum()),
                mean_cell=m1, mean_control=m0, alpha=alpha, statistic=stat,
                notes=[*notes, f"average effect over the {len(post)} period(s) after the reference ({first} to "
                       f"{last}), each period weighted equally; n = units, means = per unit and period"],
            ))
        return out

    def _pre_trend(self, panel: PanelData, d: F64, v: F64, scale: float, notes: list[str]) -> ResultRecord:
        """Joint cluster-robust Wald test that every pre-period coefficient is zero (chi-squared, len(d) df)."""
        wald = float(d @ np.linalg.solve(v, d))
        dof = len(d)
        p = dist.chi2_sf(wald, dof)
        treated = panel.treatments
        n1 = float(sum(raw_mean(panel, np.ones(len(panel.n), bool), c)[0] for c in treated))
        n0, m0 = raw_mean(panel, np.ones(len(panel.n), bool), panel.control)
        return ResultRecord(
            metric=panel.spec.metric, model=self.name, cell=",".join(treated), control=panel.control,
            effect=scale * float(d.mean()), se=None, ci_low=None, ci_high=None, p_value=p,
            relative_effect=None, relative_ci_low=None, relative_ci_high=None,
            n_cell=n1, n_control=n0, mean_cell=None, mean_control=m0, alpha=panel.spec.alpha,
            statistic=wald, df=float(dof), segment=PRE_TREND,
            notes=[*notes, f"pre-trend test: joint Wald chi2({dof}) that all pre-period coefficients are zero; "
                   "effect = their mean"],
        )
