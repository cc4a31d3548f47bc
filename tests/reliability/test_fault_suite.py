"""Issue 13: the fault-injection suite (benchmarks/fault_suite.py) in its small form: one analysis per fault
(worker SIGKILL, store outage, truncated slice, damaged result JSON, job past its time limit, coordinator
restart), each compared with a fault-free run of the same analysis. About 15 s."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import fault_suite


def test_every_fault_is_recovered_without_losing_or_duplicating_records(tmp_path: Path) -> None:
    report = fault_suite.run_suite(analyses=1, root=tmp_path)
    s = report["summary"]
    detail = "\n".join(str(r) for r in report["runs"])
    assert s["faults_injected"] == len(fault_suite.FAULTS) == s["analyses"], detail
    assert s["analyses_completed"] == s["analyses"], detail
    assert s["records_lost"] == 0 and s["records_duplicated"] == 0, detail
    assert s["records_mismatched"] == 0, detail
    assert s["records_expected_per_analysis"] == len(fault_suite.SLICES) * len(fault_suite.SPEC.metrics)
    assert s["longest_recovery_s"] < 60, detail
