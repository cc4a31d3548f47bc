"""The HTTP API: one FastAPI app for every target (``xpcompute serve``, Lambda via mangum, tests).

Experiments are registered with ``PUT /experiments/{id}`` (validated against
the sources, stored as immutable numbered versions) and read back with
``GET /experiments[/{id}[/versions]]``; an analysis of a registered experiment
uses its current version and runs stage 1 as a job first when the table is
missing or stale.

Routes validate with pydantic, call the coordinator, and shape the answer;
errors raised on purpose (``XPError``) become their ``status`` with a JSON
body ``{"error": code, "message": ...}`` naming the problem. OpenAPI is at
``/openapi.json``.

In embedded mode the app owns an ``EmbeddedRuntime`` (local worker pool and
the coordinator's housekeeping loop), started and stopped with the app. In
serverless mode the work runs in other functions; polling an analysis also
nudges the coordinator (reclaims expired leases, re-dispatches due retries),
so progress never depends on a scheduler alone.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import Body, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from xpcompute import __version__
from xpcompute.api.access import Access
from xpcompute.api.meta_routes import add_meta_routes
from xpcompute.api.models import (
    AnalysisCreated,
    AnalysisStatusBody,
    ErrorBody,
    ExperimentList,
    ExperimentSummary,
    ExperimentVersionBody,
    ExperimentVersionList,
    FailureBody,
    Health,
    LiveSliceAccepted,
    PowerBody,
    PowerRequest,
    ProgressBody,
    RetryAccepted,
    ScorecardBody,
    SliceStateBody,
    Stage1Body,
)
from xpcompute.api.security import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    api_key_checker,
    elide,
    redact_paths,
)
from xpcompute.api.segment_routes import add_segment_routes
from xpcompute.api.session import session_router
from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.jobs import AnalysisState, Job
from xpcompute.coordinator.service import Coordinator, RegisteredExperiment
from xpcompute.errors import NotFoundError, XPError
from xpcompute.pipeline.slices import SliceFilter

log = logging.getLogger(__name__)
#: ``api.scorecard_page.Part``, spelled here so the route signature does not import the page module
Part = Literal["page", "live"]

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 404, 409, 413, 422, 429, 500, 503)
}


class Backend:
    """What the routes need: a coordinator, plus start/stop for the embedded runtime."""

    def __init__(self, settings: Settings, coordinator: Coordinator | None = None) -> None:
        self.settings = settings
        self._runtime: Any = None
        self._coordinator = coordinator

    @property
    def coordinator(self) -> Coordinator:
        if self._coordinator is None:
            raise RuntimeError("the API backend is not started")
        return self._coordinator

    def start(self) -> None:
        """Load the team's metrics-repo plugins, then build the coordinator (and, embedded, its runtime)."""
        if self._coordinator is not None:
            return
        from xpcompute.plugins import load_plugins

        load_plugins(origin="the API server")
        if self.settings.mode == "embedded":
            from xpcompute.coordinator.runtime import EmbeddedRuntime

            self._runtime = EmbeddedRuntime(self.settings).start()
            self._coordinator = self._runtime.coordinator
        else:
            from xpcompute.coordinator.runtime import FunctionRuntime

            self._runtime = FunctionRuntime(self.settings)
            self._coordinator = self._runtime.coordinator

    def health(self) -> str | None:
        """Why the backend cannot make progress (a dead local pool), or ``None``."""
        check = getattr(self._runtime, "health", None)
        return check() if callable(check) else None

    def stop(self) -> None:
        if self._runtime is not None and hasattr(self._runtime, "stop"):
            self._runtime.stop()
        self._runtime = None


def _error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": code, "message": elide(message)}, headers=headers)


