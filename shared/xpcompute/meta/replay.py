"""Meta-analysis replay: how a changed metric definition would have read on the archived experiments.

The seed paper's "change a metric definition and view how this would have
affected hundreds of completed tests" (section 4.3.2). For each archived
experiment (its newest finished analysis that analysed the baseline metric):

1. **The replay spec.** The experiment's spec *at the version the analysis was planned from*, with the
   baseline replaced by the new definition (``replay_spec``): the new metric takes the baseline's place, its
   role (goal, guardrail with its margin) and the covariates that adjusted it (CUPED). This is exactly the
   spec a team would register to re-run the experiment from scratch with the new definition.
2. **Stage 1 of that metric only.** The per-unit columns of the new metric (and of its covariates) come
   from the archived stage-1 table when it can give them exactly (route ``table``): the table was built
   from this very version, and every column has the same aggregate (source, expression, condition,
   window, unit divisor, fill) as one of the table's columns, uncapped or capped alike, so the new
   definition differs at most by an outlier cap, applied here with stage 1's own SQL (``sql.stage1``'s
   pooled percentile limits). Otherwise (route ``raw``) the new metric's stage-1 steps
   (``sql.stage1.Stage1Plan``: the allocation, and one aggregate step per source it reads) run on DuckDB
   over the experiment's archived raw sources, and nothing else is scanned.
3. **Fit.** The new metric's fits are those the service would plan for it (``planner.fit_specs`` on the
   archived request: declared models, CUPED, the request's alpha and n-tile buckets), on the all-users
   slice, fitted by ``models.fit_table`` (the same compression and model code the workers run).
4. **Decision.** The archived records with the baseline's records swapped for the new ones go through the
   decision layer (``xpcompute.decision.decide``, the experiment's rule and roles), next to the decision on
   the archived records: the experiments whose ship call would change.

Across experiments (``summary``): the correlation of the headline effects (relative, so a change of units
does not matter) and of their z-scores, sign agreement, the share significant at the analysis's alpha
(sensitivity) under each definition, and the ratio of the SEs (new / old, relative scale).

What a replay equals: running the experiment again from scratch with the replay spec registered
(``tests/meta/test_replay.py`` checks it to 1e-10). Decisions are read on fixed-horizon records: an
analysis with sequential inference is re-decided on its fixed-horizon estimates, old and new alike.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import yaml

from xpcompute.errors import InputError, NotFoundError, XPError
from xpcompute.experiment import ExperimentSpec
from xpcompute.metrics.base import PerUserColumn
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.records import ResultRecord

if TYPE_CHECKING:
    from xpcompute.coordinator.jobs import Analysis
    from xpcompute.coordinator.service import Coordinator

#: record fields the inference pass adds; cleared so that old and new are decided alike (fixed horizon)
_SEQUENTIAL_FIELDS = ("sequential_ci_low", "sequential_ci_high", "sequential_p_value", "sequential_p_value_adjusted",
                      "boundary_crossed", "boundary_z")
Definition = str | dict[str, Any]


# ---- the new definition ----------------------------------------------------------------------------------------
def load_definition(text: str) -> Definition:
    """``--metric``: a registered metric's name, a YAML/JSON file holding one metric declaration (the mapping a
    ``metrics:`` entry of the experiment YAML takes), or that mapping inline as JSON."""
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise InputError(f"--metric {text[:80]!r} is not valid JSON: {exc}") from None
        return _declaration(value, "--metric")
    path = Path(text)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.is_file():
        try:
            value = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise InputError(f"metric definition file {path} does not exist") from None
        except yaml.YAMLError as exc:
            raise InputError(f"metric definition file {path} is not valid YAML: {exc}") from None
        if isinstance(value, dict) and isinstance(value.get("metrics"), list) and len(value["metrics"]) == 1:
            value = value["metrics"][0]  # a one-metric ``metrics:`` list, as in an experiment YAML
        return _declaration(value, str(path))
    return text


def _declaration(value: Any, origin: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise InputError(f"{origin}: a metric definition is a mapping with a 'name' and the fields of a declared "
                         "metric (source, value, where, aggregation, divisor, cap) or ratio (numerator, denominator)")
    return dict(value)


def definition_name(definition: Definition) -> str:
    return definition if isinstance(definition, str) else str(definition["name"])


def replay_spec(archived: ExperimentSpec, definition: Definition, baseline: str) -> ExperimentSpec:
    """The archived spec with ``baseline`` replaced by ``definition`` (a declaration, or a registered metric's name).

    The new metric takes the baseline's position, its role (goal, guardrail and margin, secondary) and its
    prior; covariates that adjusted the baseline adjust the new metric (declared again with the new name in
    ``adjusts`` when the names differ). Everything else is the archived spec.
    """
    if baseline not in archived.metrics:
        raise InputError(f"baseline {baseline!r} is not a metric of experiment {archived.id!r} "
                         f"({', '.join(archived.metrics)})")
    new = definition_name(definition)
    if new != baseline and new in archived.metrics:
        raise InputError(f"experiment {archived.id!r} already has a metric {new!r}; name the new definition "
                         f"differently or replay it as the baseline (--baseline {new})")
    raw = archived.model_dump(mode="json")
    raw["metrics"] = [new if m == baseline else m for m in archived.metrics]
    definitions = [d for d in raw.get("metric_definitions") or () if d.get("name") != new]
    if isinstance(definition, dict):
        definitions.append(definition)
    raw["metric_definitions"] = definitions
    if new != baseline:
        raw["roles"] = _renamed_roles(raw.get("roles") or {}, baseline, new)
        inference = dict(raw.get("inference") or {})
        priors = dict(inference.get("priors") or {})
        if baseline in priors:
            priors[new] = priors.pop(baseline)
        inference["priors"] = priors
        raw["inference"] = inference
        declared = {d["name"]: d for d in raw.get("covariate_definitions") or ()}
        for name in archived.covariates:
            cov = archived.covariate(name)
            if baseline not in cov.targets:
                continue
            decl = dict(declared.get(name) or {"name": name, "metric": cov.metric.name})
            decl["adjusts"] = [new if t == baseline else t for t in cov.targets]
            declared[name] = decl
        raw["covariate_definitions"] = list(declared.values())
    return ExperimentSpec.parse(raw, origin=f"experiment {archived.id!r} with {new!r} for {baseline!r}")


def _renamed_roles(roles: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    out = dict(roles)
    for key in ("goal", "secondary", "diagnostic"):
        out[key] = [new if m == old else m for m in out.get(key) or ()]
    for key in ("guardrails", "higher_is_better"):
        out[key] = {(new if m == old else m): v for m, v in (out.get(key) or {}).items()}
    return out


def reduced_spec(spec: ExperimentSpec, metric: str) -> ExperimentSpec:
    """Only what stage 1 needs for ``metric``: it, the covariates that adjust it, no dimensions, no roles."""
    covariates = spec.covariates_for(metric)
    raw = spec.model_dump(mode="json")
    raw.update(metrics=[metric], covariates=list(covariates), dimensions=[], precompute=[{}], roles={},
               inference={}, daily=False)
    raw["covariate_definitions"] = [{**d, "adjusts": [metric]} for d in raw.get("covariate_definitions") or ()
                                    if d["name"] in covariates]
    return ExperimentSpec.parse(raw, origin=f"stage 1 of {metric!r} in experiment {spec.id!r}")


# ---- stage 1 of the new metric -----------------------------------------------------------------------------------
def column_signature(spec: ExperimentSpec, column: PerUserColumn) -> str:
    """What a per-unit column's values depend on (before any cap): its aggregate SQL over its window, the unit
    divisor, the fill and the type. Two columns with one signature hold the same values on the same sources."""
    from xpcompute.sql.stage1 import _windows, aggregate_sql

    src = spec.sources[column.aggregate.source]
    window = _windows(spec, column.aggregate.source, None).of(column, _col(src.date_column))
    return json.dumps([column.aggregate.source, src.uri, src.user_column, aggregate_sql(column, window).sql("duckdb"),
                       column.window, column.divisor, column.fill, column.dtype])


def _col(name: str) -> Any:
    from sqlglot import exp

    return exp.column(name)


def table_columns(archived: ExperimentSpec, reduced: ExperimentSpec) -> dict[str, str] | None:
    """For each stage-1 column of ``reduced``, the archived table's column holding its (uncapped or
    identically capped) values; ``None`` when one of them is not in the table (then stage 1 must run)."""
    from xpcompute.sql.stage1 import metric_caps, per_user_columns

    if (archived.allocation, archived.window, archived.users_source) != \
            (reduced.allocation, reduced.window, reduced.users_source):
        return None
    old_caps, new_caps = metric_caps(archived), metric_caps(reduced)
    candidates: dict[str, list[str]] = {}
    for c in per_user_columns(archived):
        candidates.setdefault(column_signature(archived, c), []).append(c.name)
    out: dict[str, str] = {}
    for column in per_user_columns(reduced):
        names = candidates.get(column_signature(reduced, column), [])
        want = new_caps.get(column.name)
        match = next((n for n in names if old_caps.get(n) == want), None)  # the same cap (or none), as built
        if match is None:
            match = next((n for n in names if n not in old_caps), None)  # uncapped: the cap is applied here
        if match is None:
            return None
        out[column.name] = match
    return out


def stage1_from_table(published: Any, reduced: ExperimentSpec, mapping: Mapping[str, str],
                      archived: ExperimentSpec) -> pa.Table:
    """The new metric's per-unit columns read from the archived table, capped as stage 1 caps them."""
    import duckdb
    from sqlglot import exp

    from xpcompute.sql.dialects import render
    from xpcompute.sql.stage1 import CELL, UNCAPPED, capped, metric_caps, pooled_limits
    from xpcompute.sql.stage2 import double_literal

    sources = list(dict.fromkeys(mapping.values()))
    data = published.read([CELL, *sources])  # the unit id is not needed: the fits read cells and values
    table = pa.table({CELL: data.column(CELL), **{new: data.column(old) for new, old in mapping.items()}})
    old_caps = metric_caps(archived)
    todo = {n: cap for n, cap in metric_caps(reduced).items() if old_caps.get(mapping[n]) != cap}
    if not todo:
        return table
    con = duckdb.connect()
    try:
        con.register(UNCAPPED, table)
        final = exp.select()
        joins: list[str] = []
        for name in table.column_names:
            value: exp.Expr = exp.column(name, table="t")
            cap = todo.get(name)
            if cap is not None and cap.kind == "absolute":
                lower = None if cap.lower is None else double_literal(float(cap.lower))
                upper = None if cap.upper is None else double_literal(float(cap.upper))
                value = capped(value, lower, upper)
            elif cap is not None:
                alias = f"k{len(joins)}"
                joins.append(alias)
                con.execute(f"CREATE TEMP TABLE cap_{alias} AS {render(pooled_limits(name, cap), 'duckdb')}")
                value = capped(value, exp.column("lower", table=alias), exp.column("upper", table=alias))
            final = final.select(value.as_(name))
        query = final.from_(exp.to_table(UNCAPPED).as_("t"))
        for alias in joins:
            query = query.join(exp.to_table(f"cap_{alias}").as_(alias), join_type="CROSS")
        return con.sql(render(query, "duckdb")).to_arrow_table()
    finally:
        con.close()


