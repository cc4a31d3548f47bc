"""Immutable, numbered versions of a JSON document in the object store (registered experiment specs).

Why this shape: a server must never act on a stale copy of a spec, and two
concurrent registrations must not both get the same number. So every version
is its own object, ``{root}/{name}/versions/{n}.json``, written with put-if-absent
(only one writer can create ``n``) and never changed afterwards; a small
pointer object (``{root}/{name}/latest.json``) says which is newest. The pointer is
only a hint: a writer that crashed between its version and its pointer, or a
slower writer that overwrote a newer pointer, leaves it behind, so readers
probe ``n + 1, n + 2, ...`` until one is missing. Finding the current version
therefore costs a few small requests (the pointer, a HEAD past it, the version
itself) and is always the truth, while any copy of a version may be cached
forever because its object never changes.

Content is compared by a canonical hash (sorted keys, no whitespace), so the
same document registered twice in a row gets the same version back.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from xpcompute.errors import NotFoundError, StorageError
from xpcompute.storage import keys
from xpcompute.storage.objects import ObjectStore

#: The most versions a single registration walks past before giving up (a pointer far behind, a write storm).
MAX_PROBE = 10_000


def canonical_json(document: Any) -> bytes:
    """Bytes that are equal exactly when the JSON documents are equal (sorted keys, no whitespace)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str).encode()


def content_hash(document: Any) -> str:
    """SHA-256 of the canonical JSON: the identity of a document's content, whatever its key order."""
    return hashlib.sha256(canonical_json(document)).hexdigest()


@dataclass(frozen=True)
class Version:
    """One stored version: its number, content hash, creation time (ISO 8601, UTC) and the document."""

    name: str
    version: int
    hash: str
    created_at: str
    document: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "hash": self.hash, "created_at": self.created_at,
                "document": self.document}


class VersionedDocuments:
    """Numbered versions of documents named ``name`` under ``root`` (e.g. ``experiments``)."""

    def __init__(self, store: ObjectStore, root: str) -> None:
        self.store = store
        self.root = root

    # -- keys (built in storage/keys.py) ---------------------------------------------
    def version_key(self, name: str, version: int) -> str:
        return keys.versioned(self.root, name, version)

    def pointer_key(self, name: str) -> str:
        return keys.versioned_pointer(self.root, name)

    # -- reading ------------------------------------------------------------------
    def get(self, name: str, version: int) -> Version:
        """Version ``version`` of ``name``; ``NotFoundError`` names what exists when it does not."""
        try:
            raw = self.store.get_bytes(self.version_key(name, version))
        except NotFoundError:
            latest = self.latest_number(name)
            have = f"versions 1..{latest}" if latest else "no versions"
            raise NotFoundError(f"{self.root} {name!r} has no version {version} ({have})") from None
        return self._parse(name, raw)

    def latest_number(self, name: str) -> int:
        """The newest version number (0 when none): the pointer, then a probe past it."""
        n = 0
        try:
            pointer = json.loads(self.store.get_bytes(self.pointer_key(name)))
            n = int(pointer.get("version", 0))
        except NotFoundError:
            n = 0
        except (ValueError, TypeError, AttributeError):
            n = 0  # a damaged pointer is only a hint: the probe below finds the truth
        for _ in range(MAX_PROBE):
            if not self.store.exists(self.version_key(name, n + 1)):
                break
            n += 1
        else:
            raise StorageError(f"{self.root} {name!r}: more than {MAX_PROBE} versions past its pointer; "
                               f"repair {self.pointer_key(name)}")
        while n > 0 and not self.store.exists(self.version_key(name, n)):
            n -= 1  # a pointer ahead of its versions (written by hand, or a store restored from backup)
        return n

    def latest(self, name: str) -> Version | None:
        """The newest version of ``name``, or ``None`` when it was never stored."""
        n = self.latest_number(name)
        return None if n == 0 else self.get(name, n)

    def versions(self, name: str) -> list[Version]:
        """Every version of ``name``, oldest first."""
        return [self.get(name, n) for n in range(1, self.latest_number(name) + 1)]

    def names(self) -> list[str]:
        """Every name with at least one version, sorted."""
        found: set[str] = set()
        base = self.root.rstrip("/") + "/"
        for key in self.store.list(self.root):
            rest = key.removeprefix(base).split("/")
            if len(rest) == 3 and rest[1] == "versions" and rest[2].endswith(".json"):
                found.add(rest[0])
        return sorted(found)

    # -- writing ------------------------------------------------------------------
    def put(self, name: str, document: dict[str, Any]) -> tuple[Version, bool]:
        """Store ``document`` as the next version unless it equals the newest; returns (version, created).

        Concurrent writers race on put-if-absent of the next number: the loser
        re-reads the winner's version and, if it holds the same content, returns
        it; otherwise it tries the number after.
        """
        digest = content_hash(document)
        n = self.latest_number(name)
        if n:
            newest = self.get(name, n)
            if newest.hash == digest:
                return newest, False
        for _ in range(MAX_PROBE):
            candidate = Version(name, n + 1, digest, datetime.now(UTC).isoformat(), document)
            if self.store.put_if_absent(self.version_key(name, candidate.version), canonical_json(candidate.to_json())):
                self._advance_pointer(name, candidate)
                return candidate, True
            n += 1
            other = self.get(name, n)
            if other.hash == digest:
                return other, False
        raise StorageError(f"{self.root} {name!r}: could not store a new version after {MAX_PROBE} tries")

    def _advance_pointer(self, name: str, version: Version) -> None:
        """Move the pointer forward (never back: a newer version may already have moved it)."""
        try:
            current = int(json.loads(self.store.get_bytes(self.pointer_key(name))).get("version", 0))
        except (NotFoundError, ValueError, TypeError, AttributeError):
            current = 0
        if version.version > current:
            body = {"version": version.version, "hash": version.hash, "created_at": version.created_at}
            self.store.put_bytes(self.pointer_key(name), canonical_json(body))

    def _parse(self, name: str, raw: bytes) -> Version:
        try:
            data = json.loads(raw)
            return Version(name, int(data["version"]), str(data["hash"]), str(data["created_at"]),
                           dict(data["document"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"{self.root} {name!r}: a stored version is damaged ({exc}); it was written "
                               "by something other than xpcompute") from exc


__all__ = ["Version", "VersionedDocuments", "canonical_json", "content_hash"]
