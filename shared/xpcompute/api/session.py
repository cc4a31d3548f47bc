"""Signing in from a browser: an API key exchanged for a short-lived session cookie, and CSRF tokens.

With API keys on, a program sends its key in a header (``XPCOMPUTE_API_KEY_HEADER``); a browser cannot.
``GET /login`` serves a form; ``POST /login`` checks the key and answers with two cookies:

* ``xpcompute_session``: ``v1.<key id>.<session id>.<expiry>.<HMAC-SHA256 of the rest>``, HttpOnly,
  SameSite=Strict, ``Secure`` when the request came over https (the scheme, or ``X-Forwarded-Proto`` behind a
  proxy), expiring after ``XPCOMPUTE_SESSION_TTL_S``. It holds the key's id (a digest), never the key; it is
  valid while its signature checks, it has not expired and its key is still configured, so removing a key
  ends its sessions.
* ``xpcompute_csrf``: the session's CSRF token, ``HMAC(secret, "csrf|" + session id)``, readable by the
  page's script (not HttpOnly), SameSite=Strict, same lifetime.

Every route accepts the session cookie as well as the header (the scorecard page polls the JSON API and
posts live slices to it). A request authenticated by the cookie that changes state (POST, PUT, PATCH,
DELETE) must carry the session's CSRF token in the ``X-CSRF-Token`` header (the page's script sends it) or,
for a plain HTML form, a ``csrf_token`` field; otherwise it is refused with 403 before its body is read.
Requests with the key in the header need no token: a browser cannot add that header to a cross-site request.

Signing key: ``XPCOMPUTE_SESSION_SECRET``, or when unset, a secret derived from the configured API keys (so
every server process and function with the same keys accepts the same cookies, and changing the keys ends
every session). ``POST /logout`` (with the token) clears both cookies. ``/login`` checks that a form post
comes from the page's own origin (login CSRF) and limits attempts per client address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.requests import cookie_parser

from xpcompute.api.security import RateLimiter, check_key, key_id
from xpcompute.config import Settings

SESSION_COOKIE = "xpcompute_session"
CSRF_COOKIE = "xpcompute_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: sign-in attempts per client address per minute
LOGIN_ATTEMPTS_PER_MINUTE = 20

Message = dict[str, Any]


@dataclass(frozen=True)
class Session:
    kid: str
    sid: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def session_secret(settings: Settings) -> bytes:
    """``XPCOMPUTE_SESSION_SECRET``, or a secret derived from the configured keys (see the module docstring)."""
    if settings.session_secret:
        return hashlib.sha256(b"xpcompute session secret|" + settings.session_secret.encode()).digest()
    material = "\n".join(sorted(settings.api_keys)).encode()
    return hmac.new(b"xpcompute session secret derived from the API keys v1", material, hashlib.sha256).digest()


class Sessions:
    """Issues and checks session cookies and their CSRF tokens for one settings object."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.ttl_s = int(settings.session_ttl_s)
        self._secret = session_secret(settings)
        self._kids = {key_id(k) for k in settings.api_keys}
        self._clock = clock

    # ---- the cookie -----------------------------------------------------------------
    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def issue(self, key: str) -> tuple[Session, str]:
        """A new session for an accepted ``key`` and its cookie value."""
        session = Session(key_id(key), secrets.token_urlsafe(18), int(self._clock()) + self.ttl_s)
        payload = f"v1.{session.kid}.{session.sid}.{session.expires_at}"
        return session, f"{payload}.{self._sign(payload)}"

    def verify(self, value: str | None) -> Session | None:
        """The session a cookie value names, or ``None`` (forged, altered, expired, or its key was removed)."""
        if not value or len(value) > 256:
            return None
        parts = value.split(".")
        if len(parts) != 5 or parts[0] != "v1" or not (parts[3].isascii() and parts[3].isdigit()):
            return None
        payload = ".".join(parts[:4])
        if not hmac.compare_digest(self._sign(payload).encode(), parts[4].encode("utf-8", "replace")):
            return None
        session = Session(parts[1], parts[2], int(parts[3]))
        if session.expires_at <= self._clock() or session.kid not in self._kids:
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        return self._sign(f"csrf|{session.sid}")

    def csrf_problem(self, session: Session, given: str | None) -> str | None:
        """Why ``given`` is not this session's CSRF token (``None`` when it is)."""
        if not given:
            return (f"this request is signed in by the session cookie and changes state, so it must carry the "
                    f"session's CSRF token (the {CSRF_HEADER} header, which the scorecard page sends, or a "
                    f"{CSRF_FIELD} form field); it has none. Reload the page, or send the API key in the "
                    f"{self.settings.api_key_header} header instead")
        if not hmac.compare_digest(given.encode("latin-1", "replace"), self.csrf_token(session).encode()):
            return ("the CSRF token does not belong to this session (a forged request, or a page from an earlier "
                    "session): reload the page and try again")
        return None

    # ---- requests -------------------------------------------------------------------
    def from_cookies(self, cookies: Mapping[str, str]) -> Session | None:
        return self.verify(cookies.get(SESSION_COOKIE))

    def admit(self, scope: Mapping[str, Any]) -> tuple[str | None, tuple[Message, Message] | None]:
        """For a request without the key header: ``(key id, None)`` when its session cookie admits it, else
        ``(None, response)``: 401 (a page request is sent to the sign-in page instead), or 403 for a
        state-changing request without the session's CSRF token."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        session = self.from_cookies(cookie_parser(headers.get("cookie", "")))
        method = str(scope.get("method", "GET")).upper()
        if session is None:
            path = str(scope.get("path", ""))
            if method == "GET" and path.endswith("/scorecard") and "text/html" in headers.get("accept", ""):
                root = str(scope.get("root_path", ""))
                full = path if path.startswith(root) else root + path  # ASGI servers differ on including it
                return None, _redirect(f"{root}/login?next={quote(full)}")
            problem = check_key(b"", [k.encode() for k in self.settings.api_keys], self.settings)
            return None, _json(401, "unauthorized", f"{problem}; in a browser, sign in at /login")
        if method in UNSAFE_METHODS:
            problem = self.csrf_problem(session, headers.get(CSRF_HEADER.lower()))
            if problem is not None:
                return None, _json(403, "csrf_failed", problem)
        return session.kid, None

    def cookies(self, request: Request, response: Response, session: Session | None, value: str = "") -> None:
        """Set (``session``) or clear (``None``) both cookies on ``response``."""
        secure = _https(request)
        path = request.scope.get("root_path") or "/"
        if session is None:
            for name, http_only in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
                response.delete_cookie(name, path=path, secure=secure, httponly=http_only, samesite="strict")
            return
        response.set_cookie(SESSION_COOKIE, value, max_age=self.ttl_s, path=path, secure=secure, httponly=True,
                            samesite="strict")
        response.set_cookie(CSRF_COOKIE, self.csrf_token(session), max_age=self.ttl_s, path=path, secure=secure,
                            httponly=False, samesite="strict")


def _https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def _json(status: int, code: str, message: str) -> tuple[Message, Message]:
    body = json.dumps({"error": code, "message": message}).encode()
    return ({"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]},
            {"type": "http.response.body", "body": body})


def _redirect(location: str) -> tuple[Message, Message]:
    return ({"type": "http.response.start", "status": 303,
             "headers": [(b"location", location.encode("latin-1", "replace")), (b"content-length", b"0"),
                         (b"cache-control", b"no-store")]},
            {"type": "http.response.body", "body": b""})


def safe_next(value: str | None, root: str) -> str:
    """Where to go after signing in: a path on this server only (no ``//host``, no scheme), else the login page."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value and len(value) < 2000:
        return value
    return f"{root}/login"


def _same_origin(request: Request) -> bool:
    """Whether a form post comes from this server's own pages (``Origin``/``Sec-Fetch-Site``), for /login."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def session_router(settings: Settings, sessions: Sessions) -> APIRouter:
    """``GET``/``POST /login`` and ``POST /logout`` (HTML; left out of /openapi.json like the scorecard page)."""
    router = APIRouter(include_in_schema=False)
    attempts = RateLimiter(LOGIN_ATTEMPTS_PER_MINUTE)

    def page(request: Request, status: int = 200, error: str = "", next_path: str = "") -> HTMLResponse:
        from xpcompute.api.scorecard_page import document
        from xpcompute.templates import render  # jinja2 only for the login page, not every API cold start

        session = sessions.from_cookies(request.cookies) if settings.auth_enabled else None
        expires = (datetime.fromtimestamp(session.expires_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
                   if session is not None else "")
        body = render("page/login.html.j2", auth=settings.auth_enabled, error=error, next=next_path,
                      header=settings.api_key_header, signed_in=session is not None, expires=expires,
                      kid=session.kid if session is not None else "",
                      csrf=sessions.csrf_token(session) if session is not None else "",
                      ttl_min=max(1, sessions.ttl_s // 60))
        return HTMLResponse(document("Sign in · xpcompute", body), status_code=status,
                            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})

    @router.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "") -> HTMLResponse:
        """The sign-in form (or, signed in, when the session ends and a sign-out button)."""
        return page(request, next_path=next if next.startswith("/") else "")

    @router.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        """Exchange the key for the session cookies and go on to ``next``; 401 with the form again if wrong."""
        form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
        next_path = (form.get("next") or [""])[0]
        root = request.scope.get("root_path", "")
        if not settings.auth_enabled:
            return RedirectResponse(safe_next(next_path, root), status_code=303)
        if not _same_origin(request):
            return page(request, 403, "This sign-in was posted from another site, so it was refused. Open this "
                        "page on the server itself and sign in here.", next_path)
        client = request.client.host if request.client else "unknown"
        if not attempts.allow(f"login#{client}"):
            return page(request, 429, f"Too many sign-in attempts from this address (at most "
                        f"{LOGIN_ATTEMPTS_PER_MINUTE} a minute); wait a minute and try again.", next_path)
        key = (form.get("key") or [""])[0].strip()
        if check_key(key.encode("utf-8", "replace"), [k.encode() for k in settings.api_keys], settings) is not None:
            return page(request, 401, "That is not an accepted API key.", next_path)
        session, value = sessions.issue(key)
        response = RedirectResponse(safe_next(next_path, root), status_code=303)
        sessions.cookies(request, response, session, value)
        return response

    @router.post("/logout", response_class=HTMLResponse)
    async def logout(request: Request) -> Response:
        """Clear the session cookies (the form carries the CSRF token) and show the sign-in page."""
        session = sessions.from_cookies(request.cookies)
        if session is not None:
            form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
            given = request.headers.get(CSRF_HEADER) or (form.get(CSRF_FIELD) or [""])[0]
            problem = sessions.csrf_problem(session, given)
            if problem is not None:
                return page(request, 403, f"Not signed out: {problem}.")
        response = RedirectResponse(f"{request.scope.get('root_path', '')}/login", status_code=303)
        sessions.cookies(request, response, None)
        return response

    return router
