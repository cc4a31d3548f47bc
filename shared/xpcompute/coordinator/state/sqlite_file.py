"""One SQLite file shared by threads and processes: a connection per thread and process, immediate transactions.

Why one place: the state store and the per-key quota tables (``quotas.py``) live in the same file and need the
same rules. A forked child must not reuse its parent's connection; WAL lets readers proceed while one writer
commits; ``busy_timeout`` makes writers queue instead of failing; ``BEGIN IMMEDIATE`` takes the write lock at the
start, so a read-check-write inside one transaction is one step across processes. SQLite errors become
``StorageError`` naming the file.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from xpcompute.errors import StorageError


class SQLiteFile:
    """Connections to ``path`` (one per thread and process) and write transactions on them.

    ``what`` names the file in errors, e.g. ``"state database"``.
    """

    def __init__(self, path: str | os.PathLike[str], busy_timeout_s: float, what: str) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.what = what
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []

    def _wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL, retrying while another process holds the lock the switch needs: two processes opening
        a new file at once can get "database is locked" here at once, without the busy timeout being waited."""
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def conn(self) -> sqlite3.Connection:
        """This thread's connection in this process, opened on first use."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                       check_same_thread=False)
                self._wal(conn)
                conn.execute("PRAGMA synchronous=NORMAL")  # WAL without an fsync per commit
                conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            except sqlite3.Error as exc:
                raise StorageError(f"cannot open the {self.what} {self.path}: {exc}") from exc
            self._local.conn, self._local.pid = conn, os.getpid()
            with self._lock:
                self._conns.append(conn)
        return conn

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """An immediate (write-locking) transaction; SQLite errors become ``StorageError``."""
        conn = self.conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"{self.what} {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close every connection this object opened (any thread); later calls open new ones."""
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()


__all__ = ["SQLiteFile"]