def stage1_from_raw(reduced: ExperimentSpec, threads: int | None = None) -> pa.Table:
    """The reduced spec's stage-1 plan (allocation + the new metric's aggregate steps) on the raw sources."""
    from xpcompute.pipeline.engines.base import resolve_parquet
    from xpcompute.pipeline.engines.duckdb_engine import DuckDBEngine
    from xpcompute.pipeline.stage1 import check_sources, time_kinds
    from xpcompute.sql.dialects import render
    from xpcompute.sql.stage1 import analysis_plan

    used = [reduced.allocation.source, reduced.users_source]
    for m in reduced.metric_objects():
        used += sorted(m.sources())
    for c in reduced.covariates:
        used += sorted(reduced.covariate(c).sources())
    used = list(dict.fromkeys(used))
    files = {name: resolve_parquet(reduced.sources[name].uri, f"source {name!r}") for name in used}
    check_sources(reduced, files)
    engine = DuckDBEngine(threads=threads)
    try:
        for name, f in files.items():
            engine.register(name, f)
        refs = {name: engine.table_ref(name) for name in used}
        plan = analysis_plan(reduced, refs, time_kinds(reduced, {n: f.schema for n, f in files.items()}))
        for step, query in plan.steps:
            if step == "dims":
                continue
            engine.con.execute(f'CREATE OR REPLACE TEMP TABLE "{step}" AS {render(_without_dims(query), "duckdb")}')
        return engine.fetch(render(_without_dims(plan.final), "duckdb"))
    finally:
        engine.close()


