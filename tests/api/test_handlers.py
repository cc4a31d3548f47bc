"""The four Lambda-style handlers on real event payloads (tests/events), wired the serverless way.

The API handler receives API Gateway events; the job functions are invoked
asynchronously through the Lambda dispatcher, whose Invoke calls land on a
loopback server here; the test then delivers each recorded invocation to the
handler it names, as Lambda would, until nothing is left.
"""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from service_helpers import Recorder, analysis_table, publish, raw_sources, reference_records, spec_body

from xpcompute.pipeline.slices import SliceFilter
from xpcompute.storage.objects import LocalObjectStore

EVENTS = Path(__file__).resolve().parents[1] / "events"


def event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


class Context:
    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id


@pytest.fixture
def functions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[dict[str, ModuleType], Recorder]]:
    recorder = Recorder()
    env = {
        "XPCOMPUTE_MODE": "serverless", "XPCOMPUTE_AUTH": "on", "XPCOMPUTE_API_KEYS": "secret-key",
        "XPCOMPUTE_HOME": str(tmp_path), "XPCOMPUTE_DISPATCH": "lambda", "XPCOMPUTE_LAMBDA_ENDPOINT": recorder.url,
        "XPCOMPUTE_FUNCTION_PREFIX": "xpcompute-dev-", "XPCOMPUTE_SLICE_ENGINE": "arrow",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    publish(LocalObjectStore(tmp_path / "objects"), "exp", analysis_table(2000))
    modules = {name: importlib.import_module(f"functions.{name}.handler") for name in ("api", "slice", "fit", "coordinator")}
    for m in modules.values():
        (m.asgi if hasattr(m, "asgi") else m.runtime).cache_clear()
    yield modules, recorder
    recorder.close()
    for m in modules.values():
        (m.asgi if hasattr(m, "asgi") else m.runtime).cache_clear()


def _pump(modules: dict[str, ModuleType], recorder: Recorder) -> list[str]:
    """Deliver recorded async invocations to their functions (Lambda's role) until none are left."""
    delivered = []
    while recorder.requests:
        req = recorder.requests.pop(0)
        name = str(req["path"]).split("/functions/xpcompute-dev-")[1].split("/")[0]
        payload = json.loads(req["body"])  # type: ignore[arg-type]
        modules[name].handler(payload, Context(f"req-{len(delivered)}"))
        delivered.append(name)
    return delivered


def _get(path: str) -> dict[str, Any]:
    return _request("GET", path, None)


def _request(method: str, path: str, body: object) -> dict[str, Any]:
    """An API Gateway proxy event for ``method path`` with a JSON body (from the recorded POST event)."""
    ev = copy.deepcopy(event("api_post_analysis.json"))
    ev.update(path=path, httpMethod=method, body=None if body is None else json.dumps(body),
              pathParameters={"proxy": path.lstrip("/")})
    ev["requestContext"].update(httpMethod=method, path="/dev" + path)
    return ev


def test_api_gateway_event_to_scorecard_through_the_four_handlers(
    functions: tuple[dict[str, ModuleType], Recorder],
) -> None:
    modules, recorder = functions
    response = modules["api"].handler(event("api_post_analysis.json"), Context("api-1"))
    assert response["statusCode"] == 202, response
    aid = json.loads(response["body"])["analysis_id"]
    delivered = _pump(modules, recorder)
    assert delivered.count("slice") == 2 and delivered.count("fit") == 4 and delivered.count("coordinator") == 6
    status = json.loads(modules["api"].handler(_get(f"/analyses/{aid}"), Context("api-2"))["body"])
    assert status["state"] == "SUCCEEDED" and status["progress"]["succeeded"] == 6
    card = json.loads(modules["api"].handler(_get(f"/analyses/{aid}/results"), Context("api-3"))["body"])
    assert len(card["records"]) == 4
    (ref,) = reference_records(analysis_table(2000), SliceFilter.where(country="US"), "hours", "ttest")
    got = next(r for r in card["records"] if r["slice"] == "country=US" and r["metric"] == "hours")
    assert got["effect"] == pytest.approx(ref.effect, rel=1e-12)  # type: ignore[attr-defined]


def test_registered_experiment_runs_stage1_in_a_function_before_its_slices(
    functions: tuple[dict[str, ModuleType], Recorder], tmp_path: Path,
) -> None:
    modules, recorder = functions
    uris, config = raw_sources(str(tmp_path / "raw"), users=1000)
    put = modules["api"].handler(_request("PUT", "/experiments/autoplay", spec_body(uris, config)), Context("p"))
    assert put.get("statusCode") == 201, put
    assert json.loads(put["body"])["version"] == 1
    body = {"metrics": ["is_streamer"], "slices": [{}, {"all_of": [{"column": "country", "values": ["US"]}]}]}
    created = modules["api"].handler(_request("POST", "/experiments/autoplay/analyses", body), Context("a"))
    assert created["statusCode"] == 202 and json.loads(created["body"])["stage1"] is True
    aid = json.loads(created["body"])["analysis_id"]
    first = json.loads(recorder.requests[0]["body"])  # type: ignore[arg-type]
    assert len(recorder.requests) == 1 and first["kind"] == "stage1"  # the slices wait for it
    delivered = _pump(modules, recorder)
    # stage 1 runs in the slice function (sized for table reads), then the two slices
    assert delivered.count("slice") == 1 + 2 and delivered.count("coordinator") == 1 + 2 + 2
    status = json.loads(modules["api"].handler(_get(f"/analyses/{aid}"), Context("s"))["body"])
    assert status["state"] == "SUCCEEDED", status["failures"]
    assert status["stage1"]["state"] == "SUCCEEDED" and status["experiment_version"] == 1
    assert len(status["records"]) == 2 * 2  # two treated cells x two slices, 'proportion' (declared)


def test_api_rejects_a_missing_key(functions: tuple[dict[str, ModuleType], Recorder]) -> None:
    modules, _ = functions
    ev = event("api_post_analysis.json")
    del ev["headers"]["X-API-Key"]
    del ev["multiValueHeaders"]["X-API-Key"]
    response = modules["api"].handler(ev, Context("api-4"))
    assert response["statusCode"] == 401


def test_sample_events_parse_and_are_harmless_when_their_jobs_are_unknown(
    functions: tuple[dict[str, ModuleType], Recorder],
) -> None:
    modules, recorder = functions
    health = modules["api"].handler(event("api_get_health_http_api.json"), Context("h"))
    assert health["statusCode"] == 200 and json.loads(health["body"])["mode"] == "serverless"
    assert modules["slice"].handler(event("lambda_run_slice.json"), Context("s"))["status"] == "skipped"
    assert modules["fit"].handler(event("lambda_run_fit.json"), Context("f"))["status"] == "skipped"
    assert modules["slice"].handler(event("lambda_run_stage1.json"), Context("1"))["status"] == "skipped"
    sqs = modules["fit"].handler(event("sqs_run_jobs.json"), Context("q"))
    assert sqs["batchItemFailures"] == [] and sqs["results"][0]["status"] == "skipped"
    assert modules["coordinator"].handler(event("lambda_job_finished.json"), Context("c")) == {"coordinated": "job_finished"}
    assert modules["coordinator"].handler(event("eventbridge_tick.json"), Context("t")) == {"coordinated": "tick"}
    assert modules["coordinator"].handler(event("openfaas_callback.json"), Context("o")) == {"coordinated": "job_finished"}
    assert recorder.requests == []  # duplicates and unknown jobs fan nothing out


def test_malformed_events_are_refused_with_a_reason(functions: tuple[dict[str, ModuleType], Recorder]) -> None:
    modules, _ = functions  # handlers answer a typed reply (never raise): the platform logs it, nothing retries it
    for name, bad, message in (
        ("slice", {"type": "run_job", "job_id": "x"}, "not an xpcompute message"),
        ("coordinator", event("lambda_run_slice.json"), "takes job_finished or tick"),
        ("fit", event("lambda_job_finished.json"), "takes run_job"),
    ):
        reply = modules[name].handler(bad, Context("bad"))
        assert reply["status"] == 422 and reply["error"] == "invalid_input", reply
        assert message in reply["message"]
