"""The whole serverless flow over real HTTP on 127.0.0.1: moto (S3, DynamoDB) + `npx osls offline`.

The infra scripts start both; the API function takes the POST, the slice and
fit functions run as asynchronous Lambda invocations on serverless-offline's
Lambda endpoint, the coordinator function advances and finalizes. The
scorecard must equal an in-process (embedded) run of the same analysis.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from emulators import Emulators, start_moto, start_offline, stop
from service_helpers import analysis_table, publish

from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.runtime import EmbeddedRuntime
from xpcompute.storage.objects import S3ObjectStore

ROOT = Path(__file__).resolve().parents[2]
BODY = {
    "metrics": ["hours", "is_streamer"],
    "models": ["ttest", "ols"],
    "covariates": ["pre_hours"],
    "slices": [{}, {"all_of": [{"column": "country", "values": ["US"]}]}],
}
KEY = "integration-key"

pytestmark = pytest.mark.skipif(
    not (ROOT / "node_modules" / ".bin" / "osls").exists(),
    reason="node_modules is absent: run `npm install` (or ./scripts/setup) to get osls and serverless-offline",
)


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    from service_fixtures import free_port

    emu = Emulators(run_dir=str(tmp_path_factory.mktemp("emulators")))
    extra = {"XPCOMPUTE_SLICE_ENGINE": "arrow", "XPCOMPUTE_API_KEYS": KEY, "XPCOMPUTE_AUTH": "on"}
    if os.environ.get("XPCOMPUTE_NATIVE"):
        extra["XPCOMPUTE_NATIVE"] = os.environ["XPCOMPUTE_NATIVE"]
    try:
        start_moto(emu, free_port())
        store = S3ObjectStore(emu.bucket, "xp", endpoint_url=emu.moto_url)
        publish(store, "exp", analysis_table(3000))
        start_offline(emu, free_port(), free_port(), extra_env=extra, timeout=60)
        yield emu
    finally:
        stop(emu)


def test_http_analysis_on_serverless_offline_equals_the_embedded_run(offline: Emulators, tmp_path: Path) -> None:
    started = time.monotonic()
    with httpx.Client(base_url=offline.api_url, timeout=30, headers={"X-API-Key": KEY}) as client:
        assert client.get("/healthz").json()["mode"] == "serverless"
        assert client.post("/experiments/exp/analyses", json=BODY, headers={"X-API-Key": "wrong"}).status_code == 401
        created = client.post("/experiments/exp/analyses", json=BODY)
        assert created.status_code == 202, created.text
        aid = created.json()["analysis_id"]
        while True:
            status = client.get(f"/analyses/{aid}").json()
            if status["state"] != "RUNNING":
                break
            assert time.monotonic() - started < 80, f"analysis still running: {status['progress']}"
            time.sleep(0.5)
        assert status["state"] == "SUCCEEDED", status["failures"]
        assert status["progress"]["succeeded"] == status["progress"]["total"] == 2 + 8
        remote = client.get(f"/analyses/{aid}/results").json()

    with EmbeddedRuntime(Settings(home=tmp_path, dispatch="inline", slice_engine="arrow")) as local:
        publish(local.coordinator.store, "exp", analysis_table(3000))
        spec = AnalysisSpec.model_validate(BODY)
        embedded = local.coordinator.results(local.coordinator.submit("exp", spec).analysis_id).to_json_dict()
    assert remote["complete"] and len(remote["records"]) == 8
    assert remote["records"] == embedded["records"]
    assert remote["srm"] == embedded["srm"]
    print(f"serverless-offline analysis: {time.monotonic() - started:.1f}s submit-to-done")
