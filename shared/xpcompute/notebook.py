"""Export a stored analysis to a Jupyter notebook that reproduces it locally (``xpcompute notebook ID``).

This is the paper's "a production execution can be exported to a notebook":
the notebook makes the very library calls the service made, in the open, so a
scientist can check a number, change a spec and re-fit one slice:

1. read each slice's compressed statistics (stage 2's output) from the object
   store, at the key the slice job wrote (``storage.keys``);
2. rebuild each fit's ``FitSpec`` from the one its fit job carried (every fit
   job stores the spec it ran, so every stored result has the spec that
   produced it) and call ``models.fit_compressed``;
3. apply the analysis's multiple-testing correction across all records
   (``postprocess.adjust_pvalues``), as the coordinator does when it finalizes;
4. plot with ``xpcompute.viz``;
5. compare every number with the stored scorecard, in a final cell that fails
   if anything differs.

The specs are written into the notebook as literal ``FitSpec(...)`` calls, so
the notebook needs the object store (read only) but not the state store, and
reads as a record of what was run. Only finished analyses are exported: the
final cell compares with the finalized scorecard.
"""

from __future__ import annotations

import datetime as dt
import json
import pprint
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbformat import NotebookNode
from traitlets import default

from xpcompute.config import Settings
from xpcompute.coordinator.jobs import AnalysisState, JobKind, JobState, Progress
from xpcompute.coordinator.service import Coordinator
from xpcompute.errors import ConflictError, NotFoundError, XPError
from xpcompute.nbcells import code as _code
from xpcompute.nbcells import md as _md
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.records import ResultRecord
from xpcompute.spec import FitSpec
from xpcompute.storage import keys

#: Relative tolerance of the final cell's comparison (the fits are deterministic; this only absorbs float noise).
REL_TOL = 1e-9
KERNEL_NAME = "python3"


class NotebookRunError(XPError):
    """The generated notebook did not run through (its comparison failed, or the store could not be read)."""

    code = "notebook_failed"


@dataclass(frozen=True)
class SliceFits:
    """One slice of the analysis and the fits that succeeded on it, each with the spec its job ran."""

    slice_id: str
    label: str
    specs: tuple[FitSpec, ...]


@dataclass(frozen=True)
class AnalysisExport:
    """What the notebook is written from: read once from the state store, then literal in the notebook."""

    analysis_id: str
    experiment_id: str
    state: str
    store_uri: str
    correction: str
    slices: tuple[SliceFits, ...]
    failures: tuple[str, ...]
    records: tuple[ResultRecord, ...]
    higher_is_better: Mapping[str, bool]
    #: what the inference pass was given (``Coordinator._with_inference``): directions and covariates per metric
    inference_directions: Mapping[str, bool] = field(default_factory=dict)
    covariates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    created_at: float = 0.0
    #: the experiment version the analysis was planned from (``ExperimentSpec.canonical``); ``None`` when ad hoc
    experiment_spec: Mapping[str, Any] | None = None
    #: the decision rule the stored scorecard was decided by (``None``: it has no decision)
    decision_rule: str | None = None


