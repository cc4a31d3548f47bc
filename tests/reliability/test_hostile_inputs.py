"""Item 6 of issue 13: every entry point answers hostile input with a typed error, never a traceback.

The same list of inputs goes to the CLI (``xpcompute fit``: exit code 0, or 2 with a one-line message), to the
HTTP API (a published table analysed over HTTP: 2xx or a JSON 4xx, never 5xx) and to the function handlers
(the API Gateway handler, then the slice, fit and coordinator handlers the analysis fans out to: each answers
a dict, typed ``error`` and ``status`` when it refuses).
"""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from service_helpers import Recorder

from xpcompute.api.app import create_app
from xpcompute.cli import main
from xpcompute.config import Settings
from xpcompute.pipeline.tables import publish_table
from xpcompute.storage import keys
from xpcompute.storage.objects import LocalObjectStore

EVENTS = Path(__file__).resolve().parents[1] / "events"
HUGE = "x" * 200_000


@dataclass(frozen=True)
class Hostile:
    name: str
    data: pa.Table | bytes
    metric: str = "y"


def _table(cells: list[str], y: np.ndarray) -> pa.Table:
    return pa.table({"user_id": np.arange(len(cells), dtype=np.int64), "cell": cells, "y": y})


def _hostile() -> list[Hostile]:
    rng = np.random.default_rng(0)
    half = ["control"] * 50 + ["treatment"] * 50
    return [
        Hostile("all_nan_metric", _table(half, np.full(100, np.nan))),
        Hostile("one_unit_cell", _table(["control"] * 99 + ["treatment"], rng.normal(size=100))),
        Hostile("values_near_1e300", _table(half, 1e300 * (1 + rng.random(100)))),
        Hostile("not_parquet", b"PAR1 this is not a Parquet file \x00\x01\x02 PAR1"),
        Hostile("huge_string", _table(["control"] * 50 + [HUGE] * 50, rng.normal(size=100))),
        Hostile("huge_metric_name", _table(half, rng.normal(size=100)), metric=HUGE),
        Hostile("nul_bytes", _table(["control"] * 50 + ["treat\x00ment"] * 50, rng.normal(size=100))),
        Hostile("nul_metric_name", _table(half, rng.normal(size=100)), metric="y\x00; DROP TABLE t"),
        Hostile("unicode_cells", _table(["контроль"] * 50 + ["处理\u202e"] * 50, rng.normal(size=100))),
    ]


HOSTILE = _hostile()
IDS = [h.name for h in HOSTILE]


def _write(case: Hostile, path: Path) -> None:
    if isinstance(case.data, bytes):
        path.write_bytes(case.data)
    else:
        pq.write_table(case.data, path)


def _publish(store: LocalObjectStore, experiment_id: str, case: Hostile) -> None:
    """Publish ``case`` as the experiment's analysis table; garbage bytes replace the data file of a valid one
    (publishing reads each file's footer, so the damage comes after)."""
    table = HOSTILE[1].data if isinstance(case.data, bytes) else case.data
    assert isinstance(table, pa.Table)

    def write(fs: pafs.FileSystem, path: str) -> pa.Schema:
        fs.create_dir(path, recursive=True)
        pq.write_table(table, f"{path}/part-0.parquet", filesystem=fs)
        return table.schema

    key = keys.analysis_table(experiment_id)
    publish_table(store, key, write)
    if isinstance(case.data, bytes):
        (data,) = [k for k in store.list(key) if k.endswith("part-0.parquet")]
        store.put_bytes(data, case.data)


