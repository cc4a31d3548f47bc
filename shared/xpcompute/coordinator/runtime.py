"""Wiring: build a coordinator from settings, for one process.

* ``EmbeddedRuntime``: the embedded default. One process holds the
  coordinator, a background loop (reclaim expired leases, dispatch retries,
  repair after crashes) and a dispatcher: the local worker pool, or
  ``inline`` (jobs run in the calling thread: notebooks, tests).
* ``FunctionRuntime``: what a serverless function builds per container: the
  coordinator over DynamoDB/S3 (or whatever the settings name) and a remote
  dispatcher (Lambda, SQS, OpenFaaS). Its methods are the services the thin
  handlers in ``functions/`` call.
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING

from xpcompute.config import Settings
from xpcompute.coordinator.dispatch.base import Dispatcher
from xpcompute.coordinator.ledger import JobLedger, RetryPolicy
from xpcompute.coordinator.messages import JobFinished, RunJob, Tick
from xpcompute.coordinator.state import open_state_store
from xpcompute.coordinator.worker import Outcome, run_job
from xpcompute.storage.objects import open_store

if TYPE_CHECKING:
    from xpcompute.coordinator.service import Coordinator

log = logging.getLogger(__name__)


def build_ledger(settings: Settings) -> JobLedger:
    """The job ledger over the state and object stores the settings name (all a job function needs)."""
    return JobLedger(open_state_store(settings), open_store(settings.objects_root, endpoint_url=settings.s3_endpoint),
                     RetryPolicy.from_settings(settings))


def build_coordinator(settings: Settings, dispatcher: Dispatcher | None, over: JobLedger | None = None) -> Coordinator:
    """A coordinator over the state and object stores the settings name (those of ``over`` when given)."""
    from xpcompute.coordinator.planner import Limits
    from xpcompute.coordinator.service import Coordinator

    base = over or build_ledger(settings)
    coordinator = Coordinator(base.state, base.store, dispatcher, base.policy, limits=Limits.from_settings(settings))
    coordinator.look_wait_s = settings.look_wait_s
    return coordinator


class EmbeddedRuntime:
    """Coordinator + dispatcher + housekeeping loop in this process. Use as a context manager, or start/stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.coordinator = build_coordinator(settings, dispatcher=None)
        self.dispatcher: Dispatcher = self._dispatcher()
        self.coordinator.dispatcher = self.dispatcher
        self._stop = threading.Event()
        self._loop: threading.Thread | None = None

    def _dispatcher(self) -> Dispatcher:
        s = self.settings
        if s.dispatch == "local":
            from xpcompute.coordinator.dispatch.local_pool import LocalPoolDispatcher

            return LocalPoolDispatcher(
                s.model_dump(mode="json"), self._on_report, self._on_died, s.workers, s.worker_idle_s,
                job_timeout_s=s.job_timeout_s, stage1_timeout_s=s.stage1_lease_s, grace_s=s.shutdown_grace_s,
            )
        if s.dispatch == "inline":
            from xpcompute.coordinator.dispatch.inline import InlineDispatcher

            return InlineDispatcher(self._run_inline, lambda m: self.coordinator.on_job_finished(m.job_id))
        from xpcompute.coordinator.dispatch import open_dispatcher

        return open_dispatcher(s)

    def _run_inline(self, message: RunJob) -> None:
        outcome = run_job(self.coordinator, self.settings, message.job_id, "inline")
        if outcome.reported:
            self.dispatcher.submit([JobFinished(job_id=outcome.job_id, analysis_id=outcome.analysis_id)])

    def _on_report(self, job_id: str, analysis_id: str, status: str) -> None:
        self.coordinator.on_job_finished(job_id)

    def _on_died(self, job_id: str, worker: str, reason: str) -> None:
        job = self.coordinator.abandon(job_id, worker, reason)
        if job is not None:
            self.coordinator.on_job_finished(job_id)

    def start(self) -> EmbeddedRuntime:
        """Resume whatever a previous run left RUNNING, then start the housekeeping loop."""
        orphaned = None
        if self.settings.dispatch == "local":
            from xpcompute.coordinator.dispatch.local_pool import orphaned_local_worker

            orphaned = orphaned_local_worker
        resumed = self.coordinator.resume(orphaned)
        if resumed:
            log.info("resumed %d running analyses", resumed)
        self._loop = threading.Thread(target=self._housekeeping, name="xpcompute-coordinator", daemon=True)
        self._loop.start()
        return self

    def _housekeeping(self) -> None:
        n = 0
        while not self._stop.wait(self.settings.tick_s):
            n += 1
            try:
                self.coordinator.tick(sweep=n % 20 == 0)
            except Exception:
                log.exception("coordinator tick failed; retrying next tick")

    def health(self) -> str | None:
        """``None`` while the runtime can make progress, else why not (a dead or failing local pool, a dead loop)."""
        if self._loop is not None and not self._loop.is_alive() and not self._stop.is_set():
            return "the coordinator's housekeeping loop has stopped"
        check = getattr(self.dispatcher, "health", None)
        return check() if callable(check) else None

    def stop(self) -> None:
        """Stop the loop, then the dispatcher: running jobs get ``XPCOMPUTE_SHUTDOWN_GRACE_S``, then their workers
        are terminated (their jobs stay RUNNING under a lease the next start reclaims), and every helper process
        this process started (forkserver, resource tracker) is stopped and reaped."""
        self._stop.set()
        if self._loop is not None:
            self._loop.join(10)
        self.dispatcher.close()
        self.coordinator.state.close()

    def __enter__(self) -> EmbeddedRuntime:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class FunctionRuntime:
    """The services behind the serverless functions (one instance per warm container).

    A job function uses only ``ledger`` (claim, complete, fail: ``worker.run_job``); the coordinator
    function's ``coordinator`` (planning, fan-out, finalizing) is built on first use over the same stores,
    so a slice or fit function never imports it.
    """

    def __init__(self, settings: Settings, dispatcher: Dispatcher | None = None) -> None:
        from xpcompute.coordinator.dispatch import open_dispatcher

        self.settings = settings
        self.dispatcher = dispatcher or open_dispatcher(settings)
        self.ledger = build_ledger(settings)

    @cached_property
    def coordinator(self) -> Coordinator:
        """The whole state machine, over the ledger's stores (the coordinator function's and the API's)."""
        return build_coordinator(self.settings, self.dispatcher, over=self.ledger)

    def run(self, message: RunJob, worker: str) -> Outcome:
        """Slice or fit function: run the job, then tell the coordinator (unless it was a duplicate)."""
        outcome = run_job(self.ledger, self.settings, message.job_id, worker)
        if outcome.reported:
            self.dispatcher.submit([JobFinished(job_id=outcome.job_id, analysis_id=outcome.analysis_id)])
        return outcome

    def coordinate(self, event: JobFinished | Tick) -> None:
        """Coordinator function: advance after a job, or housekeeping on a schedule."""
        if isinstance(event, JobFinished):
            self.coordinator.on_job_finished(event.job_id)
        else:
            self.coordinator.tick(sweep=True)


def error_reply(exc: BaseException, where: str) -> dict[str, object]:
    """What a function handler answers for an exception: a typed JSON body, never a traceback.

    ``XPError``s keep their status and code; anything else is logged with its traceback here and answered as
    a 500 ``internal`` error naming only its type. A job that failed inside ``run_job`` is already recorded
    by then; this covers what comes before it (a malformed event) and the stores failing around it.
    """
    from xpcompute.errors import XPError

    if isinstance(exc, XPError):
        log.warning("%s refused an event: %s", where, exc)
        return {"error": exc.code, "status": exc.status, "message": str(exc)[:2000]}
    log.error("%s failed on an event", where, exc_info=exc)
    return {"error": "internal", "status": 500,
            "message": f"internal error in {where} ({type(exc).__name__}); its log has the details"}
