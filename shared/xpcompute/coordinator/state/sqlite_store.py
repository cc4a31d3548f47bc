"""The embedded default state store: one SQLite file in WAL mode.

Several processes (the API server, the local worker pool) open the same file;
WAL lets readers proceed while one writer commits, and ``busy_timeout`` makes
writers queue instead of failing. Conditional writes are single
``UPDATE ... WHERE state=? AND version=?`` statements, atomic in SQLite, so a
lost race shows up as zero rows changed.

``job_counts`` holds jobs per state per analysis, updated in the transaction
that inserts a job or changes its state, so the count the coordinator asks for
after every finished job is a read of four rows. An analysis stored before the
table existed has no rows; its first count fills them from its jobs, under the
same write lock the transitions take.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xpcompute.coordinator.jobs import Analysis, AnalysisState, Job, JobState
from xpcompute.coordinator.state.fair import SQLITE_INDEX, sqlite_due_keys
from xpcompute.coordinator.state.sqlite_file import SQLiteFile
from xpcompute.errors import ConflictError, NotFoundError, StorageError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS analyses (
    analysis_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS analyses_by_state ON analyses (state, created_at);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    analysis_id TEXT NOT NULL,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    due_at REAL,
    lease_expires_at REAL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_analysis ON jobs (analysis_id);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, priority, due_at);
CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (state, lease_expires_at);
CREATE TABLE IF NOT EXISTS job_counts (
    analysis_id TEXT NOT NULL,
    state TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (analysis_id, state)
);
"""


