"""What jobs store and read: the compressed tables a fit reads, and the records it writes.

* ``fit_input``: which stored table a fit reads (the slice's moments table, or one of its per-metric
  n-tile, panel or event tables), by its model's layout; the fit job and the exported notebook both use it.
* ``encode_derived`` / ``decode_derived``: compressed slices, artifacts and cubes as Parquet with page
  checksums, so damage is detected (``CorruptObjectError``) and the object recomputed, not fitted.
* ``store_result``: a fit's records, put-if-absent, a damaged object found at the key replaced whole.
* ``note_healed`` / ``take_healed``: the damaged objects this thread's job recomputed, for its output.

Why a module of its own: the fit function imports this and the models, not the slicing engine, planning
or the scorecard (``tests/test_import_graph.py``); the slice job and the coordinator import it too.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from typing import TYPE_CHECKING

from xpcompute.errors import CorruptObjectError, NotFoundError
from xpcompute.lazy import lazy
from xpcompute.records import ResultRecord
from xpcompute.storage import keys
from xpcompute.storage.objects import ObjectStore

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xpcompute.compression.schema import CompressedTable
else:  # loaded on first use: the API imports this module for its types, and most of its requests compute nothing
    pa = lazy("pyarrow")
    pq = lazy("pyarrow.parquet")

log = logging.getLogger(__name__)
_HEALED = threading.local()


def compression_of(model: str) -> str:
    """The compressed layout a model reads: ``moments``, ``distribution`` (rank, quantile), ``panel`` (dte) or
    ``events`` (event_quantile: the slice's event histogram, from the metric's stage-1 events table)."""
    from xpcompute.models.registry import model_class

    kind = model_class(model).compression
    return kind if kind in ("distribution", "panel", "events") else "moments"


def fit_input(analysis_id: str, slice_id: str, metric: str, model: str) -> tuple[str, str]:
    """The compressed table a fit reads, by its model's layout: ``(layout, key)``.

    The fit function and the exported notebook both call this, so they read the same object.
    """
    layout = compression_of(model)
    if layout == "moments":
        return layout, keys.analysis_slice(analysis_id, slice_id)
    return layout, keys.analysis_distribution(analysis_id, slice_id, metric, layout)


def encode_derived(compressed: CompressedTable) -> bytes:
    """A compressed slice, artifact or cube as Parquet (zstd, as ``compression.io``) with a CRC32 per page.

    Why the checksums: without them most damage to a data page still decodes, into wrong sums that no fit
    can tell from right ones (a single flipped bit went unnoticed in about 9 of 10 positions tried); with
    them ``decode_derived`` detects it and the object is recomputed.
    """
    sink = io.BytesIO()
    pq.write_table(compressed.with_metadata(), sink, compression="zstd", write_page_checksum=True)
    return sink.getvalue()


def decode_derived(store: ObjectStore, key: str) -> CompressedTable:
    """Read and decode a stored compressed table, verifying its page checksums (``encode_derived``; objects
    written without them are read as before); ``CorruptObjectError`` naming ``key`` when the bytes are damaged.

    Why: a truncated or damaged slice or cube otherwise fails every job that reads it ("Unexpected end of
    stream") on every retry, or worse, decodes into wrong numbers; as a typed error, the reader can recompute
    it from the analysis table instead. ``NotFoundError`` (nothing stored) passes through.
    """
    raw = store.get_bytes(key)
    try:
        # ParquetFile, not read_table: read_table goes through pyarrow.dataset, which costs a fit's cold start
        # ~0.1 s of imports (pandas among them) to read one in-memory file
        reader = pq.ParquetFile(pa.BufferReader(raw), page_checksum_verification=True)
        from xpcompute.compression.schema import (
            CompressedTable,  # the API imports this module and decodes nothing
        )

        return CompressedTable.from_arrow(reader.read())
    except Exception as exc:
        raise CorruptObjectError(
            f"stored object {key!r} ({len(raw)} bytes) is damaged and cannot be decoded: {type(exc).__name__}: "
            f"{str(exc)[:300]}"
        ) from exc


def note_healed(key: str) -> None:
    """Record that this thread's job recomputed the damaged object at ``key`` (``take_healed`` reports it)."""
    healed: list[str] = getattr(_HEALED, "keys", [])
    healed.append(key)
    _HEALED.keys = healed


def take_healed() -> list[str]:
    """The keys this thread's job recomputed since the last call (for the job's output and the log)."""
    healed: list[str] = getattr(_HEALED, "keys", [])
    _HEALED.keys = []
    return healed


def decodes(data: bytes) -> bool:
    """Whether ``data`` is a readable result object (a JSON list of records)."""
    try:
        raw = json.loads(data)
        if not isinstance(raw, list):
            return False
        for r in raw:
            ResultRecord.model_validate(r)
    except (ValueError, TypeError):
        return False
    return True


def store_result(store: ObjectStore, key: str, body: bytes) -> bool:
    """Store a fit's records at ``key``: put-if-absent, and a damaged object found there is replaced whole.

    Returns whether ``body`` was written. A valid object already at ``key`` (the same fit, delivered twice)
    is kept; a damaged one is overwritten by one atomic put and reported (``note_healed``).
    """
    for _ in range(3):
        if store.put_if_absent(key, body):
            return True
        try:
            existing = store.get_bytes(key)
        except NotFoundError:
            continue  # removed between the two calls: put-if-absent again
        if decodes(existing):
            return False
        log.warning("result object %s is damaged (%d bytes); replacing it with the recomputed records",
                    key, len(existing))
        store.put_bytes(key, body)
        note_healed(key)
        return True
    return store.put_if_absent(key, body)
