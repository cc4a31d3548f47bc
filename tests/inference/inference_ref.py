"""Run reference implementations that cannot share the project venv (they pin numpy<2) in `.venv-ref`.

`scripts/refenv` builds `.venv-ref` (gbstats, gsdesign). Each reference script here reads JSON on stdin and
writes JSON on stdout, so the comparison stays in the project's tests. If `.venv-ref` is missing the helper
builds it once; only when that fails (offline, no index) do the reference tests skip, with the reason.
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
REF_PYTHON = ROOT / ".venv-ref" / "bin" / "python"
HERE = Path(__file__).resolve().parent


def _importable() -> bool:
    if not REF_PYTHON.exists():
        return False
    probe = subprocess.run(
        [str(REF_PYTHON), "-c", "import gbstats, gsdesign"], capture_output=True, timeout=120
    )
    return probe.returncode == 0


@functools.lru_cache(maxsize=1)
def _ensure_refenv() -> str | None:
    """None when .venv-ref is usable, else why not."""
    if _importable():
        return None
    try:
        build = subprocess.run(
            [str(ROOT / "scripts" / "refenv")], capture_output=True, text=True, timeout=1200, cwd=ROOT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"scripts/refenv could not run: {exc}"
    if build.returncode != 0 or not _importable():
        tail = (build.stdout + build.stderr).strip().splitlines()[-3:]
        return f"scripts/refenv failed (rc={build.returncode}): {' | '.join(tail)}"
    return None


def run_reference(script: str, payload: Any) -> Any:
    """Run tests/inference/<script> in .venv-ref with `payload` as JSON on stdin; return its JSON output."""
    why = _ensure_refenv()
    if why is not None:
        pytest.skip(
            f"reference environment .venv-ref unavailable, so no gbstats/gsdesign to compare with: {why}"
        )
    proc = subprocess.run(
        [str(REF_PYTHON), str(HERE / script)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stderr}"
    return json.loads(proc.stdout)