def _without_dims(query: Any) -> Any:
    """The query without its join to the ``dims`` step: with no dimensions (``reduced_spec``) that step holds one
    row per user of the users source and nothing else, and a LEFT JOIN to it on the unit id changes no row."""
    joins = query.args.get("joins") or []
    kept = [j for j in joins if getattr(j.this, "name", None) != "dims"]
    if len(kept) == len(joins):
        return query
    query = query.copy()
    query.set("joins", [j.copy() for j in kept])
    return query


# ---- one experiment ------------------------------------------------------------------------------------------------
@dataclass
class ExperimentReplay:
    """One archived experiment replayed: the old and new records, headlines and decisions."""

    experiment_id: str
    analysis_id: str
    experiment_version: int | None
    route: str  # "table" (derived from the archived stage-1 table) or "raw" (the metric's stage-1 steps re-run)
    seconds: dict[str, float]
    old_records: list[ResultRecord]
    new_records: list[ResultRecord]
    old_headlines: dict[str, ResultRecord]  # by cell
    new_headlines: dict[str, ResultRecord]
    old_decisions: dict[str, str]
    new_decisions: dict[str, str]
    alpha: float
    units: int = 0
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for cell in sorted(set(self.old_headlines) | set(self.new_headlines)):
            old, new = self.old_headlines.get(cell), self.new_headlines.get(cell)
            out.append({
                "experiment_id": self.experiment_id, "analysis_id": self.analysis_id, "cell": cell,
                "control": (new or old).control if (new or old) is not None else None,  # type: ignore[union-attr]
                "route": self.route, "old": _numbers(old), "new": _numbers(new),
                "old_decision": self.old_decisions.get(cell), "new_decision": self.new_decisions.get(cell),
                "decision_changed": self.old_decisions.get(cell) != self.new_decisions.get(cell),
            })
        return out

    def to_stored(self) -> dict[str, Any]:
        """Everything, as JSON (``from_stored`` reads it back): what a replay job stores (``meta.replay_jobs``)."""
        def records(rs: dict[str, ResultRecord]) -> dict[str, Any]:
            return {cell: r.to_json_dict() for cell, r in rs.items()}

        return {**self.to_json_dict(), "seconds": self.seconds, "old_headlines": records(self.old_headlines),
                "new_headlines": records(self.new_headlines), "old_decisions": self.old_decisions,
                "new_decisions": self.new_decisions}

    @classmethod
    def from_stored(cls, raw: dict[str, Any]) -> ExperimentReplay:
        def records(rs: dict[str, Any]) -> dict[str, ResultRecord]:
            return {cell: ResultRecord.model_validate(r) for cell, r in rs.items()}

        return cls(
            experiment_id=str(raw["experiment_id"]), analysis_id=str(raw["analysis_id"]),
            experiment_version=raw["experiment_version"], route=str(raw["route"]),
            seconds={k: float(v) for k, v in raw["seconds"].items()},
            old_records=[ResultRecord.model_validate(r) for r in raw["old_records"]],
            new_records=[ResultRecord.model_validate(r) for r in raw["new_records"]],
            old_headlines=records(raw["old_headlines"]), new_headlines=records(raw["new_headlines"]),
            old_decisions=dict(raw["old_decisions"]), new_decisions=dict(raw["new_decisions"]),
            alpha=float(raw["alpha"]), units=int(raw["units"]), notes=list(raw["notes"]),
        )

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment_id, "analysis_id": self.analysis_id,
            "experiment_version": self.experiment_version, "route": self.route, "units": self.units,
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()}, "alpha": self.alpha,
            "cells": self.rows(), "notes": self.notes,
            "old_records": [r.to_json_dict() for r in self.old_records],
            "new_records": [r.to_json_dict() for r in self.new_records],
        }


