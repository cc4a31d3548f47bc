"""Cold start: what a new function execution environment pays before and during its first job.

Each figure is a fresh interpreter, as a new Lambda execution environment is, timed from the parent (process
start to exit), median of ``--runs``:

* ``python -c "import numpy"``: the yardstick; every other figure is also given as a ratio to it, since absolute
  times move with the machine's load;
* ``import functions.<name>.handler`` for each of the four functions (what Lambda's init phase runs);
* ``first fit``: import the fit function's handler, then hand it one fit job (ttest of one metric) whose slice is
  already compressed and stored, and return its reply: the handler's own event parsing, the claim, reading and
  decoding the compressed slice, the fit, storing the records and completing the job. The state store is SQLite
  and the object store a local folder, so the figure is the project's code, not an AWS SDK's; the report that
  goes to the coordinator is kept in memory (on AWS it is one Lambda or SQS request). With the image's
  dependency set (``infra/aws/requirements.txt``), which has no pandas: pyarrow imports pandas, when it is
  installed, on its first conversion of Python values (about 0.15 s), and this environment has it for the tests
  and benchmarks, so the child hides it. ``first fit (pandas installed)`` is the same run without hiding it.
* ``first API request``: import the API function's handler, then answer one API Gateway event, ``GET
  /analyses/{id}`` of that analysis: building the app (route registration) and its backend, authentication,
  reading the analysis, its jobs and records, and the JSON reply. The dispatcher is kept in memory, as above.

Bytecode: the image's ``pip install`` compiles the installed packages and the Dockerfile compiles the handlers,
and Lambda's file system is read-only, so a function never compiles a source file. This script compiles
``shared/xpcompute`` and ``functions/`` first (``compileall``, into their ``__pycache__``), so the figures are not
inflated by compiling the project's sources in every fresh interpreter, which a checkout run with
``PYTHONDONTWRITEBYTECODE=1`` would otherwise do (about 55 ms of a handler import on this machine).

    .venv/bin/python benchmarks/bench_coldstart.py --runs 7

CPU seconds (user + system) are reported beside wall time: on a loaded machine they move less. They can exceed
wall time where threads run at once (numpy's BLAS pool starts at import), so the wall ratios are the ones to quote
on a quiet machine.

Targets (issue 14): a handler import under 0.35 s, a first fit under 0.6 s end to end. The first API request
has no target; it is shown because the API handler's import leaves numpy and pyarrow to the requests that
compute.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "shared"))

HANDLERS = ("fit", "slice", "coordinator", "api")
TARGETS = {"handler": 0.35, "first fit": 0.6}

# The child that plays a new execution environment's first fit: import the handler (as Lambda's init does),
# give it a runtime whose report to the coordinator stays in memory, and invoke it with the job.
FIRST_FIT = """
import sys
sys.path.insert(0, sys.argv[1])
if sys.argv[4] == "image":  # the image's dependency set has no pandas: hide this environment's, as if absent
    class NoPandas:
        def find_spec(self, name, path=None, target=None):
            if name == "pandas" or name.startswith("pandas."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, NoPandas())
import functions.fit.handler as h
from xpcompute.config import Settings
from xpcompute.coordinator.runtime import FunctionRuntime

class Kept:
    def __init__(self): self.messages = []
    def submit(self, messages): self.messages.extend(messages)
    def close(self): pass

h.runtime = lambda: FunctionRuntime(Settings.from_env(), dispatcher=Kept())
reply = h.handler({"type": "run_job", "kind": "fit", "job_id": sys.argv[2], "analysis_id": sys.argv[3]}, None)
assert reply.get("status") == "succeeded", reply
"""

# The child that plays the API function's first request in a new execution environment.
FIRST_API = """
import json, sys
sys.path.insert(0, sys.argv[1])
import functions.api.handler as h
import xpcompute.coordinator.dispatch as dispatch

class Kept:
    def submit(self, messages): pass
    def close(self): pass

dispatch.open_dispatcher = lambda settings: Kept()
event = json.loads(open(sys.argv[2]).read())
path = "/analyses/" + sys.argv[3]
event["rawPath"] = event["requestContext"]["http"]["path"] = path
reply = h.handler(event, None)
assert reply["statusCode"] == 200, reply
assert json.loads(reply["body"])["analysis_id"] == sys.argv[3], reply
"""
GET_EVENT = ROOT / "tests" / "events" / "api_get_health_http_api.json"


def compile_sources() -> None:
    """Bytecode for the project's sources, as the image has it (see the module docstring)."""
    for folder in (ROOT / "shared" / "xpcompute", ROOT / "functions"):
        if not compileall.compile_dir(str(folder), quiet=1):
            raise RuntimeError(f"compileall failed in {folder}")


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'shared'}"}
    env.update(extra or {})
    return env


