"""Analysis request -> jobs: stage 1 when the table needs (re)building, one slice job per slice, then one fit
job per (slice, metric, model).

A slice job writes the moments table every moments model reads and, for the
metrics that need them, a value-keyed n-tile table (``mannwhitney``,
``quantile``) and a user-by-day panel (``dte``); a fit job reads the one its
model's ``compression`` names.

Planning is a pure function of the request (and the experiment spec when one
is registered): the same request plans the same job ids, which is what makes
creation idempotent and lets a restarted coordinator re-plan safely.
Pre-computed slices are due at once; a live slice requested later is planned
the same way at a lower priority, so it queues behind them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.jobs import (
    PRIORITY_PRECOMPUTED,
    Job,
    JobKind,
    fit_job_id,
    job_priority,
    slice_job_id,
    stage1_job_id,
)
from xpcompute.coordinator.stored import compression_of
from xpcompute.errors import InputError, LimitError
from xpcompute.experiment import ExperimentSpec
from xpcompute.lazy import lazy
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.spec import CompressSpec, FitSpec
from xpcompute.storage import keys

if TYPE_CHECKING:
    import pyarrow as pa

    from xpcompute.config import Settings
    from xpcompute.pipeline.tables import PublishedTable
else:  # loaded on first use: the API imports this module for its types, and most of its requests compute nothing
    pa = lazy("pyarrow")

#: The user-by-day table's period and user columns, as stage 1 names them (``sql.stage1.DAY`` / ``USER``).
DAY_COLUMN = "day"
USER_COLUMN = "user_id"


def servable(model: str) -> bool:
    """Whether a fit runs on the moments-compressed slice (the others read a slice's second artifact)."""
    return compression_of(model) == "moments"


def resolve_request(spec: AnalysisSpec, experiment: ExperimentSpec | None) -> AnalysisSpec:
    """The request with the registered experiment's defaults filled in, or ``InputError`` saying what to change.

    Why: stage 1 names the experiment's cell column ``cell`` in the analysis
    table, the experiment's covariates come from its spec, and its control and
    planned shares are declared there, so a request that says otherwise would
    be accepted and then fail, or silently measure something else. Without an
    experiment (an ad-hoc published table) the request stands as given.
    """
    if experiment is None:
        if spec.refresh:
            raise InputError("refresh rebuilds a registered experiment's analysis table from its spec; this experiment "
                             "is not registered: PUT /experiments/{id} with its spec first, or drop refresh")
        if not spec.metrics:
            raise InputError("name the metrics to analyse ('metrics': columns of the published table); only a "
                             "registered experiment's analysis defaults to the metrics of its spec")
        return spec
    problems: list[str] = []
    if spec.covariates:
        problems.append(
            f"covariates {list(spec.covariates)} cannot be set per request for registered experiment "
            f"{experiment.id!r}: its covariates come from its spec "
            f"({', '.join(experiment.covariates) or 'none declared'}); drop 'covariates', or declare them under "
            "'covariates:' in the spec and PUT it again"
        )
    aliases = ("cell", experiment.allocation.cell_column)
    if spec.treatment not in aliases:
        problems.append(
            f"treatment {spec.treatment!r} is not a column of the analysis table of {experiment.id!r}: stage 1 "
            f"stores the allocation's cell column {experiment.allocation.cell_column!r} as 'cell'; omit 'treatment' "
            f"or set it to {' or '.join(repr(a) for a in dict.fromkeys(aliases))}"
        )
    control = spec.control if spec.control is not None else experiment.control
    if control not in experiment.cells:
        problems.append(f"control {control!r} is not a cell of {experiment.id!r}; choose one of {list(experiment.cells)}")
    shares = spec.expected_shares if spec.expected_shares is not None else experiment.shares
    if spec.expected_shares is not None and set(spec.expected_shares) != set(experiment.cells):
        problems.append(f"expected_shares must give a share for each cell {list(experiment.cells)}, "
                        f"got {sorted(spec.expected_shares)}")
    if spec.segment is not None and spec.segment not in experiment.dimensions:
        problems.append(f"segment {spec.segment!r} is not a dimension of {experiment.id!r}; choose one of "
                        f"{list(experiment.dimensions) or '(none declared)'}")
    metrics = spec.metrics or experiment.metrics  # none named: every metric of the spec
    unknown = [m for m in metrics if m not in experiment.metrics]
    if unknown:
        problems.append(
            f"{'metric' if len(unknown) == 1 else 'metrics'} {', '.join(repr(m) for m in unknown)} "
            f"{'is not a metric' if len(unknown) == 1 else 'are not metrics'} of experiment {experiment.id!r} "
            f"(as registered now); choose from: {', '.join(experiment.metrics)}"
        )
    if "dte" in spec.models and not experiment.daily:
        problems.append(f"model 'dte' needs the user-by-day table, which experiment {experiment.id!r} does not build; "
                        "set 'daily: true' in its spec and PUT it again, or drop 'dte'")
    from xpcompute.quasi import request_problems

    problems += request_problems(experiment, spec.models, spec.reference_period)
    if spec.design != "randomized" and spec.design != experiment.design:
        problems.append(f"design {spec.design!r}: experiment {experiment.id!r} is {experiment.design}; drop 'design'")
    if spec.roles is not None and not spec.metrics and (unnamed := spec.roles.unknown(metrics)):
        problems.append(f"roles names {unnamed}, which are not metrics of experiment {experiment.id!r}; use names "
                        f"from: {', '.join(metrics)}")
    if problems:
        raise InputError("; ".join(problems))
    return spec.model_copy(update={"metrics": tuple(metrics), "treatment": "cell", "control": control,
                                   "expected_shares": shares, "design": experiment.design})


def check_model(experiment: ExperimentSpec, metric: str, model: str) -> None:
    """Refuse a requested model that does not estimate the metric's own quantity, saying which models do.

    A ratio is a ratio of per-user sums, analysed by the delta method
    (``ratio``); any other model would report the mean of its numerator under
    the ratio's name. ``ratio`` needs a numerator and a denominator, and
    ``proportion`` a 0/1 metric.
    """
    info = experiment.metric_info(metric)
    kind = str(info.get("kind"))
    declared = [str(m) for m in info.get("models", []) or []]  # type: ignore[attr-defined]
    if kind == "ratio" and model != "ratio":
        raise InputError(
            f"model {model!r} does not apply to metric {metric!r}: it is a ratio of per-user sums, analysed by the "
            f"delta method (model 'ratio'); {model!r} would estimate a different quantity (the per-user mean of its "
            "numerator) under the ratio's name. Drop 'models' or ask for 'ratio'"
        )
    if model == "ratio" and kind != "ratio":
        raise InputError(f"model 'ratio' does not apply to metric {metric!r}: it is a {kind} metric, not a ratio of "
                         f"per-user sums; use {', '.join(repr(m) for m in declared) or 'ttest'}")
    if model == "proportion" and kind != "proportion" and model not in declared:
        raise InputError(f"model 'proportion' does not apply to metric {metric!r}: it compares shares of users with a "
                         f"0/1 value, and {metric!r} is a {kind} metric; use 'ttest' or 'ols'")


def fit_specs(spec: AnalysisSpec, experiment: ExperimentSpec | None = None) -> list[FitSpec]:
    """The fits to run on every slice: one ``FitSpec`` per (metric, model).

    With an experiment (the request resolved by ``resolve_request``), each
    metric brings its declared models and the experiment's covariates (CUPED);
    explicit ``models`` override the declared ones, and each must apply to the
    metric's kind (``check_model``). Rank and quantile models get n-tile
    compression (``spec.ntile_buckets``), ``dte`` the user-by-day panel's day
    and user columns: the slice job writes those compressed forms next to the
    moments table (see ``worker.run_slice``).
    """
    out: list[FitSpec] = []
    for metric in spec.metrics:
        if experiment is not None and metric not in experiment.metrics:
            raise InputError(
                f"metric {metric!r} is not a metric of experiment {experiment.id!r}; choose from: "
                f"{', '.join(experiment.metrics)}"
            )
        declared: list[FitSpec] = []
        if experiment is not None:
            declared = experiment.fit_specs_for(metric, spec.treatment, spec.control)
        if spec.models:
            by_model = {s.model: s for s in declared}
            for model in spec.models:
                if experiment is not None:
                    check_model(experiment, metric, model)
                out.append(by_model.get(model) or _adhoc(spec, metric, model, experiment))
        elif declared:
            out.extend(declared)
        else:
            out.append(_adhoc(spec, metric, "ttest", experiment))
    ntile = CompressSpec(kind="ntile", buckets=spec.ntile_buckets)
    resolved = []
    for s in out:
        update: dict[str, object] = {"alpha": spec.alpha}
        kind = compression_of(s.model)
        if kind == "distribution":
            update["compress"] = ntile
        elif kind == "panel":
            update.update(time=DAY_COLUMN, cluster=USER_COLUMN, compress=CompressSpec())
        if s.model == "did" and spec.reference_period is not None:
            update["reference_period"] = spec.reference_period
        resolved.append(s.model_copy(update=update))
    seen: set[tuple[str, str]] = set()
    unique = []
    for s in resolved:
        if (s.metric, s.model) not in seen:
            seen.add((s.metric, s.model))
            unique.append(s)
    return unique


def artifact_metrics(specs: Sequence[FitSpec], layout: str) -> list[str]:
    """The metrics whose fits read the ``layout`` artifact (``distribution`` or ``panel``), in order."""
    return list(dict.fromkeys(s.metric for s in specs if compression_of(s.model) == layout))


def _adhoc(spec: AnalysisSpec, metric: str, model: str, experiment: ExperimentSpec | None) -> FitSpec:
    covariates = spec.covariates or (experiment.covariates_for(metric) if experiment is not None else ())
    denominator = None
    if model == "ratio" and experiment is not None:
        denominator = getattr(experiment.metric(metric), "denominator_column", None)
    try:
        return FitSpec(
            metric=metric, treatment=spec.treatment, model=model, denominator=denominator,
            control=spec.control, covariates=tuple(covariates) if model in ("ols", "cate") else (),
            segment=spec.segment if model == "cate" else None, alpha=spec.alpha,
            time=DAY_COLUMN if compression_of(model) == "panel" else None,
            cluster=USER_COLUMN if compression_of(model) == "panel" else None,
        )
    except ValueError as exc:
        raise InputError(f"metric {metric!r}, model {model!r}: {exc}") from exc


def plan_slice(
    analysis_id: str,
    slice_filter: SliceFilter,
    specs: Sequence[FitSpec],
    now: float,
    priority: int = PRIORITY_PRECOMPUTED,
    max_attempts: int = 3,
    depends_on: str | None = None,
) -> list[Job]:
    """One slice job and its fit jobs (waiting on it); ``priority`` is the base (pre-computed or live).

    The slice job is due now, or waits on ``depends_on`` (the analysis's stage-1 job) until that succeeds.
    """
    sid = slice_filter.slice_id
    label = slice_filter.label()
    parent_id = slice_job_id(analysis_id, sid)
    common = dict(
        analysis_id=analysis_id, slice_id=sid, slice_label=label, max_attempts=max_attempts, created_at=now,
        updated_at=now,
    )
    fits = [
        Job(
            job_id=fit_job_id(analysis_id, sid, s.metric, s.model), kind=JobKind.FIT, metric=s.metric,
            model=s.model, spec=s.model_dump(mode="json"), depends_on=parent_id,
            priority=job_priority(JobKind.FIT, priority),
            result_key=keys.fit_result(analysis_id, sid, s.metric, s.model), **common,  # type: ignore[arg-type]
        )
        for s in specs
    ]
    due = None if depends_on else now
    parent = Job(
        job_id=parent_id, kind=JobKind.SLICE, slice=slice_filter.model_dump(mode="json"),
        children=[f.job_id for f in fits], ready_at=due, due_at=due, depends_on=depends_on,
        priority=job_priority(JobKind.SLICE, priority),
        result_key=keys.analysis_slice(analysis_id, sid), **common,  # type: ignore[arg-type]
    )
    return [parent, *fits]


def plan_stage1(
    analysis_id: str, experiment_id: str, version: int | None, reason: str, children: Sequence[str], now: float,
    max_attempts: int = 3,
) -> Job:
    """The job that builds the experiment's analysis table before ``children`` (slice jobs) may run.

    ``spec`` records why it runs (``reason``) and which registered version it builds.
    """
    return Job(
        job_id=stage1_job_id(analysis_id), analysis_id=analysis_id, kind=JobKind.STAGE1, slice_id="stage1",
        slice_label="stage 1", spec={"reason": reason, "experiment_version": version}, children=list(children),
        ready_at=now, due_at=now, priority=job_priority(JobKind.STAGE1, PRIORITY_PRECOMPUTED),
        max_attempts=max_attempts, created_at=now, updated_at=now, result_key=keys.analysis_table(experiment_id),
    )


def plan(
    analysis_id: str,
    spec: AnalysisSpec,
    specs: Sequence[FitSpec],
    now: float,
    max_attempts: int = 3,
    stage1: Job | None = None,
) -> list[Job]:
    """Every job of a new analysis: its pre-computed slices, behind ``stage1`` (from ``plan_stage1``) if given."""
    jobs: list[Job] = []
    gate = stage1.job_id if stage1 is not None else None
    for s in spec.slices:
        jobs.extend(plan_slice(analysis_id, s, specs, now, PRIORITY_PRECOMPUTED, max_attempts, depends_on=gate))
    if stage1 is None:
        return jobs
    slices = [j.job_id for j in jobs if j.kind == JobKind.SLICE]
    return [replace(stage1, children=slices), *jobs]


# ---- limits: designs that cannot be sensible are refused before any job exists -------------------------------------
@dataclass(frozen=True)
class Limits:
    """Bounds on what one analysis may ask for (``XPCOMPUTE_MAX_*``, ``XPCOMPUTE_TABLE_ALLOW``; see ``config.py``).

    Why: one cheap request (a unit id as the treatment column, 10,000 slices) would otherwise plan work that
    holds every worker for hours and gives nothing anyone can read; refusing it up front, with the limit
    named, costs nothing and says what to change.
    """

    max_cells: int = 20
    max_segments: int = 50
    max_metrics: int = 100
    max_slices: int = 500
    max_jobs: int = 20_000
    table_allow: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(s.max_cells, s.max_segments, s.max_metrics, s.max_slices, s.max_jobs, tuple(s.table_allow))


def check_request_limits(experiment_id: str, spec: AnalysisSpec, limits: Limits) -> None:
    """Metrics and slices per request, and which tables a request may name: refuse with the limit named.

    A request may name only its own experiment's tables (keys under ``{experiment_id}/``) or a prefix on
    ``XPCOMPUTE_TABLE_ALLOW``: an analysis of one experiment must not read another experiment's data.
    """
    if len(spec.metrics) > limits.max_metrics:
        raise LimitError(f"the request names {len(spec.metrics)} metrics; at most {limits.max_metrics} are allowed per "
                         "analysis (XPCOMPUTE_MAX_METRICS): split it into several analyses")
    if len(spec.slices) > limits.max_slices:
        raise LimitError(f"the request names {len(spec.slices)} slices; at most {limits.max_slices} are allowed per "
                         "analysis (XPCOMPUTE_MAX_SLICES): split it, or request more slices live later")
    if spec.table is not None:
        own = keys.join_key(experiment_id) + "/"
        allowed = [own, *(p.rstrip("/") + "/" for p in limits.table_allow if p)]
        if not any(spec.table.startswith(p) for p in allowed):
            raise LimitError(
                f"table {spec.table!r} is not a table of experiment {experiment_id!r}: a request may name only keys "
                f"under {own!r}" + (f" or the allowed prefixes {list(limits.table_allow)}" if limits.table_allow else "")
                + " (XPCOMPUTE_TABLE_ALLOW lists more prefixes)"
            )


def check_job_limit(planned: int, existing: int, limits: Limits) -> None:
    """Jobs per analysis (live slices included): refuse a plan that would pass ``XPCOMPUTE_MAX_JOBS``."""
    if planned + existing > limits.max_jobs:
        raise LimitError(
            f"this would give the analysis {planned + existing} jobs (slices x (1 + metrics x models)); at most "
            f"{limits.max_jobs} are allowed (XPCOMPUTE_MAX_JOBS): ask for fewer slices, metrics or models"
        )


def distinct_at_most(table: PublishedTable, column: str, limit: int) -> int:
    """Distinct non-null values of ``column``, counted only up to ``limit + 1`` (one column read in batches)."""
    import pyarrow.compute as pc  # here: planning needs it, the slice and fit functions that import this do not

    seen: set[object] = set()
    try:
        for batch in table.dataset().to_batches(columns=[column]):
            arr = batch.column(0)
            if pa.types.is_dictionary(arr.type):
                arr = arr.dictionary_decode()
            seen.update(pc.unique(arr.drop_null()).to_pylist())
            if len(seen) > limit:
                break
    except (pa.ArrowException, OSError) as exc:
        raise InputError(
            f"the analysis table at {table.key!r} cannot be read ({type(exc).__name__}: {str(exc)[:300]}); "
            "publish it again (re-run stage 1) before analysing it"
        ) from exc
    return len(seen)


def check_design(
    spec: AnalysisSpec, experiment: ExperimentSpec | None, table: PublishedTable | None, limits: Limits
) -> None:
    """Refuse a treatment with more cells than ``XPCOMPUTE_MAX_CELLS`` and a segment with more values than
    ``XPCOMPUTE_MAX_SEGMENTS``, before any job exists.

    A registered experiment's cells are declared; its segment's values are declared too when the dimension
    lists them, else counted in the table. An ad-hoc table's treatment is counted (one column read, stopping at
    the limit). ``table`` is ``None`` while stage 1 has yet to build it: only declared values are checked.
    """
    if experiment is not None:
        cells = len(experiment.cells)
    elif table is not None and spec.treatment in table.schema.names:
        cells = distinct_at_most(table, spec.treatment, limits.max_cells)
    else:
        cells = 0
    if cells > limits.max_cells:
        raise LimitError(
            f"treatment column {spec.treatment!r} has more than {limits.max_cells} distinct values "
            f"({cells if experiment is not None else 'at least ' + str(cells)}); an experiment compares a few cells, "
            f"and a column with one value per unit (an id) makes every unit a cell. Name the column that holds each "
            f"unit's cell, or raise XPCOMPUTE_MAX_CELLS"
        )
    if spec.segment is None:
        return
    declared = None
    if experiment is not None and spec.segment in experiment.dimensions:
        declared = experiment.dimension(spec.segment).values
    if declared is not None:
        segments = len(declared)
    elif table is not None and spec.segment in table.schema.names:
        segments = distinct_at_most(table, spec.segment, limits.max_segments)
    else:
        segments = 0
    if segments > limits.max_segments:
        raise LimitError(
            f"segment column {spec.segment!r} has more than {limits.max_segments} distinct values; 'cate' reports one "
            f"effect per segment and cell, and so many segments give estimates too noisy to read. Choose a coarser "
            f"dimension, or raise XPCOMPUTE_MAX_SEGMENTS"
        )


def check_live_label(existing: Sequence[Job], slice_filter: SliceFilter) -> None:
    """A live slice's label must not be another slice's of the same analysis (its rows would be read as that one)."""
    label = slice_filter.label()
    for job in existing:
        if job.kind == JobKind.SLICE and job.slice_label == label and job.slice_id != slice_filter.slice_id:
            raise InputError(f"slice label {label!r} is already the label of another slice of this analysis; give "
                             "this slice another 'name'")
