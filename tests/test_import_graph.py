"""Cold start: importing a function handler must not pull in modules that function never uses.

Every new Lambda execution environment pays its imports before any work, so
heavy modules load only on the paths that use them: scipy.stats where a test
statistic is computed, pandas through pyarrow.dataset only where a table is
scanned, plotly and jinja2 only where a page is rendered, pyspark only for
Spark. Each handler is imported in a fresh interpreter, as Lambda does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEVER_IN_JOBS = ("pandas", "scipy.stats", "plotly", "fastapi", "starlette", "pyspark", "nbformat", "jinja2", "rich")
NEVER_IN_API = ("pandas", "scipy.stats", "pyspark", "nbformat", "nbclient")

CASES = {"fit": NEVER_IN_JOBS, "slice": NEVER_IN_JOBS, "coordinator": NEVER_IN_JOBS, "api": NEVER_IN_API}


@pytest.mark.parametrize("handler", sorted(CASES))
def test_handler_import_loads_only_what_it_uses(handler: str) -> None:
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        f"import functions.{handler}.handler; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, check=True,
                         timeout=120)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    unwanted = sorted(m for m in CASES[handler] if m in loaded)
    assert not unwanted, f"importing functions/{handler}/handler.py loads {unwanted}; import them where they are used"
