"""Edge protections: the API-key check, per-key quotas, the request body size limit, and path redaction.

The body limit is an ASGI middleware so it also stops a chunked upload that
sends no Content-Length: it counts bytes as they arrive and answers 413 as
soon as the limit is passed, before the JSON parser sees anything.

The API key is checked twice: by an ASGI middleware before routing (so a
request without a key gets 401 even when its body is malformed JSON, which
FastAPI would otherwise parse and refuse with 422 first) and by the routes'
dependency, which is also what declares the key's security scheme in
``/openapi.json``. The middleware also holds each key to a request rate
(``XPCOMPUTE_RATE_PER_KEY``); the app bounds the analyses one key may have
running (``XPCOMPUTE_MAX_ANALYSES_PER_KEY``). The app gives both the shared
versions in ``api/quotas.py`` (counted in the state store, so every process on
it enforces one limit); ``RateLimiter`` here is this process's own (the
fallback while that store cannot be reached). A browser without the key header may be admitted by its session cookie
(``api/session.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

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


class QuotaError(XPError):
    """A per-key quota is used up (429); the message names the limit and its variable."""

    status = 429
    code = "quota_exceeded"


#: paths anyone may read without a key: liveness, the API's own description, and signing in and out
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/login",
                          "/logout"})


def _json_response(status: int, code: str, message: str) -> tuple[Message, Message]:
    body = json.dumps({"error": code, "message": message}).encode()
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
    return start, {"type": "http.response.body", "body": body}


def key_id(key: str) -> str:
    """A short digest that names a key in logs and quota tables without keeping the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests a minute, in bursts of up to ``per_minute``."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, last refill)
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * self.per_minute / 60.0)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > 10_000:  # keys are configured, so this only bounds memory against junk
                self._buckets.pop(next(iter(self._buckets)))
            return True


class ApiKeyMiddleware:
    """401 before routing and body parsing for a missing or wrong key; 429 past the key's request rate.

    Without the key header, ``sessions`` (``api.session.Sessions``) may admit the request by its session
    cookie, and refuses (403) a state-changing one without the session's CSRF token. ``rate`` is the
    per-key limiter (``api.quotas.SharedRateLimiter``: shared by every process on the state store); without
    one, this process's own token bucket.
    """

    def __init__(self, app: ASGIApp, settings: Settings, sessions: Any = None, rate: Any = None) -> None:
        self.app = app
        self.settings = settings
        self.keys = [k.encode() for k in settings.api_keys]
        self.header = settings.api_key_header.lower().encode()
        self.sessions = sessions
        self.rate = rate if rate is not None else RateLimiter(settings.rate_per_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.settings.auth_enabled or scope.get("path") in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers", []):
            if name == self.header:
                given = value
                break
        if not given and self.sessions is not None:  # a browser signed in at /login: its session cookie
            kid, refusal = self.sessions.admit(scope)
            if refusal is not None:
                await send(refusal[0])
                await send(refusal[1])
                return
            problem = None
        else:
            problem = check_key(given, self.keys, self.settings)
            kid = key_id(given.decode("latin-1"))
        if problem is None and not await anyio.to_thread.run_sync(self.rate.allow, kid):
            start, body = _json_response(429, QuotaError.code, (
                f"this API key sent more than {self.settings.rate_per_key} requests in the last minute "
                "(XPCOMPUTE_RATE_PER_KEY); wait and retry"))
            await send(start)
            await send(body)
            return
        if problem is not None:
            start, body = _json_response(401, UnauthorizedError.code, problem)
            await send(start)
            await send(body)
            return
        await self.app(scope, receive, send)


def check_key(given: bytes, keys: list[bytes], settings: Settings) -> str | None:
    """Why ``given`` is not an accepted key (``None`` when it is); constant-time comparison."""
    if not keys:
        return "API-key authentication is on but no key is configured; set XPCOMPUTE_API_KEYS (or XPCOMPUTE_AUTH=off)"
    if not any(hmac.compare_digest(given, k) for k in keys):
        return f"missing or wrong API key: send it in the {settings.api_key_header} header"
    return None


def elide(message: str, limit: int = 2000) -> str:
    """``message`` cut in the middle to at most about ``limit`` characters: a 200,000-character name sent in a
    request is not echoed back whole, while the end of the message (what to fix) stays."""
    if len(message) <= limit:
        return message
    head, tail = limit // 2, limit // 2 - 40
    return f"{message[:head]} ... [{len(message) - head - tail} characters left out] ... {message[-tail:]}"


def redact_paths(message: str, roots: Iterable[str | Path]) -> str:
    """``message`` with the server's own folders (store root, home) cut out, so keys read relative to the store.

    Why: an error a client sees must not disclose where the server keeps its data.
    """
    for root in sorted({str(Path(r).resolve()) for r in roots if str(r) and "://" not in str(r)}, key=len, reverse=True):
        if root not in ("/", ""):
            message = message.replace(root + "/", "").replace(root, "<store>")
    return message


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


def api_key_checker(settings: Settings, sessions: Any = None) -> Callable[..., None]:
    """A FastAPI dependency that accepts a request only with a configured key in the configured header
    (or, with ``sessions``, a valid session cookie from ``POST /login``; the middleware checked its CSRF token).

    Declared through ``APIKeyHeader``, so ``/openapi.json`` lists the scheme and every route that needs it.
    """
    keys = [k.encode() for k in settings.api_keys]
    scheme = APIKeyHeader(name=settings.api_key_header, auto_error=False, scheme_name="ApiKey",
                          description="An accepted API key (XPCOMPUTE_API_KEYS); required unless XPCOMPUTE_AUTH "
                          "is off. A browser may sign in at /login instead (a session cookie; state-changing "
                          "requests then carry its CSRF token in the X-CSRF-Token header).")

    def check(request: Request, key: str | None = Security(scheme)) -> None:
        if not settings.auth_enabled:
            return
        if not key and sessions is not None and sessions.from_cookies(request.cookies) is not None:
            return
        problem = check_key((key or "").encode("latin-1", "replace"), keys, settings)
        if problem is not None:
            raise UnauthorizedError(problem)

    return check
