"""Coordinator function: advance the state machine after a job, fan out, finalize; housekeeping on a schedule."""

from __future__ import annotations

from functools import cache
from typing import Any

from xpcompute.initphase import init_phase

# the init phase: the modules this function's work runs, with the collector paused (xpcompute.initphase)
with init_phase():
    from xpcompute.config import Settings
    from xpcompute.coordinator.events import handle_coordinator_event
    from xpcompute.coordinator.runtime import FunctionRuntime, error_reply
    from xpcompute.coordinator.worker import preload
    from xpcompute.plugins import load_plugins

    # the team's metrics repo (entry points, XPCOMPUTE_PLUGINS) registers its metrics and models before any job
    load_plugins(origin="the coordinator function")
    preload("coordinator")  # what its work runs, loaded here in the init phase rather than by the first job


@cache
def runtime() -> FunctionRuntime:
    """Clients are built once per warm container; no data is kept between calls."""
    return FunctionRuntime(Settings.from_env())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Any exception becomes a typed JSON reply (``runtime.error_reply``): no traceback leaves the function."""
    try:
        return handle_coordinator_event(runtime(), event)
    except Exception as exc:
        return error_reply(exc, "the coordinator function")
