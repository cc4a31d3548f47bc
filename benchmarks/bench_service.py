"""Service benchmarks: dispatch throughput by worker count, and the issue's end-to-end speed targets.

    python benchmarks/bench_service.py throughput [--slices 200] [--workers 1,2,max]
    python benchmarks/bench_service.py targets [--users 10000000] [--slices 100] [--engine duckdb]
        [--inference off|on|both]

``throughput`` runs one analysis of many small slices (two jobs per slice)
through the local worker pool with 1, 2 and the maximum number of workers
(16 more where the machine has the cores) and reports jobs/s and the
dispatch overhead per job: the worker time a job costs beyond running the
same job inline in one process.

``targets`` builds a synthetic experiment (stage 1 on DuckDB), then on the
embedded default measures: every catalog metric the service fits x 100
slices (target < 60 s), the time until the first slice's results are
readable (< 5 s), and a live slice requested afterwards (< 3 s).
``--inference on`` analyses with group-sequential looks, Bayesian posteriors and empirical-Bayes shrinkage
(``InferenceSpec``); ``both`` runs the same analysis fixed-horizon and then with them, in the same warm pool,
reports both times and their ratio, and times the inference pass alone on the analysis's records (what
``Coordinator.finalize`` adds), so the overhead can be read side by side.
``--decision`` (with ``targets``) also times, on the finished 20 x 100 analysis's records and best of three, what
the decision issue added to ``Coordinator.finalize``: every correction method at every scope (the BH pass over
the whole analysis was there before; each other method or scope replaces it, so the most expensive one is the
added cost) and the ship decision (``Coordinator._with_decision``: roles, goal/guardrail/deterioration tests,
the rule), and reports their share of the analysis's wall time. Capping adds nothing to the slice and fit jobs
(the limits are applied in stage 1 and only read from its manifest), so it is timed in stage 1: the same
stage 1 with three metrics capped (pooled 99th percentiles) against none.
Results print as a table and, with ``--json PATH``, are written for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "shared"))


def _native_backend() -> str:
    try:
        import xpcompute._core  # noqa: F401
    except ImportError:
        os.environ.setdefault("XPCOMPUTE_NATIVE", "reference")
    from xpcompute import native

    return native.backend()


def _wait(coord: Any, analysis_id: str, timeout: float = 900.0) -> float:
    start = time.perf_counter()
    while coord.state.get_analysis(analysis_id).state == "RUNNING":
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"analysis {analysis_id} not done in {timeout}s")
        time.sleep(0.02)
    return time.perf_counter() - start


def _table(n: int) -> Any:
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(0)
    cell = rng.choice(["control", "treatment"], n)
    return pa.table({
        "cell": cell,
        "bucket": np.arange(n, dtype=np.int64) % 1000,
        "hours": rng.gamma(2.0, 1.0, n) + 0.1 * (cell == "treatment"),
    })


def _publish(store: Any, table: Any) -> None:
    import pyarrow.parquet as pq

    from xpcompute.pipeline.tables import publish_table
    from xpcompute.storage import keys

    def write(fs: Any, path: str) -> Any:
        fs.create_dir(path, recursive=True)
        pq.write_table(table, f"{path}/part-0.parquet", filesystem=fs)
        return table.schema

    publish_table(store, keys.analysis_table("bench"), write)


def throughput(slices: int, worker_counts: list[int]) -> list[dict[str, Any]]:
    from xpcompute.config import Settings
    from xpcompute.coordinator.analysis_spec import AnalysisSpec
    from xpcompute.coordinator.runtime import EmbeddedRuntime
    from xpcompute.pipeline.slices import SliceFilter

    table = _table(20_000)
    spec = AnalysisSpec(metrics=("hours",), slices=tuple(SliceFilter.where(bucket=b) for b in range(slices)))
    warm = AnalysisSpec(metrics=("hours",), slices=tuple(SliceFilter.where(bucket=b) for b in range(999, 999 - 8, -1)))
    rows = []
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home) / "inline", dispatch="inline", slice_engine="arrow")
        with EmbeddedRuntime(settings) as rt:
            _publish(rt.coordinator.store, table)
            rt.coordinator.submit("bench", warm)
            start = time.perf_counter()
            rt.coordinator.submit("bench", spec)
            inline_s = time.perf_counter() - start
        jobs = 2 * slices
        per_job_inline = inline_s / jobs
        rows.append({"workers": "inline", "jobs": jobs, "seconds": inline_s, "jobs_per_s": jobs / inline_s,
                     "overhead_ms_per_job": 0.0})
        for w in worker_counts:
            settings = Settings(home=Path(home) / f"w{w}", dispatch="local", slice_engine="arrow", workers=w,
                                worker_idle_s=60.0, tick_s=0.5)
            with EmbeddedRuntime(settings) as rt:
                _publish(rt.coordinator.store, table)
                _wait(rt.coordinator, rt.coordinator.submit("bench", warm).analysis_id)  # start the workers
                start = time.perf_counter()
                aid = rt.coordinator.submit("bench", spec).analysis_id
                _wait(rt.coordinator, aid)
                wall = time.perf_counter() - start
            used = min(w, os.cpu_count() or 1)
            rows.append({
                "workers": w, "jobs": jobs, "seconds": wall, "jobs_per_s": jobs / wall,
                "overhead_ms_per_job": max(0.0, (wall * used / jobs - per_job_inline) * 1000),
            })
    return rows


def _slices(n: int) -> list[Any]:
    from xpcompute import synthetic
    from xpcompute.pipeline.slices import SliceFilter

    out = [SliceFilter()]
    dims = {"country": synthetic.COUNTRIES, "device": synthetic.DEVICES, "plan": synthetic.PLANS}
    for d, values in dims.items():
        out += [SliceFilter.where(**{d: v}) for v in values]
    for c in synthetic.COUNTRIES:
        out += [SliceFilter.where(country=c, device=v) for v in synthetic.DEVICES]
    for c in synthetic.COUNTRIES:
        out += [SliceFilter.where(country=c, plan=p) for p in synthetic.PLANS]
    for d in synthetic.DEVICES:
        out += [SliceFilter.where(device=d, plan=p) for p in synthetic.PLANS]
    i = 0
    countries = synthetic.COUNTRIES
    while len(out) < n:
        a, b = countries[i % len(countries)], countries[(i + 1 + i // len(countries)) % len(countries)]
        if a != b:
            out.append(SliceFilter.either(country=[a, b]).model_copy(update={"name": f"{a} or {b} #{i}"}))
        i += 1
    unique = {s.slice_id: s for s in out}
    return list(unique.values())[:n]


def _job_seconds(jobs: list[Any]) -> dict[str, dict[str, float]]:
    """Worker seconds per job kind (and fit model): where an analysis's time goes."""
    by: dict[str, list[float]] = {}
    for job in jobs:
        if job.started_at is not None and job.finished_at is not None:
            label = job.kind.value if job.model is None else f"{job.kind.value}:{job.model}"
            by.setdefault(label, []).append(job.finished_at - job.started_at)
    return {k: {"jobs": len(v), "total_s": round(sum(v), 3), "mean_ms": round(1000 * sum(v) / len(v), 2)}
            for k, v in sorted(by.items())}


