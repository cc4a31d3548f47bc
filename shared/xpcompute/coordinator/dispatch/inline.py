"""Run jobs in the calling thread: the dispatcher for notebooks and tests.

``submit`` queues messages and, unless this thread is already draining the
queue, drains it: jobs dispatched while a job runs (the fits released by a
finished slice) join the same loop instead of recursing, so an analysis runs
to completion inside the ``submit`` of its creation.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence

from xpcompute.coordinator.dispatch.base import Message
from xpcompute.coordinator.messages import JobFinished, RunJob


class InlineDispatcher:
    def __init__(self, run: Callable[[RunJob], None], finished: Callable[[JobFinished], None]) -> None:
        self._run = run
        self._finished = finished
        self._queue: deque[Message] = deque()
        self._local = threading.local()
        self._lock = threading.Lock()

    def submit(self, messages: Sequence[Message]) -> None:
        with self._lock:
            self._queue.extend(messages)
        if getattr(self._local, "draining", False):
            return
        self._local.draining = True
        try:
            while True:
                with self._lock:
                    if not self._queue:
                        return
                    message = self._queue.popleft()
                if isinstance(message, RunJob):
                    self._run(message)
                else:
                    self._finished(message)
        finally:
            self._local.draining = False

    def close(self) -> None:
        with self._lock:
            self._queue.clear()