def fresh(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds from starting a fresh interpreter to its exit, and the CPU seconds it used (user + system:
    steadier than wall time on a shared machine, and what Lambda bills)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise RuntimeError(f"{args[:2]} failed: {done.stderr[-2000:]}")
    return seconds, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def prepare(home: Path, users: int) -> tuple[dict[str, str], str, str]:
    """One analysis (every catalog metric, all users as the one slice) whose slice is compressed; returns the
    function's environment, its first ttest fit job and the analysis."""
    from xpcompute import synthetic
    from xpcompute.config import Settings
    from xpcompute.coordinator.analysis_spec import AnalysisSpec
    from xpcompute.coordinator.jobs import JobKind
    from xpcompute.coordinator.runtime import build_coordinator
    from xpcompute.coordinator.worker import run_job
    from xpcompute.metrics import metric_names
    from xpcompute.pipeline.slices import SliceFilter
    from xpcompute.pipeline.stage1 import run_stage1

    config = synthetic.SyntheticConfig(users=users, seed=7)
    uris = synthetic.write_parquet(synthetic.generate(config), str(home / "raw"))
    experiment = synthetic.experiment_spec(uris, config, experiment_id="cold", daily=False)
    env = {"XPCOMPUTE_MODE": "serverless", "XPCOMPUTE_HOME": str(home / "svc"), "XPCOMPUTE_STATE": "sqlite",
           "XPCOMPUTE_DISPATCH": "lambda", "XPCOMPUTE_SLICE_ENGINE": "arrow", "XPCOMPUTE_AUTH": "off"}
    settings = Settings.from_env(env)
    coord = build_coordinator(settings, dispatcher=None)
    run_stage1(experiment, coord.store, daily=False)
    coord.register_experiment(experiment)
    metrics = tuple(m for m in metric_names() if m in experiment.metrics)
    aid = coord.submit("cold", AnalysisSpec(metrics=metrics, slices=(SliceFilter(),))).analysis_id
    jobs = coord.state.list_jobs(aid)
    (slice_job,) = [j for j in jobs if j.kind == JobKind.SLICE]
    assert run_job(coord, settings, slice_job.job_id, "bench").status == "succeeded"
    coord.on_job_finished(slice_job.job_id)
    fit = next(j for j in coord.state.list_jobs(aid) if j.kind == JobKind.FIT and j.model == "ttest")
    coord.state.close()
    return env, fit.job_id, aid


def reset(env: dict[str, str], job_id: str) -> None:
    """Put the fit job back as it was before its first run (PENDING, its result object gone)."""
    from xpcompute.config import Settings
    from xpcompute.coordinator.jobs import JobState
    from xpcompute.coordinator.runtime import build_coordinator

    coord = build_coordinator(Settings.from_env(env), dispatcher=None)
    job = coord.state.get_job(job_id)
    if job.result_key is not None:
        coord.store.delete(job.result_key)
    coord.state.update_job(replace(job, state=JobState.PENDING, attempts=0, output={}, worker=None, due_at=time.time(),
                                   lease_expires_at=None, started_at=None, finished_at=None), job.state, job.version)
    coord.state.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    times: dict[str, list[tuple[float, float]]] = {"import numpy": []}
    times.update({f"import functions.{h}.handler": [] for h in HANDLERS})
    times["first fit"] = []
    times["first fit (pandas installed)"] = []
    times["first API request"] = []
    compile_sources()
    with tempfile.TemporaryDirectory() as tmp:
        env, job_id, aid = prepare(Path(tmp), args.users)
        fn_env = _env(env)
        for _ in range(args.runs):  # interleaved, so that a burst of load on the machine hits every figure alike
            times["import numpy"].append(fresh(["-c", "import numpy"], fn_env))
            for h in HANDLERS:
                times[f"import functions.{h}.handler"].append(
                    fresh(["-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); import functions.{h}.handler"],
                          fn_env))
            reset(env, job_id)
            times["first fit"].append(fresh(["-c", FIRST_FIT, str(ROOT), job_id, aid, "image"], fn_env))
            reset(env, job_id)
            times["first fit (pandas installed)"].append(fresh(["-c", FIRST_FIT, str(ROOT), job_id, aid, "dev"], fn_env))
            times["first API request"].append(fresh(["-c", FIRST_API, str(ROOT), str(GET_EVENT), aid], fn_env))
    med = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    base, cpu_base = med["import numpy"], cpu["import numpy"]
    print(f"\nCold start, fresh interpreters, median of {args.runs} ({os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f}):\n")
    print("| what | wall s | x import numpy | CPU s | x import numpy (CPU) | target (wall) |")
    print("|---|---|---|---|---|---|")
    for k, v in med.items():
        target = TARGETS["first fit"] if k.startswith("first fit") else TARGETS["handler"] if "handler" in k else None
        verdict = "" if target is None else f"< {target} s: {'met' if v < target else 'not met'}"
        print(f"| `{k}` | {v:.3f} | {v / base:.2f} | {cpu[k]:.3f} | {cpu[k] / cpu_base:.2f} | {verdict} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"runs_wall_cpu_s": times, "median_s": med, "median_cpu_s": cpu,
                                               "ratio_to_numpy": {k: v / base for k, v in med.items()},
                                               "cpu_ratio_to_numpy": {k: v / cpu_base for k, v in cpu.items()}},
                                              indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