def collect(coordinator: Coordinator, analysis_id: str) -> AnalysisExport:
    """The finished analysis's slices, fit specs, failures and stored scorecard.

    Raises ``NotFoundError`` for an unknown analysis or a missing scorecard and
    ``ConflictError`` while the analysis still runs.
    """
    from xpcompute.metrics import higher_is_better

    analysis = coordinator.state.get_analysis(analysis_id)
    jobs = coordinator.state.list_jobs(analysis_id)
    if analysis.state == AnalysisState.RUNNING:
        p = Progress.of(jobs)
        raise ConflictError(
            f"analysis {analysis_id} is still running ({p.succeeded + p.failed} of {p.total} jobs finished); "
            "export it when it has finished, since the notebook checks its numbers against the final scorecard"
        )
    if not coordinator.store.exists(keys.scorecard(analysis_id)):
        raise NotFoundError(
            f"analysis {analysis_id} has no stored scorecard at {keys.scorecard(analysis_id)} in "
            f"{coordinator.store.uri}; it finished without storing one (see GET /analyses/{analysis_id})"
        )
    card = coordinator.results(analysis_id)
    by_slice: dict[str, list[FitSpec]] = {}
    labels: dict[str, str] = {}
    for job in jobs:
        if job.kind == JobKind.SLICE:
            labels[job.slice_id] = job.slice_label
        elif job.state == JobState.SUCCEEDED and job.spec is not None:
            by_slice.setdefault(job.slice_id, []).append(FitSpec.model_validate(job.spec))
    requested = {SliceFilter.model_validate(s).slice_id: i for i, s in enumerate(analysis.request.get("slices", ()))}
    slice_order = [j.slice_id for j in sorted(
        (j for j in jobs if j.kind == JobKind.SLICE and j.slice_id in by_slice),
        key=lambda j: (j.priority, j.created_at, requested.get(j.slice_id, len(requested)), j.slice_label),
    )]
    slices = tuple(
        SliceFits(sid, labels[sid], tuple(sorted(by_slice[sid], key=lambda s: (s.metric, s.model))))
        for sid in slice_order
    )
    failures = tuple(f"{f.kind} job {f.job_id} ({f.slice}, {f.metric or '-'}, {f.model or '-'}): {f.error}"
                     for f in card.failures)
    experiment = coordinator.experiment_of(analysis)
    metrics = sorted({s.metric for sf in slices for s in sf.specs})
    higher = experiment.higher_is_better() if experiment is not None else higher_is_better(metrics)
    return AnalysisExport(
        analysis_id=analysis_id, experiment_id=analysis.experiment_id, state=analysis.state.value,
        store_uri=coordinator.store.uri, correction=str(analysis.request.get("correction", "bh")),
        slices=slices, failures=failures, records=tuple(card.records), higher_is_better=higher,
        inference_directions=experiment.higher_is_better() if experiment is not None else {},
        covariates={m: tuple(experiment.covariates_for(m)) for m in experiment.metrics} if experiment is not None
        else {m: tuple(analysis.request.get("covariates") or ()) for m in analysis.request.get("metrics") or ()},
        created_at=analysis.created_at,
        experiment_spec=experiment.canonical() if experiment is not None else None,
        decision_rule=str(card.decision[0].get("rule")) if card.decision else None,
    )


def spec_source(spec: FitSpec) -> str:
    """``FitSpec(metric=..., ...)`` with the non-default fields: readable, and equal to ``spec`` when evaluated."""
    fields = spec.model_dump(exclude_defaults=True)
    if FitSpec(**fields) != spec:  # a default that does not round-trip: spell out every field
        fields = spec.model_dump()
    args = ", ".join(f"{name}={value!r}" for name, value in fields.items())
    return f"FitSpec({args})"


def _tol(value: float) -> str:
    """``1e-9`` rather than Python's ``1e-09``, as a reader would write it."""
    return f"{value:g}".replace("e-0", "e-")


def _figure_cells(records: Sequence[ResultRecord]) -> list[NotebookNode]:
    """The viz figures that have records behind them (the same choice the HTML report makes)."""
    cells = [
        _md("## 4. Plot\n\nThe same figures as the HTML report and the API's scorecard page, from the records above."),
        _code("viz.effects_forest(records, relative=True, higher_is_better=HIGHER_IS_BETTER)"),
    ]
    if any(r.segment is not None and r.time is None and r.quantile is None for r in records):
        cells.append(_code("viz.cate_by_segment(records, higher_is_better=HIGHER_IS_BETTER)"))
    if any(r.time is not None and r.segment is None and r.quantile is None for r in records):
        cells.append(_code("viz.dynamic_effects(records, higher_is_better=HIGHER_IS_BETTER)"))
    if any(r.quantile is not None and r.segment is None and r.time is None for r in records):
        cells.append(_code("viz.quantile_effects(records, higher_is_better=HIGHER_IS_BETTER)"))
    cells.append(_code("viz.cell_means(records)"))
    return cells


