"""A replay as jobs (``POST /meta/replays``): one job per archived experiment, the same document as the replay
run in the request, followed with ``GET /meta/replays/{id}``; an experiment whose job fails is listed as skipped."""

from __future__ import annotations

from typing import Any

import pytest
from test_replay import DEFINITIONS

from xpcompute.config import Settings
from xpcompute.coordinator.jobs import AnalysisState, JobKind, JobState
from xpcompute.coordinator.runtime import EmbeddedRuntime
from xpcompute.coordinator.service import Coordinator
from xpcompute.meta import replay_jobs
from xpcompute.meta.replay import replay
from xpcompute.synthetic_archive import Archive

SOME = ["archive-020", "archive-021", "archive-022"]


def _without_timings(document: dict[str, Any]) -> dict[str, Any]:
    """The replay's document less what depends on the clock (its seconds)."""
    out = {k: v for k, v in document.items() if k != "seconds"}
    out["experiments"] = [{k: v for k, v in e.items() if k != "seconds"} for e in document["experiments"]]
    return out


def test_the_replay_as_jobs_is_the_replay_run_in_the_request(archive: Archive) -> None:
    from fastapi.testclient import TestClient

    from xpcompute.api.app import create_app

    settings = Settings(home=archive.home, dispatch="inline")
    app = create_app(settings)
    with TestClient(app) as client:
        coord: Coordinator = app.state.backend.coordinator
        accepted = client.post("/meta/replays", json={"metric": DEFINITIONS["filtered"], "experiments": SOME})
        assert accepted.status_code == 202, accepted.text
        rid = accepted.json()["replay_id"]
        assert accepted.json()["experiments"] == SOME and accepted.json()["status_url"] == f"/meta/replays/{rid}"
        jobs = coord.state.list_jobs(rid)
        assert sorted(j.slice_id or "" for j in jobs) == SOME and {j.kind for j in jobs} == {JobKind.REPLAY}
        replay_jobs.wait(coord, rid, timeout_s=120)
        status = client.get(f"/meta/replays/{rid}").json()
        assert status["state"] == "SUCCEEDED" and status["progress"]["succeeded"] == 3, status
        direct = replay(coord, DEFINITIONS["filtered"], experiments=SOME).to_json_dict()
        assert _without_timings(status["result"]) == _without_timings(direct)
        page = client.get(f"/meta/replays/{rid}/report")
        assert page.status_code == 200 and "figure-effects" in page.text and "archive-021" in page.text
        assert client.get("/meta/replays/nope").status_code == 404
        for path in (f"/analyses/{rid}", f"/analyses/{rid}/results", f"/analyses/{rid}/segments"):
            refused = client.get(path)  # a replay is not an analysis: pointed to its own route, never a 5xx
            assert refused.status_code == 404 and f"GET /meta/replays/{rid}" in refused.json()["message"], path
        # a replay is not an experiment's analysis: the archive's listings do not show it
        assert all(a["analysis_id"] != rid for a in client.get(f"/experiments/{SOME[0]}/analyses").json()["analyses"])


