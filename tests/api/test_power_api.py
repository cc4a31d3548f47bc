"""POST /experiments/{id}/power over HTTP, and the inference fields of a sequential experiment's scorecard."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import raw_sources, spec_body

from xpcompute.api.app import create_app
from xpcompute.config import Settings
from xpcompute.coordinator.runtime import build_coordinator
from xpcompute.inference.planning import plan_power

INFERENCE = {"sequential": "group_sequential", "planned_units": 6000, "planned_looks": 3, "bayesian": True,
             "shrinkage": True, "priors": {"streaming_hours": {"mean": 0.0, "sd": 0.1}}}


@dataclass
class Env:
    client: TestClient
    settings: Settings
    body: dict[str, Any]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    uris, config = raw_sources(str(tmp_path / "raw"), users=2000)
    settings = Settings(home=tmp_path / "home", dispatch="inline", slice_engine="arrow")
    with TestClient(create_app(settings)) as client:
        yield Env(client, settings, spec_body(uris, config, inference=INFERENCE))


def test_power_needs_a_registered_experiment_and_its_table(env: Env) -> None:
    missing = env.client.post("/experiments/nope/power", json={"metric": "streaming_hours", "mde": 0.1})
    assert missing.status_code == 404 and "not registered" in missing.json()["message"]
    assert env.client.put("/experiments/autoplay", json=env.body).status_code == 201
    early = env.client.post("/experiments/autoplay/power", json={"metric": "streaming_hours", "mde": 0.1})
    assert early.status_code == 409 and "no analysis table yet" in early.json()["message"]


def test_power_after_an_analysis_equals_the_library_and_bad_requests_say_why(env: Env) -> None:
    assert env.client.put("/experiments/autoplay", json=env.body).status_code == 201
    created = env.client.post("/experiments/autoplay/analyses",
                              json={"metrics": ["streaming_hours", "is_streamer", "longest_session_hours"]})
    assert created.status_code == 202, created.json()
    answer = env.client.post("/experiments/autoplay/power",
                             json={"metric": "streaming_hours", "mde": 0.02, "relative": True, "looks": 3})
    assert answer.status_code == 200, answer.json()
    body = answer.json()
    coord = build_coordinator(env.settings, dispatcher=None)
    try:
        experiment = coord.experiment("autoplay")
        assert experiment is not None
        expected = plan_power(experiment, "streaming_hours", mde=0.02, relative=True, looks=3, store=coord.store)
    finally:
        coord.state.close()
    assert body["n_control"] == pytest.approx(expected.n_control, rel=1e-12)
    assert body["variance_raw"] == pytest.approx(expected.variance_raw, rel=1e-12)
    assert body["variance_cuped"] < body["variance_raw"] and body["covariates"] == ["pre_streaming_hours"]
    # the experiment is group-sequential: its power is simulated, and says so
    assert body["sequential"]["simulated"] is True and body["sequential"]["method"] == "group_sequential"
    assert body["running"] is not None and 0 < body["running"]["power_now"] < 1

    both = env.client.post("/experiments/autoplay/power", json={"metric": "streaming_hours", "mde": 0.1, "users": 9})
    assert both.status_code == 422 and "exactly one of" in both.json()["message"]
    ratio = env.client.post("/experiments/autoplay/power", json={"metric": "rebuffer_rate", "mde": 0.1})
    assert ratio.status_code == 422 and "ratio" in ratio.json()["message"]
    extra = env.client.post("/experiments/autoplay/power", json={"metric": "streaming_hours", "mde": 0.1, "x": 1})
    assert extra.status_code == 422


def test_a_sequential_experiments_scorecard_carries_its_inference(env: Env) -> None:
    assert env.client.put("/experiments/autoplay", json=env.body).status_code == 201
    created = env.client.post("/experiments/autoplay/analyses",
                              json={"metrics": ["streaming_hours", "is_streamer", "longest_session_hours"]}).json()
    card = env.client.get(f"/analyses/{created['analysis_id']}/results").json()
    summary = card["inference"]
    assert summary["method"] == "group_sequential" and summary["label"] == "look 1 of 3"
    assert summary["boundary_z"] > 3 and "O'Brien–Fleming" in summary["description"]
    assert all(r["inference"] in ("group_sequential", "fixed_horizon") for r in card["records"])
    seq = [r for r in card["records"] if r["inference"] == "group_sequential"]
    assert seq and all(r["boundary_z"] == summary["boundary_z"] and r["posterior_mean"] is not None for r in seq)
    assert {r["prior"] for r in seq if r["metric"] == "streaming_hours"} == {"N(0, 0.1^2) relative"}
    assert any(r["shrunk_effect"] is not None for r in seq)
    page = env.client.get(f"/analyses/{created['analysis_id']}/scorecard")
    assert page.status_code == 200 and "look 1 of 3" in page.text
