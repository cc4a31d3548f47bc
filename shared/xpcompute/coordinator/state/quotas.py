"""Per-key quota state that every server process sharing a state store sees: counters and holds.

Two primitives, each one atomic write, on the store the processes already share:

* a **counter** (``count``): add to a named number and read it back in one write, for the request rate
  (``XPCOMPUTE_RATE_PER_KEY``; one counter per key per minute, ``api.quotas.SharedRateLimiter``);
* **holds** (``try_hold``): add an entry to an owner's set only while the set has fewer than ``limit``
  entries, for the analyses a key has running (``XPCOMPUTE_MAX_ANALYSES_PER_KEY``, ``api.quotas.SharedKeyQuota``).

SQLite: two tables in the state file, each write one ``BEGIN IMMEDIATE`` transaction (the write lock makes the
check and the insert one step across processes). DynamoDB: items in the state table, ``pk=Q#<name>`` (a number
``n``, and ``exp``: when it may be deleted, for the table's TTL) and ``pk=H#<owner>`` (a string set ``e``),
written with ``UpdateItem``: ``ADD`` for the counter, and ``ADD`` under the condition ``size(e) < limit`` for a
hold, so two processes at the limit cannot both get in. Neither item has the ``st`` attribute, so the state
index never sees them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from pathlib import Path
from typing import Protocol

from xpcompute.config import Settings
from xpcompute.coordinator.state.sqlite_file import SQLiteFile


class QuotaStore(Protocol):
    def count(self, name: str, by: int, expires_at: float) -> int:
        """Add ``by`` (0 reads) to the counter ``name`` and return its new value; it may be dropped after
        ``expires_at``."""
        ...

    def holds(self, owner: str) -> list[str]:
        """The entries ``owner`` holds."""
        ...

    def try_hold(self, owner: str, entry: str, limit: int) -> bool:
        """Add ``entry`` to ``owner``'s holds if they number fewer than ``limit``; whether it was added."""
        ...

    def drop_holds(self, owner: str, entries: Collection[str]) -> None:
        """Remove ``entries`` from ``owner``'s holds (absent ones are ignored)."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS quota_counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS quota_holds (owner TEXT NOT NULL, entry TEXT NOT NULL, PRIMARY KEY (owner, entry));
"""


class SQLiteQuotaStore:
    """``QuotaStore`` in the SQLite state file (its own tables, its own connection per thread and process)."""

    def __init__(self, path: str | os.PathLike[str], busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self._file = SQLiteFile(self.path, busy_timeout_s, "quota tables in")
        self._tx = self._file.tx
        with self._tx() as conn:
            for statement in _SCHEMA.strip().split(";\n"):
                conn.execute(statement)

    def count(self, name: str, by: int, expires_at: float) -> int:
        with self._tx() as conn:
            if by:
                conn.execute("INSERT INTO quota_counters (name, n, expires_at) VALUES (?, ?, ?) ON CONFLICT(name) "
                             "DO UPDATE SET n = n + excluded.n", (name, by, expires_at))
            row = conn.execute("SELECT n FROM quota_counters WHERE name=?", (name,)).fetchone()
            if by > 0 and row is not None and int(row[0]) == by:  # a new counter: drop the ones past their time
                conn.execute("DELETE FROM quota_counters WHERE expires_at < ?", (time.time(),))
        return int(row[0]) if row else 0

    def holds(self, owner: str) -> list[str]:
        with self._tx() as conn:
            rows = conn.execute("SELECT entry FROM quota_holds WHERE owner=? ORDER BY entry", (owner,)).fetchall()
        return [str(r[0]) for r in rows]

    def try_hold(self, owner: str, entry: str, limit: int) -> bool:
        with self._tx() as conn:
            (n,) = conn.execute("SELECT COUNT(*) FROM quota_holds WHERE owner=?", (owner,)).fetchone()
            if int(n) >= limit:
                return False
            conn.execute("INSERT OR IGNORE INTO quota_holds (owner, entry) VALUES (?, ?)", (owner, entry))
        return True

    def drop_holds(self, owner: str, entries: Collection[str]) -> None:
        if entries:
            with self._tx() as conn:
                conn.executemany("DELETE FROM quota_holds WHERE owner=? AND entry=?", [(owner, e) for e in entries])


class DynamoDBQuotaStore:
    """``QuotaStore`` as items of the DynamoDB state table (see the module docstring)."""

    def __init__(self, table: str, endpoint_url: str | None = None, region: str = "us-east-1") -> None:
        from xpcompute.coordinator.state.dynamodb_store import DynamoDBStateStore

        # the state store's own client and error handling: one module talks to DynamoDB
        self._state = DynamoDBStateStore(table, endpoint_url=endpoint_url, region=region)

    def count(self, name: str, by: int, expires_at: float) -> int:
        return self._state.quota_count(name, by, expires_at)

    def holds(self, owner: str) -> list[str]:
        return self._state.quota_holds(owner)

    def try_hold(self, owner: str, entry: str, limit: int) -> bool:
        return self._state.quota_try_hold(owner, entry, limit)

    def drop_holds(self, owner: str, entries: Collection[str]) -> None:
        self._state.quota_drop_holds(owner, entries)


def open_quota_store(settings: Settings) -> QuotaStore:
    """The quota store on the state store the settings name (``XPCOMPUTE_STATE``)."""
    if settings.state == "dynamodb":
        return DynamoDBQuotaStore(settings.dynamodb_table, endpoint_url=settings.dynamodb_endpoint,
                                  region=settings.aws_region)
    return SQLiteQuotaStore(settings.state_path)


__all__ = ["DynamoDBQuotaStore", "QuotaStore", "SQLiteQuotaStore", "open_quota_store"]
