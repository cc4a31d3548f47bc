"""Helpers for the pipeline tests: fixture types and an independent NumPy computation of every catalog metric.

Written from the metric descriptions, not from the SQL, so that comparing it
with the analysis table checks the metric definitions, the window filtering,
the fills and the unit conversions end to end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from xpcompute.experiment import ExperimentSpec
from xpcompute.synthetic import EPOCH, SyntheticData


@dataclass(frozen=True)
class Experiment:
    data: SyntheticData
    uris: dict[str, str]
    spec: ExperimentSpec
    root: Path


@dataclass(frozen=True)
class Moto:
    endpoint: str
    bucket: str

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")


def _np(table: pa.Table, name: str) -> NDArray[np.int64]:
    col = table.column(name)
    if pa.types.is_date(col.type):
        col = pc.cast(col, pa.int32())
    return np.asarray(col.to_numpy(), dtype=np.int64)


def _day(d: date) -> int:
    return (d - EPOCH).days


def per_user_reference(data: SyntheticData) -> dict[str, NDArray[np.float64]]:
    """Per-user values for users 1..N (index 0 unused), keyed like analysis-table columns."""
    cfg = data.config
    n = cfg.users + 1
    start, end = _day(cfg.start), _day(cfg.end)
    pre_start, pre_end = start - cfg.pre_days, start - 1
    pb, bl, ac = data.playback, data.billing, data.account
    p_user, p_date, watch = _np(pb, "user_id"), _np(pb, "event_date"), _np(pb, "watch_seconds")
    rebuffer, latency, title = _np(pb, "rebuffer_seconds"), _np(pb, "startup_latency_ms"), _np(pb, "title_id")
    measured = np.asarray(pc.is_valid(pb.column("startup_latency_ms")).to_numpy(zero_copy_only=False), dtype=bool)
    b_user, b_date, amount = _np(bl, "user_id"), _np(bl, "event_date"), _np(bl, "amount_cents")
    rental = np.asarray(pc.equal(bl.column("kind"), "rental").to_numpy(zero_copy_only=False), dtype=bool)
    a_user, a_date = _np(ac, "user_id"), _np(ac, "event_date")
    cancel = np.asarray(pc.equal(ac.column("event_type"), "cancel").to_numpy(zero_copy_only=False), dtype=bool)
    edit = np.asarray(pc.equal(ac.column("event_type"), "profile_edit").to_numpy(zero_copy_only=False), dtype=bool)

    def count(users: NDArray[np.int64], weights: NDArray[np.int64] | None = None) -> NDArray[np.float64]:
        return np.bincount(users, weights=None if weights is None else weights.astype(np.float64), minlength=n).astype(np.float64)

    def distinct(users: NDArray[np.int64], values: NDArray[np.int64]) -> NDArray[np.float64]:
        pairs = np.unique(users * 10_000_000 + values)
        return count(pairs // 10_000_000)

    out: dict[str, NDArray[np.float64]] = {}
    for prefix, lo, hi in (("", start, end), ("pre_", pre_start, pre_end)):
        w = (p_date >= lo) & (p_date <= hi)
        bw = (b_date >= lo) & (b_date <= hi)
        out[prefix + "streaming_hours"] = count(p_user[w], watch[w]) / 3600.0
        out[prefix + "sessions"] = count(p_user[w])
        out[prefix + "active_days"] = distinct(p_user[w], p_date[w])
        out[prefix + "revenue"] = count(b_user[bw], amount[bw]) / 100.0
    w = (p_date >= start) & (p_date <= end)
    out["is_streamer"] = (count(p_user[w & (watch > 0)]) > 0).astype(np.float64)
    out["long_sessions"] = count(p_user[w & (watch >= 3600)])
    out["titles_started"] = distinct(p_user[w], title[w])
    out["rebuffer_rate"] = count(p_user[w], rebuffer[w])
    out["rebuffer_rate__den"] = count(p_user[w], watch[w])
    out["hours_per_session"] = count(p_user[w], watch[w]) / 3600.0
    out["hours_per_session__den"] = count(p_user[w])
    with np.errstate(invalid="ignore", divide="ignore"):
        out["playback_start_latency"] = count(p_user[w], latency[w]) / count(p_user[w])
    out["rebuffered_session_rate"] = count(p_user[w & (rebuffer >= 30)])
    out["rebuffered_session_rate__den"] = count(p_user[w])
    out["slow_start_rate"] = count(p_user[w & (latency > 2000)])
    out["slow_start_rate__den"] = count(p_user[w & measured])
    out["early_abandons"] = count(p_user[w & (watch < 120)])
    longest = np.full(n, np.nan)  # no playback in the window: no longest session
    np.fmax.at(longest, p_user[w], watch[w].astype(np.float64))
    out["longest_session_hours"] = longest / 3600.0
    bw = (b_date >= start) & (b_date <= end)
    out["rentals"] = count(b_user[bw & rental])
    out["rental_revenue"] = count(b_user[bw & rental], amount[bw & rental]) / 100.0
    out["is_renter"] = (out["rentals"] > 0).astype(np.float64)
    aw = (a_date >= start) & (a_date <= end)
    out["cancelled"] = (count(a_user[aw & cancel]) > 0).astype(np.float64)
    out["retained"] = 1.0 - out["cancelled"]
    out["profile_edits"] = count(a_user[aw & edit])
    return out


def allocated_cells(data: SyntheticData) -> dict[int, str]:
    """User -> cell for users allocated exactly once (stage 1 leaves out users in two cells)."""
    users = _np(data.allocations, "user_id")
    cells = data.allocations.column("cell").to_pylist()
    seen: dict[int, set[str]] = {}
    for u, c in zip(users.tolist(), cells, strict=True):
        seen.setdefault(u, set()).add(c)
    return {u: next(iter(c)) for u, c in seen.items() if len(c) == 1}
