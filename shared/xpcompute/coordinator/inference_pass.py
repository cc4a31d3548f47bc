"""The inference pass of ``Coordinator.finalize``: sequential, Bayesian and shrinkage results on every record.

Why a pass after the fits and not inside them: a sequential boundary depends on the looks the experiment had
before this analysis, shrinkage on every headline estimate of the analysis at once, and both only on each
record's effect and standard error, so they are computed once, here, from the stored records (no data is read).
The pure statistics live in ``xpcompute.inference``; this module decides what applies to which record and keeps
the looks.

What is applied (``InferenceSpec``, the analysis's own or its experiment's):

* every record gets ``inference``: the method its decision p-value comes from. Sequential methods apply to the
  moments-based models (``MOMENTS_MODELS``, no quantile/segment/period coordinate); the others stay
  ``fixed_horizon`` and say so.
* ``always_valid``: the asymptotic confidence sequence (``sequential.confidence_sequence``) of the absolute
  effect, tuned to the planned units. A record compares two cells of one slice, so its planned size is
  ``planned_units`` scaled by its share of this look's units (``n_record / n_look``); for the two-cell all-users
  record that is ``planned_units`` itself, and every record of the look is at the same information fraction.
* ``group_sequential``: one Lan-DeMets boundary per look (``sequential.group_sequential_boundaries`` at the
  fractions of the earlier looks and this one), shared by every record; a record crosses when
  ``|effect / se| >= boundary``; its sequential interval is the repeated CI ``effect +- boundary * se`` and its
  sequential p-value the normal fixed-sample p-value times ``alpha / nominal alpha of this look``: not a
  calibrated p-value, but on the decision's scale (<= alpha exactly when the boundary is crossed), so the
  multiple-testing correction and the verdicts work on it unchanged (BH on it is BH at the look's nominal level).
* sequential p-values are corrected across the analysis with the analysis's correction (a family where records
  without one contribute their fixed p-value): ``sequential_p_value_adjusted``.
* ``bayesian``: ``bayes.normal_posterior`` of the absolute effect with the metric's prior (flat when none), and
  the metric's direction for the chance to beat control and the losses.
* ``shrinkage``: ``shrinkage.empirical_bayes_shrinkage`` (REML, integrated intervals) of the relative effects of
  the headline records (one per slice, metric and cell: CUPED ``ols`` when the metric has covariates, else
  proportion, ratio, t-test), per cell, across metrics and slices. Relative, because effects of different
  metrics only share a scale as lifts. Needs at least three estimates in a cell.

Looks are state: one JSON object per analysis at ``keys.experiment_look(experiment, analysis)``, written
put-if-absent at the analysis's first finalize, so a live slice re-finalizing it reuses its look. An analysis's
earlier looks are the stored looks of analyses created before it (ordered by creation time, then id). Its own
n is the units of its all-users slice (all cells), its fraction ``n / planned_units``. A re-analysis whose n did
not grow past the last look is that look again (it is not stored a second time).

Order of finalizes. Analyses of one experiment can finalize concurrently and in any order (the serverless
coordinator function runs concurrently; the local pool finishes a small analysis first). If B, created after A,
placed its look before A had stored A's, B's boundary would leave A's look out (B's index one too low, its alpha
spending restarted: anti-conservative), and A would then store a look B never accounted for. So the coordinator
orders them (``Coordinator.maybe_finalize``): a sequential analysis whose jobs are all done is not finalized
while an analysis of its experiment created before it is still RUNNING with sequential inference and no stored
look; it stays RUNNING (its partial scorecard says what it waits for) and is finalized when that analysis's
finalize has stored its look (the finalize re-checks the later analyses of the experiment), or by the sweep.
Waiting, rather than B counting A's look before it exists, because A's look (its n, whether it is a look at all,
what crossed) is only known at A's finalize. What does not block: an analysis that is not RUNNING (finalized
SUCCEEDED or FAILED: a FAILED analysis was finalized too and recorded its look when its all-users slice
counted units, since its results were shown; without units it has no look, and nothing waits for one), one
with fixed-horizon inference (it never has a look), and the analysis's own stored look (a live slice
re-finalizing it reuses its look and waits for nothing).

The wait is bounded (``Coordinator.look_wait_s``, ``XPCOMPUTE_LOOK_WAIT_S``, after the analysis's last job ended): then each look still
missing is given up on with a skip marker (``skip_look``) written put-if-absent at that earlier analysis's own
look key. Marker and look exclude each other, so exactly one holds: either the earlier look was stored first and
is counted, or the earlier analysis never records its look (it still reports its own look against the looks
before it, with a note; every later analysis notes that it is left out). The same rule covers any later look
that exists without it (``plan_look``): an analysis records its look only if no analysis created after it has
recorded one, so every stored look's index is its position among the stored looks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from xpcompute.errors import CorruptObjectError, NotFoundError
from xpcompute.inference.bayes import normal_posterior
from xpcompute.inference.effects import effect_from_record
from xpcompute.inference.sequential import (
    confidence_sequence,
    fixed_horizon_p_value,
    group_sequential_boundaries,
)
from xpcompute.inference.settings import InferenceSpec
from xpcompute.inference.shrinkage import empirical_bayes_shrinkage
from xpcompute.postprocess import Correction, adjust_pvalues
from xpcompute.records import ResultRecord
from xpcompute.storage import keys
from xpcompute.storage.objects import ObjectStore

#: Models whose records are (effect, se) of a difference in means: what the sequential, Bayesian and shrinkage
#: results are defined for.
MOMENTS_MODELS = frozenset({"ttest", "proportion", "ols", "ratio"})
#: Which record is a metric's headline without CUPED (as ``viz.headline.PRIMARY_RANK``).
_PRIMARY = {"proportion": 0, "ratio": 1, "ttest": 2, "ols": 3}

METHOD_NAMES = {"none": "fixed_horizon", "always_valid": "always_valid", "group_sequential": "group_sequential"}
SPENDING_NAMES = {"obrien_fleming": "O'Brien–Fleming", "pocock": "Pocock"}


@dataclass(frozen=True)
class LookState:
    """One stored look: what a later analysis needs to find its boundary and the alpha already spent."""

    analysis_id: str
    created_at: float
    time: str
    n: float
    planned_units: float
    information_fraction: float
    method: str
    alpha: float
    spending: str
    boundary_z: float | None = None
    alpha_spent: float | None = None
    crossed: tuple[str, ...] = ()

    def to_json_dict(self) -> dict[str, Any]:
        out = self.__dict__.copy()
        out["crossed"] = list(self.crossed)
        if out["boundary_z"] is not None and not math.isfinite(out["boundary_z"]):
            out["boundary_z"] = None
        return out

    @classmethod
    def from_json_dict(cls, raw: Mapping[str, Any]) -> LookState:
        fields = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        fields["crossed"] = tuple(raw.get("crossed", ()))
        return cls(**fields)


@dataclass
class InferenceSummary:
    """The scorecard's ``inference`` block: the method, which look this is, what was spent, what crossed."""

    method: str = "fixed_horizon"
    look: int | None = None
    planned_looks: int | None = None
    label: str | None = None
    n: float | None = None
    planned_units: int | None = None
    information_fraction: float | None = None
    spending: str | None = None
    boundary_z: float | None = None
    alpha_spent: float | None = None
    alpha_spent_before: float | None = None
    crossed: list[str] = field(default_factory=list)
    bayesian: bool = False
    shrinkage: bool = False
    shrinkage_prior_sd: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def any_crossed(self) -> bool:
        return bool(self.crossed)

    def describe(self) -> str:
        """One line for a footer: ``look 3 of 14 (group-sequential, O'Brien–Fleming): boundary |z| >= 2.80; ...``."""
        if self.method == "fixed_horizon":
            return "fixed-horizon p-values"
        where = self.label or "look"
        if self.method == "always_valid":
            text = f"{where}: always-valid intervals (confidence sequences, planned {self.planned_units:,} units)"
        else:
            bound = "—" if self.boundary_z is None else f"{self.boundary_z:.2f}"
            text = (f"{where} (group-sequential, {SPENDING_NAMES.get(self.spending or '', self.spending)}): "
                    f"boundary |z| >= {bound}")
        if self.information_fraction is not None:
            text += f", information {self.information_fraction:.0%}"
        if self.alpha_spent is not None:
            text += f", alpha spent {self.alpha_spent:.4f}"
        metrics = sorted({c.split("|")[1] for c in self.crossed if c.count("|") >= 1})
        text += f"; crossed for {', '.join(metrics)}" if metrics else "; no boundary crossed"
        return text

    def to_json_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["any_crossed"] = self.any_crossed
        out["description"] = self.describe()
        for k in ("boundary_z", "alpha_spent", "information_fraction"):
            if isinstance(out[k], float) and not math.isfinite(out[k]):
                out[k] = None
        return out

    @classmethod
    def from_json_dict(cls, raw: Mapping[str, Any]) -> InferenceSummary:
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


