"""The embedded default dispatcher: a pool of worker processes that grows and shrinks with the queue.

A scheduler thread hands one job at a time to each idle worker over that
worker's own pipe, lowest priority first (a finished slice's fits before the
next slice), starts another worker while jobs wait and fewer than
``max_workers`` run, and retires workers idle for ``idle_s``. One pipe per
worker (rather than one shared queue) means a worker killed mid-job cannot
take a shared lock down with it: its pipe closes, the scheduler sees the
process gone, and reports the job it held so the coordinator retries it.

Workers start from a ``forkserver`` that has already imported the worker
code, so a new worker is ready in milliseconds instead of re-importing NumPy
and Arrow. Each worker builds its own state-store and object-store clients
from the settings; the coordinator stays in the parent.

Under abuse and faults:

* Fair: within a priority class, analyses take turns (round-robin, each
  analysis's own jobs in arrival order), so one analysis with thousands of
  jobs cannot hold every worker while another waits; live slices keep their
  (lower) priority class.
* Bounded: a job running past its limit (``XPCOMPUTE_JOB_TIMEOUT_S``; stage 1:
  ``XPCOMPUTE_STAGE1_LEASE_S``) has its worker terminated (then killed) and
  replaced, and is reported as a failed attempt with that reason.
* Self-healing: an exception in the scheduling thread (a file-descriptor
  shortage, a worker that cannot start) is logged and retried with backoff; a
  scheduler thread that is gone anyway is started again. ``health()`` says
  when the pool is failing, for ``/healthz``.
* Clean shutdown: ``close`` gives running jobs ``grace_s``, terminates and
  reaps every worker, and (when it is the last pool of the process) stops the
  forkserver and the resource tracker, so nothing the server started outlives
  it. Jobs cut short stay RUNNING under their lease and are reclaimed by the
  next start (their worker names a dead parent).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from xpcompute.coordinator.dispatch.base import Message
from xpcompute.coordinator.jobs import JobKind
from xpcompute.coordinator.messages import RunJob

log = logging.getLogger(__name__)

#: Worker names are ``local-<parent pid>-<n>``: a restarted coordinator can tell its dead predecessor's workers.
WORKER_PREFIX = "local-"
#: the longest a worker that finished a slice waits for the report that queues the slice's fits
REPORT_HOLD_S = 0.5


def orphaned_local_worker(worker: str) -> bool:
    """Whether ``worker`` belonged to a local pool whose parent process is gone (or is not this one's)."""
    if not worker.startswith(WORKER_PREFIX):
        return False
    try:
        pid = int(worker[len(WORKER_PREFIX):].split("-", 1)[0])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


#: (job_id, analysis_id, status, error) reported by a worker after each job.
Report = tuple[str, str, str, str | None]


@dataclass
class _Worker:
    name: str
    process: BaseProcess
    conn: Connection
    job: RunJob | None = None
    idle_since: float = field(default_factory=time.monotonic)
    jobs_done: int = 0
    held_for: str | None = None  # a finished slice job whose report (which queues its fits) is pending
    held_until: float = 0.0
    started_at: float = 0.0  # when its current job was sent
    kill_reason: str | None = None  # set when the pool terminated it (its job ran past its limit)
    killed_at: float = 0.0


@dataclass
class PoolStats:
    """Counters for tests and benchmarks."""

    started: int = 0
    retired: int = 0
    died: int = 0
    jobs: int = 0
    peak_workers: int = 0
    exited: list[int | None] = field(default_factory=list)  # exit codes of workers that ended on their own
    timed_out: int = 0  # jobs whose worker was killed for running past the limit
    scheduler_errors: int = 0  # exceptions caught in the scheduling thread
    scheduler_restarts: int = 0  # scheduling threads started again after one was found dead


class FairQueue:
    """Queued jobs: lowest priority class first; within a class, analyses take turns, each in arrival order.

    Why not one heap by (priority, arrival): an analysis that queued 10,000 fits first would then run all of
    them before a later analysis's first job. Round-robin across analyses bounds another analysis's wait to
    one job per analysis ahead of it, while a lower class (live slices) still waits for the higher ones.
    """

    def __init__(self) -> None:
        self._classes: dict[int, OrderedDict[str, deque[RunJob]]] = {}
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def push(self, message: RunJob, front: bool = False) -> None:
        """Queue ``message`` behind its analysis's jobs (``front``: ahead of them, for a job handed back)."""
        by_analysis = self._classes.setdefault(message.priority, OrderedDict())
        jobs = by_analysis.get(message.analysis_id)
        if jobs is None:
            jobs = by_analysis[message.analysis_id] = deque()
            if front:
                by_analysis.move_to_end(message.analysis_id, last=False)
        if front:
            jobs.appendleft(message)
        else:
            jobs.append(message)
        self._n += 1

    def pop(self) -> RunJob:
        """The next job: from the best class, the analysis whose turn it is; that analysis goes to the back."""
        priority = min(self._classes)
        by_analysis = self._classes[priority]
        analysis_id, jobs = next(iter(by_analysis.items()))
        message = jobs.popleft()
        if jobs:
            by_analysis.move_to_end(analysis_id)
        else:
            del by_analysis[analysis_id]
        if not by_analysis:
            del self._classes[priority]
        self._n -= 1
        return message

    def clear(self) -> None:
        self._classes.clear()
        self._n = 0


#: pools alive in this process: the last one to close stops the forkserver and the resource tracker
_LIVE_POOLS: set[int] = set()
_LIVE_LOCK = threading.Lock()
#: longest pause of the scheduling thread after repeated errors
SCHEDULER_BACKOFF_MAX_S = 5.0


def worker_main(conn: Connection, settings_json: dict[str, Any], name: str) -> None:
    """A worker process: run each job the parent sends, reply with its outcome, exit on ``None``."""
    from xpcompute.config import Settings
    from xpcompute.coordinator.runtime import build_coordinator
    from xpcompute.coordinator.worker import run_job
    from xpcompute.plugins import load_plugins

    # the team's metrics repo (entry points, XPCOMPUTE_PLUGINS) before any job names one of its metrics
    load_plugins(origin="a local worker")
    settings = Settings.model_validate(settings_json)
    coordinator = build_coordinator(settings, dispatcher=None)
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                return
            if message is None:
                return
            outcome = run_job(coordinator, settings, message["job_id"], name)
            conn.send((outcome.job_id, outcome.analysis_id, outcome.status, outcome.error))
    finally:
        coordinator.state.close()


class LocalPoolDispatcher:
    """``Dispatcher`` over local worker processes.

    ``on_report(job_id, analysis_id, status)`` runs (in a callback thread) after
    each job; ``on_died(job_id, worker, reason)`` when a worker dies holding one.
    """

    def __init__(
        self,
        settings_json: dict[str, Any],
        on_report: Callable[[str, str, str], None],
        on_died: Callable[[str, str, str], None],
        max_workers: int,
        idle_s: float = 10.0,
        start_method: str = "forkserver",
        job_timeout_s: float | None = None,
        stage1_timeout_s: float | None = None,
        grace_s: float = 10.0,
    ) -> None:
        self._settings = settings_json
        self._on_report = on_report
        self._on_died = on_died
        self.max_workers = max(1, max_workers)
        self.idle_s = idle_s
        self._ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload(["xpcompute.coordinator.worker", "xpcompute.models"])
        self.job_timeout_s = job_timeout_s
        self.stage1_timeout_s = stage1_timeout_s
        self.grace_s = grace_s
        self._start_method = start_method
        self._lock = threading.Lock()
        self._queue = FairQueue()
        self._queued: set[str] = set()
        self._failing_since: float | None = None
        self._last_error: str | None = None
        self._workers: dict[str, _Worker] = {}
        self._counter = 0
        self._closed = False
        self.stats = PoolStats()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._callbacks: deque[tuple[str, ...]] = deque()
        self._cb_ready = threading.Condition()
        self._scheduler = threading.Thread(target=self._schedule, name="xpcompute-pool", daemon=True)
        self._callback_thread = threading.Thread(target=self._run_callbacks, name="xpcompute-pool-cb", daemon=True)
        with _LIVE_LOCK:
            _LIVE_POOLS.add(id(self))
        self._scheduler.start()
        self._callback_thread.start()

    # ---- Dispatcher ---------------------------------------------------------
    def submit(self, messages: Sequence[Message]) -> None:
        added = False
        with self._lock:
            for m in messages:
                if isinstance(m, RunJob) and m.job_id not in self._queued and not self._held(m.job_id):
                    self._queue.push(m)
                    self._queued.add(m.job_id)
                    added = True
        self._ensure_scheduler()
        if added:
            self._wake()

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting work; running jobs get ``timeout`` (default ``grace_s``) to finish, then their workers
        are terminated and killed; every worker is reaped, and the last pool of the process also stops the
        forkserver and the resource tracker."""
        grace = self.grace_s if timeout is None else timeout
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.clear()
            self._queued.clear()
        self._wake()
        self._scheduler.join(grace + 5.0)
        if self._scheduler.is_alive():  # wedged: stop the workers from here
            log.warning("local pool scheduler did not stop; stopping its workers directly")
        self._stop_all(grace)
        with self._cb_ready:
            self._callbacks.append(("stop",))
            self._cb_ready.notify()
        self._callback_thread.join(5.0)
        with contextlib.suppress(OSError):
            self._wake_r.close()
            self._wake_w.close()
        with _LIVE_LOCK:
            _LIVE_POOLS.discard(id(self))
            last = not _LIVE_POOLS
        if last and self._start_method == "forkserver":
            stop_helper_processes()

    # ---- health ----------------------------------------------------------------
    def health(self) -> str | None:
        """``None`` when the pool schedules work, else why not (for ``/healthz``): its scheduling thread is dead,
        or has failed on every pass since a time (each pass is retried with backoff)."""
        if self._closed:
            return "the local worker pool is closed"
        self._ensure_scheduler()
        with self._lock:
            failing, error = self._failing_since, self._last_error
        if failing is not None:
            return (f"local worker pool scheduler failing for {time.monotonic() - failing:.1f} s (retrying with "
                    f"backoff): {error}")
        return None

    # ---- introspection --------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        with self._lock:
            return len(self._queue) + sum(1 for w in self._workers.values() if w.job is not None)

    @property
    def worker_count(self) -> int:
        with self._lock:
            return len(self._workers)

    def worker_pids(self) -> dict[str, int | None]:
        with self._lock:
            return {name: w.process.pid for name, w in self._workers.items()}

    # ---- internals ----------------------------------------------------------------
    def _held(self, job_id: str) -> bool:
        return any(w.job is not None and w.job.job_id == job_id for w in self._workers.values())

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _spawn(self) -> _Worker:
        self._counter += 1
        name = f"{WORKER_PREFIX}{os.getpid()}-{self._counter}"
        parent, child = self._ctx.Pipe()
        process: BaseProcess = self._ctx.Process(  # type: ignore[attr-defined]
            target=worker_main, args=(child, self._settings, name), name=name, daemon=True
        )
        process.start()
        child.close()
        worker = _Worker(name=name, process=process, conn=parent)
        self.stats.started += 1
        log.debug("started worker %s (pid %s)", name, process.pid)
        return worker

    def _ensure_scheduler(self) -> None:
        """Start the scheduling thread again if it is gone (it catches its own errors; this covers the rest)."""
        if self._closed or self._scheduler.is_alive():
            return
        with self._lock:
            if self._closed or self._scheduler.is_alive():
                return
            log.error("local pool scheduler thread was dead; starting it again")
            self.stats.scheduler_restarts += 1
            self._scheduler = threading.Thread(target=self._schedule, name="xpcompute-pool", daemon=True)
            self._scheduler.start()

    def _schedule(self) -> None:
        """The scheduling loop, supervised: an exception in one pass is logged, backed off and retried."""
        delay = 0.05
        while True:
            with self._lock:
                if self._closed:
                    return
            try:
                self._schedule_once()
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self.stats.scheduler_errors += 1
                    self._last_error = reason
                    if self._failing_since is None:
                        self._failing_since = time.monotonic()
                log.exception("local pool scheduler failed (%s); retrying in %.2f s", reason, delay)
                time.sleep(delay)
                delay = min(SCHEDULER_BACKOFF_MAX_S, delay * 2)
                continue
            delay = 0.05
            with self._lock:
                self._failing_since = None

    def _schedule_once(self) -> None:
        """One pass: hand out queued jobs, wait for a report or a wake-up, then timeouts, deaths and idle workers."""
        self._assign()
        conns: list[Any] = [self._wake_r]
        with self._lock:
            by_conn = {id(w.conn): w for w in self._workers.values()}
            conns += [w.conn for w in self._workers.values()] + [w.process.sentinel for w in self._workers.values()]
        ready = wait(conns, timeout=min(1.0, self.idle_s))
        for obj in ready:
            if obj is self._wake_r:
                try:
                    while self._wake_r.recv(4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
            elif isinstance(obj, Connection) and id(obj) in by_conn:
                self._receive(by_conn[id(obj)])
        self._enforce_timeouts()
        self._reap()
        self._retire_idle()

    def _limit(self, message: RunJob) -> float | None:
        return self.stage1_timeout_s if message.kind == JobKind.STAGE1 else self.job_timeout_s

    def _enforce_timeouts(self) -> None:
        """Terminate (then kill) the worker of a job past its limit; ``_reap`` reports the job with the reason."""
        now = time.monotonic()
        with self._lock:
            workers = list(self._workers.values())
        for w in workers:
            if w.job is None:
                continue
            limit = self._limit(w.job)
            if w.kill_reason is None and limit is not None and now - w.started_at > limit:
                w.kill_reason = (f"job ran past its time limit of {limit:g} s (XPCOMPUTE_JOB_TIMEOUT_S"
                                 f"{'' if w.job.kind != JobKind.STAGE1 else '; stage 1: XPCOMPUTE_STAGE1_LEASE_S'}); "
                                 f"its worker {w.name} was stopped")
                w.killed_at = now
                self.stats.timed_out += 1
                log.warning("%s (job %s)", w.kill_reason, w.job.job_id)
                with contextlib.suppress(OSError, ValueError):
                    w.process.terminate()
            elif w.kill_reason is not None and now - w.killed_at > 2.0 and w.process.is_alive():
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    w.process.kill()

    def _assign(self) -> None:
        with self._lock:
            now = time.monotonic()
            free = [w for w in self._workers.values() if w.job is None and w.process.is_alive()]
            held = [w for w in free if w.held_for is not None and now < w.held_until]
            idle = [w for w in free if w not in held]
            # a held worker is about to be free: no new worker for the jobs its report queues
            while self._queue and (idle or (not held and len(self._workers) < self.max_workers)):
                if not idle:
                    worker = self._spawn()
                    self._workers[worker.name] = worker
                    self.stats.peak_workers = max(self.stats.peak_workers, len(self._workers))
                    idle.append(worker)
                worker = idle.pop()
                message = self._queue.pop()
                self._queued.discard(message.job_id)
                try:
                    worker.conn.send({"job_id": message.job_id})
                except (OSError, ValueError):
                    self._queue.push(message, front=True)
                    self._queued.add(message.job_id)
                    continue
                worker.job = message
                worker.started_at = time.monotonic()

    def _receive(self, worker: _Worker) -> None:
        try:
            job_id, analysis_id, status, _error = worker.conn.recv()
        except (EOFError, OSError):
            return
        with self._lock:
            finished = worker.job
            worker.job = None
            worker.idle_since = time.monotonic()
            worker.jobs_done += 1
            self.stats.jobs += 1
            if status == "succeeded" and finished is not None and finished.kind == JobKind.SLICE:
                # a finished slice's fits outrank the queued slices: wait (briefly) until its report has
                # queued them, or this worker would take the next slice first and delay the first results
                worker.held_for = job_id
                worker.held_until = worker.idle_since + REPORT_HOLD_S
        if status != "skipped":
            self._callback(("report", job_id, analysis_id, status))

    def _reap(self) -> None:
        with self._lock:
            dead = [w for w in self._workers.values() if not w.process.is_alive()]
            for w in dead:
                del self._workers[w.name]
                self.stats.exited.append(w.process.exitcode)
        for w in dead:
            w.process.join(0.1)
            w.conn.close()
            if w.job is None:
                log.warning("idle worker %s exited on its own with code %s", w.name, w.process.exitcode)
            if w.job is not None:
                self.stats.died += 1
                reason = w.kill_reason or (
                    f"worker process {w.name} (pid {w.process.pid}) died with exit code {w.process.exitcode}"
                )
                log.warning("%s while running %s", reason, w.job.job_id)
                self._callback(("died", w.job.job_id, w.name, reason))

    def _retire_idle(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self._queue:
                return
            idle = [w for w in self._workers.values() if w.job is None and now - w.idle_since > self.idle_s]
            for w in idle:
                del self._workers[w.name]
                self.stats.retired += 1
        for w in idle:
            with contextlib.suppress(OSError, ValueError):
                w.conn.send(None)
            w.process.join(2.0)
            w.conn.close()

    def _stop_all(self, grace: float) -> None:
        """Ask every worker to exit, wait up to ``grace`` for running jobs, then terminate, kill and reap."""
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for w in workers:
            with contextlib.suppress(OSError, ValueError):
                w.conn.send(None)
        deadline = time.monotonic() + grace
        for w in workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
        for w in workers:
            if w.process.is_alive():
                log.warning("stopping worker %s: its job %s did not finish within the %g s shutdown grace period; "
                            "the job stays RUNNING and is reclaimed by the next start", w.name,
                            w.job.job_id if w.job else None, grace)
                w.process.terminate()
        for w in workers:
            w.process.join(2.0)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(2.0)
            with contextlib.suppress(OSError):
                w.conn.close()

    def _callback(self, item: tuple[str, ...]) -> None:
        with self._cb_ready:
            self._callbacks.append(item)
            self._cb_ready.notify()

    def _run_callbacks(self) -> None:
        while True:
            with self._cb_ready:
                while not self._callbacks:
                    self._cb_ready.wait()
                item = self._callbacks.popleft()
            if item[0] == "stop":
                return
            try:
                if item[0] == "report":
                    self._on_report(item[1], item[2], item[3])
                else:
                    self._on_died(item[1], item[2], item[3])
            except Exception:
                log.exception("coordinator callback failed for %s; the periodic tick will repair it", item[1])
            finally:
                self._release(item[1])

    def _release(self, job_id: str) -> None:
        """The report of ``job_id`` is processed: the worker that ran it may take its next job."""
        with self._lock:
            held = [w for w in self._workers.values() if w.held_for == job_id]
            for w in held:
                w.held_for = None
        if held:
            self._wake()


def stop_helper_processes() -> None:
    """Stop and reap this process's multiprocessing forkserver and resource tracker (when running).

    Why: they outlive a server that exits on SIGTERM otherwise (the issue saw both alive 15 s later). Both
    are restarted on demand by the next pool (``ensure_running``). CPython keeps them in private singletons;
    a Python without them is left alone.
    """
    from multiprocessing import forkserver, resource_tracker

    server = getattr(forkserver, "_forkserver", None)
    stop = getattr(server, "_stop", None)
    if callable(stop) and getattr(server, "_forkserver_pid", None) is not None:
        try:
            stop()
        except Exception:
            log.exception("could not stop the multiprocessing forkserver")
    tracker = getattr(resource_tracker, "_resource_tracker", None)
    lock = getattr(tracker, "_lock", None)
    if tracker is None or lock is None or not lock.acquire(timeout=1.0):
        return
    try:
        fd, pid = getattr(tracker, "_fd", None), getattr(tracker, "_pid", None)
        if fd is None or pid is None:
            return
        # closing our end stops it once no other process holds the pipe; the next pool starts a new one
        with contextlib.suppress(OSError):
            os.close(fd)
        tracker._fd = None
        tracker._pid = None
    finally:
        lock.release()
    _reap_helper(pid, "resource tracker")


def _reap_helper(pid: int, what: str, timeout: float = 5.0) -> None:
    """Wait (outside any lock) for a helper process of ours to exit; terminate it if it does not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.05)
    log.warning("the multiprocessing %s (pid %d) did not exit within %g s; terminating it", what, pid, timeout)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