@pytest.mark.parametrize("case", HOSTILE, ids=IDS)
def test_cli_fit_exits_0_or_2_with_a_message(case: Hostile, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data.parquet"
    _write(case, path)
    for model in ("ttest", "mannwhitney"):
        rc = main(["fit", str(path), "--metric", case.metric, "--treatment", "cell", "--model", model, "--json"])
        out = capsys.readouterr()
        assert rc in (0, 2), (model, rc, out.err[-500:])
        assert "Traceback" not in out.err and "Traceback" not in out.out
        if rc == 2:
            assert out.err.startswith("xpcompute: ") and len(out.err) <= 2100, out.err[:300]
        else:
            assert json.loads(out.out)  # records, with whatever notes they carry


def _no_5xx(response: Any) -> None:
    assert response.status_code < 500, response.text[:500]
    assert "Traceback" not in response.text


def test_http_answers_every_hostile_input_without_a_5xx(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, dispatch="inline", slice_engine="arrow")
    store = LocalObjectStore(settings.objects_root)
    for i, case in enumerate(HOSTILE):
        _publish(store, f"h{i}", case)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for i, case in enumerate(HOSTILE):
            for models in (["ttest"], ["mannwhitney"]):
                created = client.post(f"/experiments/h{i}/analyses", json={"metrics": [case.metric], "models": models})
                _no_5xx(created)
                if created.status_code != 202:
                    assert created.json()["message"], case.name
                    continue
                aid = created.json()["analysis_id"]
                for path in (f"/analyses/{aid}", f"/analyses/{aid}/results", f"/analyses/{aid}/scorecard"):
                    _no_5xx(client.get(path))
                live = client.post(f"/analyses/{aid}/slices", json={"name": case.metric[:100], "all_of": [
                    {"column": "cell", "values": ["control"]}]})
                _no_5xx(live)


class Context:
    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id


@pytest.fixture
def functions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[dict[str, ModuleType], Recorder]]:
    recorder = Recorder()
    env = {"XPCOMPUTE_MODE": "serverless", "XPCOMPUTE_AUTH": "off", "XPCOMPUTE_HOME": str(tmp_path),
           "XPCOMPUTE_DISPATCH": "lambda", "XPCOMPUTE_LAMBDA_ENDPOINT": recorder.url, "XPCOMPUTE_SLICE_ENGINE": "arrow",
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}  # the loopback Lambda endpoint checks none
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    modules = {n: importlib.import_module(f"functions.{n}.handler") for n in ("api", "slice", "fit", "coordinator")}
    for m in modules.values():
        (m.asgi if hasattr(m, "asgi") else m.runtime).cache_clear()
    yield modules, recorder
    recorder.close()
    for m in modules.values():
        (m.asgi if hasattr(m, "asgi") else m.runtime).cache_clear()


def _api_event(method: str, path: str, body: object) -> dict[str, Any]:
    ev: dict[str, Any] = copy.deepcopy(json.loads((EVENTS / "api_post_analysis.json").read_text()))
    ev.update(path=path, httpMethod=method, body=None if body is None else json.dumps(body),
              pathParameters={"proxy": path.lstrip("/")})
    ev["requestContext"].update(httpMethod=method, path="/dev" + path)
    return ev


def _typed(reply: Any) -> None:
    assert isinstance(reply, dict), reply
    if "error" in reply and "status" in reply and isinstance(reply["status"], int):
        assert reply["error"] and reply["message"] and "Traceback" not in reply["message"]


def test_function_handlers_answer_every_hostile_input_with_a_typed_reply(
    functions: tuple[dict[str, ModuleType], Recorder], tmp_path: Path,
) -> None:
    modules, recorder = functions
    store = LocalObjectStore(tmp_path / "objects")
    for i, case in enumerate(HOSTILE):
        _publish(store, f"h{i}", case)
        reply = modules["api"].handler(_api_event("POST", f"/experiments/h{i}/analyses", {"metrics": [case.metric]}),
                                       Context(f"api-{i}"))
        assert reply["statusCode"] < 500, (case.name, reply)
        while recorder.requests:
            req = recorder.requests.pop(0)
            name = str(req["path"]).split("/functions/xpcompute-dev-")[1].split("/")[0]
            _typed(modules[name].handler(json.loads(req["body"]), Context(f"{name}-{i}")))
        if reply["statusCode"] == 202:
            aid = json.loads(reply["body"])["analysis_id"]
            status = modules["api"].handler(_api_event("GET", f"/analyses/{aid}", None), Context("s"))
            assert status["statusCode"] == 200 and json.loads(status["body"])["state"] in ("SUCCEEDED", "FAILED")


@pytest.mark.parametrize("event", [
    {"type": "run_job", "job_id": "\x00" * 10, "analysis_id": "a", "kind": "fit"},
    {"type": "run_job", "job_id": HUGE, "analysis_id": "a", "kind": "fit"},
    {"type": "run_job", "job_id": "a.fit.x", "analysis_id": "a", "kind": "fit", "priority": 1e300},
    {"type": "job_finished", "job_id": "a.b", "analysis_id": float("nan")},
    "PAR1 not json \x00",
    {"Records": [{"messageId": "m", "body": "{\"type\": \"run_job\", \"job_id\": \"\\u0000\"}"}]},
    {"a": json.loads("[" * 500 + "]" * 500)},
], ids=["nul_job_id", "huge_job_id", "priority_1e300", "nan_analysis_id", "not_json", "sqs_nul", "nested"])
def test_job_and_coordinator_handlers_refuse_malformed_events_with_a_typed_reply(
    functions: tuple[dict[str, ModuleType], Recorder], event: Any,
) -> None:
    modules, _ = functions
    for name in ("slice", "fit", "coordinator"):
        reply = modules[name].handler(event, Context(name))
        _typed(reply)
        if "status" in reply and isinstance(reply["status"], int):
            assert 400 <= reply["status"] < 500, reply
    api = modules["api"].handler({"not": "an http event"}, Context("api"))
    assert api["statusCode"] == 400 and json.loads(api["body"])["error"] == "invalid_event"
