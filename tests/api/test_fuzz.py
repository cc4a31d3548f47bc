"""A schema-driven fuzz suite (issue 13): schemathesis against the app's own ``/openapi.json``, in-process
over ASGI, plus hypothesis property tests of hostile bodies.

Every operation gets positive (schema-valid) and negative (schema-violating) cases, a bounded number each,
and every response must be a non-5xx that matches the operation's declared status codes, content type and
response schema. The hostile-body tests send what a careless or hostile client sends (deep nesting, 10,000
slices or metric names, duplicates, huge strings, NUL bytes, unicode): each is a 4xx with a message.
Bounded so the whole file stays well under a minute.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from service_helpers import analysis_table, publish

from xpcompute.api.app import create_app
from xpcompute.config import Settings
from xpcompute.storage.objects import LocalObjectStore

EXAMPLES = 25  # per operation and generation mode
KEY = "fuzz-key"


def _app() -> FastAPI:
    """The app over a throwaway home with one published table, its backend started (schemathesis calls the ASGI
    app without its lifespan). Built at import because schemathesis needs the schema to parametrize."""
    home = Path(tempfile.mkdtemp(prefix="xpcompute-fuzz-"))
    # keys on, as deployed; the rate quota raised so that the fuzzer's own volume is not what it measures
    settings = Settings(home=home, dispatch="inline", slice_engine="arrow", auth="on", api_keys=KEY,
                        rate_per_key=1_000_000, max_analyses_per_key=1_000_000)
    publish(LocalObjectStore(settings.objects_root), "exp", analysis_table(300))
    app = create_app(settings)
    app.state.backend.start()
    atexit.register(shutil.rmtree, home, True)
    atexit.register(app.state.backend.stop)
    return app


APP = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schema.config.update(headers={"X-API-Key": KEY})
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES,
                                deterministic=True)


@pytest.fixture(scope="module")
def fuzz_app() -> FastAPI:
    return APP


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_no_operation_answers_5xx_or_off_schema(case: Any) -> None:
    # every check but positive_data_acceptance: a schema-valid request naming an experiment, metric or slice
    # value that does not exist is rightly refused (404/422); the schema cannot say which names exist
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


@pytest.fixture(scope="module")
def client(fuzz_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(fuzz_app, headers={"X-API-Key": KEY}) as c:
        yield c


def _refused(response: Any) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    body = response.json()
    assert body["error"] and body["message"], body


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"all_of": [value]}
    return value


def test_hostile_bodies_of_every_size(client: TestClient) -> None:
    us = {"all_of": [{"column": "country", "values": ["US"]}]}
    bodies: list[tuple[str, Any]] = [
        ("10,000 slices", {"metrics": ["hours"], "slices": [{"all_of": [{"column": "bucket", "values": [i]}]}
                                                            for i in range(10_000)]}),
        ("10,000 metric names", {"metrics": [f"m{i}" for i in range(10_000)]}),
        ("duplicate slices", {"metrics": ["hours"], "slices": [us, us]}),
        ("equivalent slices", {"metrics": ["hours"], "slices": [us, {"any_of": us["all_of"]}]}),
        ("deep nesting", {"metrics": ["hours"], "slices": [_nested(400)]}),
        ("huge string", {"metrics": ["hours"], "treatment": "c" * 500_000}),
        ("NUL bytes", {"metrics": ["hours\x00"], "slices": [{"all_of": [{"column": "country", "values": ["U\x00S"]}]}]}),
        ("unicode", {"metrics": ["часы"], "control": "\u202e\U0001f600"}),
        ("table escape", {"metrics": ["hours"], "table": "../other/analysis"}),
        ("not an object", ["hours"]),
    ]
    for name, body in bodies:
        response = client.post("/experiments/exp/analyses", json=body)
        assert response.status_code != 202, name
        _refused(response)
    raw = client.post("/experiments/exp/analyses", content=b'{"metrics": ["hours"' + b"[" * 100_000,
                      headers={"content-type": "application/json"})
    _refused(raw)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(st.recursive(st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=50),
                    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children,
                                                                                     max_size=5), max_leaves=40))
def test_arbitrary_json_is_a_4xx_with_a_message(client: TestClient, body: Any) -> None:
    for path in ("/experiments/exp/analyses", "/analyses/nope/slices"):
        response = client.post(path, content=json.dumps(body, allow_nan=True).encode(),
                               headers={"content-type": "application/json"})
        _refused(response)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(metric=st.text(min_size=1, max_size=300), value=st.text(max_size=300) | st.integers() | st.booleans(),
       column=st.text(max_size=100))
def test_hostile_names_and_values_are_refused_not_crashed(client: TestClient, metric: str, value: Any,
                                                         column: str) -> None:
    body = {"metrics": [metric], "slices": [{"all_of": [{"column": column, "values": [value]}]}]}
    response = client.post("/experiments/exp/analyses", json=body)
    assert response.status_code < 500, response.text[:300]
    if response.status_code != 202:
        _refused(response)
