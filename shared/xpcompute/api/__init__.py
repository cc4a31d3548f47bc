"""The HTTP API: ``create_app`` (FastAPI, OpenAPI at /openapi.json) and ``serve`` (uvicorn)."""

from __future__ import annotations

from xpcompute.api.app import create_app, serve

__all__ = ["create_app", "serve"]
