"""HTTP routes of the experiment archive and of meta-analysis (``xpcompute.meta``).

* ``GET /experiments/{id}/analyses``: every analysis of an experiment, newest first (``?state=SUCCEEDED``);
* ``GET /experiments/{id}/archive``: its versions, stage-1 tables and analyses;
* ``DELETE /analyses/{id}``: remove one finished analysis and the objects derived for it;
* ``POST /meta/replay``: replay a metric definition over the archive; answers the JSON document
  (``/meta/replay/report`` answers the HTML report of the same request).

A replay runs in the request (it reads compressed and stage-1 data, seconds for dozens of experiments);
the CLI (``xpcompute meta replay``) is the route for very large archives.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from xpcompute.coordinator.jobs import AnalysisState
from xpcompute.coordinator.service import Coordinator


class ArchivedAnalysisBody(BaseModel):
    analysis_id: str
    experiment_id: str
    experiment_version: int | None
    state: str
    created_at: float
    finished_at: float | None
    metrics: list[str]
    slices: int
    error: str | None = None


class AnalysisListBody(BaseModel):
    experiment_id: str
    analyses: list[ArchivedAnalysisBody]


class ArchiveVersionBody(BaseModel):
    version: int
    spec_hash: str
    created_at: str


class ArchiveBody(BaseModel):
    experiment_id: str
    versions: list[ArchiveVersionBody]
    tables: dict[str, dict[str, Any] | None]
    analyses: list[ArchivedAnalysisBody]


class DeletedBody(BaseModel):
    analysis_id: str
    experiment_id: str
    state_records: int
    objects: int


class ReplayRequest(BaseModel):
    """A metric definition to replay over the archived experiments."""

    model_config = ConfigDict(extra="forbid")

    metric: str | dict[str, Any] = Field(
        description="The new definition: a registered metric's name, or a declaration (the mapping a 'metrics:' "
        "entry of the experiment YAML takes: name, source, value, where, aggregation, divisor, cap; or a ratio)."
    )
    baseline: str | None = Field(default=None, max_length=64,
                                 description="The archived metric it replaces; default the metric of the same name.")
    experiments: list[str] | None = Field(default=None, max_length=1000,
                                          description="Experiment ids; default every registered experiment.")


class ReplayBody(BaseModel):
    metric: str
    baseline: str
    definition: str | dict[str, Any]
    summary: dict[str, Any]
    decision_changes: list[dict[str, Any]]
    experiments: list[dict[str, Any]]
    skipped: dict[str, str]
    seconds: float


class ReplayAccepted(BaseModel):
    replay_id: str
    state: str
    experiments: list[str] = Field(description="The experiments it replays, one job each.")
    skipped: dict[str, str] = Field(description="Experiments left out before any job ran, with why.")
    status_url: str


class ReplayStatusBody(BaseModel):
    replay_id: str
    state: str = Field(description="RUNNING, SUCCEEDED or FAILED (no experiment could be replayed: see error).")
    metric: str
    baseline: str
    experiments: list[str]
    progress: dict[str, int] = Field(description="Jobs (one per experiment): total and per state, as "
                                                 "GET /analyses/{id} reports them.")
    error: str | None = None
    created_at: float
    finished_at: float | None = None
    result: ReplayBody | None = Field(default=None, description="Once SUCCEEDED: what POST /meta/replay answers.")


AnalysisStateName = Literal["RUNNING", "SUCCEEDED", "FAILED"]


def add_meta_routes(app: FastAPI, coordinator: Callable[[], Coordinator], dependencies: list[Any],
                    errors: dict[int | str, dict[str, Any]],
                    slot: Callable[[Request, str], AbstractContextManager[None]]) -> None:
    """Add the archive and meta routes to ``app``; ``coordinator`` is the app's dependency yielding its coordinator,
    ``slot`` the key's running-analysis quota (``access.Access.analysis_slot``), which a replay as jobs takes too.

    Registered on the app itself (not an included router), so the app's 405 handler lists their methods in
    ``Allow`` next to the other routes of the same path (``GET`` and ``POST /experiments/{id}/analyses``).
    """

    @app.get("/experiments/{experiment_id}/analyses", response_model=AnalysisListBody, responses=errors,
             tags=["experiments"], dependencies=dependencies)
    def list_analyses(
        experiment_id: str, state: AnalysisStateName | None = Query(default=None, description="Only this state."),
        coord: Coordinator = Depends(coordinator),
    ) -> AnalysisListBody:
        """Every analysis of one experiment, newest first: the archive a team asks about its past tests."""
        from xpcompute.meta.archive import analyses_of

        found = analyses_of(coord, experiment_id, AnalysisState(state) if state else None)
        return AnalysisListBody(experiment_id=experiment_id,
                                analyses=[ArchivedAnalysisBody(**a.to_json_dict()) for a in found])

    @app.get("/experiments/{experiment_id}/archive", response_model=ArchiveBody, responses=errors,
             tags=["experiments"], dependencies=dependencies)
    def archive(experiment_id: str, coord: Coordinator = Depends(coordinator)) -> ArchiveBody:
        """One experiment's archive: its registered versions, published stage-1 tables and analyses."""
        from xpcompute.meta.archive import describe

        return ArchiveBody.model_validate(describe(coord, experiment_id))

    @app.delete("/analyses/{analysis_id}", response_model=DeletedBody, responses=errors, tags=["analyses"],
                dependencies=dependencies)
    def delete(analysis_id: str, coord: Coordinator = Depends(coordinator)) -> DeletedBody:
        """Remove one finished analysis: its state records and every object derived for it (slices, results,
        scorecard, its sequential look). Other analyses, the experiment's versions and tables are untouched."""
        from xpcompute.meta.archive import delete_analysis

        return DeletedBody(**delete_analysis(coord, analysis_id).to_json_dict())

    def run_replay(body: ReplayRequest, coord: Coordinator) -> Any:
        from xpcompute.meta.replay import replay

        return replay(coord, body.metric, body.baseline, body.experiments)

    @app.post("/meta/replay", response_model=ReplayBody, responses=errors, tags=["meta"], dependencies=dependencies)
    def post_replay(body: ReplayRequest, coord: Coordinator = Depends(coordinator)) -> dict[str, Any]:
        """Replay a metric definition over the archived experiments: per experiment the old and new effect and
        SE, across experiments their correlation, sign agreement, sensitivity, SE ratio and changed decisions."""
        result: dict[str, Any] = run_replay(body, coord).to_json_dict()
        return result

    @app.post("/meta/replays", response_model=ReplayAccepted, status_code=202, responses=errors, tags=["meta"],
              dependencies=dependencies)
    def post_replays(body: ReplayRequest, request: Request, coord: Coordinator = Depends(coordinator)) -> ReplayAccepted:
        """The same replay as ``POST /meta/replay``, as jobs: one per archived experiment, run like slices (at once
        on Lambda), answered at once with the replay's id. For archives whose replay outlasts an HTTP request
        (API Gateway waits 29 s). It counts as one of the key's running analyses (429 at the limit)."""
        from xpcompute.meta.replay_jobs import submit_replay

        replay_id = uuid.uuid4().hex
        with slot(request, replay_id):
            planned = submit_replay(coord, body.metric, body.baseline, body.experiments, replay_id=replay_id)
        return ReplayAccepted(replay_id=planned.analysis_id, state=planned.state.value,
                              experiments=planned.request["experiments"], skipped=planned.request["skipped"],
                              status_url=f"/meta/replays/{planned.analysis_id}")

    @app.get("/meta/replays/{replay_id}", response_model=ReplayStatusBody, responses=errors, tags=["meta"],
             dependencies=dependencies)
    def get_replay(replay_id: str, coord: Coordinator = Depends(coordinator)) -> ReplayStatusBody:
        """A replay's state and progress, and its result once every experiment's job has ended."""
        from xpcompute.meta.replay_jobs import replay_status

        return ReplayStatusBody.model_validate(replay_status(coord, replay_id))

    @app.get("/meta/replays/{replay_id}/report", response_class=HTMLResponse, include_in_schema=False,
             dependencies=dependencies)
    def get_replay_report(replay_id: str, coord: Coordinator = Depends(coordinator)) -> HTMLResponse:
        """A finished replay's self-contained HTML report (409 while it runs)."""
        from xpcompute.meta.replay_jobs import finished_replay
        from xpcompute.meta.report import render_replay

        return HTMLResponse(render_replay(finished_replay(coord, replay_id)))

    @app.post("/meta/replay/report", response_class=HTMLResponse, include_in_schema=False,
              dependencies=dependencies)
    def post_replay_report(body: ReplayRequest, coord: Coordinator = Depends(coordinator)) -> HTMLResponse:
        """The same replay as its self-contained HTML report (Plotly figures)."""
        from xpcompute.meta.report import render_replay

        return HTMLResponse(render_replay(run_replay(body, coord)))



__all__ = ["ReplayRequest", "add_meta_routes"]
