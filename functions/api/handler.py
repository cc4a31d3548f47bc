"""API function: the FastAPI app behind API Gateway, through mangum (which parses the HTTP event)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from xpcompute.initphase import init_phase

# the init phase: the modules this function's work runs, with the collector paused (xpcompute.initphase)
with init_phase():
    from mangum import Mangum

    from xpcompute.api.app import create_app
    from xpcompute.config import Settings
    from xpcompute.coordinator.runtime import error_reply
    from xpcompute.errors import XPError
    from xpcompute.plugins import load_plugins

    # the team's metrics repo (entry points, XPCOMPUTE_PLUGINS) registers its metrics and models before any job
    load_plugins(origin="the api function")


@cache
def asgi() -> Mangum:
    """Built once per warm container; the backend starts here, not per request (lifespan off)."""
    app = create_app(Settings.from_env())
    app.state.backend.start()
    return Mangum(app, lifespan="off")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The app answers its own errors as JSON; an event mangum cannot read (or a failure around the app) is
    answered here as an API Gateway response with a typed JSON body, never a traceback."""
    try:
        response: dict[str, Any] = asgi()(event, context)
        return response
    except Exception as exc:
        reply = error_reply(exc, "the api function")
        if not isinstance(exc, XPError) and _unreadable_event(exc):
            reply = {"error": "invalid_event", "status": 400,
                     "message": "not an API Gateway or function URL event: send an HTTP request through the gateway"}
        return {"statusCode": reply["status"], "headers": {"content-type": "application/json"},
                "body": json.dumps({"error": reply["error"], "message": reply["message"]})}


def _unreadable_event(exc: Exception) -> bool:
    """mangum raises ``RuntimeError`` when no handler of its own matches the event's shape."""
    return isinstance(exc, RuntimeError) and "unable to infer" in str(exc)