def _validation_message(errors: list[Any]) -> str:
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {str(err.get('msg', '')).removeprefix('Value error, ')}")
    return "; ".join(parts)


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> FastAPI:
    """The app. ``backend`` lets a test or a function pass a ready coordinator."""
    settings = settings or Settings.from_env()
    backend = backend or Backend(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        backend.start()
        try:
            yield
        finally:
            backend.stop()

    app = FastAPI(
        title="xpcompute",
        version=__version__,
        description="Analyse A/B tests: metrics x slices x causal models, fanned out to stateless functions.",
        lifespan=lifespan,
    )
    app.state.backend = backend
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # sessions (api/session.py) and per-key quotas shared through the state store (api/quotas.py)
    access = Access(settings, lambda: backend.coordinator.state)
    app.add_middleware(ApiKeyMiddleware, settings=settings, sessions=access.sessions,
                       rate=access.rate)  # outermost: no key, no body read
    roots: list[str | Path] = [settings.objects_root, settings.home]
    auth = [Depends(api_key_checker(settings, access.sessions))]

    @app.exception_handler(XPError)
    async def _xp_error(_: Request, exc: XPError) -> JSONResponse:
        return _error(exc.status, exc.code, redact_paths(str(exc), roots))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # a bug or an unforeseen input: the log keeps the traceback, the client gets a typed body without it
        log.error("unhandled %s in a request", type(exc).__name__, exc_info=exc)
        return _error(500, "internal", f"internal error ({type(exc).__name__}); the server log has the details")

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", _validation_message(list(exc.errors())))

    @app.exception_handler(ValidationError)
    async def _invalid(_: Request, exc: ValidationError) -> JSONResponse:
        return _error(422, "invalid_request", _validation_message(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only the first route's (RFC 9110 Allow)
            headers["Allow"] = _allowed_methods(request)
        return _error(exc.status_code, code, str(exc.detail), headers=headers)

    def coordinator() -> Coordinator:
        return backend.coordinator

    @app.get("/healthz", response_model=Health, tags=["service"], responses={
        503: {"model": Health, "description": "Degraded: the worker pool cannot schedule work (with the reason)."}})
    def healthz() -> Any:
        """Liveness: the process is up and configured, and (embedded) its worker pool schedules work.

        503 with status ``degraded`` and the reason when the pool's scheduler is dead or failing. The stores
        are not touched.
        """
        from xpcompute.plugins import loaded

        reason = backend.health()
        if reason is not None:
            return JSONResponse(status_code=503, content=Health(
                status="degraded", reason=reason, version=__version__, mode=settings.mode, state_store=settings.state,
                dispatch=settings.dispatch, plugins=sorted(loaded())).model_dump(mode="json"))
        return Health(status="ok", version=__version__, mode=settings.mode, state_store=settings.state,
                      dispatch=settings.dispatch, plugins=sorted(loaded()))

    @app.put(
        "/experiments/{experiment_id}", response_model=ExperimentVersionBody, responses={201: {
            "model": ExperimentVersionBody, "description": "A new version was stored."}, **ERRORS},
        dependencies=auth, tags=["experiments"],
    )
    def put_experiment(
        experiment_id: str, response: Response,
        spec: dict[str, Any] = Body(description="The experiment spec as JSON: the fields of the YAML spec "
                                    "(docs/experiment-yaml.md); 'id' may be left out. Source uris must be absolute "
                                    "paths or s3:// uris."),
        coord: Coordinator = Depends(coordinator),
    ) -> ExperimentVersionBody:
        """Register or update an experiment: validated against its sources' schemas; answers its version.

        201 when a new version was stored; 200 when the same content is already the current version.
        """
        registered = coord.register_spec(experiment_id, spec)
        response.status_code = 201 if registered.created else 200
        return _version_body(registered)

    @app.get("/experiments", response_model=ExperimentList, responses=ERRORS, dependencies=auth,
             tags=["experiments"])
    def list_experiments(coord: Coordinator = Depends(coordinator)) -> ExperimentList:
        """Every registered experiment at its current version."""
        return ExperimentList(experiments=[_summary(r) for r in coord.list_experiments()])

    @app.get("/experiments/{experiment_id}", response_model=ExperimentVersionBody, responses=ERRORS,
             dependencies=auth, tags=["experiments"])
    def get_experiment(
        experiment_id: str, version: int | None = Query(default=None, ge=1, description="Default: the current one."),
        coord: Coordinator = Depends(coordinator),
    ) -> ExperimentVersionBody:
        """One registered experiment: its current version (read from the store on every call), or ``version``."""
        registered = coord.experiment_version(experiment_id, version)
        if registered is None:
            raise NotFoundError(f"experiment {experiment_id!r} is not registered; PUT /experiments/{experiment_id} "
                                "with its spec")
        return _version_body(registered)

    @app.get("/experiments/{experiment_id}/versions", response_model=ExperimentVersionList, responses=ERRORS,
             dependencies=auth, tags=["experiments"])
    def list_versions(experiment_id: str, coord: Coordinator = Depends(coordinator)) -> ExperimentVersionList:
        """Every version of one experiment, oldest first."""
        return ExperimentVersionList(experiment_id=experiment_id,
                                     versions=[_summary(r) for r in coord.experiment_versions(experiment_id)])

    @app.post(
        "/experiments/{experiment_id}/analyses", status_code=202, response_model=AnalysisCreated,
        responses=ERRORS, dependencies=auth, tags=["analyses"],
    )
    def create_analysis(
        experiment_id: str, spec: AnalysisSpec, request: Request, coord: Coordinator = Depends(coordinator)
    ) -> AnalysisCreated:
        """Plan metrics x pre-computed slices x models and fan them out; poll the returned status URL.

        A registered experiment is analysed at its current version; stage 1 runs first as a job when its
        analysis table is missing, older than the spec or the sources, or ``refresh`` is set.
        """
        analysis_id = uuid.uuid4().hex
        with access.analysis_slot(request, analysis_id):  # 429 when the key has its limit running
            analysis = coord.submit(experiment_id, spec, analysis_id=analysis_id)
        total = coord.state.job_counts(analysis.analysis_id)
        return AnalysisCreated(
            analysis_id=analysis.analysis_id, experiment_id=experiment_id,
            experiment_version=analysis.experiment_version, state=analysis.state.value,
            jobs=sum(total.values()), stage1=coord.stage1_job(analysis.analysis_id) is not None,
            status_path=f"analyses/{analysis.analysis_id}", results_path=f"analyses/{analysis.analysis_id}/results",
        )

    @app.post("/experiments/{experiment_id}/power", response_model=PowerBody, responses=ERRORS, dependencies=auth,
              tags=["experiments"])
    def plan_power(experiment_id: str, body: PowerRequest, coord: Coordinator = Depends(coordinator)) -> PowerBody:
        """Power, sample size or MDE of one metric, with its variance from the experiment's pre-period data.

        Reads the metric's pre-period and covariate columns of the experiment's analysis table (built by the
        stage-1 job of its first analysis; 409 until then), reports the raw and the CUPED variance, and, with a
        sequential method, the simulated power (marked ``simulated``). While the test runs: power now and the
        days still needed.
        """
        from xpcompute.inference.planning import plan_power as plan

        experiment = coord.experiment(experiment_id)
        if experiment is None:
            raise NotFoundError(f"experiment {experiment_id!r} is not registered: PUT /experiments/{experiment_id} "
                                "with its spec first, then submit an analysis so stage 1 builds its table")
        result = plan(experiment, body.metric, mde=body.mde, users=body.users, days=body.days,
                      relative=body.relative, alpha=body.alpha, power=body.power, sequential=body.sequential,
                      looks=body.looks, spending=body.spending, daily_units=body.daily_units, store=coord.store,
                      by_role=body.by_role)
        return PowerBody.model_validate(result.to_json_dict())

    @app.get("/analyses/{analysis_id}", response_model=AnalysisStatusBody, responses=ERRORS, dependencies=auth,
             tags=["analyses"])
    def get_analysis(analysis_id: str, coord: Coordinator = Depends(coordinator)) -> AnalysisStatusBody:
        """Status, progress (jobs total/succeeded/failed/running), failures with reasons, partial results."""
        if settings.mode != "embedded" and coord.state.get_analysis(analysis_id).state == AnalysisState.RUNNING:
            coord.tick()
        st = coord.status(analysis_id)
        a = st.analysis
        return AnalysisStatusBody(
            analysis_id=a.analysis_id, experiment_id=a.experiment_id, experiment_version=a.experiment_version,
            state=a.state.value, progress=ProgressBody(**st.progress.__dict__), stage1=_stage1_body(st.stage1),
            slices=[SliceStateBody(slice_id=s, label=label, state=state) for s, label, state in st.slices],
            failures=[FailureBody(**f.__dict__) for f in st.failures], error=a.error,
            created_at=a.created_at, finished_at=a.finished_at, records=st.records,
        )

    @app.get("/analyses/{analysis_id}/results", response_model=ScorecardBody, responses=ERRORS,
             dependencies=auth, tags=["analyses"])
    def get_results(analysis_id: str, coord: Coordinator = Depends(coordinator)) -> dict[str, Any]:
        """The scorecard: records with their slice, corrected across the analysis; SRM per slice; failures."""
        body = coord.results(analysis_id).to_json_dict()
        body["experiment_version"] = coord.state.get_analysis(analysis_id).experiment_version
        return body

    @app.get("/analyses/{analysis_id}/scorecard", response_class=HTMLResponse, dependencies=auth,
             include_in_schema=False)
    def scorecard_page(
        analysis_id: str, part: Part = "page", coord: Coordinator = Depends(coordinator)
    ) -> HTMLResponse:
        """The scorecard as a page for people: live while the analysis runs, with a form to request a slice.

        ``part=live`` returns only the parts the page's script swaps in as results land. The page is left
        out of /openapi.json, which describes the JSON API that programs call.
        """
        # here, not at import: the page's modules (plotly.js, the Jinja2 templates, the report views) cost the api
        # function's cold start on every new environment, and most requests are JSON
        from xpcompute.api.scorecard_page import scorecard_response

        return scorecard_response(coord, analysis_id, part)

    @app.post("/analyses/{analysis_id}/slices", status_code=202, response_model=LiveSliceAccepted,
              responses=ERRORS, dependencies=auth, tags=["analyses"])
    def request_slice(analysis_id: str, slice_filter: SliceFilter, coord: Coordinator = Depends(coordinator)) -> LiveSliceAccepted:
        """Compute one more slice on demand; its results join the analysis as soon as they land."""
        job = coord.request_slice(analysis_id, slice_filter)
        return LiveSliceAccepted(analysis_id=analysis_id, slice_id=job.slice_id, label=job.slice_label,
                                 job_id=job.job_id, state=job.state.value)

    @app.post("/analyses/{analysis_id}/retry", status_code=202, response_model=RetryAccepted, responses=ERRORS,
              dependencies=auth, tags=["analyses"])
    def retry_failed(analysis_id: str, coord: Coordinator = Depends(coordinator)) -> RetryAccepted:
        """Run the failed jobs of an analysis again (after an outage, say), and recompute the fits whose stored
        result object is damaged or missing (just those); the analysis is finalized again when they end."""
        retried = coord.retry_failed(analysis_id)
        return RetryAccepted(analysis_id=analysis_id, retried=len(retried), job_ids=[j.job_id for j in retried],
                             state=coord.state.get_analysis(analysis_id).state.value)

    add_meta_routes(app, coordinator, auth, ERRORS, access.analysis_slot)  # archive and meta-analysis (meta_routes)
    add_segment_routes(app, coordinator, auth, ERRORS)
    app.include_router(session_router(settings, access.sessions))  # GET/POST /login, POST /logout (api/session.py)
    return app


def _allowed_methods(request: Request) -> str:
    """The methods some route of the app serves at the request's path (Starlette names only the first route's)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods - {"HEAD"}))


def _version_body(r: RegisteredExperiment) -> ExperimentVersionBody:
    return ExperimentVersionBody(experiment_id=r.experiment_id, version=r.version, spec_hash=r.spec_hash,
                                 created_at=r.created_at, created=r.created, spec=r.spec.model_dump(mode="json"))


def _summary(r: RegisteredExperiment) -> ExperimentSummary:
    s = r.spec
    return ExperimentSummary(
        experiment_id=r.experiment_id, version=r.version, spec_hash=r.spec_hash, created_at=r.created_at,
        description=s.description, cells=list(s.cells), control=s.control, metrics=list(s.metrics),
        dimensions=list(s.dimensions),
    )


def _stage1_body(job: Job | None) -> Stage1Body | None:
    if job is None:
        return None
    reason = (job.spec or {}).get("reason")
    return Stage1Body(job_id=job.job_id, state=job.state.value, reason=None if reason is None else str(reason),
                      attempts=job.attempts, error=job.last_error, output=dict(job.output))


def serve(host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None) -> None:
    """Run the API with uvicorn (what ``xpcompute serve`` calls); blocks until interrupted."""
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
