"""Object stores: the same contract on a local folder and on S3 (moto's server over HTTP on 127.0.0.1)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pipeline_helpers import Moto

from xpcompute.errors import InputError, NotFoundError, StorageError
from xpcompute.storage import LocalObjectStore, ObjectStore, S3ObjectStore, open_store, split_uri
from xpcompute.storage.objects import new_token


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalObjectStore(tmp_path / "store")
    else:
        moto: Moto = request.getfixturevalue("moto_s3")
        yield S3ObjectStore(moto.bucket, prefix=f"t-{new_token()}", endpoint_url=moto.endpoint)


def test_put_get_exists_list_delete(store: ObjectStore) -> None:
    assert not store.exists("a/b.txt")
    store.put_bytes("a/b.txt", b"one")
    store.put_bytes("a/c/d.txt", b"two")
    store.put_bytes("e.txt", b"three")
    assert store.exists("a/b.txt")
    assert store.get_bytes("a/c/d.txt") == b"two"
    assert store.list("a") == ["a/b.txt", "a/c/d.txt"]
    assert store.list() == ["a/b.txt", "a/c/d.txt", "e.txt"]
    store.put_bytes("a/b.txt", b"replaced")
    assert store.get_bytes("a/b.txt") == b"replaced"
    store.delete("e.txt")
    store.delete("e.txt")  # absent is fine
    assert not store.exists("e.txt")
    assert store.delete_prefix("a") == 2
    assert store.list() == []


def test_put_if_absent_writes_once(store: ObjectStore) -> None:
    assert store.put_if_absent("lock/job-1", b"first") is True
    assert store.put_if_absent("lock/job-1", b"second") is False
    assert store.get_bytes("lock/job-1") == b"first"


def test_missing_object_is_not_found(store: ObjectStore) -> None:
    with pytest.raises(NotFoundError):
        store.get_bytes("nope/never.txt")


@pytest.mark.parametrize("key", ["../escape", "/abs/path", "a/../../b", "a\\b", "a\x00b"])
def test_keys_cannot_escape_the_root(store: ObjectStore, key: str) -> None:
    with pytest.raises(InputError):
        store.put_bytes(key, b"x")


def test_filesystem_reads_and_writes_parquet(store: ObjectStore) -> None:
    fs, root = store.filesystem()
    table = pa.table({"x": [1, 2, 3]})
    if isinstance(store, LocalObjectStore):
        Path(store.path("t")).mkdir(parents=True)
    pq.write_table(table, store.path("t/part-0.parquet"), filesystem=fs)
    assert store.path("t/part-0.parquet").startswith(root)
    assert store.list("t") == ["t/part-0.parquet"]
    assert pq.read_table(store.path("t/part-0.parquet"), filesystem=fs).equals(table)


def test_uris_choose_the_store(moto_s3: Moto, tmp_path: Path) -> None:
    s3 = open_store(f"s3://{moto_s3.bucket}/some/prefix")
    assert isinstance(s3, S3ObjectStore) and s3.prefix == "some/prefix" and s3.endpoint_url == moto_s3.endpoint
    assert s3.uri_for("k") == f"s3://{moto_s3.bucket}/some/prefix/k"
    s3_root, key = split_uri(f"s3://{moto_s3.bucket}/exp/analysis")
    assert isinstance(s3_root, S3ObjectStore) and s3_root.prefix == ""
    assert key == "exp/analysis"
    local, key = split_uri(str(tmp_path / "exp" / "analysis"))
    assert isinstance(local, LocalObjectStore) and local.root == tmp_path / "exp" and key == "analysis"
    with pytest.raises(InputError, match="unsupported storage URI"):
        open_store("gs://bucket/x")
    with pytest.raises(InputError, match="bucket name"):
        S3ObjectStore("Bad_Bucket")


def test_unreachable_endpoint_is_a_storage_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id="x", aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=1),
    )
    store = S3ObjectStore("xp-down", endpoint_url=f"http://127.0.0.1:{port}", client=client)
    with pytest.raises(StorageError, match="S3 put"):
        store.put_bytes("k", b"x")
    with pytest.raises(StorageError):
        store.put_if_absent("k", b"x")


def test_missing_bucket_is_not_found(moto_s3: Moto) -> None:
    store = S3ObjectStore("xp-no-such-bucket", endpoint_url=moto_s3.endpoint)
    with pytest.raises(NotFoundError, match="bucket 'xp-no-such-bucket' does not exist"):
        store.list()