def _numbers(r: ResultRecord | None) -> dict[str, Any] | None:
    if r is None:
        return None
    out = {"model": r.model, "effect": r.effect, "se": r.se, "p_value": r.p_value, "ci_low": r.ci_low,
           "ci_high": r.ci_high, "relative_effect": r.relative_effect, "relative_se": r.relative_se,
           "mean_control": r.mean_control, "mean_cell": r.mean_cell, "n_cell": r.n_cell, "n_control": r.n_control}
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def _fixed_horizon(records: Sequence[ResultRecord]) -> list[ResultRecord]:
    return [r.model_copy(update=dict.fromkeys(_SEQUENTIAL_FIELDS)) if r.sequential_p_value is not None else r
            for r in records]


def fit_new_metric(table: pa.Table, spec: ExperimentSpec, metric: str, request: Mapping[str, Any]) -> list[ResultRecord]:
    """The new metric's fits as the service plans them for this request, on the all-users slice."""
    from xpcompute.coordinator.analysis_spec import AnalysisSpec
    from xpcompute.coordinator.planner import fit_specs, resolve_request
    from xpcompute.models import fit_table

    base = AnalysisSpec.model_validate({k: v for k, v in request.items() if k in AnalysisSpec.model_fields})
    models = tuple(base.models)
    analysis = base.model_copy(update={"metrics": (metric,), "slices": (SliceFilter(),), "roles": None,
                                       "models": ()})
    specs = fit_specs(resolve_request(analysis, spec), spec)
    if models:  # the archived request named its models: keep those that apply to the new metric
        kept = [s for s in specs if s.model in models]
        specs = kept or specs
    label = SliceFilter().label()
    records: list[ResultRecord] = []
    for fit in specs:
        records += [r.model_copy(update={"slice": label}) for r in fit_table(table, fit).records]
    return records