COMPARE = f'''
def key(r: ResultRecord) -> tuple[object, ...]:
    """What identifies a record within an analysis."""
    return (r.slice, r.metric, r.model, r.cell, r.segment, r.time, r.quantile)


expected = {{key(r): r for r in (ResultRecord.model_validate(x) for x in stored["records"])}}
mine = {{key(r): r for r in records}}
assert mine.keys() == expected.keys(), (
    f"records differ: only here {{sorted(map(str, mine.keys() - expected.keys()))}}, only in the stored scorecard "
    f"{{sorted(map(str, expected.keys() - mine.keys()))}} (was a slice added after this notebook was written?)"
)
worst = 0.0
for k, record in mine.items():
    here, there = record.to_json_dict(), expected[k].to_json_dict()
    for field, a in here.items():
        b = there[field]
        if isinstance(a, float) and isinstance(b, float):
            assert math.isclose(a, b, rel_tol={_tol(REL_TOL)}, abs_tol=1e-12), f"{{k}} {{field}}: {{a!r}} here, {{b!r}} stored"
            worst = max(worst, abs(a - b) / max(abs(a), abs(b), 1e-300))
        else:
            assert a == b, f"{{k}} {{field}}: {{a!r}} here, {{b!r}} stored"
print(f"all {{len(mine)}} records equal the stored scorecard (largest relative difference {{worst:.1e}})")
'''


def _decision_cells(export: AnalysisExport) -> list[NotebookNode]:
    """The ship decision, decided again from the records above by the experiment's rule and checked against the
    stored one (recommendation, reasons and each metric's test outcome). Why in the notebook: the call is what a
    reader acts on, so a notebook that reproduces the numbers must also reproduce the call."""
    if export.decision_rule is None:
        return []
    spec = json.dumps(dict(export.experiment_spec or {}), sort_keys=True)
    return [
        _md(f"""
### The ship decision

The coordinator turned the records into one recommendation per treatment cell with the rule
`{export.decision_rule}` (`xpcompute.decision`): goals need a significant improvement, guardrails must be shown
non-inferior at their margins, and nothing may regress. It runs again here on the records above, with the
experiment's roles, the slices' sample-ratio checks and the failed jobs, and must give the stored call.
"""),
        _code(f"""
from types import SimpleNamespace

from xpcompute.decision import decide
from xpcompute.experiment import ExperimentSpec

EXPERIMENT_SPEC = {spec!r}
experiment = ExperimentSpec.parse(json.loads(EXPERIMENT_SPEC)) if EXPERIMENT_SPEC != "{{}}" else None
decision = [c.to_json_dict() for c in decide(
    records, experiment=experiment, request=request, complete=stored.get("complete", True),
    srm=[SimpleNamespace(**s) for s in stored.get("srm", [])],
    failures=[SimpleNamespace(**f) for f in stored.get("failures", [])],
)]
for d in decision:
    print(f"{{d['cell']}} vs {{d['control']}}: {{d['recommendation'].upper()}}")
    for reason in d["reasons"]:
        print("   ", reason)


def call(cells):
    return [(d["cell"], d["recommendation"], d["reasons"], [(c["metric"], c["outcome"]) for c in d["checks"]])
            for d in cells]


assert call(decision) == call(stored.get("decision", [])), "the decision differs from the stored one"
print("decision: same as stored")
"""),
    ]


def _inference_line(export: AnalysisExport) -> str:
    methods = sorted({r.inference for r in export.records if r.inference})
    return ", ".join(methods) if methods else "no inference fields (stored before the inference pass existed)"


