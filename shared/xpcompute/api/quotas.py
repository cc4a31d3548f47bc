"""Per-key quotas that hold across every server process sharing one state store.

* **Request rate** (``XPCOMPUTE_RATE_PER_KEY``): a sliding-window counter per key. Each request adds one to
  its key's counter for the current minute (one atomic write, ``coordinator/state/quotas.py``); the rate is
  ``previous minute x (share of the window still ahead) + this minute``, so a burst at the end of one minute
  still counts at the start of the next. A refused request takes its one back, so a client that keeps
  hammering is not locked out longer than the rate says. The previous minute's count is final once the
  minute is over and is read once per key per process.
* **Analyses running at once** (``XPCOMPUTE_MAX_ANALYSES_PER_KEY``): a key's running analyses are holds in
  the store; a new analysis takes one with a conditional write that fails at the limit, so two processes
  at the limit cannot both start one. Holds of analyses that have finished (or of submissions that never
  created their analysis, after ``RESERVATION_S``) are dropped when the key is at its limit.

When the store cannot be reached, the rate falls back to a per-process token bucket (``RateLimiter``) with a
logged warning, so an outage of the quota store slows nobody down; the analysis quota's check fails with the
store error, as the submission itself would.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from xpcompute.api.security import QuotaError, RateLimiter
from xpcompute.coordinator.jobs import AnalysisState
from xpcompute.coordinator.state.base import StateStore
from xpcompute.coordinator.state.quotas import QuotaStore
from xpcompute.errors import NotFoundError, StorageError

log = logging.getLogger(__name__)

#: a hold whose analysis does not exist yet (its submission is planning it) counts this long
RESERVATION_S = 600.0
WINDOW_S = 60.0


class SharedRateLimiter:
    """``per_minute`` requests per key over a sliding minute, counted in the shared store."""

    def __init__(self, store: Callable[[], QuotaStore], per_minute: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.per_minute = per_minute
        self._store = store
        self._clock = clock
        self._fallback = RateLimiter(per_minute)
        self._finished: dict[tuple[str, int], int] = {}  # (key id, minute) -> its final count
        self._lock = threading.Lock()

    def allow(self, kid: str) -> bool:
        now = self._clock()
        minute = int(now // WINDOW_S)
        try:
            store = self._store()
            name = f"rate#{kid}#{minute}"
            current = store.count(name, 1, (minute + 2) * WINDOW_S)
            previous = self._previous(store, kid, minute - 1)
        except StorageError as exc:
            log.warning("the shared request-rate counter is unavailable (%s); limiting this process alone", exc)
            return self._fallback.allow(kid)
        ahead = 1.0 - (now - minute * WINDOW_S) / WINDOW_S
        if previous * ahead + current <= self.per_minute:
            return True
        with contextlib.suppress(StorageError):
            store.count(name, -1, (minute + 2) * WINDOW_S)  # a refused request does not count
        return False

    def _previous(self, store: QuotaStore, kid: str, minute: int) -> int:
        with self._lock:
            cached = self._finished.get((kid, minute))
        if cached is not None:
            return cached
        n = store.count(f"rate#{kid}#{minute}", 0, (minute + 2) * WINDOW_S)
        with self._lock:
            if len(self._finished) > 10_000:
                self._finished.clear()
            self._finished[(kid, minute)] = n
        return n


class SharedKeyQuota:
    """Analyses each key has running, across processes, held to ``limit``."""

    def __init__(self, store: Callable[[], QuotaStore], state: Callable[[], StateStore], limit: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self._store = store
        self._state = state
        self._clock = clock

    def acquire(self, kid: str, analysis_id: str) -> str:
        """Take a hold for ``analysis_id`` (about to be submitted); ``QuotaError`` (429) at the limit.

        Returns the hold, for ``release`` when the submission fails.
        """
        store = self._store()
        entry = f"{analysis_id}|{int(self._clock())}"
        for _ in range(3):
            if store.try_hold(kid, entry, self.limit):
                return entry
            held = store.holds(kid)
            stale = [e for e in held if not self._running(e)]
            if not stale:
                raise QuotaError(
                    f"this API key has {len(held)} analyses running; at most {self.limit} may run at once per key "
                    "(XPCOMPUTE_MAX_ANALYSES_PER_KEY), counted across every server sharing the state store: "
                    "wait for one to finish"
                )
            store.drop_holds(kid, stale)
        raise QuotaError(f"this API key is at its limit of {self.limit} running analyses "
                         "(XPCOMPUTE_MAX_ANALYSES_PER_KEY); wait for one to finish")

    def release(self, kid: str, entry: str) -> None:
        """Give back a hold whose submission failed."""
        try:
            self._store().drop_holds(kid, [entry])
        except StorageError as exc:  # it is dropped as stale later
            log.warning("could not release quota hold %s: %s", entry, exc)

    def _running(self, entry: str) -> bool:
        analysis_id, _, at = entry.rpartition("|")
        try:
            return self._state().get_analysis(analysis_id).state == AnalysisState.RUNNING
        except NotFoundError:
            return self._clock() - float(at or 0) < RESERVATION_S