def headline_by_cell(records: Sequence[ResultRecord], spec: ExperimentSpec, metric: str) -> dict[str, ResultRecord]:
    """The headline record (CUPED when declared, else the primary model) of ``metric`` per cell, all users."""
    from xpcompute.decision import infos_for
    from xpcompute.viz.headline import headlines

    label = SliceFilter().label()
    mine = [r for r in records if r.metric == metric and r.slice == label and r.segment is None and r.time is None
            and r.quantile is None]
    return {h.cell: h.record for h in headlines(mine, infos_for([metric], spec))}


def _decisions(records: Sequence[ResultRecord], spec: ExperimentSpec, request: Mapping[str, Any],
               card: Any) -> dict[str, str]:
    from xpcompute.decision import decide

    try:
        cells = decide(_fixed_horizon(records), experiment=spec, request=request, srm=card.srm, complete=True,
                       failures=card.failures)
    except (ValueError, XPError) as exc:
        return {"*": f"no decision: {exc}"}
    return {c.cell: c.recommendation for c in cells}


def replay_one(coordinator: Coordinator, analysis: Analysis, definition: Definition, baseline: str,
               threads: int | None = None) -> ExperimentReplay:
    """Replay ``definition`` in place of ``baseline`` on one archived, finished analysis."""
    from xpcompute.coordinator.ledger import spec_hash, table_spec_hash
    from xpcompute.meta.archive import stored_scorecard
    from xpcompute.pipeline.tables import open_table
    from xpcompute.storage import keys

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    archived = coordinator.experiment_of(analysis)
    if archived is None:
        raise InputError(f"analysis {analysis.analysis_id} was not planned from a registered experiment version; "
                         "only registered experiments can be replayed")
    new_name = definition_name(definition)
    spec = replay_spec(archived, definition, baseline)
    reduced = reduced_spec(spec, new_name)
    card = stored_scorecard(coordinator, analysis.analysis_id)
    request = dict(analysis.request)
    seconds["prepare"] = time.perf_counter() - started

    t = time.perf_counter()
    route = "raw"
    notes: list[str] = []
    table: pa.Table | None = None
    mapping = table_columns(archived, reduced)
    if mapping is not None:
        try:
            published = open_table(keys.analysis_table(archived.id), coordinator.store)
        except NotFoundError:
            published = None
            notes.append("no archived stage-1 table: the metric's stage-1 steps ran on the raw sources")
        if published is not None and table_spec_hash(published.manifest) == spec_hash(archived):
            table = stage1_from_table(published, reduced, mapping, archived)
            route = "table"
        elif published is not None:
            notes.append("the archived stage-1 table was built from another version of the spec: the metric's "
                         "stage-1 steps ran on the raw sources")
    if table is None:
        table = stage1_from_raw(reduced, threads)
    seconds["stage1"] = time.perf_counter() - t

    t = time.perf_counter()
    new_records = fit_new_metric(table, spec, new_name, request)
    seconds["fit"] = time.perf_counter() - t

    t = time.perf_counter()
    old_records = list(card.records)
    new_request = {**request, "metrics": [new_name if m == baseline else m for m in request.get("metrics") or ()]}
    if isinstance(request.get("roles"), dict) and new_name != baseline:
        new_request["roles"] = _renamed_roles(request["roles"], baseline, new_name)
    swapped = [r for r in old_records if r.metric != baseline] + new_records
    new_card = replace(card, failures=[f for f in card.failures if getattr(f, "metric", None) != baseline])
    old_decisions = _decisions(old_records, archived, request, card)
    new_decisions = _decisions(swapped, spec, new_request, new_card)
    seconds["decision"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - started
    return ExperimentReplay(
        experiment_id=archived.id, analysis_id=analysis.analysis_id, experiment_version=analysis.experiment_version,
        route=route, seconds=seconds,
        old_records=[r for r in old_records if r.metric == baseline and r.slice == SliceFilter().label()],
        new_records=new_records, old_headlines=headline_by_cell(old_records, archived, baseline),
        new_headlines=headline_by_cell(new_records, spec, new_name), old_decisions=old_decisions,
        new_decisions=new_decisions, alpha=float(request.get("alpha", 0.05)), units=table.num_rows, notes=notes,
    )


# ---- across experiments ---------------------------------------------------------------------------------------------
@dataclass
class Replay:
    """A whole replay: one entry per archived experiment, the skipped ones with their reasons, the summary."""

    metric: str
    baseline: str
    definition: Definition
    experiments: list[ExperimentReplay]
    skipped: dict[str, str]
    seconds: float

    def rows(self) -> list[dict[str, Any]]:
        return [row for e in self.experiments for row in e.rows()]

    def summary(self) -> dict[str, Any]:
        return summarize(self.rows(), self.experiments[0].alpha if self.experiments else 0.05)

    def decision_changes(self) -> list[dict[str, Any]]:
        return [{k: row[k] for k in ("experiment_id", "analysis_id", "cell", "old_decision", "new_decision")}
                for row in self.rows() if row["decision_changed"]]

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric, "baseline": self.baseline, "definition": self.definition,
            "summary": self.summary(), "decision_changes": self.decision_changes(),
            "experiments": [e.to_json_dict() for e in self.experiments], "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
        }


