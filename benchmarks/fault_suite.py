"""Fault-injection suite (issue 13): analyses on the embedded default (local pool or inline dispatch, SQLite,
local object store, a small synthetic table) while one fault is injected per analysis; each analysis's final
records are compared with a fault-free reference run of the same analysis.

Faults: a pool worker SIGKILLed mid-job, a store outage of a few seconds (writes fail with ``StorageError``),
a truncated compressed slice, a damaged stored result JSON (recovered by retrying the analysis, as its error
message says: just the damaged fit runs again), a job past ``XPCOMPUTE_JOB_TIMEOUT_S`` (a hanging job body in a ``fork`` pool), and a
coordinator restart (stop the runtime mid-analysis, start a new one on the same home: ``resume``).

Figures: faults injected, analyses completed, records lost (expected but missing), records duplicated (same
(slice, metric, model, cell, segment, time, quantile) twice), records whose estimate differs from the reference,
and the recovery time (from the fault to the analysis finishing).

    .venv/bin/python benchmarks/fault_suite.py [--analyses N] [--json out.json] [--with-tests [PATH ...]]

``--analyses N``: analyses per fault kind (default 1). ``--with-tests``: first run the existing fault tests
(tests/reliability and tests/coordinator/test_local_pool.py, or the paths given) with pytest, and report their
counts too. Exit status 0 only when nothing was lost or duplicated, every analysis completed and the tests passed. The pytest version is tests/reliability/test_fault_suite.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "shared", ROOT / "tests" / "coordinator"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from service_helpers import analysis_table, publish  # noqa: E402

from xpcompute.config import Settings  # noqa: E402
from xpcompute.coordinator import worker as worker_module  # noqa: E402
from xpcompute.coordinator.analysis_spec import AnalysisSpec  # noqa: E402
from xpcompute.coordinator.dispatch.local_pool import LocalPoolDispatcher  # noqa: E402
from xpcompute.coordinator.jobs import JobKind, JobState  # noqa: E402
from xpcompute.coordinator.runtime import EmbeddedRuntime, build_coordinator  # noqa: E402
from xpcompute.coordinator.service import Coordinator  # noqa: E402
from xpcompute.coordinator.worker import Outcome, run_job  # noqa: E402
from xpcompute.errors import StorageError  # noqa: E402
from xpcompute.pipeline.slices import SliceFilter  # noqa: E402
from xpcompute.records import ResultRecord  # noqa: E402
from xpcompute.storage.objects import LocalObjectStore  # noqa: E402

ROWS = 3000
SLICES = (SliceFilter(), SliceFilter.where(country="US"), SliceFilter.where(country="CA"),
          SliceFilter.where(device="tv"))
SPEC = AnalysisSpec(metrics=("hours", "is_streamer"), slices=SLICES)
WAIT_S = 120.0

Key = tuple[Any, ...]


def record_key(r: ResultRecord) -> Key:
    return (r.slice, r.metric, r.model, r.cell, r.segment, r.time, r.quantile)


@dataclass
class Run:
    fault: str
    injected: int = 0
    completed: bool = False
    state: str = ""
    lost: int = 0
    duplicated: int = 0
    mismatched: int = 0
    recovery_s: float = math.nan
    note: str = ""
    records: list[ResultRecord] = field(default_factory=list, repr=False)


def _settings(home: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = {"home": home, "dispatch": "inline", "slice_engine": "arrow", "backoff_s": 0.0,
                            "tick_s": 0.1, "workers": 2, "worker_idle_s": 5.0, "shutdown_grace_s": 0.5}
    base.update(kw)
    return Settings(**base)


def _home(root: Path, name: str) -> Path:
    home = root / name
    home.mkdir(parents=True)
    publish(LocalObjectStore(_settings(home).objects_root), "exp", analysis_table(ROWS))
    return home


def _wait_done(coord: Coordinator, aid: str, timeout: float = WAIT_S) -> str:
    deadline = time.monotonic() + timeout
    while coord.state.get_analysis(aid).state.value == "RUNNING":
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return str(coord.state.get_analysis(aid).state.value)


def _finish(run: Run, coord: Coordinator, aid: str, t_fault: float) -> Run:
    run.state = _wait_done(coord, aid)
    run.recovery_s = time.monotonic() - t_fault
    run.completed = run.state == "SUCCEEDED"
    run.records = list(coord.results(aid).records)
    return run


# ---- the faults --------------------------------------------------------------------------------------------


def reference(root: Path) -> list[ResultRecord]:
    """The fault-free run of the same analysis (inline dispatch)."""
    rt = EmbeddedRuntime(_settings(_home(root, "reference")))
    try:
        aid = rt.coordinator.submit("exp", SPEC).analysis_id
        assert rt.coordinator.state.get_analysis(aid).state.value == "SUCCEEDED"
        return list(rt.coordinator.results(aid).records)
    finally:
        rt.stop()


def worker_killed(root: Path) -> Run:
    """SIGKILL of a local-pool worker while it runs a job of the analysis."""
    run = Run("worker SIGKILLed mid-job")
    rt = EmbeddedRuntime(_settings(_home(root, "kill"), dispatch="local")).start()
    try:
        coord, pool = rt.coordinator, rt.dispatcher
        assert isinstance(pool, LocalPoolDispatcher)
        aid = coord.submit("exp", SPEC).analysis_id
        deadline = time.monotonic() + 30
        while not run.injected and time.monotonic() < deadline:
            for job in (j for j in coord.state.list_jobs(aid) if j.state == JobState.RUNNING):
                pid = pool.worker_pids().get(job.worker or "")
                if pid is None:
                    continue
                os.kill(pid, signal.SIGSTOP)  # frozen, then checked to be still inside the job
                if coord.state.get_job(job.job_id).state == JobState.RUNNING:
                    os.kill(pid, signal.SIGKILL)
                    run.injected = 1
                    break
                os.kill(pid, signal.SIGCONT)
        t_fault = time.monotonic()
        if not run.injected:
            run.note = "no job was caught running"
        return _finish(run, coord, aid, t_fault)
    finally:
        rt.stop()


class _FlakyStore(LocalObjectStore):
    """Every job write fails with ``StorageError`` until ``until`` (a monotonic time); counts the failed writes.
    (The submission's own request write is spared: a client would see that one fail and submit again.)"""

    until = 0.0
    first = 0.0
    failed = 0

    def _down(self, key: str) -> None:
        now = time.monotonic()
        if now < _FlakyStore.until and not key.endswith("request.json"):
            _FlakyStore.failed += 1
            _FlakyStore.first = _FlakyStore.first or now
            raise StorageError(f"writing {key} failed: connection refused (simulated outage)")

    def put_bytes(self, key: str, data: bytes) -> None:
        self._down(key)
        super().put_bytes(key, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        self._down(key)
        return super().put_if_absent(key, data)


def store_outage(root: Path, seconds: float = 2.0) -> Run:
    """Every object-store write fails for ``seconds`` from the submission (the jobs' backoff doubles from 0.2 s)."""
    run = Run(f"store outage {seconds:g} s")
    rt = EmbeddedRuntime(_settings(_home(root, "outage"), backoff_s=0.2))
    coord = rt.coordinator
    coord.store = _FlakyStore(rt.settings.objects_root)
    _FlakyStore.until, _FlakyStore.first, _FlakyStore.failed = time.monotonic() + seconds, 0.0, 0
    rt.start()
    try:
        t0 = time.monotonic()
        aid = coord.submit("exp", SPEC).analysis_id  # inline: the first attempts run (and fail) within the call
        _finish(run, coord, aid, _FlakyStore.first or t0)
        run.injected = 1 if _FlakyStore.failed else 0
        run.note = f"{_FlakyStore.failed} writes failed"
        return run
    finally:
        rt.stop()


def _drive(coord: Coordinator, settings: Settings, aid: str,
           after: Callable[[str], None] = lambda job_id: None) -> None:
    """Run an analysis's jobs by hand, one at a time, calling ``after(job_id)`` after each that finished."""
    for _ in range(1000):
        if coord.state.get_analysis(aid).state.value != "RUNNING":
            return
        ready = [j for j in coord.state.list_jobs(aid) if j.state == JobState.PENDING and j.ready_at is not None]
        if not ready:
            coord.maybe_finalize(aid)
            continue
        for job in sorted(ready, key=lambda j: (j.kind != JobKind.SLICE, j.job_id)):
            outcome = run_job(coord, settings, job.job_id, "w")
            if outcome.status != "skipped":
                coord.on_job_finished(job.job_id)
                after(job.job_id)


def damaged_slice(root: Path) -> Run:
    """A compressed slice truncated after its slice job wrote it, before its fits read it."""
    run = Run("truncated compressed slice")
    settings = _settings(_home(root, "slice"))
    coord = build_coordinator(settings, dispatcher=None)
    aid = coord.submit("exp", SPEC).analysis_id
    t_fault = [0.0]

    def damage(job_id: str) -> None:
        job = coord.state.get_job(job_id)
        if run.injected or job.kind != JobKind.SLICE or job.state != JobState.SUCCEEDED or job.result_key is None:
            return
        worker_module._DECODED.clear()
        raw = coord.store.get_bytes(job.result_key)
        coord.store.put_bytes(job.result_key, raw[: len(raw) // 2])
        run.injected, t_fault[0] = 1, time.monotonic()

    try:
        _drive(coord, settings, aid, damage)
        healed = [j for j in coord.state.list_jobs(aid) if j.kind == JobKind.FIT and (j.output or {}).get("healed")]
        run.note = f"{len(healed)} fit(s) recomputed the slice"
        return _finish(run, coord, aid, t_fault[0] or time.monotonic())
    finally:
        coord.state.close()


def damaged_result(root: Path) -> Run:
    """A stored fit result JSON truncated after the analysis finished; recovery = retrying the analysis (its
    error message's advice: ``POST /analyses/{id}/retry``), which recomputes just that fit and replaces the
    damaged object; the records compared are the same analysis's."""
    run = Run("damaged result JSON")
    rt = EmbeddedRuntime(_settings(_home(root, "result")))
    coord = rt.coordinator
    try:
        aid = coord.submit("exp", SPEC).analysis_id
        fit = next(j for j in coord.state.list_jobs(aid) if j.kind == JobKind.FIT and j.result_key)
        assert fit.result_key is not None
        raw = coord.store.get_bytes(fit.result_key)
        coord.store.put_bytes(fit.result_key, raw[: len(raw) // 2])
        run.injected, t_fault = 1, time.monotonic()
        in_place = len(coord.status(aid).records)  # the finalized scorecard is stored whole; status re-reads
        repaired = coord.retry_failed(aid)
        _finish(run, coord, aid, t_fault)
        run.note = (f"in place, status answers {in_place} records without it; retry recomputed "
                    f"{len(repaired)} fit(s) in the same analysis")
        return run
    finally:
        rt.stop()


def job_timeout(root: Path, limit_s: float = 1.0) -> Run:
    """The first attempt of one slice job hangs past ``XPCOMPUTE_JOB_TIMEOUT_S`` (a ``fork`` pool, so that the
    patched job body is what the worker runs); the pool kills it and the retry succeeds."""
    run = Run(f"job past its time limit ({limit_s:g} s)")
    home = _home(root, "timeout")
    marker = home / "hung"
    rt = EmbeddedRuntime(_settings(home, dispatch="local", job_timeout_s=limit_s))
    rt.dispatcher.close()
    rt.dispatcher = LocalPoolDispatcher(rt.settings.model_dump(mode="json"), rt._on_report, rt._on_died, 2, 5.0,
                                        job_timeout_s=limit_s, grace_s=0.5, start_method="fork")
    rt.coordinator.dispatcher = rt.dispatcher
    real = worker_module.run_job

    def hang_once(coordinator: Coordinator, settings: Settings, job_id: str, worker: str) -> Outcome:
        if ".slice." in job_id:
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                coordinator.claim(job_id, worker)
                time.sleep(300)
        return real(coordinator, settings, job_id, worker)

    worker_module.run_job = hang_once
    try:
        rt.start()
        coord = rt.coordinator
        aid = coord.submit("exp", SPEC).analysis_id
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        t_fault = marker.stat().st_mtime - time.time() + time.monotonic() if marker.exists() else time.monotonic()
        run.injected = int(marker.exists())
        _finish(run, coord, aid, t_fault)
        timed_out = [j for j in coord.state.list_jobs(aid) if any("time limit" in e for e in j.errors)]
        run.note = f"{len(timed_out)} job(s) killed at the limit, then retried"
        if run.injected and not timed_out:
            run.note = "the hanging job was not recorded as timed out"
        return run
    finally:
        worker_module.run_job = real
        rt.stop()


def coordinator_restart(root: Path) -> Run:
    """The runtime stopped mid-analysis (its workers terminated after the grace), a new one started on the same
    home: ``resume`` re-dispatches what was left."""
    run = Run("coordinator restart")
    settings = _settings(_home(root, "restart"), dispatch="local")
    rt = EmbeddedRuntime(settings).start()
    coord = rt.coordinator
    aid = coord.submit("exp", SPEC).analysis_id
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        jobs = coord.state.list_jobs(aid)
        if any(j.kind == JobKind.FIT and j.state == JobState.SUCCEEDED for j in jobs) or \
                coord.state.get_analysis(aid).state.value != "RUNNING":
            break
        time.sleep(0.01)
    running = coord.state.get_analysis(aid).state.value == "RUNNING"
    t_fault = time.monotonic()
    rt.stop()
    run.injected = int(running)
    run.note = "stopped mid-analysis" if running else "the analysis finished before the stop"
    again = EmbeddedRuntime(settings).start()
    try:
        return _finish(run, again.coordinator, aid, t_fault)
    finally:
        again.stop()


FAULTS: dict[str, Callable[[Path], Run]] = {
    "worker_kill": worker_killed, "store_outage": store_outage, "damaged_slice": damaged_slice,
    "damaged_result": damaged_result, "job_timeout": job_timeout, "restart": coordinator_restart,
}


# ---- comparison and report -----------------------------------------------------------------------------------


def compare(run: Run, expected: list[ResultRecord]) -> Run:
    want = {record_key(r): r for r in expected}
    got = Counter(record_key(r) for r in run.records)
    run.lost = sum(1 for k in want if k not in got)
    run.duplicated = sum(n - 1 for n in got.values() if n > 1)
    seen = {record_key(r): r for r in run.records}
    run.mismatched = sum(1 for k, r in want.items() if k in seen and not _same(seen[k], r))
    return run


def _same(a: ResultRecord, b: ResultRecord) -> bool:
    return all(x == y or (x is not None and y is not None and math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12))
               for x, y in ((a.effect, b.effect), (a.se, b.se)))


@contextmanager
def _quiet() -> Iterator[None]:
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def run_suite(analyses: int = 1, faults: tuple[str, ...] = tuple(FAULTS), root: Path | None = None) -> dict[str, Any]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="xp-faults-") as tmp, _quiet():
        base = Path(root or tmp)
        expected = reference(base)
        runs: list[Run] = []
        for n in range(analyses):
            for name in faults:
                runs.append(compare(FAULTS[name](base / f"{name}-{n}"), expected))
    summary = {
        "faults_injected": sum(r.injected for r in runs),
        "analyses": len(runs),
        "analyses_completed": sum(r.completed for r in runs),
        "records_expected_per_analysis": len(expected),
        "records_lost": sum(r.lost for r in runs),
        "records_duplicated": sum(r.duplicated for r in runs),
        "records_mismatched": sum(r.mismatched for r in runs),
        "longest_recovery_s": round(max((r.recovery_s for r in runs), default=0.0), 3),
        "wall_s": round(time.monotonic() - started, 1),
    }
    rows = [{k: v for k, v in asdict(r).items() if k != "records"} for r in runs]
    for row in rows:
        row["recovery_s"] = round(row["recovery_s"], 3)
    return {"summary": summary, "runs": rows}


def print_report(report: dict[str, Any]) -> None:
    print(f"{'fault':34} {'inj':>3} {'state':>9} {'lost':>4} {'dup':>4} {'diff':>4} {'recovery s':>10}  note")
    for r in report["runs"]:
        print(f"{r['fault']:34} {r['injected']:>3} {r['state']:>9} {r['lost']:>4} {r['duplicated']:>4} "
              f"{r['mismatched']:>4} {r['recovery_s']:>10.2f}  {r['note']}")
    s = report["summary"]
    print(f"\nfaults injected {s['faults_injected']}, analyses completed {s['analyses_completed']}/{s['analyses']}, "
          f"records lost {s['records_lost']}, duplicated {s['records_duplicated']}, "
          f"differing {s['records_mismatched']} (of {s['records_expected_per_analysis']} per analysis), "
          f"longest recovery {s['longest_recovery_s']:.2f} s, wall {s['wall_s']} s")


#: the fault tests that already exist (issue 13 items 1-9); ``--with-tests`` runs them before the suite
FAULT_TESTS = ("tests/reliability", "tests/coordinator/test_local_pool.py")


def run_fault_tests(paths: list[str]) -> dict[str, Any]:
    """``pytest -q`` over ``paths`` (this suite's own test left out): counts of passed/failed/... and the time."""
    import re
    import subprocess

    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths,
         "--deselect", "tests/reliability/test_fault_suite.py"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    last = (done.stdout.strip().splitlines() or [""])[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected)", last)}
    return {"paths": paths, "returncode": done.returncode, "summary": last, **counts,
            "wall_s": round(time.monotonic() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--analyses", type=int, default=1, help="analyses per fault kind (default 1)")
    parser.add_argument("--json", type=Path, help="write the report as JSON here")
    parser.add_argument("--with-tests", nargs="*", metavar="PATH",
                        help=f"first run the existing fault tests (default: {' '.join(FAULT_TESTS)}) with pytest")
    args = parser.parse_args(argv)
    tests = None
    if args.with_tests is not None:
        tests = run_fault_tests(args.with_tests or list(FAULT_TESTS))
        print(f"fault tests ({' '.join(tests['paths'])}): {tests['summary']}\n")
    report = run_suite(args.analyses)
    if tests is not None:
        report["fault_tests"] = tests
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    s = report["summary"]
    ok = s["records_lost"] == 0 and s["records_duplicated"] == 0 and s["analyses_completed"] == s["analyses"] \
        and (tests is None or tests["returncode"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