class SQLiteStateStore:
    """``StateStore`` on a SQLite file; safe across threads and processes."""

    def __init__(self, path: str | os.PathLike[str], busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_s = busy_timeout_s
        self._file = SQLiteFile(self.path, busy_timeout_s, "state database")
        self._conn = self._file.conn
        self._tx = self._file.tx
        try:
            self._conn().executescript(_SCHEMA)
            self._conn().execute(SQLITE_INDEX)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot create the state tables in {self.path}: {exc}") from exc

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn().execute(sql, tuple(args)).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"state database {self.path}: {exc}") from exc

    # ---- analyses ---------------------------------------------------------
    def create_analysis(self, analysis: Analysis, jobs: Sequence[Job]) -> bool:
        with self._tx() as conn:
            exists = conn.execute("SELECT 1 FROM analyses WHERE analysis_id=?", (analysis.analysis_id,)).fetchone()
            if exists:
                return False
            conn.execute(
                "INSERT INTO analyses (analysis_id, state, version, created_at, body) VALUES (?,?,?,?,?)",
                (analysis.analysis_id, analysis.state.value, analysis.version, analysis.created_at,
                 json.dumps(analysis.to_item())),
            )
            conn.executemany("INSERT OR IGNORE INTO jobs VALUES (?,?,?,?,?,?,?,?)", [_job_row(j) for j in jobs])
            conn.execute("DELETE FROM job_counts WHERE analysis_id=?", (analysis.analysis_id,))
            _fill_counts(conn, analysis.analysis_id)
        return True

    def get_analysis(self, analysis_id: str) -> Analysis:
        rows = self._query("SELECT body FROM analyses WHERE analysis_id=?", (analysis_id,))
        if not rows:
            raise NotFoundError(f"analysis {analysis_id!r} not found")
        return Analysis.from_item(json.loads(rows[0][0]))

    def update_analysis(self, analysis: Analysis, expected_version: int) -> Analysis:
        new = Analysis.from_item({**analysis.to_item(), "version": expected_version + 1})
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE analyses SET state=?, version=?, body=? WHERE analysis_id=? AND version=?",
                (new.state.value, new.version, json.dumps(new.to_item()), new.analysis_id, expected_version),
            )
            if cur.rowcount == 0:
                self._raise_missing_or_conflict(conn, "analyses", "analysis_id", new.analysis_id)
        return new

    def list_analyses(self, state: AnalysisState | None = None) -> list[Analysis]:
        if state is None:
            rows = self._query("SELECT body FROM analyses ORDER BY created_at")
        else:
            rows = self._query("SELECT body FROM analyses WHERE state=? ORDER BY created_at", (state.value,))
        return [Analysis.from_item(json.loads(r[0])) for r in rows]

    def delete_analysis(self, analysis_id: str) -> int:
        with self._tx() as conn:
            jobs = conn.execute("DELETE FROM jobs WHERE analysis_id=?", (analysis_id,)).rowcount
            conn.execute("DELETE FROM job_counts WHERE analysis_id=?", (analysis_id,))
            analyses = conn.execute("DELETE FROM analyses WHERE analysis_id=?", (analysis_id,)).rowcount
        return int(jobs) + int(analyses)

    # ---- jobs -------------------------------------------------------------
    def add_jobs(self, jobs: Sequence[Job]) -> list[Job]:
        created: list[Job] = []
        with self._tx() as conn:
            for job in jobs:
                cur = conn.execute("INSERT OR IGNORE INTO jobs VALUES (?,?,?,?,?,?,?,?)", _job_row(job))
                if cur.rowcount:
                    created.append(job)
                    _count(conn, job.analysis_id, job.state, 1)
        return created

    def get_job(self, job_id: str) -> Job:
        rows = self._query("SELECT body FROM jobs WHERE job_id=?", (job_id,))
        if not rows:
            raise NotFoundError(f"job {job_id!r} not found")
        return Job.from_item(json.loads(rows[0][0]))

    def list_jobs(self, analysis_id: str) -> list[Job]:
        rows = self._query("SELECT body FROM jobs WHERE analysis_id=? ORDER BY job_id", (analysis_id,))
        return [Job.from_item(json.loads(r[0])) for r in rows]

    def update_job(self, job: Job, expected_state: JobState, expected_version: int) -> Job:
        new = Job.from_item({**job.to_item(), "version": expected_version + 1})
        row = _job_row(new)
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state=?, version=?, priority=?, due_at=?, lease_expires_at=?, body=? "
                "WHERE job_id=? AND state=? AND version=?",
                (*row[2:], new.job_id, expected_state.value, expected_version),
            )
            if cur.rowcount == 0:
                self._raise_missing_or_conflict(conn, "jobs", "job_id", new.job_id)
            if new.state != expected_state:
                _count(conn, new.analysis_id, expected_state, -1)
                _count(conn, new.analysis_id, new.state, 1)
        return new

    def due_jobs(self, now: float, limit: int = 100) -> list[Job]:
        """Due PENDING jobs by priority class, analyses taking turns within a class (``state.fair``)."""
        ids = [k.job_id for k in sqlite_due_keys(self._query, now, limit)]
        rows = self._query(f"SELECT body FROM jobs WHERE job_id IN ({','.join('?' * len(ids))})", ids)
        jobs = {j.job_id: j for j in (Job.from_item(json.loads(r[0])) for r in rows)}
        return [jobs[i] for i in ids if i in jobs]

    def job_counts(self, analysis_id: str) -> dict[JobState, int]:
        """The analysis's counter rows (filled from its jobs the first time, for an analysis stored before them)."""
        rows = self._query("SELECT state, n FROM job_counts WHERE analysis_id=?", (analysis_id,))
        if not rows:
            with self._tx() as conn:
                if not conn.execute("SELECT 1 FROM job_counts WHERE analysis_id=?", (analysis_id,)).fetchone():
                    _fill_counts(conn, analysis_id)
                rows = conn.execute("SELECT state, n FROM job_counts WHERE analysis_id=?", (analysis_id,)).fetchall()
        counts = dict.fromkeys(JobState, 0)
        for state, n in rows:
            counts[JobState(state)] = int(n)
        return counts

    def recount_jobs(self, analysis_id: str) -> dict[JobState, int]:
        """Jobs per state by reading every job of the analysis (what the counter must always equal)."""
        rows = self._query("SELECT state, COUNT(*) FROM jobs WHERE analysis_id=? GROUP BY state", (analysis_id,))
        counts = dict.fromkeys(JobState, 0)
        for state, n in rows:
            counts[JobState(state)] = int(n)
        return counts

    def expired_jobs(self, now: float, limit: int = 100) -> list[Job]:
        rows = self._query(
            "SELECT body FROM jobs WHERE state='RUNNING' AND lease_expires_at < ? ORDER BY lease_expires_at LIMIT ?",
            (now, limit),
        )
        return [Job.from_item(json.loads(r[0])) for r in rows]

    def close(self) -> None:
        self._file.close()

    @staticmethod
    def _raise_missing_or_conflict(conn: sqlite3.Connection, table: str, key: str, value: str) -> None:
        found = conn.execute(f"SELECT state, version FROM {table} WHERE {key}=?", (value,)).fetchone()
        if found is None:
            raise NotFoundError(f"{key} {value!r} not found")
        raise ConflictError(f"{value} changed concurrently (now {found[0]}, version {found[1]}); nothing written")


def _count(conn: sqlite3.Connection, analysis_id: str, state: JobState, delta: int) -> None:
    """Move one counter, inside the caller's transaction (an analysis without counter rows is counted later)."""
    conn.execute("UPDATE job_counts SET n = n + ? WHERE analysis_id=? AND state=?", (delta, analysis_id, state.value))


def _fill_counts(conn: sqlite3.Connection, analysis_id: str) -> None:
    """One counter row per job state from the analysis's jobs (zeros included: rows present = counted)."""
    conn.executemany(
        "INSERT INTO job_counts (analysis_id, state, n) VALUES (?, ?, "
        "(SELECT COUNT(*) FROM jobs WHERE analysis_id=? AND state=?))",
        [(analysis_id, state.value, analysis_id, state.value) for state in JobState],
    )


def _job_row(job: Job) -> tuple[object, ...]:
    return (
        job.job_id, job.analysis_id, job.state.value, job.version, job.priority, job.due_at,
        job.lease_expires_at, json.dumps(job.to_item()),
    )
