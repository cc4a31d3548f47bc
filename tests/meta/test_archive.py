"""The experiment archive: listing an experiment's analyses (library, HTTP, CLI) and deleting one analysis.

Deletion is tested on a small archive of its own (two experiments, a second analysis of the first), so the
shared 50-experiment archive is never changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from xpcompute.api.app import Backend, create_app
from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.jobs import Analysis, AnalysisState
from xpcompute.coordinator.runtime import EmbeddedRuntime
from xpcompute.coordinator.service import spec_hash
from xpcompute.errors import ConflictError, NotFoundError
from xpcompute.meta.archive import analyses_of, delete_analysis, describe
from xpcompute.storage import keys
from xpcompute.synthetic_archive import Archive, plans, write_archive


def test_the_writer_plants_varied_effects_sizes_and_durations(archive: Archive) -> None:
    chosen = archive.plans
    assert len(chosen) >= 50 and len(archive.analyses) == len(chosen)
    assert sum(p.null for p in chosen) >= 10  # A/A experiments, for the false-positive side of a replay
    assert len({p.users for p in chosen}) >= 4 and len({p.days for p in chosen}) >= 5
    assert {p.watch_lift > 0 for p in chosen} == {True, False} and any(p.watch_lift < 0 for p in chosen)
    truth = json.loads((archive.root / "truth.json").read_text())
    assert truth["analyses"] == archive.analyses and len(truth["plans"]) == len(chosen)
    assert plans(50, 1_200) == list(chosen)  # seeded: the same arguments give the same archive
    for plan in chosen[:3]:
        assert archive.spec_path(plan.experiment_id).is_file()


def test_listing_names_every_analysis_of_an_experiment(archive: Archive, archive_coordinator: object) -> None:
    from xpcompute.coordinator.service import Coordinator

    assert isinstance(archive_coordinator, Coordinator)
    listed = analyses_of(archive_coordinator, "archive-004")
    assert [a.analysis_id for a in listed] == [archive.analyses["archive-004"]]
    assert listed[0].state == "SUCCEEDED" and listed[0].experiment_version == 1
    body = describe(archive_coordinator, "archive-004")
    assert [v["version"] for v in body["versions"]] == [1]
    current = archive_coordinator.experiment("archive-004")
    assert current is not None and body["tables"]["analysis"]["spec_hash"] == spec_hash(current)
    with pytest.raises(NotFoundError):
        analyses_of(archive_coordinator, "never-registered")


@pytest.fixture
def small(tmp_path: Path) -> Iterator[tuple[Archive, EmbeddedRuntime, str]]:
    archive = write_archive(tmp_path / "small", n=2, users=600, pre_days=2)
    runtime = EmbeddedRuntime(archive.settings(dispatch="inline"))
    second = runtime.coordinator.submit("archive-000", AnalysisSpec(metrics=("streaming_hours", "sessions")))
    yield archive, runtime, second.analysis_id
    runtime.stop()


def test_delete_removes_one_analysis_and_nothing_else(small: tuple[Archive, EmbeddedRuntime, str]) -> None:
    archive, runtime, second = small
    coord = runtime.coordinator
    first = archive.analyses["archive-000"]
    other_experiment = archive.analyses["archive-001"]
    before = {k for k in coord.store.list("") if not k.startswith(keys.analysis_prefix(first))}
    assert coord.store.list(keys.analysis_prefix(first))
    card = coord.results(second)

    deleted = delete_analysis(coord, first)
    assert deleted.objects == len(deleted.keys) > 0 and deleted.state_records > 1  # the analysis and its jobs
    with pytest.raises(NotFoundError):
        coord.state.get_analysis(first)
    assert coord.state.list_jobs(first) == []
    assert coord.store.list(keys.analysis_prefix(first)) == []
    assert {k for k in coord.store.list("")} == before  # versions, stage-1 tables, other analyses untouched
    assert coord.results(second).records == card.records
    assert coord.results(other_experiment).complete
    assert [a.analysis_id for a in analyses_of(coord, "archive-000")] == [second]
    with pytest.raises(NotFoundError):
        delete_analysis(coord, first)


def test_a_running_analysis_is_not_deleted(small: tuple[Archive, EmbeddedRuntime, str]) -> None:
    _, runtime, _ = small
    coord = runtime.coordinator
    running = Analysis(analysis_id="still-running", experiment_id="archive-001", request={"metrics": ["sessions"]},
                       state=AnalysisState.RUNNING, created_at=1.0, updated_at=1.0)
    assert coord.state.create_analysis(running, [])
    with pytest.raises(ConflictError):
        delete_analysis(coord, "still-running")
    assert coord.state.get_analysis("still-running").state == AnalysisState.RUNNING


def test_http_lists_and_deletes(small: tuple[Archive, EmbeddedRuntime, str]) -> None:
    archive, runtime, second = small
    settings = Settings(home=archive.home, dispatch="inline")
    app = create_app(settings, backend=Backend(settings, coordinator=runtime.coordinator))
    first = archive.analyses["archive-000"]
    with TestClient(app) as client:
        listed = client.get("/experiments/archive-000/analyses")
        assert listed.status_code == 200
        assert [a["analysis_id"] for a in listed.json()["analyses"]] == [second, first]
        only = client.get("/experiments/archive-000/analyses", params={"state": "FAILED"})
        assert only.status_code == 200 and only.json()["analyses"] == []
        assert client.get("/experiments/archive-000/archive").json()["versions"][0]["version"] == 1
        gone = client.delete(f"/analyses/{first}")
        assert gone.status_code == 200 and gone.json()["analysis_id"] == first
        assert client.delete(f"/analyses/{first}").status_code == 404
        assert client.get(f"/analyses/{first}").status_code == 404
        assert [a["analysis_id"] for a in client.get("/experiments/archive-000/analyses").json()["analyses"]] == [second]
        assert client.get("/experiments/nope/analyses").status_code == 404


def test_cli_lists_and_deletes(small: tuple[Archive, EmbeddedRuntime, str], capsys: pytest.CaptureFixture[str]) -> None:
    from xpcompute.cli import main

    archive, _, second = small
    assert main(["archive", "list", "archive-000", "--home", str(archive.home), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert {a["analysis_id"] for a in body["analyses"]} == {second, archive.analyses["archive-000"]}
    assert main(["archive", "delete", second, "--home", str(archive.home)]) == 0
    assert json.loads(capsys.readouterr().out)["analysis_id"] == second
    assert main(["archive", "list", "archive-000", "--home", str(archive.home)]) == 0
    assert second not in capsys.readouterr().out
