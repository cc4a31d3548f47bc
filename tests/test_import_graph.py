"""Cold start: importing a function handler must not pull in modules that function never uses.

Every new Lambda execution environment pays its imports before any work, so
heavy modules load only on the paths that use them: scipy nowhere in a fit
(``models/dist.py`` computes p-values), pandas through pyarrow.dataset only
where a table is scanned, sqlglot where SQL is composed or a declared
expression parsed, yaml where a spec file is read, plotly, jinja2 and rich only
where a page or report is rendered, pyspark only for Spark, boto3 only when a
client is built. Each handler is imported in a fresh interpreter, as Lambda
does; and a whole first fit runs through the fit handler in one, to hold the
fit path itself to the same rule (``benchmarks/bench_coldstart.py`` times it).

The job functions load only their own work: a fit neither plans nor slices nor
finalizes (``coordinator.ledger`` holds what a job needs of the coordinator),
the coordinator function loads numpy and pyarrow only when it finalizes, and
the API only in the requests that compute. The other way round, each job
function loads what its work runs in its init phase (``worker.preload``), so
that its first job does not pay for it instead.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEVER_IN_JOBS = ("pandas", "scipy", "plotly", "fastapi", "starlette", "pyspark", "nbformat", "jinja2", "rich",
                 "sqlglot", "yaml", "duckdb", "boto3", "pyarrow.dataset", "xpcompute.segments")
NEVER_IN_API = ("pandas", "scipy", "pyspark", "nbformat", "nbclient", "plotly", "rich", "duckdb", "pyarrow.dataset",
                "jinja2", "sqlglot", "numpy", "pyarrow", "xpcompute.segments.discovery")
#: the coordinator's planning, slicing and finalizing, which no fit runs
COORDINATION = ("xpcompute.coordinator.service", "xpcompute.coordinator.planner", "xpcompute.coordinator.slicing",
                "xpcompute.coordinator.table_jobs", "xpcompute.coordinator.scorecard", "xpcompute.experiment")
#: what a fit (read a compressed slice, fit a ttest, store its records) must never load, handler import included;
#: pandas is not listed: pyarrow imports it on its first conversion of Python values where it is installed (the
#: Lambda image has none)
NEVER_IN_A_FIT = ("scipy", "sqlglot", "yaml", "duckdb", "plotly", "jinja2", "rich", "fastapi", "pyspark",
                  "pyarrow.dataset", "xpcompute.segments", "xpcompute.sql", *COORDINATION)

CASES = {"fit": NEVER_IN_JOBS + COORDINATION, "slice": NEVER_IN_JOBS,
         "coordinator": (*NEVER_IN_JOBS, "numpy", "pyarrow", "xpcompute.coordinator.table_jobs"), "api": NEVER_IN_API}
#: what each job function's handler must load at import: the work it runs (``worker.FUNCTION_MODULES``)
PRELOADED = {"fit": ("xpcompute.models", "numpy", "pyarrow"), "slice": ("xpcompute.coordinator.table_jobs",),
             "coordinator": ("xpcompute.coordinator.service",), "api": ("xpcompute.api.app",)}


def after_import(handler: str, expression: str) -> Any:
    """``expression`` (JSON-able, with ``gc`` and ``sys`` at hand) in a fresh interpreter that imported the handler."""
    code = (
        "import gc, json, sys; sys.path.insert(0, sys.argv[1]); "
        f"import functions.{handler}.handler; "
        f"print(json.dumps({expression}))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, check=True,
                         timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("handler", sorted(CASES))
def test_handler_import_loads_only_what_it_uses(handler: str) -> None:
    loaded = set(after_import(handler, "sorted(sys.modules)"))
    unwanted = sorted(m for m in CASES[handler] if m in loaded)
    assert not unwanted, f"importing functions/{handler}/handler.py loads {unwanted}; import them where they are used"
    missing = sorted(m for m in PRELOADED[handler] if m not in loaded)
    assert not missing, f"functions/{handler}/handler.py leaves {missing} to its first call: load them at import"


@pytest.mark.parametrize("handler", sorted(CASES))
def test_the_init_phase_leaves_the_collector_on_and_its_modules_frozen(handler: str) -> None:
    """``xpcompute.initphase``: no collections during the imports, then everything they made is frozen."""
    enabled, frozen, tracked = after_import(handler, "[gc.isenabled(), gc.get_freeze_count(), len(gc.get_objects())]")
    assert enabled and frozen > 20_000 and tracked < frozen / 100, (enabled, frozen, tracked)


FIRST_FIT = """
import json, sys
sys.path.insert(0, sys.argv[1])
import functions.fit.handler as h
from xpcompute.config import Settings
from xpcompute.coordinator.runtime import FunctionRuntime

class Kept:
    def submit(self, messages): pass
    def close(self): pass

h.runtime = lambda: FunctionRuntime(Settings.from_env(), dispatcher=Kept())
reply = h.handler({"type": "run_job", "kind": "fit", "job_id": sys.argv[2], "analysis_id": sys.argv[3]}, None)
print(json.dumps({"reply": reply, "modules": sorted(sys.modules)}))
"""


def test_a_first_fit_loads_only_what_a_fit_uses(tmp_path: Path) -> None:
    """A fit job through the fit handler in a fresh interpreter, on a compressed slice already stored."""
    import os

    sys.path.insert(0, str(ROOT / "tests" / "coordinator"))
    from service_helpers import analysis_table, publish

    from xpcompute.config import Settings
    from xpcompute.coordinator.analysis_spec import AnalysisSpec
    from xpcompute.coordinator.jobs import JobKind
    from xpcompute.coordinator.runtime import build_coordinator
    from xpcompute.coordinator.worker import run_job
    from xpcompute.pipeline.slices import SliceFilter

    env = {"XPCOMPUTE_MODE": "serverless", "XPCOMPUTE_HOME": str(tmp_path), "XPCOMPUTE_DISPATCH": "lambda",
           "XPCOMPUTE_SLICE_ENGINE": "arrow"}
    settings = Settings.from_env(env)
    coord = build_coordinator(settings, dispatcher=None)
    publish(coord.store, "exp", analysis_table(2000))
    aid = coord.submit("exp", AnalysisSpec(metrics=("hours",), models=("ttest",), slices=(SliceFilter(),))).analysis_id
    (slice_job,) = [j for j in coord.state.list_jobs(aid) if j.kind == JobKind.SLICE]
    assert run_job(coord, settings, slice_job.job_id, "test").status == "succeeded"
    coord.on_job_finished(slice_job.job_id)
    (fit,) = [j for j in coord.state.list_jobs(aid) if j.kind == JobKind.FIT]
    coord.state.close()

    out = subprocess.run([sys.executable, "-c", FIRST_FIT, str(ROOT), fit.job_id, aid], capture_output=True,
                         text=True, timeout=120, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-2000:]
    ran = json.loads(out.stdout.strip().splitlines()[-1])
    assert ran["reply"]["status"] == "succeeded", ran["reply"]
    loaded = set(ran["modules"])
    unwanted = sorted(m for m in NEVER_IN_A_FIT if m in loaded)
    assert not unwanted, f"a first fit through functions/fit/handler.py loads {unwanted}; import them where used"
