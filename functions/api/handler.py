"""API function: the FastAPI app behind API Gateway, through mangum (which parses the HTTP event)."""

from __future__ import annotations

from functools import cache
from typing import Any

from mangum import Mangum

from xpcompute.api.app import create_app
from xpcompute.config import Settings
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
    response: dict[str, Any] = asgi()(event, context)
    return response
