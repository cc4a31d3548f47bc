"""A replay as jobs: one job per archived experiment, fanned out like slices, assembled when the last one ends.

Why: a replay over a large archive takes longer than an HTTP request may (API Gateway stops waiting at 29 s; the
1M-user, 50-experiment replay in BENCHMARKS.md takes 25-69 s on one machine), and its experiments are
independent, so on Lambda they run at once. ``POST /meta/replays`` answers at once with the replay's id;
``GET /meta/replays/{id}`` follows it and, once done, holds the same document ``POST /meta/replay`` answers.

A replay is stored as an analysis whose request has ``kind: replay`` (experiment id ``REPLAY_EXPERIMENT``), so
its jobs have the state store's leases, retries, counters and dispatch for free. Each ``replay`` job replays the
definition on one archived analysis (``replay.replay_one``) and stores that experiment's result at its
``result_key``; the coordinator's ``finalize`` hands a replay to ``finalize_replay``, which reads them, lists
the experiments whose job failed as skipped with the reason, and stores the whole replay's JSON.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from xpcompute.coordinator.jobs import (
    PRIORITY_LIVE,
    REPLAY_REQUEST,
    Analysis,
    AnalysisState,
    Job,
    JobKind,
    JobState,
    Progress,
)
from xpcompute.errors import ConflictError, InputError, LimitError, NotFoundError, XPError
from xpcompute.storage import keys

if TYPE_CHECKING:
    from xpcompute.coordinator.ledger import JobLedger
    from xpcompute.coordinator.service import Coordinator
    from xpcompute.meta.replay import Replay

#: the experiment id of every replay's analysis record (no experiment has it: ids may not start with ``_``)
REPLAY_EXPERIMENT = "meta-replays"
def result_key(replay_id: str, analysis_id: str) -> str:
    """Where the job replaying archived analysis ``analysis_id`` stores its experiment's result."""
    return keys.analysis_prefix(replay_id) + f"replay/{keys.experiment_id(analysis_id)}.json"


def document_key(replay_id: str) -> str:
    """Where the finished replay's document is stored (what ``POST /meta/replay`` would have answered)."""
    return keys.analysis_prefix(replay_id) + "replay.json"


def submit_replay(coordinator: Coordinator, definition: dict[str, Any] | str, baseline: str | None = None,
                  experiments: list[str] | None = None, replay_id: str | None = None) -> Analysis:
    """Plan the replay (the archived analyses it covers, the experiments it skips and why) and fan out its jobs.

    ``replay_id``: the id to give it (the API takes the key's running-analysis slot under it first)."""
    from xpcompute.meta.replay import archived_analyses, check_definition, definition_name

    check_definition(definition)
    name = definition_name(definition)
    base = baseline or name
    analyses, skipped = archived_analyses(coordinator, base, experiments)
    if not analyses:
        reasons = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:5])
        raise InputError(f"no archived experiment could be replayed with {name!r} for {base!r}"
                         + (f" ({reasons})" if reasons else " (the archive is empty)"))
    if len(analyses) > coordinator.limits.max_jobs:  # one job per experiment
        raise LimitError(f"this replay would run {len(analyses)} jobs, one per experiment; at most "
                         f"{coordinator.limits.max_jobs} are allowed (XPCOMPUTE_MAX_JOBS): name fewer experiments")
    now = coordinator.clock()
    replay_id = replay_id or uuid.uuid4().hex
    analysis = Analysis(
        analysis_id=replay_id, experiment_id=REPLAY_EXPERIMENT, created_at=now, updated_at=now,
        request={"kind": REPLAY_REQUEST, "definition": definition, "metric": name, "baseline": base, "skipped": skipped,
                 "experiments": [a.experiment_id for a in analyses]},
    )
    jobs = [
        Job(job_id=f"{replay_id}.replay.{a.analysis_id}", analysis_id=replay_id, kind=JobKind.REPLAY,
            slice_id=a.experiment_id, slice_label=a.experiment_id, spec={"analysis_id": a.analysis_id},
            result_key=result_key(replay_id, a.analysis_id), priority=PRIORITY_LIVE, created_at=now,
            updated_at=now, ready_at=now, due_at=now, max_attempts=coordinator.policy.max_attempts)
        for a in analyses
    ]
    if not coordinator.state.create_analysis(analysis, jobs):
        raise InputError(f"replay {replay_id} exists already")  # a fresh uuid: not expected
    coordinator.dispatch_due()
    return analysis


