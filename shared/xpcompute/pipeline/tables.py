"""Published Parquet tables: atomic writes through a run prefix and a manifest, and readers that trust only manifests.

A writer puts its files under ``{table}/run-{id}/`` (a prefix nobody reads),
then publishes by writing ``{table}/_MANIFEST.json`` (one object, so the
switch is atomic on S3 and, through ``os.replace``, on disk) and a
``_SUCCESS`` marker. Readers open the manifest and read exactly the files it
lists, so a half-written or crashed run is invisible. After publishing, runs
older than the previous one are deleted (the previous one is kept for readers
that opened its manifest just before the switch).
"""

from __future__ import annotations

import base64
import json
import posixpath
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from xpcompute.errors import InputError, NotFoundError
from xpcompute.lazy import lazy
from xpcompute.storage import keys
from xpcompute.storage.objects import ObjectStore, join_key, new_token, split_uri, storage_errors

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq
else:  # loaded on first use: the API imports this module for its types, and most of its requests compute nothing
    pa = lazy("pyarrow")
    pafs = lazy("pyarrow.fs")
    pq = lazy("pyarrow.parquet")

if TYPE_CHECKING:  # pyarrow.dataset imports pandas: only the paths that scan a table load it
    import pyarrow.dataset as ds

MANIFEST_FORMAT = "xpcompute.table/1"

Writer = Callable[["pafs.FileSystem", str], "pa.Schema"]
"""Writes Parquet files into a fresh directory (filesystem, path) and returns their Arrow schema."""


@dataclass(frozen=True)
class PublishedTable:
    """A table readers may read: its store, key and manifest."""

    store: ObjectStore
    key: str
    manifest: dict[str, Any]

    @property
    def uri(self) -> str:
        return self.store.uri_for(self.key)

    @property
    def run_id(self) -> str:
        return str(self.manifest["run"])

    @property
    def num_rows(self) -> int:
        return int(self.manifest["rows"])

    @property
    def num_bytes(self) -> int:
        return int(self.manifest["bytes"])

    @property
    def schema(self) -> pa.Schema:
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(self.manifest["schema"])))

    @property
    def file_keys(self) -> list[str]:
        """Store keys of the data files (the manifest lists them relative to the table)."""
        return [join_key(self.key, str(f)) for f in self.manifest["files"]]

    def paths(self) -> list[str]:
        """File paths on ``filesystem()``."""
        return [self.store.path(k) for k in self.file_keys]

    def filesystem(self) -> pafs.FileSystem:
        return self.store.filesystem()[0]

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem(), pafs.LocalFileSystem)

    def dataset(self) -> ds.Dataset:
        """A pyarrow dataset over exactly the published files (no listing of the prefix)."""
        with storage_errors(f"opening {self.uri}"):
            import pyarrow.dataset as ds

            return ds.dataset(self.paths(), schema=self.schema, format="parquet", filesystem=self.filesystem())

    def read(self, columns: list[str] | None = None, dictionary: Sequence[str] = ()) -> pa.Table:
        """The table (or ``columns`` of it); the ``dictionary`` string columns come back dictionary-encoded.

        Parquet stores low-cardinality strings as dictionaries already, so
        keeping them that way is cheaper than decoding, and it makes slice
        masks and group-by keys over millions of rows a lookup per distinct value.
        """
        if not dictionary:
            with storage_errors(f"reading {self.uri}"):
                return self.dataset().to_table(columns=columns)
        schema = self.schema
        wanted = set(dictionary)
        fields = [pa.field(f.name, pa.dictionary(pa.int32(), f.type)) if f.name in wanted else f for f in schema]
        import pyarrow.dataset as ds

        parquet = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=wanted))
        with storage_errors(f"reading {self.uri}"):
            dataset = ds.dataset(self.paths(), schema=pa.schema(fields), format=parquet, filesystem=self.filesystem())
            return dataset.to_table(columns=columns)


def publish_table(store: ObjectStore, key: str, write: Writer, meta: Mapping[str, Any] | None = None) -> PublishedTable:
    """Run ``write`` into a fresh run prefix, then publish it with a manifest and a ``_SUCCESS`` marker."""
    previous = _try_manifest(store, key)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + new_token()
    run_key = keys.run_prefix(key, run_id)
    fs, _ = store.filesystem()
    started = time.perf_counter()
    schema = write(fs, store.path(run_key))
    files = [k for k in store.list(run_key) if _is_data_file(k)]
    relative = [posixpath.relpath(k, key) if key else k for k in files]
    with storage_errors(f"reading footers under {store.uri_for(run_key)}"):
        rows = sum(pq.read_metadata(store.path(k), filesystem=fs).num_rows for k in files)
        infos = fs.get_file_info([store.path(k) for k in files]) if files else []
        size = sum(int(i.size or 0) for i in infos)
    manifest = {
        "format": MANIFEST_FORMAT,
        "table": key,
        "run": run_id,
        "files": relative,
        "rows": rows,
        "bytes": size,
        "schema": base64.b64encode(schema.serialize().to_pybytes()).decode(),
        "columns": [{"name": f.name, "type": str(f.type)} for f in schema],
        "created_at": datetime.now(UTC).isoformat(),
        "write_seconds": round(time.perf_counter() - started, 3),
        **dict(meta or {}),
    }
    store.put_bytes(keys.manifest(key), json.dumps(manifest, indent=1, sort_keys=True, default=str).encode())
    store.put_bytes(keys.success_marker(key), b"")
    _collect_garbage(store, key, keep={run_id, previous.run_id if previous else run_id})
    return PublishedTable(store, key, manifest)


def open_table(location: str | PublishedTable, store: ObjectStore | None = None) -> PublishedTable:
    """The published table at ``location``: a key in ``store``, or a URI/path when ``store`` is None."""
    if isinstance(location, PublishedTable):
        return location
    if store is None:
        store, key = split_uri(location)
    else:
        key = join_key(location) if location else ""
    table = _try_manifest(store, key)
    if table is None:
        raise NotFoundError(
            f"no published table at {store.uri_for(key)}: run stage 1 first "
            f"(a table still being written has no {keys.MANIFEST} yet)"
        )
    return table


def _try_manifest(store: ObjectStore, key: str) -> PublishedTable | None:
    try:
        raw = store.get_bytes(keys.manifest(key))
    except NotFoundError:
        return None
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"{store.uri_for(keys.manifest(key))} is not valid JSON; re-run stage 1 to republish") from exc
    if manifest.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{store.uri_for(keys.manifest(key))} has format {manifest.get('format')!r}, expected {MANIFEST_FORMAT}")
    return PublishedTable(store, key, manifest)


def _is_data_file(key: str) -> bool:
    name = posixpath.basename(key)
    return name.endswith(".parquet") and not name.startswith(("_", "."))


def _collect_garbage(store: ObjectStore, key: str, keep: set[str]) -> None:
    prefix_len = len(key) + 1 if key else 0
    runs = {k[prefix_len:].split("/", 1)[0] for k in store.list(key) if k[prefix_len:].startswith("run-")}
    for run in sorted(runs):
        if run.removeprefix("run-") not in keep:
            store.delete_prefix(join_key(key, run))