def _inference(users: int) -> Any:
    """Everything the inference pass can add: group-sequential (14 planned looks), posteriors, shrinkage."""
    from xpcompute.inference.settings import InferenceSpec

    return InferenceSpec(sequential="group_sequential", planned_units=2 * users, planned_looks=14, bayesian=True,
                         shrinkage=True)


def _pass_seconds(coord: Any, aid: str, users: int) -> dict[str, float]:
    """The inference pass alone on the finished analysis's records (no look stored), best of three."""
    from xpcompute.coordinator.inference_pass import run_inference_pass
    from xpcompute.pipeline.slices import SliceFilter

    card = coord.results(aid)
    analysis = coord.state.get_analysis(aid)
    experiment = coord.experiment_of(analysis)
    covariates = {m: experiment.covariates_for(m) for m in experiment.metrics} if experiment is not None else {}
    directions = experiment.higher_is_better() if experiment is not None else None
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        run_inference_pass(coord.store, experiment_id=analysis.experiment_id, analysis_id=aid,
                           created_at=analysis.created_at, records=card.records, spec=_inference(users), alpha=0.05,
                           correction=card.correction, slice_counts={}, everyone_id=SliceFilter().slice_id,
                           higher_is_better=directions, covariates=covariates, record_look=False)
        best = min(best, time.perf_counter() - t)
    return {"inference_pass_s": best, "records": float(len(card.records))}


