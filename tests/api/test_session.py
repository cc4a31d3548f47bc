"""Issue 13: a browser signs in at /login (the key for a short-lived, HttpOnly, SameSite=Strict session cookie),
every route accepts the cookie, and a cookie-authenticated request that changes state needs the session's CSRF
token (403 without it). The browser side is tests/ui/test_scorecard_login.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_helpers import analysis_table, publish

from xpcompute.api.app import Backend, create_app
from xpcompute.api.session import CSRF_COOKIE, SESSION_COOKIE, Sessions
from xpcompute.config import Settings
from xpcompute.coordinator.runtime import build_coordinator
from xpcompute.storage.objects import LocalObjectStore

KEY = "k-session-test-0123456789"
SLICE = {"all_of": [{"column": "country", "values": ["US"]}]}


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(**{"home": tmp_path, "dispatch": "inline", "slice_engine": "arrow", "auth": "on",
                       "api_keys": f"{KEY},other-key", "session_ttl_s": 900, **kw})


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    settings = _settings(tmp_path)
    publish(LocalObjectStore(settings.objects_root), "exp", analysis_table(400))
    backend = Backend(settings, coordinator=build_coordinator(settings, dispatcher=None))  # jobs stay queued
    with TestClient(create_app(settings, backend), follow_redirects=False) as client:
        created = client.post("/experiments/exp/analyses", json={"metrics": ["hours"]}, headers={"X-API-Key": KEY})
        assert created.status_code == 202, created.text
        yield client, created.json()["analysis_id"]


def _sign_in(client: TestClient, key: str = KEY, **headers: str) -> dict[str, str]:
    answer = client.post("/login", data={"key": key, "next": "/experiments"}, headers=headers)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/experiments"
    return {name: client.cookies[name] for name in (SESSION_COOKIE, CSRF_COOKIE)}


def _set_cookie(answer: object, name: str) -> str:
    headers = answer.headers.get_list("set-cookie")  # type: ignore[attr-defined]
    found = [h for h in headers if h.startswith(f"{name}=")]
    assert len(found) == 1, headers
    return str(found[0])


def test_the_login_page_exchanges_the_key_for_a_short_lived_httponly_strict_cookie(
        served: tuple[TestClient, str]) -> None:
    client, _ = served
    page = client.get("/login", params={"next": "/analyses/x/scorecard"})
    assert page.status_code == 200 and 'id="login-form"' in page.text and 'type="password"' in page.text
    assert 'value="/analyses/x/scorecard"' in page.text and "<script" not in page.text

    wrong = client.post("/login", data={"key": "guess"})
    assert wrong.status_code == 401 and "not an accepted API key" in wrong.text and not client.cookies

    answer = client.post("/login", data={"key": KEY, "next": "/analyses/x/scorecard"})
    assert answer.status_code == 303 and answer.headers["location"] == "/analyses/x/scorecard"
    session = _set_cookie(answer, SESSION_COOKIE).lower()
    assert "httponly" in session and "samesite=strict" in session and "max-age=900" in session
    assert "path=/" in session and "secure" not in session  # plain http here
    csrf = _set_cookie(answer, CSRF_COOKIE).lower()
    assert "httponly" not in csrf and "samesite=strict" in csrf  # the page's script reads it
    assert KEY not in answer.headers.get("set-cookie", "")  # the key itself never goes into a cookie

    signed_in = client.get("/login")
    assert "Signed in" in signed_in.text and 'id="logout-form"' in signed_in.text

    # behind an https proxy the cookies are Secure; an off-site ``next`` is not followed
    client.cookies.clear()
    https = client.post("/login", data={"key": KEY, "next": "//evil.example/x"},
                        headers={"X-Forwarded-Proto": "https"})
    assert https.headers["location"] == "/login"
    assert "secure" in _set_cookie(https, SESSION_COOKIE).lower()
    served_over_https = TestClient(client.app, base_url="https://testserver", follow_redirects=False)
    direct = served_over_https.post("/login", data={"key": KEY})
    assert direct.status_code == 303 and "secure" in _set_cookie(direct, SESSION_COOKIE).lower()
    assert "secure" in _set_cookie(direct, CSRF_COOKIE).lower()


def test_the_cookie_admits_every_route_and_state_changes_need_the_csrf_token(served: tuple[TestClient, str]) -> None:
    client, aid = served
    cookies = _sign_in(client)
    assert client.get("/experiments").status_code == 200  # the JSON API
    assert client.get(f"/analyses/{aid}").status_code == 200
    page = client.get(f"/analyses/{aid}/scorecard")
    assert page.status_code == 200 and 'id="slice-form"' in page.text

    missing = client.post(f"/analyses/{aid}/slices", json=SLICE)
    assert missing.status_code == 403 and missing.json()["error"] == "csrf_failed"
    assert "X-CSRF-Token" in missing.json()["message"] and "it has none" in missing.json()["message"]
    wrong = client.post(f"/analyses/{aid}/slices", json=SLICE, headers={"X-CSRF-Token": "x" + cookies[CSRF_COOKIE]})
    assert wrong.status_code == 403 and "does not belong to this session" in wrong.json()["message"]
    # the 403 comes before the body is read: malformed JSON without the token is still a 403, not a 422
    assert client.post(f"/analyses/{aid}/slices", content=b"{not json",
                       headers={"content-type": "application/json"}).status_code == 403
    assert client.get(f"/analyses/{aid}").json()["progress"]["total"] == 2  # nothing was queued

    ok = client.post(f"/analyses/{aid}/slices", json=SLICE, headers={"X-CSRF-Token": cookies[CSRF_COOKIE]})
    assert ok.status_code == 202, ok.text

    # a token belongs to its session: another session's token is refused
    other = TestClient(client.app, follow_redirects=False)
    other_cookies = _sign_in(other)
    assert other_cookies[CSRF_COOKIE] != cookies[CSRF_COOKIE]
    crossed = client.post(f"/analyses/{aid}/slices", json=SLICE, headers={"X-CSRF-Token": other_cookies[CSRF_COOKIE]})
    assert crossed.status_code == 403

    # a program sending the key in the header needs no token
    client.cookies.clear()
    keyed = client.post(f"/analyses/{aid}/slices", json={"all_of": [{"column": "country", "values": ["CA"]}]},
                        headers={"X-API-Key": KEY})
    assert keyed.status_code == 202


def test_forged_expired_or_orphaned_cookies_are_refused(served: tuple[TestClient, str], tmp_path: Path) -> None:
    client, _ = served
    cookies = _sign_in(client)
    value = cookies[SESSION_COOKIE]
    version, kid, sid, expires, signature = value.split(".")
    forgeries = {
        "altered expiry": f"{version}.{kid}.{sid}.{int(expires) + 86400}.{signature}",
        "other key id": f"{version}.{'0' * 16}.{sid}.{expires}.{signature}",
        "no signature": f"{version}.{kid}.{sid}.{expires}.",
        "junk": "x" * 40,
        "not ascii": f"{version}.{kid}.{sid}.{expires}.é{signature[1:]}",
    }
    for what, forged in forgeries.items():
        client.cookies.clear()  # sent as raw header bytes: a browser may send any byte, httpx's jar only ASCII
        answer = client.get("/experiments", headers={"cookie": f"{SESSION_COOKIE}={forged}".encode("latin-1")})
        assert answer.status_code == 401, what
        assert "sign in at /login" in answer.json()["message"]

    settings = _settings(tmp_path)
    clock = [0.0]
    sessions = Sessions(settings, clock=lambda: clock[0])
    session, fresh = sessions.issue(KEY)
    assert sessions.verify(fresh) == session
    clock[0] = 899.0
    assert sessions.verify(fresh) is not None
    clock[0] = 900.0
    assert sessions.verify(fresh) is None  # expired after XPCOMPUTE_SESSION_TTL_S
    clock[0] = 0.0
    rotated = Sessions(_settings(tmp_path, api_keys="a-new-key"), clock=lambda: clock[0])
    assert rotated.verify(fresh) is None  # its key is no longer configured: the session is over
    pinned = Sessions(_settings(tmp_path, session_secret="s3cret"), clock=lambda: clock[0])
    assert pinned.verify(fresh) is None and pinned.verify(pinned.issue(KEY)[1]) is not None


def test_logout_needs_the_token_and_clears_both_cookies(served: tuple[TestClient, str]) -> None:
    client, _ = served
    cookies = _sign_in(client)
    refused = client.post("/logout", data={})
    assert refused.status_code == 403 and "Not signed out" in refused.text
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token is not None and token.group(1) == cookies[CSRF_COOKIE]
    out = client.post("/logout", data={"csrf_token": token.group(1)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    cleared = [h.lower() for h in out.headers.get_list("set-cookie")]
    assert any(h.startswith(f"{SESSION_COOKIE}=") and "max-age=0" in h for h in cleared)
    assert any(h.startswith(f"{CSRF_COOKIE}=") and "max-age=0" in h for h in cleared)
    assert client.get("/experiments").status_code == 401


def test_login_refuses_a_cross_site_post_and_pages_send_a_browser_to_sign_in(served: tuple[TestClient, str]) -> None:
    client, aid = served
    forged = client.post("/login", data={"key": KEY}, headers={"Origin": "http://evil.example"})
    assert forged.status_code == 403 and not client.cookies
    assert client.post("/login", data={"key": KEY}, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    same = client.post("/login", data={"key": KEY}, headers={"Origin": "http://testserver"})
    assert same.status_code == 303
    client.cookies.clear()
    page = client.get(f"/analyses/{aid}/scorecard", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == f"/login?next=/analyses/{aid}/scorecard"
    assert client.get(f"/analyses/{aid}/scorecard").status_code == 401  # a program gets the JSON 401


def test_openapi_still_describes_only_the_json_api(served: tuple[TestClient, str]) -> None:
    client, _ = served
    spec = client.get("/openapi.json").json()
    assert "/login" not in spec["paths"] and "/logout" not in spec["paths"]
    assert set(spec["components"]["securitySchemes"]) == {"ApiKey"}
    assert "/login" in spec["components"]["securitySchemes"]["ApiKey"]["description"]


def test_a_session_shares_its_keys_quotas(tmp_path: Path) -> None:
    """Signed in with a key, a browser draws on that key's quotas: the analysis a program started with the key in
    the header counts against the session's submissions."""
    settings = _settings(tmp_path, max_analyses_per_key=1)
    publish(LocalObjectStore(settings.objects_root), "exp", analysis_table(400))
    backend = Backend(settings, coordinator=build_coordinator(settings, dispatcher=None))  # analyses stay RUNNING
    with TestClient(create_app(settings, backend), follow_redirects=False) as client:
        assert client.post("/experiments/exp/analyses", json={"metrics": ["hours"]},
                           headers={"X-API-Key": KEY}).status_code == 202
        cookies = _sign_in(client)
        over = client.post("/experiments/exp/analyses", json={"metrics": ["hours"]},
                           headers={"X-CSRF-Token": cookies[CSRF_COOKIE]})
        assert over.status_code == 429 and "(XPCOMPUTE_MAX_ANALYSES_PER_KEY)" in over.json()["message"]
        client.cookies.clear()
        other = _sign_in(client, key="other-key")
        assert client.post("/experiments/exp/analyses", json={"metrics": ["hours"]},
                           headers={"X-CSRF-Token": other[CSRF_COOKIE]}).status_code == 202
