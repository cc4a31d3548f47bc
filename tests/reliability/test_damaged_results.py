"""Items 2 and 9 of issue 13: damaged stored results never give a 500, and a live slice fails alone.

A truncated or invalid result JSON is a typed error naming the object: the
status, results and page answer with the rest of the analysis and list the
damaged one among the failures. A live slice that fails (an empty one, say)
is reported with the results but does not turn a finished analysis FAILED.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_helpers import analysis_table, publish

from xpcompute.api.app import Backend, create_app
from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.jobs import JobKind
from xpcompute.coordinator.runtime import EmbeddedRuntime
from xpcompute.coordinator.scorecard import records_of
from xpcompute.errors import CorruptObjectError
from xpcompute.pipeline.slices import Condition, SliceFilter
from xpcompute.storage import keys
from xpcompute.storage.objects import LocalObjectStore

SLICES = (SliceFilter(), SliceFilter.where(country="US"))


def finished(tmp_path: Path) -> tuple[Settings, object, str]:
    settings = Settings(home=tmp_path, dispatch="inline", slice_engine="arrow")
    publish(LocalObjectStore(settings.objects_root), "exp", analysis_table(1200))
    coord = EmbeddedRuntime(settings).coordinator  # inline dispatch: every job runs within the call
    analysis = coord.submit("exp", AnalysisSpec(metrics=("hours",), slices=SLICES))
    assert coord.state.get_analysis(analysis.analysis_id).state.value == "SUCCEEDED"
    return settings, coord, analysis.analysis_id


@pytest.mark.parametrize("damage", [b'[{"metric": "hou', b"not json at all", b'{"a": 1}', b"[1, 2]"])
def test_a_damaged_result_is_named_and_the_rest_still_answers(tmp_path: Path, damage: bytes) -> None:
    settings, coord, aid = finished(tmp_path)
    fits = [j for j in coord.state.list_jobs(aid) if j.kind == JobKind.FIT]  # type: ignore[attr-defined]
    damaged = fits[0]
    coord.store.put_bytes(damaged.result_key, damage)  # type: ignore[attr-defined]
    coord.store.put_bytes(keys.scorecard(aid), b"{ truncated")  # type: ignore[attr-defined]
    with pytest.raises(CorruptObjectError, match=f"result object {damaged.result_key} is damaged"):
        records_of(damaged, coord.store)  # type: ignore[attr-defined]
    app = create_app(settings, backend=Backend(settings, coordinator=coord))  # type: ignore[arg-type]
    with TestClient(app) as client:
        for path in (f"/analyses/{aid}", f"/analyses/{aid}/results", f"/analyses/{aid}/scorecard"):
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.text[:300])
        results = client.get(f"/analyses/{aid}/results").json()
    assert len(results["records"]) > 0
    assert any(damaged.result_key in f["error"] and "damaged" in f["error"] for f in results["failures"])


def test_a_failed_live_slice_leaves_a_finished_analysis_succeeded(tmp_path: Path) -> None:
    _, coord, aid = finished(tmp_path)
    empty = SliceFilter(all_of=(Condition(column="country", values=("US",)),
                                Condition(column="country", values=("US",), negate=True)))
    job = coord.request_slice(aid, empty)  # type: ignore[attr-defined]
    analysis = coord.state.get_analysis(aid)  # type: ignore[attr-defined]
    assert coord.state.get_job(job.job_id).state.value == "FAILED"  # type: ignore[attr-defined]
    assert analysis.state.value == "SUCCEEDED", analysis.error
    card = coord.results(aid)  # type: ignore[attr-defined]
    assert any(f.slice == empty.label() for f in card.failures)
    assert {r.slice for r in card.records} == {s.label() for s in SLICES}
