"""The object-store adapter: one small protocol, a local-directory store and an S3 store.

Only this module touches boto3 and builds S3 filesystems. Everything else asks
a store for bytes, listings, a conditional write, or a ``pyarrow`` filesystem
(for Parquet reads and writes), and sees provider failures as
``StorageError`` and absent keys as ``NotFoundError``.

Keys are ``/``-separated paths relative to the store's root and never contain
``..`` or a leading ``/``, so a key taken from a request cannot escape the root.
The S3 endpoint comes from ``XPCOMPUTE_S3_ENDPOINT`` (e.g. moto's server on
127.0.0.1) or the constructor; credentials from the usual AWS environment.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlparse

from xpcompute.errors import InputError, NotFoundError, StorageError
from xpcompute.lazy import lazy

if TYPE_CHECKING:
    import pyarrow.fs as pafs
else:  # loaded on first use: the API imports this module for its types, and most of its requests compute nothing
    pafs = lazy("pyarrow.fs")

ENDPOINT_ENV = "XPCOMPUTE_S3_ENDPOINT"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def check_key(key: str) -> str:
    """Normalise a relative key; refuse ``..``, absolute paths, backslashes and control characters."""
    if not isinstance(key, str) or "\\" in key or any(ord(ch) < 32 for ch in key):
        raise InputError(f"object key {key!r} has forbidden characters")
    if key.startswith("/"):
        raise InputError(f"object key {key!r} must be relative to the store root (no leading '/')")
    parts = [p for p in key.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise InputError(f"object key {key!r} must not contain '.' or '..' segments")
    return "/".join(parts)


def join_key(*parts: str) -> str:
    """Join key segments, skipping empty ones (a table may live at the store root)."""
    return check_key("/".join(p.strip("/") for p in parts if p and p.strip("/")))


@contextlib.contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Turn a filesystem or provider failure inside the block into ``StorageError`` naming ``what``.

    ``FileNotFoundError`` becomes ``NotFoundError``; pyarrow's S3 errors are
    ``OSError``; our own errors pass through unchanged.
    """
    try:
        yield
    except (NotFoundError, StorageError, InputError):
        raise
    except FileNotFoundError as exc:
        raise NotFoundError(f"{what}: not found") from exc
    except OSError as exc:
        raise StorageError(f"{what} failed: {_reason(exc)}") from exc


def _reason(exc: OSError) -> str:
    """An OS error's reason without the file name it carries (an absolute server path the client must not see)."""
    if exc.strerror:
        return f"[Errno {exc.errno}] {exc.strerror}" if exc.errno is not None else exc.strerror
    return type(exc).__name__


@runtime_checkable
class ObjectStore(Protocol):
    """What the pipeline and the functions need from an object store."""

    @property
    def uri(self) -> str:
        """The store root as a URI (``s3://bucket/prefix`` or a local path)."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write (or replace) one object atomically: readers see the old or the new bytes, never a part."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """Read one object; ``NotFoundError`` if absent."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix`` (recursively), sorted."""
        ...

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create the object only if no object has that key; ``False`` if one already did."""
        ...

    def delete(self, key: str) -> None:
        """Remove one object; absent keys are fine."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under ``prefix``; returns how many."""
        ...

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """A pyarrow filesystem and the path of the store root on it (for Parquet I/O)."""
        ...

    def path(self, key: str) -> str:
        """The filesystem path of ``key`` on ``filesystem()``."""
        ...

    def uri_for(self, key: str) -> str:
        """The URI of ``key`` (for messages and manifests)."""
        ...


