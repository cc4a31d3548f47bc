"""The fair order of due jobs, shared by every state store's ``due_jobs``.

Priority classes come first, as they always did (lower runs first: a fit before
the next slice, pre-computed slices before live ones; ``jobs.PRIORITIES``).
Within a class, analyses take turns: the first due job of every analysis, then
the second of every analysis, and so on, each analysis's own jobs in due order.
Within a turn, the analysis whose oldest job has waited longest goes first.

Why: ordered by (priority, due_at) alone, an analysis that made 10,000 fits due
a moment before a small analysis's 10 came first in every batch the
coordinator dispatched, so the small one waited for all of them on every
dispatcher that runs work in the order it is sent (Lambda, SQS, OpenFaaS). The
local pool re-orders what it is sent the same way (``dispatch.local_pool.FairQueue``);
this is the same rule one step earlier, in the query itself.

The order is computed per call: a batch of ``limit`` jobs holds the first jobs
of every analysis before the second of any. SQLite reads its ``jobs_fair``
index per analysis (``sqlite_due_keys``: 14 ms for 20,000 due jobs, against
0.4 ms for the old unfair query); DynamoDB reads the keys of the oldest due
jobs per class from its keys-only state index, a window of 4 x the jobs it
still needs (at least 100, at most 2,000: ``dynamodb_store.due_window``),
orders them with ``fair_order`` and batch-reads the chosen ones. Up to a
window's worth of due jobs per class the two stores give the same order; past
it, DynamoDB's batch is fair among the analyses whose jobs are in the oldest
window (``DynamoDBStateStore.due_jobs`` says what that gives up).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple


class DueKey(NamedTuple):
    """What the order needs of one due job."""

    priority: int
    analysis_id: str
    due_at: float
    job_id: str


def fair_order(keys: Iterable[DueKey]) -> list[DueKey]:
    """``keys`` by priority class, then round-robin across analyses (turn, oldest first, analysis id)."""
    by_class: dict[tuple[int, str], list[DueKey]] = {}
    for k in keys:
        by_class.setdefault((k.priority, k.analysis_id), []).append(k)
    ranked: list[tuple[int, int, float, str, DueKey]] = []
    for (priority, analysis_id), own in by_class.items():
        own.sort(key=lambda k: (k.due_at, k.job_id))
        first_due = own[0].due_at
        ranked.extend((priority, turn, first_due, analysis_id, k) for turn, k in enumerate(own))
    ranked.sort(key=lambda r: r[:4])
    return [r[4] for r in ranked]


Query = Callable[[str, Sequence[object]], list[tuple[Any, ...]]]

#: SQLite's index for the fair order (``sqlite_store`` creates it): per class and analysis, due jobs in order.
SQLITE_INDEX = "CREATE INDEX IF NOT EXISTS jobs_fair ON jobs (state, priority, analysis_id, due_at, job_id)"


def sqlite_due_keys(query: Query, now: float, limit: int) -> list[DueKey]:
    """The first ``limit`` due jobs of a SQLite jobs table in the fair order, read from ``jobs_fair``.

    Only an analysis's first ``limit`` due jobs can be among the first ``limit`` overall, so each
    (class, analysis) contributes at most that many keys: one grouped index scan finds the analyses with
    due jobs, one ranged index read per analysis takes its first jobs, and ``fair_order`` merges them.
    """
    groups = query("SELECT priority, analysis_id FROM jobs WHERE state='PENDING' AND due_at <= ? "
                   "GROUP BY priority, analysis_id ORDER BY priority, MIN(due_at)", (now,))
    keys: list[DueKey] = []
    for priority, analysis_id in groups:
        if len(keys) >= limit and priority > keys[-1].priority:
            break  # a later class cannot reach the first ``limit``
        rows = query("SELECT due_at, job_id FROM jobs WHERE state='PENDING' AND priority=? AND analysis_id=? "
                     "AND due_at <= ? ORDER BY due_at, job_id LIMIT ?", (priority, analysis_id, now, limit))
        keys.extend(DueKey(int(priority), str(analysis_id), float(d), str(j)) for d, j in rows)
    return fair_order(keys)[:limit]