def build_notebook(export: AnalysisExport, *, generated: dt.datetime | None = None) -> NotebookNode:
    """The notebook, cell by cell (not executed)."""
    when = (generated or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    aid = export.analysis_id
    n_fits = sum(len(s.specs) for s in export.slices)
    cells: list[NotebookNode] = [
        _md(f"""
# Reproduce analysis `{aid}` (experiment `{export.experiment_id}`)

Written by `xpcompute notebook {aid}` on {when}. The analysis ended **{export.state}** with
{len(export.records)} result records from {n_fits} fits over {len(export.slices)} slices.

This notebook repeats locally what the service's fit functions did, with the same library calls:

1. read each slice's **compressed statistics** (what stage 2 stored) from the object store;
2. rebuild each fit's **`FitSpec`** (the spec its fit job ran, written out below) and call
   `xpcompute.models.fit_compressed`;
3. apply the analysis's **multiple-testing correction** across every record (`xpcompute.postprocess.adjust_pvalues`);
4. **plot** with `xpcompute.viz`;
5. **compare** every number with the stored scorecard: the last cell fails if anything differs.

It only reads from the store. Change a spec and re-run a slice's cell to explore; the last cell will then tell you
what moved.
"""),
        _code("""
import json
import math

from xpcompute import viz
from xpcompute.compression.io import from_parquet_bytes
from xpcompute.config import Settings
from xpcompute.coordinator.stored import fit_input
from xpcompute.storage import keys
from xpcompute.models import fit_compressed
from xpcompute.postprocess import adjust_pvalues
from xpcompute.records import ResultRecord
from xpcompute.spec import FitSpec
from xpcompute.storage.objects import open_store
"""),
        _md("""
## 1. Open the object store

`STORE` is where the analysis lived when this notebook was written (a folder, or `s3://bucket/prefix`; an S3
endpoint comes from `XPCOMPUTE_S3_ENDPOINT`). The request is stored with the analysis; the scorecard is what the
coordinator stored when it finished, which the last cell compares against.
"""),
        _code(f"""
ANALYSIS_ID = {aid!r}
STORE = {export.store_uri!r}

store = open_store(STORE, endpoint_url=Settings.from_env().s3_endpoint)
request = json.loads(store.get_bytes(keys.analysis_request(ANALYSIS_ID)))
stored = json.loads(store.get_bytes(keys.scorecard(ANALYSIS_ID)))
print("metrics:", ", ".join(request["metrics"]))
print("correction:", request.get("correction", "bh"), "| stored records:", len(stored["records"]))
"""),
        _md("""
## 2. Fit every slice from its compressed statistics

One cell per slice. Each loads the slice's compressed table (one row per group of identical keys, holding the
sums a model needs) and fits each `FitSpec` its fit jobs ran, exactly as the fit function did; the records get
the slice's label.
"""),
        _code("records: list[ResultRecord] = []"),
    ]
    if export.failures:
        listed = "\n".join(f"- {f}" for f in export.failures)
        cells.append(_md(f"These jobs failed in the service, so they have no records to reproduce:\n\n{listed}"))
    for s in export.slices:
        specs = "\n".join(f"    {spec_source(spec)}," for spec in s.specs)
        cells.append(_md(f"### Slice `{s.label}`"))
        cells.append(_code(f"""
specs = [
{specs}
]
for spec in specs:
    layout, key = fit_input(ANALYSIS_ID, {s.slice_id!r}, spec.metric, spec.model)  # moments, distribution or panel
    compressed = from_parquet_bytes(store.get_bytes(key))
    records += [r.model_copy(update={{"slice": {s.label!r}}}) for r in fit_compressed(compressed, spec)]
print(f"{{compressed.layout.n_rows:,}} users in the slice; the last table had {{compressed.n_groups:,}} compressed rows")
print(len(records), "records so far")
"""))
    cells += [
        _md("""
## 3. Correct across the analysis

p-values are adjusted across every record of the analysis at once (metrics x slices x cells), with the correction
the request named, as the coordinator does when the analysis finishes. `HIGHER_IS_BETTER` comes from the metric
catalog; it only turns a significant "up" or "down" into "good" or "bad" in the table and figures.
"""),
        _code(f"""
HIGHER_IS_BETTER = {pprint.pformat(dict(export.higher_is_better), width=110, compact=True)}

records = adjust_pvalues(records, request.get("correction", "bh"))
viz.print_scorecard(records, higher_is_better=HIGHER_IS_BETTER)
"""),
        _md(f"""
### Inference

Each record says which inference produced its decision (`inference`: fixed_horizon, always_valid or
group_sequential). The coordinator's inference pass (`xpcompute.coordinator.inference_pass`) adds the sequential,
Bayesian and shrinkage fields from the records alone, with this analysis's look among the experiment's stored
looks; it runs again here. Stored: {_inference_line(export)}
"""),
        _code(f"""
from xpcompute.coordinator.inference_pass import reapply

records = reapply(store, records, experiment_id={export.experiment_id!r}, analysis_id=ANALYSIS_ID,
                  created_at={export.created_at!r}, request=request, summary=stored.get("inference"),
                  higher_is_better={dict(export.inference_directions)!r},
                  covariates={ {k: tuple(v) for k, v in export.covariates.items()}!r})
print(sorted({{r.inference or "-" for r in records}}), (stored.get("inference") or {{}}).get("description", ""))
"""),
    ]
    cells += _figure_cells(export.records)
    cells += _decision_cells(export)
    cells += [
        _md(f"""
## 5. Compare with the stored scorecard

Every field of every record must equal the stored one (numbers to a relative {_tol(REL_TOL)}).
"""),
        _code(COMPARE),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["xpcompute"] = {"analysis_id": aid, "experiment_id": export.experiment_id, "store": export.store_uri}
    nbformat.validate(nb)
    return nb


class ThisPythonKernels(KernelSpecManager):
    """Resolve the notebook's kernel to the interpreter running xpcompute.

    An installed ``python3`` kernelspec may start whatever ``python`` is first
    on ``PATH`` (the venv's own spec says just ``python``), which need not have
    xpcompute; this one always starts ``sys.executable``.
    """

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        from ipykernel.kernelspec import get_kernel_dict

        # The kernel talks to this process over loopback with signed messages; at its default log level it
        # warns about unencrypted TCP on every start, which reads like a problem to a user running the CLI.
        spec = get_kernel_dict(extra_arguments=["--IPKernelApp.log_level=ERROR"])
        return KernelSpec(name=kernel_name, resource_dir="", **spec)


class ThisPythonKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels are this interpreter (see ``ThisPythonKernels``).

    Handed to nbclient as a class, not an instance, so that nbclient owns the
    manager and shuts the kernel down when the run ends (it leaves a manager it
    was given running).
    """

    @default("kernel_spec_manager")
    def _this_python_kernels(self) -> KernelSpecManager:
        return ThisPythonKernels()


def execute_notebook(nb: NotebookNode, cwd: Path, timeout_s: int = 600) -> NotebookNode:
    """Run every cell in a fresh kernel of this interpreter (in place); ``NotebookRunError`` names a failed cell."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    client = NotebookClient(nb, kernel_name=KERNEL_NAME, kernel_manager_class=ThisPythonKernelManager,
                            timeout=timeout_s, shutdown_kernel="immediate", resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute()
    except CellExecutionError as exc:
        raise NotebookRunError(f"the notebook stopped in a cell: {exc}") from exc
    except RuntimeError as exc:  # nbclient's DeadKernelError and "kernel didn't respond" are RuntimeErrors
        raise NotebookRunError(
            f"the notebook's kernel ({sys.executable} -m ipykernel_launcher) did not start or died: {exc}"
        ) from exc
    return nb


def open_coordinator(settings: Settings) -> Coordinator:
    """A read-only coordinator (no dispatcher) over the stores ``settings`` name."""
    from xpcompute.coordinator.runtime import build_coordinator

    return build_coordinator(settings, dispatcher=None)


def write_notebook(
    coordinator: Coordinator, analysis_id: str, out: Path | None = None, *, execute: bool = False,
    timeout_s: int = 600,
) -> Path:
    """Write the notebook for ``analysis_id`` (default ``analysis-<id>.ipynb``); with ``execute``, run it first.

    A notebook that fails to run is still written, with its outputs up to the
    failing cell, before ``NotebookRunError`` is raised: the outputs say why.
    """
    export = collect(coordinator, analysis_id)
    nb = build_notebook(export)
    path = out or Path(f"analysis-{analysis_id}.ipynb")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if execute:
            execute_notebook(nb, path.parent.resolve(), timeout_s)
    finally:
        nbformat.write(nb, str(path))
    return path


__all__ = [
    "AnalysisExport",
    "NotebookRunError",
    "SliceFits",
    "ThisPythonKernelManager",
    "ThisPythonKernels",
    "build_notebook",
    "collect",
    "execute_notebook",
    "open_coordinator",
    "write_notebook",
]