class LocalObjectStore:
    """A directory as an object store (the embedded default and tests)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    @property
    def uri(self) -> str:
        return str(self.root)

    def _file(self, key: str) -> Path:
        return self.root / check_key(key) if key else self.root

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self._file(key)
        with storage_errors(f"writing key {key!r}"):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise

    def get_bytes(self, key: str) -> bytes:
        target = self._file(key)
        try:
            return target.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFoundError(f"no object at key {key!r}") from exc
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise NotFoundError(f"no object at key {key!r} (the name is too long to exist)") from exc
            raise StorageError(f"reading key {key!r} failed: {_reason(exc)}") from exc

    def exists(self, key: str) -> bool:
        return self._file(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        base = self._file(prefix) if prefix else self.root
        if base.is_file():
            return [check_key(prefix)]
        if not base.is_dir():
            return []
        with storage_errors(f"listing prefix {prefix!r}"):
            return sorted(
                p.relative_to(self.root).as_posix()
                for p in base.rglob("*")
                if p.is_file() and not p.name.startswith(".tmp-")
            )

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Atomic: the bytes go to a temporary file that is hard-linked into place (link fails if taken)."""
        target = self._file(key)
        with storage_errors(f"writing key {key!r}"):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    return False
                return True
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def delete(self, key: str) -> None:
        with storage_errors(f"deleting {key}"):
            self._file(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        base = self._file(prefix)
        if base.is_file():
            base.unlink()
            return 1
        if not base.is_dir() or (base == self.root and not prefix):
            return 0
        n = sum(1 for p in base.rglob("*") if p.is_file())
        with storage_errors(f"deleting prefix {prefix!r}"):
            shutil.rmtree(base)
        return n

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        return pafs.LocalFileSystem(), str(self.root)

    def path(self, key: str) -> str:
        return str(self._file(key))

    def uri_for(self, key: str) -> str:
        return self.path(key)


class S3ObjectStore:
    """An S3 bucket (or a prefix of one) through boto3, with pyarrow's S3 filesystem for Parquet."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any | None = None,
    ) -> None:
        if not _BUCKET.match(bucket):
            raise InputError(f"S3 bucket name {bucket!r} is not valid: 3-63 lowercase letters, digits, '.' or '-'")
        self.bucket = bucket
        self.prefix = check_key(prefix) if prefix else ""
        self.endpoint_url = endpoint_url or os.environ.get(ENDPOINT_ENV) or None
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self._client = client
        self._fs: pafs.S3FileSystem | None = None

    def __repr__(self) -> str:
        return f"S3ObjectStore({self.uri!r}, endpoint={self.endpoint_url!r})"

    # -- plumbing -------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                config=Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=5, read_timeout=60),
            )
        return self._client

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, key: str) -> str:
        return join_key(self.prefix, check_key(key)) if key else self.prefix

    def _fail(self, what: str, exc: Exception) -> StorageError:
        return StorageError(f"S3 {what} on {self.uri} failed: {exc}")

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFoundError(f"no object {what} in {self.uri}") from exc
            if code == "NoSuchBucket":
                raise NotFoundError(f"bucket {self.bucket!r} does not exist; create it or fix the URI") from exc
            raise self._fail(what, exc) from exc
        except BotoCoreError as exc:
            raise self._fail(what, exc) from exc

    # -- the protocol ---------------------------------------------------------
    def put_bytes(self, key: str, data: bytes) -> None:
        with self._errors(f"put {key}"):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get_bytes(self, key: str) -> bytes:
        with self._errors(repr(key)):
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            return bytes(body.read())

    def exists(self, key: str) -> bool:
        try:
            with self._errors(f"head {key}"):
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except NotFoundError:
            return False
        return True

    def _list_all(self, prefix: str) -> list[str]:
        """Every key under ``prefix``, directory markers (``a/b/``, made by pyarrow) included."""
        full = self._key(prefix) if prefix else self.prefix
        full = full + "/" if full else ""
        out: list[str] = []
        strip = len(self.prefix) + 1 if self.prefix else 0
        with self._errors(f"list {prefix}"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                out += [obj["Key"][strip:] for obj in page.get("Contents", [])]
        return sorted(out)

    def list(self, prefix: str = "") -> list[str]:
        return [k for k in self._list_all(prefix) if k and not k.endswith("/")]

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """S3 conditional write (``If-None-Match: *``): atomic on AWS and on moto."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return False
            raise self._fail(f"conditional put {key}", exc) from exc
        except BotoCoreError as exc:
            raise self._fail(f"conditional put {key}", exc) from exc
        return True

    def delete(self, key: str) -> None:
        with self._errors(f"delete {key}"):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> int:
        keys = self._list_all(prefix)
        names = [self._key(k.rstrip("/")) + ("/" if k.endswith("/") else "") for k in keys if k]
        if prefix:
            names.append(self._key(prefix) + "/")  # the folder marker pyarrow may have made
        for start in range(0, len(names), 1000):
            batch = [{"Key": name} for name in names[start : start + 1000]]
            with self._errors(f"delete under {prefix}"):
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return sum(1 for k in keys if k and not k.endswith("/"))

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        if self._fs is None:
            kwargs: dict[str, Any] = {
                "region": self.region,
                "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=4),
                "connect_timeout": 5,
                "request_timeout": 60,
            }
            if self.endpoint_url:
                parsed = urlparse(self.endpoint_url)
                kwargs["endpoint_override"] = parsed.netloc or parsed.path
                kwargs["scheme"] = parsed.scheme or "https"
            creds = self._credentials()
            if creds is not None:
                kwargs.update(creds)
            with storage_errors(f"opening S3 filesystem for {self.uri}"):
                self._fs = pafs.S3FileSystem(**kwargs)
        return self._fs, f"{self.bucket}/{self.prefix}".rstrip("/")

    def _credentials(self) -> dict[str, str] | None:
        """The same credentials boto3 resolved, so both clients see one identity."""
        import boto3

        creds = boto3.Session().get_credentials()
        if creds is None:
            return None
        frozen = creds.get_frozen_credentials()
        out = {"access_key": frozen.access_key, "secret_key": frozen.secret_key}
        if frozen.token:
            out["session_token"] = frozen.token
        return out

    def path(self, key: str) -> str:
        return f"{self.bucket}/{self._key(key)}".rstrip("/")

    def uri_for(self, key: str) -> str:
        return f"s3://{self.path(key)}"


def open_store(uri: str, endpoint_url: str | None = None) -> ObjectStore:
    """A store rooted at ``uri``: ``s3://bucket/prefix`` or a local directory path."""
    if uri.startswith("s3://"):
        parsed = urlparse(uri)
        return S3ObjectStore(parsed.netloc, parsed.path.strip("/"), endpoint_url=endpoint_url)
    if "://" in uri and not uri.startswith("file://"):
        raise InputError(f"unsupported storage URI {uri!r}: use s3://bucket/prefix or a local path")
    return LocalObjectStore(uri.removeprefix("file://"))


def split_uri(uri: str, endpoint_url: str | None = None) -> tuple[ObjectStore, str]:
    """A store and a key for an object or table URI: ``s3://bucket/a/b`` -> (bucket store, ``a/b``).

    A local path becomes a store rooted at its parent folder and the key of its
    last segment, so siblings (a table's compressed slices) are keys too.
    """
    if uri.startswith("s3://"):
        parsed = urlparse(uri)
        return S3ObjectStore(parsed.netloc, endpoint_url=endpoint_url), check_key(parsed.path.strip("/"))
    if "://" in uri and not uri.startswith("file://"):
        raise InputError(f"unsupported storage URI {uri!r}: use s3://bucket/key or a local path")
    path = Path(uri.removeprefix("file://")).resolve()
    if path.parent == path:
        raise InputError(f"{uri!r} is a filesystem root; give the path of a table or file")
    return LocalObjectStore(path.parent), check_key(path.name)


def newest_modification(uri: str, endpoint_url: str | None = None) -> float | None:
    """The newest modification time (Unix seconds) of the file at ``uri`` or of any file under it; ``None`` if absent.

    Why: a table built from sources is stale once any source file changed
    after it was built. Local files report their mtime and S3 objects their
    ``LastModified``, both through pyarrow's filesystem, so callers never see
    either client.
    """
    store, key = split_uri(uri, endpoint_url=endpoint_url)
    fs, _ = store.filesystem()
    base = store.path(key)
    with storage_errors(f"reading modification times at {uri}"):
        info = fs.get_file_info(base)
        if info.type == pafs.FileType.NotFound:
            return None
        if info.type == pafs.FileType.File:
            infos = [info]
        else:
            infos = [i for i in fs.get_file_info(pafs.FileSelector(base, recursive=True))
                     if i.type == pafs.FileType.File]
    times = [i.mtime.timestamp() for i in infos if i.mtime is not None]
    return max(times) if times else None


def new_token() -> str:
    """A short random id for run prefixes and temporary names."""
    return uuid.uuid4().hex[:12]
