"""Atomic table publication: readers see only manifests, never a run in progress or a failed one."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
from pipeline_helpers import Moto

from xpcompute.errors import NotFoundError
from xpcompute.pipeline.tables import open_table, publish_table
from xpcompute.storage import LocalObjectStore, ObjectStore, S3ObjectStore
from xpcompute.storage.objects import new_token


def writer(table: pa.Table, files: int = 2):  # type: ignore[no-untyped-def]
    def write(fs: pafs.FileSystem, directory: str) -> pa.Schema:
        ds.write_dataset(
            table, directory, format="parquet", filesystem=fs, basename_template="part-{i}.parquet",
            max_rows_per_file=max(1, table.num_rows // files), max_rows_per_group=max(1, table.num_rows // files),
        )
        return table.schema
    return write


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path)
    moto: Moto = request.getfixturevalue("moto_s3")
    return S3ObjectStore(moto.bucket, prefix=f"tables-{new_token()}", endpoint_url=moto.endpoint)


def test_publish_then_read(store: ObjectStore) -> None:
    data = pa.table({"user_id": list(range(10)), "x": [float(i) for i in range(10)]})
    published = publish_table(store, "exp/analysis", writer(data), {"experiment": "exp"})
    assert store.exists("exp/analysis/_SUCCESS")
    manifest = json.loads(store.get_bytes("exp/analysis/_MANIFEST.json"))
    assert manifest["rows"] == 10 and len(manifest["files"]) == 2 and manifest["experiment"] == "exp"
    assert all(f.startswith(f"run-{published.run_id}/") for f in manifest["files"])
    again = open_table("exp/analysis", store)
    assert again.read().sort_by("user_id").equals(data)
    assert again.schema.equals(data.schema)


def test_a_run_without_a_manifest_is_invisible(store: ObjectStore) -> None:
    """A writer that crashed after writing files but before publishing leaves nothing readable."""
    with pytest.raises(NotFoundError, match="run stage 1 first"):
        open_table("exp/analysis", store)
    fs, _ = store.filesystem()
    writer(pa.table({"x": [1, 2]}))(fs, store.path("exp/analysis/run-crashed"))
    with pytest.raises(NotFoundError):
        open_table("exp/analysis", store)


def test_a_failed_write_keeps_the_published_version(store: ObjectStore) -> None:
    first = pa.table({"x": [1, 2, 3]})
    publish_table(store, "t", writer(first, files=1))

    def crash(fs: pafs.FileSystem, directory: str) -> pa.Schema:
        writer(pa.table({"x": [9]}), files=1)(fs, directory)
        raise RuntimeError("engine died mid-write")

    with pytest.raises(RuntimeError):
        publish_table(store, "t", crash)
    assert open_table("t", store).read().equals(first)


def test_republishing_switches_readers_and_collects_old_runs(store: ObjectStore) -> None:
    runs = []
    for value in range(4):
        runs.append(publish_table(store, "t", writer(pa.table({"x": [value] * 4}), files=1)).run_id)
    assert open_table("t", store).read().column("x").to_pylist() == [3] * 4
    on_disk = {k.split("/")[1] for k in store.list("t") if k.split("/")[1].startswith("run-")}
    assert on_disk == {f"run-{runs[-1]}", f"run-{runs[-2]}"}  # the current run and the one before it


def test_local_path_opens_a_table(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "root")
    publish_table(store, "exp1/analysis", writer(pa.table({"x": [1]}), files=1))
    table = open_table(str(tmp_path / "root" / "exp1" / "analysis"))
    assert table.read().column("x").to_pylist() == [1]
    assert table.is_local and table.num_rows == 1 and table.num_bytes > 0