def run_replay_job(ledger: JobLedger, job: Job) -> dict[str, object]:
    """Replay the definition on one archived analysis; its result (``ExperimentReplay.to_stored``) at the job's key.

    A data problem (the metric cannot be computed on this experiment's sources) is an ``InputError``: the job
    fails at once and the replay lists the experiment as skipped with that reason.
    """
    from xpcompute.coordinator.service import Coordinator
    from xpcompute.meta.replay import replay_one

    replay = ledger.state.get_analysis(job.analysis_id)
    assert job.spec is not None
    archived = ledger.state.get_analysis(str(job.spec["analysis_id"]))
    coordinator = ledger if isinstance(ledger, Coordinator) else Coordinator(ledger.state, ledger.store, None,
                                                                             ledger.policy, ledger.clock)
    try:
        done = replay_one(coordinator, archived, replay.request["definition"], str(replay.request["baseline"]))
    except XPError as exc:
        raise InputError(f"{type(exc).__name__}: {exc}") from exc
    assert job.result_key is not None
    coordinator.store.put_bytes(job.result_key, json.dumps(done.to_stored(), sort_keys=True).encode())
    return {"experiment_id": done.experiment_id, "route": done.route, "units": done.units}


def finalize_replay(coordinator: Coordinator, analysis: Analysis, jobs: list[Job]) -> Analysis:
    """Every job has ended: store the replay's document and mark it SUCCEEDED (FAILED when no experiment could be
    replayed, with the reasons)."""
    result = assemble(coordinator, analysis, jobs)
    now = coordinator.clock()
    error = None
    if not result.experiments:
        error = "no experiment could be replayed: " + "; ".join(f"{k}: {v}" for k, v in list(result.skipped.items())[:5])
    else:
        coordinator.store.put_bytes(document_key(analysis.analysis_id),
                                    json.dumps(result.to_json_dict(), sort_keys=True).encode())
    done = replace(analysis, state=AnalysisState.FAILED if error else AnalysisState.SUCCEEDED, finished_at=now,
                   updated_at=now, error=error)
    try:
        return coordinator.state.update_analysis(done, analysis.version)
    except ConflictError:
        return coordinator.state.get_analysis(analysis.analysis_id)


def assemble(coordinator: JobLedger, analysis: Analysis, jobs: list[Job]) -> Replay:
    """The replay from its jobs' stored results: the succeeded ones, and the failed ones as skipped."""
    from xpcompute.meta.replay import ExperimentReplay, Replay

    request = analysis.request
    skipped = dict(request.get("skipped") or {})
    done: list[ExperimentReplay] = []
    for job in sorted(jobs, key=lambda j: j.slice_id or ""):
        if job.state == JobState.SUCCEEDED and job.result_key is not None:
            try:
                done.append(ExperimentReplay.from_stored(json.loads(coordinator.store.get_bytes(job.result_key))))
                continue
            except (NotFoundError, ValueError, KeyError, TypeError) as exc:
                skipped[str(job.slice_id)] = f"its stored result cannot be read: {exc}"
                continue
        if job.state == JobState.FAILED:
            skipped[str(job.slice_id)] = str(job.last_error)
    finished = analysis.finished_at or coordinator.clock()
    return Replay(str(request["metric"]), str(request["baseline"]), request["definition"], done, skipped,
                  finished - analysis.created_at)


def replay_status(coordinator: Coordinator, replay_id: str) -> dict[str, Any]:
    """``GET /meta/replays/{id}``: its state and progress, and the replay's document once it is done."""
    analysis = coordinator.state.get_analysis(replay_id)
    if not analysis.is_replay:
        raise NotFoundError(f"no replay {replay_id!r} (it is an analysis: GET /analyses/{replay_id})")
    progress = Progress.of_counts(coordinator.state.job_counts(replay_id))
    out: dict[str, Any] = {
        "replay_id": replay_id, "state": analysis.state.value, "metric": analysis.request["metric"],
        "baseline": analysis.request["baseline"], "experiments": analysis.request["experiments"],
        "progress": asdict(progress), "error": analysis.error,
        "created_at": analysis.created_at, "finished_at": analysis.finished_at,
    }
    if analysis.state == AnalysisState.SUCCEEDED:
        out["result"] = json.loads(coordinator.store.get_bytes(document_key(replay_id)))
    return out


def finished_replay(coordinator: Coordinator, replay_id: str) -> Replay:
    """The finished replay as an object (the HTML report); ``ConflictError`` while it runs."""
    analysis = coordinator.state.get_analysis(replay_id)
    if not analysis.is_replay:
        raise NotFoundError(f"no replay {replay_id!r}")
    if analysis.state == AnalysisState.RUNNING:
        raise ConflictError(f"replay {replay_id} is still running; GET /meta/replays/{replay_id} follows it")
    return assemble(coordinator, analysis, coordinator.state.list_jobs(replay_id))


def wait(coordinator: Coordinator, replay_id: str, timeout_s: float = 600.0, poll_s: float = 0.2) -> Analysis:
    """Block until the replay is no longer RUNNING (the CLI, tests)."""
    deadline = time.monotonic() + timeout_s
    while True:
        analysis = coordinator.state.get_analysis(replay_id)
        if analysis.state != AnalysisState.RUNNING or time.monotonic() > deadline:
            return analysis
        time.sleep(poll_s)


__all__ = ["REPLAY_EXPERIMENT", "assemble", "document_key", "finalize_replay", "finished_replay",
           "replay_status", "result_key", "run_replay_job", "submit_replay", "wait"]
