"""Segment discovery through the service: the scorecard section, GET /analyses/{id}/segments, one call to a live slice."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ui"))
from ui_helpers import EXPERIMENT_ID, METRICS, analysis_spec, publish_experiment  # noqa: E402

from xpcompute.api.app import create_app  # noqa: E402
from xpcompute.config import Settings  # noqa: E402


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    tmp = tmp_path_factory.mktemp("segments")
    settings = Settings(home=tmp / "home", dispatch="inline", slice_engine="cube")
    app = create_app(settings)
    with TestClient(app) as client:
        experiment = publish_experiment(app.state.backend.coordinator, tmp / "raw", users=6000)
        assert experiment.dimensions
        created = client.post(f"/experiments/{EXPERIMENT_ID}/analyses", json=analysis_spec().model_dump(mode="json"))
        assert created.status_code == 202, created.text
        aid = created.json()["analysis_id"]
        app.state.backend.coordinator.tick()
        state = client.get(f"/analyses/{aid}").json()["state"]
        assert state == "SUCCEEDED", client.get(f"/analyses/{aid}").json()
        yield client, aid


def test_the_scorecard_carries_the_segments_section(finished: tuple[TestClient, str]) -> None:
    client, aid = finished
    results = client.get(f"/analyses/{aid}/results")
    assert results.status_code == 200
    section = results.json()["segments"]
    dims = section["dimensions"]
    assert dims and section["halves"].startswith("half = lowest bit of MD5")
    cells = {t["cell"] for t in section["tests"]}
    # one Wald test per metric x dimension x treatment cell, every one corrected
    assert len(section["tests"]) == len(METRICS) * len(dims) * len(cells)
    assert all(t["p_adjusted"] is not None and t["p_adjusted"] >= t["p_value"] for t in section["tests"])
    assert section["tested"] == len(section["tests"]) + len(section["segments"])
    # the same report as the route's with the default settings
    again = client.get(f"/analyses/{aid}/segments").json()
    assert again["tests"] == section["tests"] and again["segments"] == section["segments"]


def test_a_segment_is_one_call_from_a_live_slice(finished: tuple[TestClient, str]) -> None:
    client, aid = finished
    answer = client.get(f"/analyses/{aid}/segments", params={"min_units": 20, "max_depth": 2})
    assert answer.status_code == 200, answer.text
    segments = answer.json()["segments"]
    assert segments, "with 20 units per node the synthetic data's country and device effects make a tree"
    for s in segments:
        assert s["ci_low"] <= s["effect"] <= s["ci_high"] and 0 <= s["p_value"] <= s["p_adjusted"] <= 1
    first = segments[0]
    posted = client.post(f"/analyses/{aid}/slices", json=first["slice"])
    assert posted.status_code == 202, posted.text
    assert posted.json()["label"] == first["label"]


def test_unknown_analysis_and_bad_settings_are_refused(finished: tuple[TestClient, str]) -> None:
    client, aid = finished
    assert client.get("/analyses/nope/segments").status_code == 404
    assert client.get(f"/analyses/{aid}/segments", params={"max_depth": 9}).status_code == 422