def _scale(numbers: dict[str, Any] | None) -> tuple[float, float] | None:
    """(effect, se) on the relative scale when there is one, else absolute."""
    if numbers is None:
        return None
    if numbers.get("relative_effect") is not None and numbers.get("relative_se"):
        return float(numbers["relative_effect"]), float(numbers["relative_se"])
    if numbers.get("se"):
        return float(numbers["effect"]), float(numbers["se"])
    return None


def _corr(a: list[float], b: list[float]) -> float | None:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def summarize(rows: Sequence[dict[str, Any]], alpha: float = 0.05) -> dict[str, Any]:
    """The across-experiment comparison of old and new headline estimates (one row per experiment and cell)."""
    pairs = [(row, _scale(row["old"]), _scale(row["new"])) for row in rows]
    both = [(row, o, n) for row, o, n in pairs if o is not None and n is not None]
    old_e = [o[0] for _, o, _ in both]
    new_e = [n[0] for _, _, n in both]
    old_z = [o[0] / o[1] for _, o, _ in both]
    new_z = [n[0] / n[1] for _, _, n in both]
    ratios = [n[1] / o[1] for _, o, n in both]

    def significant(side: str) -> float | None:
        ps = [row[side]["p_value"] for row in rows if row[side] is not None and row[side]["p_value"] is not None]
        return None if not ps else float(np.mean([p < alpha for p in ps]))

    signs = [np.sign(a) == np.sign(b) for a, b in zip(old_e, new_e, strict=True)]
    changed = sum(bool(row["decision_changed"]) for row in rows)
    return {
        "pairs": len(both), "rows": len(rows), "alpha": alpha,
        "effect_correlation": _corr(old_e, new_e), "z_correlation": _corr(old_z, new_z),
        "sign_agreement": None if not signs else float(np.mean(signs)),
        "share_significant_old": significant("old"), "share_significant_new": significant("new"),
        "se_ratio_median": None if not ratios else float(np.median(ratios)),
        "se_ratio_geometric_mean": None if not ratios else float(np.exp(np.mean(np.log(ratios)))),
        "decisions_changed": changed,
        "scale": "relative effects (effect / control mean) and their delta-method SEs",
    }


