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
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import multiprocessing as mp
import os
import socket
import threading
import time
from collections import deque
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


@dataclass
class PoolStats:
    """Counters for tests and benchmarks."""

    started: int = 0
    retired: int = 0
    died: int = 0
    jobs: int = 0
    peak_workers: int = 0
    exited: list[int | None] = field(default_factory=list)  # exit codes of workers that ended on their own


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
    ) -> None:
        self._settings = settings_json
        self._on_report = on_report
        self._on_died = on_died
        self.max_workers = max(1, max_workers)
        self.idle_s = idle_s
        self._ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload(["xpcompute.coordinator.worker", "xpcompute.models"])
        self._lock = threading.Lock()
        self._queue: list[tuple[int, int, RunJob]] = []  # heap: (priority, arrival, message)
        self._arrivals = itertools.count()
        self._queued: set[str] = set()
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
        self._scheduler.start()
        self._callback_thread.start()

    # ---- Dispatcher ---------------------------------------------------------
    def submit(self, messages: Sequence[Message]) -> None:
        added = False
        with self._lock:
            for m in messages:
                if isinstance(m, RunJob) and m.job_id not in self._queued and not self._held(m.job_id):
                    heapq.heappush(self._queue, (m.priority, next(self._arrivals), m))
                    self._queued.add(m.job_id)
                    added = True
        if added:
            self._wake()

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting work, let running jobs finish (up to ``timeout``), stop every worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.clear()
            self._queued.clear()
        self._wake()
        self._scheduler.join(timeout)
        with self._cb_ready:
            self._callbacks.append(("stop",))
            self._cb_ready.notify()
        self._callback_thread.join(timeout)
        self._wake_r.close()
        self._wake_w.close()

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

    def _schedule(self) -> None:
        while True:
            with self._lock:
                closed = self._closed
            if closed:
                self._stop_all()
                return
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
            self._reap()
            self._retire_idle()

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
                entry = heapq.heappop(self._queue)
                message = entry[2]
                self._queued.discard(message.job_id)
                try:
                    worker.conn.send({"job_id": message.job_id})
                except (OSError, ValueError):
                    heapq.heappush(self._queue, entry)
                    self._queued.add(message.job_id)
                    continue
                worker.job = message

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
                reason = f"worker process {w.name} (pid {w.process.pid}) died with exit code {w.process.exitcode}"
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

    def _stop_all(self) -> None:
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for w in workers:
            with contextlib.suppress(OSError, ValueError):
                w.conn.send(None)
        deadline = time.monotonic() + 10.0
        for w in workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(1.0)
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
