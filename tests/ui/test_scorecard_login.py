"""The scorecard page with API keys on, in chromium: sign in with the key (no header to paste), use the page's
live-slice form, and see forged cross-origin posts refused (issue 13).

The server is uvicorn on 127.0.0.1 with ``XPCOMPUTE_AUTH=on``, the embedded runtime and the local pool; the
analysis is requested over HTTP with the key in the header, as a program would. ``drive_login.mjs`` then opens
the page in Debian's chromium: it is sent to /login, a wrong key gets the form again with the reason, the right
key brings it back to the scorecard with an HttpOnly, SameSite=Strict session cookie, and a live slice sent
through the form (carrying the CSRF token) lands. An attacker's page on another port of the same host (same
site: the browser sends the cookie) posts a live slice and a sign-out without the token: 403 for both; from
another site (localhost) SameSite=Strict keeps the cookie home: 401. HTTP-level checks are tests/api/test_session.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from test_scorecard_page import CHROMIUM, ROOT, browser_missing, free_port, wait_for
from ui_helpers import EXPERIMENT_ID, analysis_spec, publish_experiment

from xpcompute.api.app import create_app
from xpcompute.config import Settings

DRIVER = Path(__file__).with_name("drive_login.mjs")
KEY = "ui-login-key-7f3a9c"
LIVE_DIMENSION, LIVE_VALUE, LIVE_LABEL = "country", "GB", "country=GB"
FORGED_VALUE = "CA"


@dataclass
class Served:
    base_url: str
    analysis_id: str

    @property
    def page_url(self) -> str:
        return f"{self.base_url}/analyses/{self.analysis_id}/scorecard"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The real server, API keys on, with a small finished analysis requested over HTTP with the key."""
    tmp = tmp_path_factory.mktemp("login")
    settings = Settings(home=tmp / "home", dispatch="local", workers=2, tick_s=0.2, auth="on", api_keys=KEY,
                        session_ttl_s=600)
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-login", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, "the server to start", 30)
        publish_experiment(app.state.backend.coordinator, tmp / "raw", users=1500)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30, headers={"X-API-Key": KEY}) as client:
            created = client.post(f"/experiments/{EXPERIMENT_ID}/analyses",
                                  json=analysis_spec(metrics=("streaming_hours", "retained")).model_dump(mode="json"))
            assert created.status_code == 202, created.text
            aid = created.json()["analysis_id"]
            wait_for(lambda: client.get(f"/analyses/{aid}").json()["state"] != "RUNNING", "the analysis", 120)
            assert client.get(f"/analyses/{aid}").json()["state"] == "SUCCEEDED"
        yield Served(base, aid)
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))
def test_in_chromium_sign_in_use_the_form_and_forged_posts_are_refused(served: Served, tmp_path: Path) -> None:
    run = subprocess.run(
        ["node", str(DRIVER), served.page_url, KEY, LIVE_DIMENSION, LIVE_VALUE, FORGED_VALUE, str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=180, env={**os.environ, "CHROMIUM": CHROMIUM},
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert "fatal" not in out, out["fatal"]
    assert out["errors"] == []

    # without a session the page sends the browser to the sign-in form, which remembers the way back
    path = f"/analyses/{served.analysis_id}/scorecard"
    assert out["redirected_to"] == f"{served.base_url}/login?next={path}" and out["login_form"] == 1
    assert out["wrong_status"] == 401 and "not an accepted API key" in out["wrong_message"]
    assert out["after_login_url"] == served.page_url and out["state"] == "SUCCEEDED"

    cookies = {c["name"]: c for c in out["cookies"]}
    assert set(cookies) == {"xpcompute_session", "xpcompute_csrf"}
    session = cookies["xpcompute_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and not session["secure"]  # http here
    assert cookies["xpcompute_csrf"]["sameSite"] == "Strict" and not cookies["xpcompute_csrf"]["httpOnly"]
    assert not out["script_sees_session"] and out["script_sees_csrf"]

    # the page's form: its request carries the token and the slice's rows land in the table
    assert out["form_sent_csrf"]
    assert f"Slice {LIVE_LABEL} is in the scorecard" in out["slice_message"] and out["new_rows"] > 0

    same_site, cross_site, logout = out["forged_same_site"], out["forged_cross_site"], out["forged_logout"]
    # same site (another port of 127.0.0.1): the browser sends the cookie; the missing token refuses it
    assert same_site["sent_session_cookie"] and not same_site["sent_csrf_header"]
    assert same_site["status"] == 403 and json.loads(same_site["body"])["error"] == "csrf_failed"
    # another site: SameSite=Strict keeps the cookie home, so the request is not even signed in
    assert not cross_site["sent_session_cookie"] and cross_site["status"] == 401
    # a forged sign-out (a plain form post) is refused too, and the session survives it
    assert logout["sent_session_cookie"] and logout["status"] == 403 and "Not signed out" in logout["body"]
    assert set(out["cookies_after_forgeries"]) == {"xpcompute_session", "xpcompute_csrf"}

    # signing out ends it: the page sends the browser to sign in again
    assert out["signed_in_page"] == 1 and out["cookies_after_logout"] == []
    assert out["after_logout_url"].startswith(f"{served.base_url}/login?next=")

    # what reached the analysis: the form's slice, never the forged one
    with httpx.Client(base_url=served.base_url, timeout=30, headers={"X-API-Key": KEY}) as client:
        labels = {s["label"] for s in client.get(f"/analyses/{served.analysis_id}").json()["slices"]}
    assert LIVE_LABEL in labels
    assert not any(FORGED_VALUE in label or "forged" in label for label in labels), labels
    for name in ("login.png", "signed_in.png"):
        assert (tmp_path / name).stat().st_size > 5_000