def _decision_seconds(coord: Any, aid: str) -> dict[str, Any]:
    """Corrections (every method x scope) and the ship decision alone on a finished analysis, best of three."""
    from xpcompute.postprocess import CORRECTIONS, SCOPES, adjust_pvalues

    card = coord.results(aid)
    analysis = coord.state.get_analysis(aid)

    def best(call: Any) -> float:
        out = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            call()
            out = min(out, time.perf_counter() - t)
        return out

    goals = frozenset(sorted({r.metric for r in card.records})[:2])
    corrections = {f"{m}/{s}": best(lambda m=m, s=s: adjust_pvalues(card.records, m, s))
                   for m in CORRECTIONS for s in SCOPES}
    corrections.update({f"{m}/goals": best(lambda m=m: adjust_pvalues(card.records, m, goals)) for m in CORRECTIONS})
    decision_s = best(lambda: coord._with_decision(card, analysis))
    decided = coord._with_decision(card, analysis)
    return {"records": len(card.records), "corrections_s": corrections, "bh_analysis_s": corrections["bh/analysis"],
            "worst_correction": max(corrections, key=lambda k: corrections[k]),
            "worst_correction_s": max(corrections.values()), "decision_s": decision_s,
            "decision": [(d["cell"], d["recommendation"]) for d in decided.decision],
            "decision_note": decided.decision_note}


def _capped_stage1(experiment: Any, store: Any) -> dict[str, float]:
    """Stage 1 with three metrics capped at pooled 99th percentiles against the same stage 1 uncapped (best of 2).

    The caps are set on the catalog's metric classes for the capped runs only (``Metric.cap``), then restored.
    """
    from xpcompute.metrics import get_metric
    from xpcompute.metrics.base import Cap
    from xpcompute.pipeline.stage1 import run_stage1

    names = [m for m in ("streaming_hours", "longest_session_hours", "sessions") if m in experiment.metrics]
    classes = [type(get_metric(m)) for m in names]
    out: dict[str, float] = {}
    for label, cap in (("stage1_uncapped_s", None), ("stage1_capped_s", Cap(upper=0.99))):
        saved = [cls.__dict__.get("cap") for cls in classes]
        try:
            for cls in classes:
                cls.cap = cap  # type: ignore[attr-defined]
            times = []
            for _ in range(2):
                t = time.perf_counter()
                run_stage1(experiment, store, daily=False)
                times.append(time.perf_counter() - t)
        finally:
            for cls, old in zip(classes, saved, strict=True):
                cls.cap = old  # type: ignore[attr-defined]
        out[label] = min(times)
    out["capped_metrics"] = float(len(names))
    return out


