"""Adapters to where data lives: object stores (local directory, S3) and the keys the pipeline writes.

Only this package touches boto3; callers see ``StorageError`` and ``NotFoundError``.
"""

from xpcompute.storage.objects import (
    ENDPOINT_ENV,
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    check_key,
    join_key,
    newest_modification,
    open_store,
    split_uri,
    storage_errors,
)
from xpcompute.storage.versions import VersionedDocuments, content_hash

__all__ = [
    "ENDPOINT_ENV",
    "LocalObjectStore",
    "ObjectStore",
    "S3ObjectStore",
    "VersionedDocuments",
    "check_key",
    "content_hash",
    "join_key",
    "newest_modification",
    "open_store",
    "split_uri",
    "storage_errors",
]