def record_key(r: ResultRecord) -> str:
    """A record's identity across looks: slice, metric, model, cell."""
    return f"{r.slice or ''}|{r.metric}|{r.model}|{r.cell}"


def sequential_applies(r: ResultRecord) -> bool:
    """Moments-based, whole-population records with a usable standard error."""
    return (r.model in MOMENTS_MODELS and r.quantile is None and r.segment is None and r.time is None
            and r.se is not None and math.isfinite(r.se) and r.se > 0 and math.isfinite(r.effect))


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


# ---- looks ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkippedLook:
    """The marker a later analysis stored at an earlier analysis's look key when it stopped waiting for that look
    (``skip_look``): the earlier analysis is not among the experiment's looks."""

    analysis_id: str
    created_at: float
    skipped_by: str
    waited_s: float

    def to_json_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "skipped": True}

    @classmethod
    def from_json_dict(cls, raw: Mapping[str, Any]) -> SkippedLook:
        return cls(str(raw["analysis_id"]), float(raw["created_at"]), str(raw.get("skipped_by", "")),
                   float(raw.get("waited_s", 0.0)))

    def own_note(self) -> str:
        """What the skipped analysis says about its look."""
        return (f"this look is not recorded: analysis {self.skipped_by}, created after this one, waited "
                f"{self.waited_s:,.0f} s for it and was finalized without it, so later looks do not count it")

    def later_note(self) -> str:
        """What an analysis created after it says."""
        return (f"analysis {self.analysis_id}, created before this one, is not among the looks: analysis "
                f"{self.skipped_by} stopped waiting for its look after {self.waited_s:,.0f} s")


