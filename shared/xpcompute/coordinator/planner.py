"""Analysis request -> jobs: one slice job per slice, then one fit job per (slice, metric, model).

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

from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.jobs import (
    PRIORITY_PRECOMPUTED,
    Job,
    JobKind,
    fit_job_id,
    job_priority,
    slice_job_id,
)
from xpcompute.errors import InputError
from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.spec import CompressSpec, FitSpec
from xpcompute.storage import keys

#: The user-by-day table's period and user columns, as stage 1 names them (``sql.stage1.DAY`` / ``USER``).
DAY_COLUMN = "day"
USER_COLUMN = "user_id"


def compression_of(model: str) -> str:
    """The compressed layout a model reads: ``moments``, ``distribution`` (rank, quantile) or ``panel`` (dte)."""
    from xpcompute.models.registry import model_class

    kind = model_class(model).compression
    return kind if kind in ("distribution", "panel") else "moments"


def fit_input(analysis_id: str, slice_id: str, metric: str, model: str) -> tuple[str, str]:
    """The compressed table a fit reads, by its model's layout: ``(layout, key)``.

    The fit function and the exported notebook both call this, so they read the same object.
    """
    layout = compression_of(model)
    if layout == "moments":
        return layout, keys.analysis_slice(analysis_id, slice_id)
    return layout, keys.analysis_distribution(analysis_id, slice_id, metric, layout)


def servable(model: str) -> bool:
    """Whether a fit runs on the moments-compressed slice (the others read a slice's second artifact)."""
    return compression_of(model) == "moments"


def fit_specs(spec: AnalysisSpec, experiment: ExperimentSpec | None = None) -> list[FitSpec]:
    """The fits to run on every slice: one ``FitSpec`` per (metric, model).

    With an experiment, catalog metrics bring their declared models and the
    experiment's covariates (CUPED); explicit ``models`` override the declared
    ones. Rank and quantile models get n-tile compression (``spec.ntile_buckets``),
    ``dte`` the user-by-day panel's day and user columns: the slice job writes
    those compressed forms next to the moments table (see ``worker.run_slice``).
    """
    from xpcompute.metrics import get_metric

    out: list[FitSpec] = []
    for metric in spec.metrics:
        if experiment is not None and metric not in experiment.metrics:
            raise InputError(
                f"metric {metric!r} is not a metric of experiment {experiment.id!r}; choose from: "
                f"{', '.join(experiment.metrics)}"
            )
        treatment = spec.treatment
        declared: list[FitSpec] = []
        if experiment is not None:
            declared = list(get_metric(metric).fit_specs(experiment.covariates_for(metric), treatment, spec.control))
        if spec.models:
            by_model = {s.model: s for s in declared}
            for model in spec.models:
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
    try:
        return FitSpec(
            metric=metric, treatment=spec.treatment, model=model,
            control=spec.control, covariates=tuple(covariates) if model in ("ols", "cate") else (),
            segment=spec.segment if model == "cate" else None, alpha=spec.alpha,
            time=DAY_COLUMN if model == "dte" else None, cluster=USER_COLUMN if model == "dte" else None,
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
) -> list[Job]:
    """One slice job (due now) and its fit jobs (waiting on it); ``priority`` is the base (pre-computed or live)."""
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
    parent = Job(
        job_id=parent_id, kind=JobKind.SLICE, slice=slice_filter.model_dump(mode="json"),
        children=[f.job_id for f in fits], ready_at=now, due_at=now, priority=job_priority(JobKind.SLICE, priority),
        result_key=keys.analysis_slice(analysis_id, sid), **common,  # type: ignore[arg-type]
    )
    return [parent, *fits]


def plan(
    analysis_id: str,
    spec: AnalysisSpec,
    specs: Sequence[FitSpec],
    now: float,
    max_attempts: int = 3,
) -> list[Job]:
    """Every job of a new analysis: its pre-computed slices."""
    jobs: list[Job] = []
    for s in spec.slices:
        jobs.extend(plan_slice(analysis_id, s, specs, now, PRIORITY_PRECOMPUTED, max_attempts))
    return jobs
