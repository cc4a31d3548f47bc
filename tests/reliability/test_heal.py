"""Item 3 of issue 13: compressed slices and cubes are derived from the analysis table, so a damaged one is
detected (its bytes do not decode, or a page fails its CRC32 checksum), recomputed once, written over, and reported in the job's output (and the
log), instead of failing every fit with "Unexpected end of stream"."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from service_helpers import analysis_table, publish, reference_records

from xpcompute.config import Settings
from xpcompute.coordinator import slicing, stored, worker
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.jobs import JobKind, JobState
from xpcompute.coordinator.runtime import build_coordinator
from xpcompute.coordinator.worker import run_job
from xpcompute.errors import CorruptObjectError
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.storage.objects import LocalObjectStore, ObjectStore

SLICES = tuple(SliceFilter.where(country=c) for c in ("US", "CA", "MX"))


def _damage(store: ObjectStore, key: str) -> None:
    raw = store.get_bytes(key)
    store.put_bytes(key, raw[: len(raw) // 2])  # truncated, as a crashed copy or a bad disk leaves it


def _flip_a_bit(store: ObjectStore, key: str) -> None:
    """One flipped bit in a data page, at a position where the bytes still decode without page checksums
    (into wrong numbers): only the checksum can tell."""
    raw = store.get_bytes(key)
    for pos in range(8, len(raw) - 8):
        damaged = bytearray(raw)
        damaged[pos] ^= 0x10
        try:
            silently_wrong = not pq.read_table(pa.BufferReader(bytes(damaged))).equals(
                pq.read_table(pa.BufferReader(raw)))
        except Exception:
            continue
        if silently_wrong:
            store.put_bytes(key, bytes(damaged))
            return
    raise AssertionError("no position decodes to wrong numbers")


@pytest.mark.parametrize("damage", [_damage, _flip_a_bit], ids=["truncated", "bit_flip"])
def test_a_damaged_compressed_slice_is_recomputed_once_by_the_fit_that_finds_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Callable[[ObjectStore, str], None],
) -> None:
    settings = Settings(home=tmp_path, dispatch="inline", slice_engine="arrow")
    table = analysis_table(1500)
    publish(LocalObjectStore(settings.objects_root), "exp", table)
    coord = build_coordinator(settings, dispatcher=None)  # jobs run by hand, one at a time
    analysis = coord.submit("exp", AnalysisSpec(metrics=("hours",), slices=SLICES[:1]))
    jobs = {j.kind: j for j in coord.state.list_jobs(analysis.analysis_id)}
    assert run_job(coord, settings, jobs[JobKind.SLICE].job_id, "w").status == "succeeded"
    coord.on_job_finished(jobs[JobKind.SLICE].job_id)  # releases its fit
    key = jobs[JobKind.SLICE].result_key
    assert key is not None
    damage(coord.store, key)
    worker._DECODED.clear()
    with pytest.raises(CorruptObjectError, match=f"stored object '{key}'"):
        stored.decode_derived(coord.store, key)
    outcome = run_job(coord, settings, jobs[JobKind.FIT].job_id, "w")
    assert outcome.status == "succeeded", outcome.error
    fit = coord.state.get_job(jobs[JobKind.FIT].job_id)
    assert fit.output["healed"] == [key]
    assert "is damaged and cannot be decoded" in caplog.text
    stored.decode_derived(coord.store, key)  # whole again: decodes, every page checksum holds
    coord.on_job_finished(fit.job_id)
    assert coord.state.get_analysis(analysis.analysis_id).state.value == "SUCCEEDED"
    (record,) = coord.results(analysis.analysis_id).records
    (ref,) = reference_records(table, SLICES[0], "hours", "ttest")
    assert record.effect == pytest.approx(ref.effect, rel=1e-12)


def test_a_damaged_cube_is_rebuilt_by_the_slice_job_that_reads_it(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, dispatch="inline", slice_engine="cube")
    table = analysis_table(1500)
    publish(LocalObjectStore(settings.objects_root), "exp", table)
    coord = build_coordinator(settings, dispatcher=None)
    analysis = coord.submit("exp", AnalysisSpec(metrics=("hours",), slices=SLICES, engine="cube"))
    slice_jobs = sorted((j for j in coord.state.list_jobs(analysis.analysis_id) if j.kind == JobKind.SLICE),
                        key=lambda j: SLICES.index(SliceFilter.model_validate(j.slice)))
    for job in slice_jobs[:2]:  # the first from the table, the second builds the cube
        assert run_job(coord, settings, job.job_id, "w").status == "succeeded"
        coord.on_job_finished(job.job_id)
    (cube_key,) = [k for k in coord.store.list(f"analyses/{analysis.analysis_id}") if "/cubes/" in k
                   and k.endswith(".parquet")]
    _damage(coord.store, cube_key)
    slicing._CUBES.clear()
    outcome = run_job(coord, settings, slice_jobs[2].job_id, "w")
    assert outcome.status == "succeeded", outcome.error
    coord.on_job_finished(slice_jobs[2].job_id)
    assert coord.state.get_job(slice_jobs[2].job_id).output["healed"] == [cube_key]
    stored.decode_derived(coord.store, cube_key)
    for job in coord.state.list_jobs(analysis.analysis_id):
        if job.kind == JobKind.FIT:
            assert run_job(coord, settings, job.job_id, "w").status == "succeeded"
            coord.on_job_finished(job.job_id)
    coord.maybe_finalize(analysis.analysis_id)
    assert coord.state.get_analysis(analysis.analysis_id).state.value == "SUCCEEDED"
    card = coord.results(analysis.analysis_id)
    for sl in SLICES:
        (ref,) = reference_records(table, sl, "hours", "ttest")
        got = next(r for r in card.records if r.slice == sl.label())
        assert got.effect == pytest.approx(ref.effect, rel=1e-9)
    assert all(j.state == JobState.SUCCEEDED for j in coord.state.list_jobs(analysis.analysis_id))