def read_look_entries(store: ObjectStore, experiment_id: str) -> tuple[list[LookState], dict[str, SkippedLook]]:
    """Every stored look of an experiment, ordered by the creation time of its analysis (then id), and the
    skipped ones (``skip_look``) by analysis id."""
    looks: list[LookState] = []
    skipped: dict[str, SkippedLook] = {}
    for key in store.list(keys.experiment_look(experiment_id)):
        if not key.endswith(".json"):
            continue
        try:
            data = store.get_bytes(key)
        except NotFoundError:
            continue
        try:
            raw = json.loads(data)
            if raw.get("skipped"):
                mark = SkippedLook.from_json_dict(raw)
                skipped[mark.analysis_id] = mark
            else:
                looks.append(LookState.from_json_dict(raw))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # not skipped over: a sequential boundary that leaves out a look it cannot read would be too lenient
            raise CorruptObjectError(f"stored look {key!r} ({len(data)} bytes) cannot be read: "
                                     f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    return sorted(looks, key=lambda lk: (lk.created_at, lk.analysis_id)), skipped


def read_looks(store: ObjectStore, experiment_id: str) -> list[LookState]:
    """Every stored look of an experiment, ordered by the creation time of its analysis (then id)."""
    return read_look_entries(store, experiment_id)[0]


def skip_look(store: ObjectStore, experiment_id: str, analysis_id: str, created_at: float, *, by: str,
              waited_s: float) -> bool:
    """Give up on the look of the earlier analysis ``analysis_id``: store the skip marker at its look key
    (put-if-absent, so it and the analysis's own look exclude each other). ``True`` when the marker is stored
    (the analysis will never record a look), ``False`` when its look (or a marker) was there first."""
    mark = SkippedLook(analysis_id, created_at, by, waited_s)
    return store.put_if_absent(keys.experiment_look(experiment_id, analysis_id),
                               json.dumps(mark.to_json_dict(), sort_keys=True).encode())


@dataclass(frozen=True)
class LookPlan:
    """This analysis's place among the looks: the earlier looks, its own (n, fraction), whether to store it."""

    previous: tuple[LookState, ...]
    n: float
    fraction: float
    index: int
    store: bool
    note: str | None = None


def plan_look(
    looks: Sequence[LookState], analysis_id: str, created_at: float, n: float, planned_units: float,
    skipped: Mapping[str, SkippedLook] | None = None,
) -> LookPlan:
    """Where this analysis's look goes: see the module docstring (reuse, repeat, or a new look; recorded only
    when no analysis created after it has recorded one and it was not skipped)."""
    me = (created_at, analysis_id)
    skipped = skipped or {}
    notes = [m.later_note() for m in sorted(skipped.values(), key=lambda m: (m.created_at, m.analysis_id))
             if (m.created_at, m.analysis_id) < me]
    own = next((lk for lk in looks if lk.analysis_id == analysis_id), None)
    if own is not None:
        earlier = tuple(lk for lk in looks if (lk.created_at, lk.analysis_id) < (own.created_at, own.analysis_id))
        return LookPlan(earlier, own.n, own.information_fraction, len(earlier) + 1, False, "; ".join(notes) or None)
    earlier = tuple(lk for lk in looks if (lk.created_at, lk.analysis_id) < me)
    later = next((lk for lk in looks if (lk.created_at, lk.analysis_id) > me), None)
    record = True
    if analysis_id in skipped:
        record = False
        notes.append(skipped[analysis_id].own_note())
    elif later is not None:
        record = False
        notes.append(f"this look is not recorded: analysis {later.analysis_id}, created after this one, recorded "
                     "its look first (without this one), so later looks do not count it")
    if earlier and n <= earlier[-1].n:
        last = earlier[-1]
        notes.append(f"n = {n:,.0f} did not grow past look {len(earlier)} (n = {last.n:,.0f}): reported as that "
                     "look again, with its boundary")
        return LookPlan(earlier[:-1], last.n, last.information_fraction, len(earlier), False, "; ".join(notes))
    return LookPlan(earlier, n, n / planned_units, len(earlier) + 1, record, "; ".join(notes) or None)


# ---- the pass -------------------------------------------------------------------------------------------------


def _headline_keys(records: Sequence[ResultRecord], covariates: Mapping[str, Sequence[str]]) -> set[int]:
    """Indexes of the headline record per (slice, metric, cell): CUPED when the metric has covariates."""
    best: dict[tuple[str | None, str, str], tuple[int, int]] = {}
    for i, r in enumerate(records):
        rel, rel_se = r.relative_effect, r.relative_se
        if (not sequential_applies(r) or rel is None or rel_se is None or not math.isfinite(rel)
                or not (math.isfinite(rel_se) and rel_se > 0)):
            continue  # no lift to shrink (a zero control mean, a constant metric)
        rank = -1 if (r.model == "ols" and covariates.get(r.metric)) else _PRIMARY.get(r.model, 9)
        k = (r.slice, r.metric, r.cell)
        if k not in best or rank < best[k][0]:
            best[k] = (rank, i)
    return {i for _, i in best.values()}


def _prior_text(spec: InferenceSpec, metric: str) -> str:
    p = spec.priors.get(metric)
    return "flat" if p is None else f"N({p.mean:g}, {p.sd:g}^2) {p.scale}"


def apply_inference(
    records: Sequence[ResultRecord],
    spec: InferenceSpec,
    *,
    alpha: float,
    correction: Correction,
    look: LookPlan | None = None,
    look_n: float | None = None,
    higher_is_better: Mapping[str, bool] | None = None,
    covariates: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[ResultRecord], InferenceSummary]:
    """The records with their inference fields, and the summary. Pure: no store (``run_inference_pass`` is)."""
    method = METHOD_NAMES[spec.sequential]
    hib = higher_is_better or {}
    summary = InferenceSummary(method=method, bayesian=spec.bayesian, shrinkage=spec.shrinkage,
                               planned_looks=spec.planned_looks, planned_units=spec.planned_units)
    updates: list[dict[str, Any]] = [{"inference": "fixed_horizon"} for _ in records]
    if spec.sequential != "none":
        assert spec.planned_units is not None  # InferenceSpec guarantees it
        if look is None:
            raise ValueError("a sequential analysis needs its look (plan_look)")
        fractions = [lk.information_fraction for lk in look.previous] + [look.fraction]
        summary.look, summary.n, summary.information_fraction = look.index, look.n, look.fraction
        summary.label = f"look {look.index} of {spec.planned_looks}" if spec.planned_looks else f"look {look.index}"
        if look.note:
            summary.notes.append(look.note)
        crossed_before = {k for lk in look.previous for k in lk.crossed}
        boundary = nominal = None
        if spec.sequential == "group_sequential":
            b = group_sequential_boundaries(fractions, alpha, spec.spending, 2)
            boundary, nominal = b.z[-1], b.nominal_alpha[-1]
            summary.spending, summary.boundary_z, summary.alpha_spent = spec.spending, boundary, b.cumulative_alpha[-1]
            summary.alpha_spent_before = b.cumulative_alpha[-2] if len(fractions) > 1 else 0.0
        for i, r in enumerate(records):
            if not sequential_applies(r):
                continue
            assert r.se is not None
            u = updates[i]
            u.update(inference=method, look=look.index, planned_looks=spec.planned_looks,
                     information_fraction=look.fraction)
            if spec.sequential == "always_valid":
                n_rec = r.n_cell + r.n_control
                planned = spec.planned_units * (n_rec / look_n if look_n else 1.0)
                cs = confidence_sequence(r.effect, r.se, n_rec, planned, alpha)
                u.update(sequential_ci_low=cs.ci_low, sequential_ci_high=cs.ci_high, sequential_p_value=cs.p_value,
                         boundary_crossed=cs.p_value <= alpha)
            else:
                assert boundary is not None and nominal is not None
                z = r.effect / r.se
                crossed = bool(abs(z) >= boundary)
                p_fixed = float(fixed_horizon_p_value(z))
                p_seq = 1.0 if nominal <= 0 else min(1.0, p_fixed * alpha / nominal)
                u.update(sequential_ci_low=_finite(r.effect - boundary * r.se),
                         sequential_ci_high=_finite(r.effect + boundary * r.se), sequential_p_value=p_seq,
                         boundary_z=_finite(boundary), alpha_spent=summary.alpha_spent, boundary_crossed=crossed)
            if u["boundary_crossed"]:
                summary.crossed.append(record_key(r))
            if record_key(r) in crossed_before:
                u["notes"] = [*r.notes, "crossed its boundary at an earlier look"]
        # the decision p-values, corrected across the analysis like the fixed ones
        family = [r.model_copy(update={"p_value": updates[i].get("sequential_p_value", r.p_value)})
                  for i, r in enumerate(records)]
        for i, adj in enumerate(adjust_pvalues(family, correction)):
            if "sequential_p_value" in updates[i]:
                updates[i]["sequential_p_value_adjusted"] = adj.p_value_adjusted
    if spec.bayesian:
        for i, r in enumerate(records):
            if not sequential_applies(r):
                continue
            prior_spec = spec.priors.get(r.metric)
            try:
                post = normal_posterior(effect_from_record(r), None if prior_spec is None else prior_spec.prior(),
                                        alpha=alpha, higher_is_better=hib.get(r.metric, True))
            except ValueError as exc:
                updates[i]["notes"] = [*updates[i].get("notes", r.notes), f"no posterior: {exc}"]
                continue
            updates[i].update(posterior_mean=post.posterior_mean, posterior_sd=post.posterior_sd,
                              credible_low=post.ci_low, credible_high=post.ci_high,
                              chance_to_beat_control=post.chance_to_beat_control,
                              expected_loss_ship=post.expected_loss_ship,
                              expected_loss_no_ship=post.expected_loss_not_ship, prior=_prior_text(spec, r.metric))
    if spec.shrinkage:
        heads = sorted(_headline_keys(records, covariates or {}))
        by_cell: dict[str, list[int]] = {}
        for i in heads:
            by_cell.setdefault(records[i].cell, []).append(i)
        for cell, idx in sorted(by_cell.items()):
            if len(idx) < 3:
                summary.notes.append(f"shrinkage of cell {cell!r} skipped: it needs at least 3 headline estimates "
                                     f"(metrics x slices), the analysis has {len(idx)}")
                continue
            y = np.array([records[i].relative_effect for i in idx], dtype=np.float64)
            s = np.array([records[i].relative_se for i in idx], dtype=np.float64)
            try:
                res = empirical_bayes_shrinkage(y, s, labels=[record_key(records[i]) for i in idx], alpha=alpha)
            except ValueError as exc:
                summary.notes.append(f"shrinkage of cell {cell!r} failed: {exc}")
                continue
            tau = math.sqrt(res.prior_variance)
            summary.shrinkage_prior_sd[cell] = tau
            for j, i in enumerate(idx):
                updates[i].update(shrunk_effect=float(res.posterior_mean[j]), shrunk_se=float(res.posterior_sd[j]),
                                  shrunk_ci_low=float(res.ci_low[j]), shrunk_ci_high=float(res.ci_high[j]),
                                  shrinkage_prior_sd=tau)
    return [r.model_copy(update=u) for r, u in zip(records, updates, strict=True)], summary


def look_units(slice_outputs: Mapping[str, Mapping[str, float]], everyone_id: str) -> float | None:
    """Units of this look: the all-users slice's cell counts summed (else the largest slice's)."""
    if everyone_id in slice_outputs:
        return float(sum(slice_outputs[everyone_id].values()))
    totals = [float(sum(c.values())) for c in slice_outputs.values() if c]
    return max(totals) if totals else None


def run_inference_pass(
    store: ObjectStore,
    *,
    experiment_id: str,
    analysis_id: str,
    created_at: float,
    records: Sequence[ResultRecord],
    spec: InferenceSpec,
    alpha: float,
    correction: Correction,
    slice_counts: Mapping[str, Mapping[str, float]],
    everyone_id: str,
    higher_is_better: Mapping[str, bool] | None = None,
    covariates: Mapping[str, Sequence[str]] | None = None,
    record_look: bool = True,
) -> tuple[list[ResultRecord], InferenceSummary]:
    """``apply_inference`` with the look read from (and, at a first finalize, written to) the object store.

    ``record_look=False`` computes without storing (a partial scorecard of a running analysis).
    """
    look: LookPlan | None = None
    n = look_units(slice_counts, everyone_id)
    if n is None and records:
        n = max(r.n_cell + r.n_control for r in records)
    if spec.sequential != "none":
        assert spec.planned_units is not None
        if n is None or n <= 0:
            summary = InferenceSummary(method=METHOD_NAMES[spec.sequential],
                                       notes=["no units counted yet: no look recorded"])
            return [r.model_copy(update={"inference": "fixed_horizon"}) for r in records], summary
        looks, skipped = read_look_entries(store, experiment_id)
        look = plan_look(looks, analysis_id, created_at, n, spec.planned_units, skipped)
    time = datetime.fromtimestamp(created_at, UTC).isoformat(timespec="seconds")
    out, summary = apply_inference(records, spec, alpha=alpha, correction=correction, look=look, look_n=n,
                                   higher_is_better=higher_is_better, covariates=covariates)
    if look is not None and look.store and record_look:
        state = LookState(
            analysis_id=analysis_id, created_at=created_at, time=time, n=look.n,
            planned_units=float(spec.planned_units or 0), information_fraction=look.fraction,
            method=summary.method, alpha=alpha, spending=spec.spending, boundary_z=summary.boundary_z,
            alpha_spent=summary.alpha_spent, crossed=tuple(summary.crossed),
        )
        key = keys.experiment_look(experiment_id, analysis_id)
        if not store.put_if_absent(key, json.dumps(state.to_json_dict(), sort_keys=True).encode()):
            # a later analysis skipped this look between the read above and this write (skip_look), or a
            # concurrent finalize of this analysis stored it
            try:
                raw = json.loads(store.get_bytes(key))
            except NotFoundError:
                raw = {}
            if raw.get("skipped"):
                summary.notes.append(SkippedLook.from_json_dict(raw).own_note())
    return out, summary


def reapply(
    store: ObjectStore,
    records: Sequence[ResultRecord],
    *,
    experiment_id: str,
    analysis_id: str,
    created_at: float,
    request: Mapping[str, Any],
    summary: Mapping[str, Any] | None,
    higher_is_better: Mapping[str, bool] | None = None,
    covariates: Mapping[str, Sequence[str]] | None = None,
) -> list[ResultRecord]:
    """The pass again, from a stored analysis (its request and its scorecard's ``inference`` summary): what the
    reproduction notebook calls. It reads the experiment's looks and writes nothing; a scorecard stored before
    the pass existed (no summary) gets its records back untouched."""
    if summary is None:
        return list(records)
    spec = InferenceSpec.model_validate(request.get("inference") or {})
    n = summary.get("n")
    look = None
    if spec.sequential != "none":
        if not n:
            return [r.model_copy(update={"inference": "fixed_horizon"}) for r in records]
        assert spec.planned_units is not None
        looks, skipped = read_look_entries(store, experiment_id)
        look = plan_look(looks, analysis_id, created_at, float(n), spec.planned_units, skipped)
    out, _ = apply_inference(records, spec, alpha=float(request.get("alpha", 0.05)),
                             correction=request.get("correction", "bh"), look=look,
                             look_n=None if n is None else float(n), higher_is_better=higher_is_better,
                             covariates=covariates)
    return out


__all__ = [
    "MOMENTS_MODELS", "InferenceSummary", "LookPlan", "LookState", "SkippedLook", "apply_inference", "look_units",
    "plan_look", "read_look_entries", "read_looks", "reapply", "record_key", "run_inference_pass",
    "sequential_applies", "skip_look",
]