def archived_analyses(coordinator: Coordinator, baseline: str,
                      experiments: Sequence[str] | None = None) -> tuple[list[Analysis], dict[str, str]]:
    """The newest finished analysis of each experiment that analysed ``baseline`` (all registered experiments
    by default), and the experiments left out with why."""
    from xpcompute.coordinator.jobs import AnalysisState
    from xpcompute.storage import keys

    ids = list(experiments) if experiments else [r.experiment_id for r in coordinator.list_experiments()]
    newest: dict[str, Analysis] = {}  # one scan of the finished analyses, not one per experiment
    for a in coordinator.state.list_analyses(AnalysisState.SUCCEEDED):
        if baseline in (a.request.get("metrics") or ()) and (
                a.experiment_id not in newest or (a.created_at, a.analysis_id) >
                (newest[a.experiment_id].created_at, newest[a.experiment_id].analysis_id)):
            newest[a.experiment_id] = a
    found: list[Analysis] = []
    skipped: dict[str, str] = {}
    for experiment_id in ids:
        keys.experiment_id(experiment_id)
        if experiment_id in newest:
            found.append(newest[experiment_id])
        elif coordinator.experiment_version(experiment_id) is None:
            skipped[experiment_id] = f"experiment {experiment_id!r} is not registered and has no analyses"
        else:
            skipped[experiment_id] = f"no finished analysis of metric {baseline!r}"
    return found, skipped


def check_definition(definition: Definition) -> None:
    """``InputError`` naming what is wrong with a declared (YAML or JSON) definition; a class is checked by Python."""
    if isinstance(definition, dict):
        from xpcompute.metrics.declared import DeclaredMetric, DeclaredRatio

        kind = DeclaredRatio if "numerator" in definition or definition.get("kind") == "ratio" else DeclaredMetric
        try:
            kind.model_validate({k: v for k, v in definition.items() if k != "kind"})
        except Exception as exc:
            raise InputError(f"metric definition {definition.get('name')!r} is invalid: {exc}") from None


def replay(coordinator: Coordinator, definition: Definition, baseline: str | None = None,
           experiments: Sequence[str] | None = None, threads: int | None = None) -> Replay:
    """Replay ``definition`` in place of ``baseline`` (default: the metric of the same name) over the archive."""
    started = time.perf_counter()
    check_definition(definition)
    name = definition_name(definition)
    base = baseline or name
    analyses, skipped = archived_analyses(coordinator, base, experiments)
    done: list[ExperimentReplay] = []
    for analysis in analyses:
        try:
            done.append(replay_one(coordinator, analysis, definition, base, threads))
        except XPError as exc:
            skipped[analysis.experiment_id] = f"{type(exc).__name__}: {exc}"
    if not done:
        reasons = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:5])
        raise InputError(f"no archived experiment could be replayed with {name!r} for {base!r}"
                         + (f" ({reasons})" if reasons else " (the archive is empty)"))
    return Replay(name, base, definition, done, skipped, time.perf_counter() - started)


__all__ = [
    "ExperimentReplay", "Replay", "archived_analyses", "check_definition", "column_signature", "definition_name",
    "fit_new_metric",
    "headline_by_cell", "load_definition", "reduced_spec", "replay", "replay_one", "replay_spec",
    "stage1_from_raw", "stage1_from_table", "summarize", "table_columns",
]