def test_an_experiment_whose_job_fails_is_skipped_with_the_reason(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xpcompute.errors import MissingColumnError
    from xpcompute.meta import replay as replay_module

    real = replay_module.replay_one

    def failing_on_one(coordinator: Any, analysis: Any, *args: Any, **kwargs: Any) -> Any:
        if analysis.experiment_id == SOME[1]:
            raise MissingColumnError("playback has no column watch_seconds in this experiment's sources")
        return real(coordinator, analysis, *args, **kwargs)

    monkeypatch.setattr(replay_module, "replay_one", failing_on_one)
    with EmbeddedRuntime(Settings(home=archive.home, dispatch="inline")) as runtime:
        coord = runtime.coordinator
        rid = replay_jobs.submit_replay(coord, DEFINITIONS["capped"], experiments=SOME).analysis_id
        done = replay_jobs.wait(coord, rid, timeout_s=120)
        assert done.state == AnalysisState.SUCCEEDED, done.error
        failed = [j for j in coord.state.list_jobs(rid) if j.state == JobState.FAILED]
        assert [j.slice_id for j in failed] == [SOME[1]] and failed[0].attempts == 1  # a data problem: no retry
        result = replay_jobs.replay_status(coord, rid)["result"]
        assert [e["experiment_id"] for e in result["experiments"]] == [SOME[0], SOME[2]]
        assert "watch_seconds" in result["skipped"][SOME[1]]

        # the source is fixed: retrying the replay (POST /analyses/{id}/retry) runs just that experiment again
        monkeypatch.setattr(replay_module, "replay_one", real)
        assert [j.slice_id for j in coord.retry_failed(rid)] == [SOME[1]]
        again = replay_jobs.wait(coord, rid, timeout_s=120)
        assert again.state == AnalysisState.SUCCEEDED
        result = replay_jobs.replay_status(coord, rid)["result"]
        assert [e["experiment_id"] for e in result["experiments"]] == SOME and result["skipped"] == {}


def test_a_replay_nothing_can_run_is_refused_before_any_job(archive: Archive) -> None:
    from dataclasses import replace as changed

    from xpcompute.errors import InputError, LimitError

    with EmbeddedRuntime(Settings(home=archive.home, dispatch="inline")) as runtime:
        coord = runtime.coordinator
        with pytest.raises(InputError, match="no finished analysis"):
            replay_jobs.submit_replay(coord, "no_such_metric")
        coord.limits = changed(coord.limits, max_jobs=2)
        with pytest.raises(LimitError, match="3 jobs, one per experiment; at most 2"):
            replay_jobs.submit_replay(coord, "sessions", experiments=SOME)  # type: ignore[arg-type]


def test_the_cli_runs_the_replay_on_the_local_pool(archive: Archive, tmp_path: Any) -> None:
    """``xpcompute meta replay --pool``: the jobs on the local worker pool, the same document as in-process."""
    import json

    import yaml

    from xpcompute.cli import main
    from xpcompute.coordinator.runtime import build_coordinator

    spec_file = tmp_path / "capped.yaml"
    spec_file.write_text(yaml.safe_dump(DEFINITIONS["capped"]))
    out = tmp_path / "replay.json"
    rc = main(["meta", "replay", "--pool", "--metric", str(spec_file), "--home", str(archive.home),
               "--experiments", ",".join(SOME), "--json", str(out)])
    assert rc == 0
    coord = build_coordinator(Settings(home=archive.home), dispatcher=None)
    try:
        direct = replay(coord, DEFINITIONS["capped"], experiments=SOME).to_json_dict()
    finally:
        coord.state.close()
    assert _without_timings(json.loads(out.read_text())) == _without_timings(json.loads(json.dumps(direct)))


def test_a_replay_takes_one_of_the_keys_running_analysis_slots(archive: Archive, tmp_path: Any) -> None:
    """``XPCOMPUTE_MAX_ANALYSES_PER_KEY`` bounds replays too: each one fans out a job per experiment."""
    import shutil

    from fastapi.testclient import TestClient

    from xpcompute.api.app import Backend, create_app
    from xpcompute.coordinator.runtime import build_coordinator

    home = tmp_path / "home"
    shutil.copytree(archive.home, home)  # replays stay RUNNING here (nothing runs them): not in the shared archive
    settings = Settings(home=home, dispatch="inline", auth="on", api_keys="k1,k2", max_analyses_per_key=2)
    backend = Backend(settings, coordinator=build_coordinator(settings, dispatcher=None))
    body = {"metric": DEFINITIONS["capped"], "experiments": SOME}
    with TestClient(create_app(settings, backend)) as client:
        for _ in range(2):
            assert client.post("/meta/replays", json=body, headers={"X-API-Key": "k1"}).status_code == 202
        over = client.post("/meta/replays", json=body, headers={"X-API-Key": "k1"})
        assert over.status_code == 429 and over.json()["error"] == "quota_exceeded"
        assert client.post("/meta/replays", json=body, headers={"X-API-Key": "k2"}).status_code == 202
        refused = client.post("/meta/replays", json={"metric": "no_such_metric"}, headers={"X-API-Key": "k2"})
        assert refused.status_code == 422  # a replay that cannot be planned gives its slot back
        assert client.post("/meta/replays", json=body, headers={"X-API-Key": "k2"}).status_code == 202
