"""Edge protections: the API-key check and the request body size limit.

The body limit is an ASGI middleware so it also stops a chunked upload that
sends no Content-Length: it counts bytes as they arrive and answers 413 as
soon as the limit is passed, before the JSON parser sees anything.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException, Request

from xpcompute.config import Settings
from xpcompute.errors import XPError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class UnauthorizedError(XPError):
    status = 401
    code = "unauthorized"


def _too_large_message(max_bytes: int) -> str:
    return (
        f"request body exceeds {max_bytes} bytes (XPCOMPUTE_MAX_BODY_BYTES); send fewer slices or metrics per request"
    )


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` mid-upload; an HTTPException so the framework answers it as a 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, detail=_too_large_message(max_bytes))


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._reject(send)
                return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = json.dumps({
            "error": "body_too_large",
            "message": _too_large_message(self.max_bytes),
        }).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def api_key_checker(settings: Settings) -> Callable[[Request], None]:
    """A FastAPI dependency that accepts a request only with a configured key in the configured header."""
    keys = [k.encode() for k in settings.api_keys]

    def check(request: Request) -> None:
        if not settings.auth_enabled:
            return
        if not keys:
            raise UnauthorizedError(
                "API-key authentication is on but no key is configured; set XPCOMPUTE_API_KEYS (or XPCOMPUTE_AUTH=off)"
            )
        given = request.headers.get(settings.api_key_header, "").encode()
        if not any(hmac.compare_digest(given, k) for k in keys):
            raise UnauthorizedError(f"missing or wrong API key: send it in the {settings.api_key_header} header")

    return check
