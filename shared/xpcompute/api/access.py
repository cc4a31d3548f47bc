"""Who a request is, and what one key may still do: the app's single view of sessions and shared quotas.

``create_app`` builds one ``Access``: the session cookies of ``api/session.py``, the request-rate limiter and
the running-analyses quota of ``api/quotas.py`` (counted in the state store the backend opens, so every
server process on that store enforces one limit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property

from fastapi import Request

from xpcompute.api.quotas import SharedKeyQuota, SharedRateLimiter
from xpcompute.api.security import key_id
from xpcompute.api.session import Sessions
from xpcompute.config import Settings
from xpcompute.coordinator.state.base import StateStore
from xpcompute.coordinator.state.quotas import QuotaStore, open_quota_store


class Access:
    def __init__(self, settings: Settings, state: Callable[[], StateStore]) -> None:
        self.settings = settings
        self.sessions = Sessions(settings)
        self.rate = SharedRateLimiter(lambda: self.quota_store, settings.rate_per_key)
        self.analyses = SharedKeyQuota(lambda: self.quota_store, state, settings.max_analyses_per_key)

    @cached_property
    def quota_store(self) -> QuotaStore:
        """Opened on first use (after the backend has started, so the state store exists)."""
        return open_quota_store(self.settings)

    def key_of(self, request: Request) -> str | None:
        """The id of the key a request acts for (its header's, or its session's); ``None`` with auth off."""
        if not self.settings.auth_enabled:
            return None
        given = request.headers.get(self.settings.api_key_header)
        if given:
            return key_id(given)
        session = self.sessions.from_cookies(request.cookies)
        return session.kid if session is not None else None

    @contextmanager
    def analysis_slot(self, request: Request, analysis_id: str) -> Iterator[None]:
        """Hold one of the key's running-analysis slots for ``analysis_id`` (429 at the limit); the hold is
        given back when the body raises (the analysis was not created)."""
        kid = self.key_of(request)
        if kid is None:
            yield
            return
        hold = self.analyses.acquire(kid, analysis_id)
        try:
            yield
        except BaseException:
            self.analyses.release(kid, hold)
            raise
