"""The decision through the coordinator and the HTTP API: at finalize, stored with the scorecard, request roles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from xpcompute.api.app import Backend, create_app
from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.runtime import EmbeddedRuntime
from xpcompute.coordinator.service import Coordinator
from xpcompute.decision.roles import RolesSpec
from xpcompute.pipeline.slices import SliceFilter

EXPERIMENT_ID = "autoplay"
METRICS = ("streaming_hours", "sessions", "is_streamer")


def publish_experiment(coordinator: Coordinator, raw_dir: Path, users: int) -> None:
    """Synthetic raw tables (the demo's roles: goal streaming_hours) -> stage 1; the experiment is registered."""
    from xpcompute import synthetic
    from xpcompute.pipeline.stage1 import run_stage1

    config = synthetic.SyntheticConfig(users=users, days=3, pre_days=2)
    uris = synthetic.write_parquet(synthetic.generate(config), str(raw_dir))
    experiment = synthetic.experiment_spec(uris, config, experiment_id=EXPERIMENT_ID, metrics=METRICS, daily=False)
    run_stage1(experiment, coordinator.store, daily=False)
    coordinator.register_experiment(experiment)


def analysis_spec(**changes: object) -> AnalysisSpec:
    return AnalysisSpec.model_validate({"metrics": METRICS, "slices": (SliceFilter(), SliceFilter.where(country="US")),
                                       **changes})


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRuntime]:
    tmp = tmp_path_factory.mktemp("decision")
    rt = EmbeddedRuntime(Settings(home=tmp / "home", dispatch="inline", slice_engine="arrow"))
    publish_experiment(rt.coordinator, tmp / "raw", users=1500)
    yield rt
    rt.stop()


def test_finalize_stores_the_decision_and_results_read_it_back(runtime: EmbeddedRuntime) -> None:
    coord = runtime.coordinator
    analysis = coord.submit(EXPERIMENT_ID, analysis_spec())
    card = coord.results(analysis.analysis_id)
    assert card.complete and card.decision_note is None
    assert [d["cell"] for d in card.decision] == ["autoplay", "autoplay_plus"]
    for d in card.decision:
        assert d["recommendation"] in ("ship", "don't ship", "keep running") and d["reasons"]
        goal = [c for c in d["checks"] if c["role"] == "goal"]
        # the experiment's roles: streaming_hours is the goal, tested once on its CUPED headline
        assert [(c["metric"], c["model"]) for c in goal] == [("streaming_hours", "ols")]
        assert d["slice"] == "all users"
    # the finalized scorecard is stored with its decision; a second read is the stored one, equal
    again = coord.results(analysis.analysis_id)
    assert again.decision == card.decision


def test_request_roles_override_the_experiment(runtime: EmbeddedRuntime) -> None:
    roles = RolesSpec.model_validate({"goal": ["sessions"],
                                      "guardrails": {"streaming_hours": {"margin": 0.5, "relative": True}}})
    analysis = runtime.coordinator.submit(EXPERIMENT_ID, analysis_spec(roles=roles))
    card = runtime.coordinator.results(analysis.analysis_id)
    checks = {(c["metric"], c["role"]) for d in card.decision for c in d["checks"]}
    assert ("sessions", "goal") in checks and ("streaming_hours", "guardrail") in checks
    guard = next(c for c in card.decision[0]["checks"] if c["metric"] == "streaming_hours")
    assert guard["margin"] == 0.5 and guard["relative"] and guard["test"] == "non-inferiority"


def test_http_results_lead_with_the_decision_and_bad_roles_are_422(runtime: EmbeddedRuntime) -> None:
    settings = Settings(home=Path(runtime.settings.home), dispatch="inline", slice_engine="arrow")
    app = create_app(settings, backend=Backend(settings, coordinator=runtime.coordinator))
    with TestClient(app) as client:
        bad = client.post(f"/experiments/{EXPERIMENT_ID}/analyses",
                          json={**analysis_spec().model_dump(mode="json"), "roles": {"goal": ["revenue"]}})
        assert bad.status_code == 422 and "roles names ['revenue'], which are not metrics of this request" \
            in bad.text
        ok = client.post(f"/experiments/{EXPERIMENT_ID}/analyses", json=analysis_spec().model_dump(mode="json"))
        assert ok.status_code == 202, ok.text
        body = client.get(f"/analyses/{ok.json()['analysis_id']}/results").json()
        assert list(body)[:7] == ["analysis_id", "experiment_id", "experiment_version", "state", "complete",
                                  "decision", "decision_note"]
        assert {d["cell"] for d in body["decision"]} == {"autoplay", "autoplay_plus"}
        assert all(d["summary"].startswith(d["recommendation"]) for d in body["decision"])
