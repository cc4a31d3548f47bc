"""The segment cube is built by the all-users slice job (slice function), so finalize (coordinator) only discovers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ui"))
from ui_helpers import EXPERIMENT_ID, analysis_spec, publish_experiment

from xpcompute.config import Settings
from xpcompute.coordinator.jobs import AnalysisState, JobKind
from xpcompute.coordinator.runtime import build_coordinator
from xpcompute.coordinator.service import Coordinator
from xpcompute.coordinator.worker import run_job
from xpcompute.storage import keys


def _analysis(tmp_path: Path, users: int) -> tuple[Coordinator, Settings, str]:
    """A registered experiment with dimensions and one analysis of it (its slice and fit jobs not run)."""
    settings = Settings(home=tmp_path / "home", dispatch="inline", slice_engine="arrow")
    coord = build_coordinator(settings, dispatcher=None)
    publish_experiment(coord, tmp_path / "raw", users=users)
    return coord, settings, coord.submit(EXPERIMENT_ID, analysis_spec()).analysis_id


def _run_all(coord: object, settings: Settings, aid: str, kinds: tuple[JobKind, ...]) -> None:
    for job in coord.state.list_jobs(aid):  # type: ignore[attr-defined]
        if job.kind in kinds:
            assert run_job(coord, settings, job.job_id, "test").status == "succeeded"  # type: ignore[arg-type]
            coord.on_job_finished(job.job_id)  # type: ignore[attr-defined]


def test_the_all_users_slice_job_stores_the_cube_and_finalize_only_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    coord, settings, aid = _analysis(tmp_path, users=3000)
    _run_all(coord, settings, aid, (JobKind.SLICE,))
    slices = [j for j in coord.state.list_jobs(aid) if j.kind == JobKind.SLICE]
    assert all("segments.cube" not in (j.output.get("artifact_errors") or {}) for j in slices)
    stored = [k for k in coord.store.list(keys.analysis_prefix(aid) + "cubes/") if k.endswith(".parquet")]
    assert stored, "the all-users slice job stored the analysis's segment cube"

    from xpcompute.segments import cube

    def no_second_pass(*args: object, **kwargs: object) -> None:
        raise AssertionError("finalize built the segment cube again instead of reading the stored one")

    monkeypatch.setattr(cube, "build_cube", no_second_pass)
    from xpcompute.coordinator import slicing

    slicing._CUBES.clear()  # as on another machine: finalize reads the stored cube, not this process's copy
    _run_all(coord, settings, aid, (JobKind.FIT,))
    analysis = coord.state.get_analysis(aid)
    assert analysis.state == AnalysisState.SUCCEEDED
    section = coord.results(aid).segments
    assert section is not None and section["tests"] and not any("did not run" in n for n in section["notes"])


def test_a_cube_the_slice_job_cannot_build_is_recorded_and_finalize_reports_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    coord, settings, aid = _analysis(tmp_path, users=2000)
    from xpcompute.errors import InputError
    from xpcompute.segments import cube

    def broken(*args: object, **kwargs: object) -> None:
        raise InputError("no dimension column left to split on")

    monkeypatch.setattr(cube, "build_cube", broken)
    _run_all(coord, settings, aid, (JobKind.SLICE,))
    (everyone,) = [j for j in coord.state.list_jobs(aid) if j.kind == JobKind.SLICE and j.slice_label == "all users"]
    assert everyone.output["artifact_errors"]["segments.cube"] == "no dimension column left to split on"
    _run_all(coord, settings, aid, (JobKind.FIT,))  # the slice itself and its fits are unaffected
    assert coord.state.get_analysis(aid).state == AnalysisState.SUCCEEDED
    section = coord.results(aid).segments
    assert section is not None and any("no dimension column left to split on" in n for n in section["notes"])


def test_an_internal_error_in_discovery_leaves_a_note_and_the_analysis_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, a KeyError in discovery escaped finalize: the analysis stayed RUNNING and `xpcompute run` waited on
    it for ever. Segment discovery is a section of the scorecard, not a condition of its existence."""
    coord, settings, aid = _analysis(tmp_path, users=2000)
    from xpcompute.segments import service

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("aov: monomial (2, 1, 0) is not stored")

    monkeypatch.setattr(service, "analysis_segments", broken)
    _run_all(coord, settings, aid, (JobKind.SLICE,))
    _run_all(coord, settings, aid, (JobKind.FIT,))
    assert coord.state.get_analysis(aid).state == AnalysisState.SUCCEEDED
    section = coord.results(aid).segments
    assert section is not None and section["tests"] == []
    assert section["notes"] == ["segment discovery did not run: KeyError: 'aov: monomial (2, 1, 0) is not stored' "
                                "(an internal error, logged)"]
