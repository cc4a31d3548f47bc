"""Item 8 of issue 13: a few seconds of storage outage delay an analysis instead of failing it, and the
failed jobs of an analysis can be run again (``POST /analyses/{id}/retry``, ``xpcompute retry``)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from service_helpers import analysis_table, publish

from xpcompute.api.app import Backend, create_app
from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.jobs import JobKind, JobState
from xpcompute.coordinator.runtime import EmbeddedRuntime, build_coordinator
from xpcompute.coordinator.worker import run_job
from xpcompute.errors import StorageError
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.storage.objects import LocalObjectStore


class FlakyStore(LocalObjectStore):
    """A local store whose writes fail while ``outage`` > 0 (each failed write uses one up), as a store
    that is briefly unreachable does."""

    outage = 0
    only = ""  # fail only writes of keys containing this

    def _down(self, key: str) -> None:
        if FlakyStore.outage > 0 and FlakyStore.only in key:
            FlakyStore.outage -= 1
            raise StorageError(f"writing {key} failed: connection refused (simulated outage)")

    def put_bytes(self, key: str, data: bytes) -> None:  # type: ignore[override]
        self._down(key)
        super().put_bytes(key, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:  # type: ignore[override]
        self._down(key)
        return super().put_if_absent(key, data)


def test_store_errors_get_more_attempts_than_the_jobs_own_errors(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, dispatch="inline", slice_engine="arrow", backoff_s=0.0, max_attempts=3,
                        transient_retries=6)
    publish(LocalObjectStore(settings.objects_root), "exp", analysis_table(1000))
    coord = build_coordinator(settings, dispatcher=None)
    coord.store = FlakyStore(settings.objects_root)
    analysis = coord.submit("exp", AnalysisSpec(metrics=("hours",), slices=(SliceFilter(),)))
    slice_job = next(j for j in coord.state.list_jobs(analysis.analysis_id) if j.kind == JobKind.SLICE)
    FlakyStore.outage = 5  # more failed attempts than max_attempts allows for a job's own errors
    outcomes = [run_job(coord, settings, slice_job.job_id, "w").status for _ in range(6)]
    assert outcomes[:5] == ["retrying"] * 5 and outcomes[5] == "succeeded", outcomes
    job = coord.state.get_job(slice_job.job_id)
    assert job.state == JobState.SUCCEEDED and job.attempts == 6
    assert all("simulated outage" in e for e in job.errors[:5])


def test_failed_jobs_run_again_on_request(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, dispatch="inline", slice_engine="arrow", backoff_s=0.0, max_attempts=1,
                        transient_retries=0)
    publish(LocalObjectStore(settings.objects_root), "exp", analysis_table(1000))
    runtime = EmbeddedRuntime(settings)  # inline dispatch: jobs run within each call
    coord = runtime.coordinator
    coord.store = FlakyStore(settings.objects_root)
    FlakyStore.outage, FlakyStore.only = 1, "/slices/"  # a slice's single attempt fails, and with it its fits
    analysis = coord.submit("exp", AnalysisSpec(metrics=("hours",), slices=(SliceFilter(), SliceFilter.where(country="US"))))
    aid = analysis.analysis_id
    assert coord.state.get_analysis(aid).state.value == "FAILED"
    failed = [j for j in coord.state.list_jobs(aid) if j.state == JobState.FAILED]
    assert {j.kind for j in failed} == {JobKind.SLICE, JobKind.FIT}
    app = create_app(settings, backend=Backend(settings, coordinator=coord))
    with TestClient(app) as client:
        answer = client.post(f"/analyses/{aid}/retry")
        assert answer.status_code == 202, answer.text
        assert answer.json()["retried"] == len(failed)
        assert client.get(f"/analyses/{aid}").json()["state"] == "SUCCEEDED"
        results = client.get(f"/analyses/{aid}/results").json()
        assert not results["failures"] and {r["slice"] for r in results["records"]} == {"all users", "country=US"}
        again = client.post(f"/analyses/{aid}/retry").json()
        assert again["retried"] == 0
    FlakyStore.only = ""
