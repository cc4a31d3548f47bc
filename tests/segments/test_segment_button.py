"""One click on the scorecard page turns a discovered segment into a live slice (in Chromium).

The page is served by uvicorn with the local worker pool; the analysis of the synthetic experiment has segments
in its scorecard; the driver clicks the first segment's button and waits until the page says the slice is in the
scorecard. The button posts through the page's one live-slice request function, the same as the slice form.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ui"))
from ui_helpers import EXPERIMENT_ID, analysis_spec, publish_experiment

from xpcompute.api.app import create_app
from xpcompute.config import Settings
from xpcompute.pipeline.slices import SliceFilter

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
MISSING = (f"no chromium at {CHROMIUM}" if not Path(CHROMIUM).exists() else
           "node is not on PATH" if shutil.which("node") is None else
           "node_modules/playwright-core is missing (npm install)" if not (ROOT / "node_modules" / "playwright-core").exists()
           else None)


def wait_for(condition: object, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(0.1)


@pytest.mark.skipif(MISSING is not None, reason=str(MISSING))
def test_one_click_requests_a_segment_as_a_live_slice(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", dispatch="local", workers=2, tick_s=0.2)
    app = create_app(settings)
    with socket_port() as port:
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            wait_for(lambda: server.started, "the server", 30)
            publish_experiment(app.state.backend.coordinator, tmp_path / "raw", users=30_000)
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=60) as client:
                aid = client.post(f"/experiments/{EXPERIMENT_ID}/analyses",
                                  json=analysis_spec(slices=[SliceFilter()]).model_dump(mode="json")).json()["analysis_id"]
                wait_for(lambda: client.get(f"/analyses/{aid}").json()["state"] != "RUNNING", "the analysis", 180)
                segments = client.get(f"/analyses/{aid}/results").json()["segments"]["segments"]
                assert segments, "30,000 users of the synthetic experiment make at least one tree split"
                run = subprocess.run(["node", str(Path(__file__).with_name("click_segment.mjs")),
                                      f"{base}/analyses/{aid}/scorecard"], cwd=ROOT, capture_output=True, text=True,
                                     timeout=240, env={**os.environ, "CHROMIUM": CHROMIUM})
                assert run.returncode == 0, run.stderr
                out = json.loads(run.stdout.strip().splitlines()[-1])
                assert "fatal" not in out, out
                assert out["errors"] == [] and out["buttons"] == len(segments)
                posted = [p for p in out["posts"] if p["url"].endswith(f"/analyses/{aid}/slices")]
                assert len(posted) == 1 and json.loads(posted[0]["body"]) == json.loads(out["body"])
                label = SliceFilter.model_validate_json(out["body"]).label()
                assert f"Slice {label} is in the scorecard" in out["message"]
                labels = {r["slice"] for r in client.get(f"/analyses/{aid}/results").json()["records"]}
                assert label in labels
        finally:
            server.should_exit = True
            thread.join(30)


class socket_port:
    """A free loopback port (closed again before the server binds it)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None