def targets(users: int, n_slices: int, engine: str, workers: int, inference: str = "off",
            decision: bool = False) -> dict[str, Any]:
    from xpcompute import synthetic
    from xpcompute.config import Settings
    from xpcompute.coordinator.analysis_spec import AnalysisSpec
    from xpcompute.coordinator.planner import fit_specs
    from xpcompute.coordinator.runtime import EmbeddedRuntime
    from xpcompute.metrics import metric_names
    from xpcompute.pipeline.slices import SliceFilter
    from xpcompute.pipeline.stage1 import run_stage1

    out: dict[str, Any] = {"users": users, "engine": engine, "workers": workers}
    with tempfile.TemporaryDirectory() as home:
        t = time.perf_counter()
        config = synthetic.SyntheticConfig(users=users)
        uris = synthetic.write_parquet(synthetic.generate(config), str(Path(home) / "raw"))
        out["generate_s"] = time.perf_counter() - t
        experiment = synthetic.experiment_spec(uris, config, experiment_id="bench", daily=False)
        settings = Settings(home=Path(home) / "svc", dispatch="local", slice_engine=engine, workers=workers,  # type: ignore[arg-type,unused-ignore]
                            worker_idle_s=120.0, lease_s=600.0)
        with EmbeddedRuntime(settings) as rt:
            t = time.perf_counter()
            run_stage1(experiment, rt.coordinator.store, daily=False)
            out["stage1_s"] = time.perf_counter() - t
            rt.coordinator.register_experiment(experiment)
            metrics = tuple(m for m in metric_names() if m in experiment.metrics)
            spec = AnalysisSpec(metrics=metrics, slices=tuple(_slices(n_slices)))
            out["metrics"] = len(metrics)
            out["slices"] = len(spec.slices)
            out["fits_per_slice"] = len(fit_specs(spec, experiment))
            # warm the pool (workers import NumPy/Arrow/DuckDB once), as a running server would be
            warm = rt.coordinator.submit("bench", AnalysisSpec(metrics=metrics[:1], slices=(SliceFilter(),)))
            _wait(rt.coordinator, warm.analysis_id)

            if inference == "both":
                t0 = time.perf_counter()
                fixed = rt.coordinator.submit("bench", spec).analysis_id
                _wait(rt.coordinator, fixed)
                out["analysis_fixed_s"] = time.perf_counter() - t0
                out.update(_pass_seconds(rt.coordinator, fixed, users))
            if inference != "off":
                spec = spec.model_copy(update={"inference": _inference(users)})
            out["inference"] = inference
            t0 = time.perf_counter()
            aid = rt.coordinator.submit("bench", spec).analysis_id
            first = None
            while rt.coordinator.state.get_analysis(aid).state == "RUNNING":
                if first is None and rt.coordinator.status(aid).records:
                    first = time.perf_counter() - t0
                time.sleep(0.02)
            out["analysis_s"] = time.perf_counter() - t0
            out["first_results_s"] = first if first is not None else out["analysis_s"]
            if inference == "both":
                out["inference_ratio"] = out["analysis_s"] / out["analysis_fixed_s"]
                out["inference_pass_share"] = out["inference_pass_s"] / out["analysis_fixed_s"]
            status = rt.coordinator.status(aid, with_records=False)
            out["job_seconds"] = _job_seconds(rt.coordinator.state.list_jobs(aid))
            out["jobs"] = status.progress.total
            out["failed_jobs"] = status.progress.failed
            if decision:
                out.update(_decision_seconds(rt.coordinator, aid))
                added = out["worst_correction_s"] - out["bh_analysis_s"] + out["decision_s"]
                out["decision_layer_added_s"] = added
                out["decision_layer_share"] = added / out["analysis_s"]
            t0 = time.perf_counter()
            rt.coordinator.request_slice(aid, SliceFilter.where(country="JP", device="web", plan="premium"))
            _wait(rt.coordinator, aid)
            out["live_slice_s"] = time.perf_counter() - t0
            if decision:
                out.update(_capped_stage1(experiment, rt.coordinator.store))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["throughput", "targets", "all"])
    parser.add_argument("--slices", type=int, default=None)
    parser.add_argument("--workers", default="1,2,max")
    parser.add_argument("--users", type=int, default=10_000_000)
    parser.add_argument("--engine", default="duckdb", choices=["duckdb", "arrow", "cube"])
    parser.add_argument("--inference", default="off", choices=["off", "on", "both"],
                        help="group-sequential + Bayesian + shrinkage: off, on, or both (side by side)")
    parser.add_argument("--decision", action="store_true",
                        help="also time the corrections and the ship decision alone, and stage 1 with capping")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    backend = _native_backend()
    cores = os.cpu_count() or 1
    counts = sorted({cores if w == "max" else int(w) for w in args.workers.split(",")})
    if cores >= 16 and 16 not in counts:
        counts.append(16)
    report: dict[str, Any] = {"native": backend, "cores": cores}
    print(f"native backend: {backend}; cores: {cores}")
    if args.what in ("throughput", "all"):
        rows = throughput(args.slices or 200, counts)
        report["throughput"] = rows
        print(f"{'workers':>8} {'jobs':>6} {'seconds':>8} {'jobs/s':>8} {'overhead ms/job':>16}")
        for r in rows:
            print(f"{r['workers']!s:>8} {r['jobs']:>6} {r['seconds']:>8.2f} {r['jobs_per_s']:>8.1f} "
                  f"{r['overhead_ms_per_job']:>16.2f}")
    if args.what in ("targets", "all"):
        res = targets(args.users, args.slices or 100, args.engine, cores, args.inference, args.decision)
        report["targets"] = res
        print(json.dumps(res, indent=1))
        print(f"{res['metrics']} metrics x {res['slices']} slices ({res['jobs']} jobs): {res['analysis_s']:.1f}s "
              f"(target < 60 s); first results {res['first_results_s']:.2f}s (< 5 s); "
              f"live slice {res['live_slice_s']:.2f}s (< 3 s)")
        if args.inference == "both":
            print(f"inference: fixed {res['analysis_fixed_s']:.2f}s, with inference {res['analysis_s']:.2f}s "
                  f"(x{res['inference_ratio']:.3f}); the pass alone {res['inference_pass_s']:.3f}s on "
                  f"{res['records']:.0f} records = {res['inference_pass_share']:.1%} of the analysis (target < 5%)")
        if args.decision:
            print(f"decision layer: {res['records']} records; BH over the analysis {res['bh_analysis_s']*1e3:.1f} ms, "
                  f"slowest correction {res['worst_correction']} {res['worst_correction_s']*1e3:.1f} ms, ship "
                  f"decision {res['decision_s']*1e3:.1f} ms: adds {res['decision_layer_added_s']:.3f}s = "
                  f"{res['decision_layer_share']:.2%} of the analysis (target < 5%)")
            if "stage1_capped_s" in res:
                print(f"stage 1: uncapped {res['stage1_uncapped_s']:.2f}s, three metrics capped "
                      f"{res['stage1_capped_s']:.2f}s (x{res['stage1_capped_s'] / res['stage1_uncapped_s']:.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
