"""A deterministic synthetic streaming service: raw allocations, users and events with known true effects.

The demo, the tests and the benchmarks need raw tables at any scale whose
truth is known. Everything here is drawn with one seeded NumPy generator in
vectorised passes (one per day), so the same ``SyntheticConfig`` always gives
the same tables, and 1M users take a few seconds.

What the data holds, and what the pipeline should find in it:

- users with a country, device, plan and signup date; 1% are never allocated
  and a few are allocated to two cells (stage 1 must leave both kinds out);
- a latent engagement per user drives sessions in the pre-period and in the
  analysis window alike, so pre-period covariates predict outcomes (CUPED);
- treatment lifts watch time per session by ``watch_lift[cell]`` scaled by a
  country multiplier, a device multiplier and a novelty profile that decays
  over the days of the window (effects that differ by segment and over time);
  it also changes session counts, start-up latency, rebuffering, rentals and
  cancellations by stated relative amounts; autoplay_plus carries a planted
  guardrail regression (rebuffering +12%) that the ship decision must catch;
- events fall in the pre-period, the window, and one day after the window
  (which every metric must ignore). Event values are integers (seconds, cents,
  milliseconds).

``TrueEffects.watch_lift_at`` gives the true relative lift of expected watch
time per session for any cell, country, device and day.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from xpcompute.errors import InputError
from xpcompute.storage.objects import ObjectStore, join_key, open_store, storage_errors

COUNTRIES = ("US", "GB", "DE", "CA", "BR", "MX", "IN", "JP")
COUNTRY_SHARE = (0.35, 0.10, 0.08, 0.07, 0.12, 0.08, 0.15, 0.05)
DEVICES = ("tv", "ios", "android", "web")
DEVICE_SHARE = (0.45, 0.20, 0.25, 0.10)
PLANS = ("basic", "standard", "premium")
PLAN_SHARE = (0.30, 0.50, 0.20)
PLAN_PRICE_CENTS = (799, 1549, 2299)

_DEVICE_RATE = np.array([1.15, 0.95, 0.95, 0.70])  # sessions per day relative to the mean
_DEVICE_LENGTH = np.array([1.30, 0.80, 0.80, 0.90])  # session length relative to the mean
_DEVICE_REBUFFER = np.array([0.002, 0.006, 0.010, 0.012])  # rebuffer seconds per second played
_DEVICE_LATENCY_MS = np.array([1400.0, 700.0, 900.0, 1100.0])
_DAY_OF_WEEK = np.array([0.9, 0.9, 0.95, 1.0, 1.15, 1.3, 1.2])  # Monday..Sunday
EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class TrueEffects:
    """The effects built into the data, relative to control (0 means no effect)."""

    watch_lift: Mapping[str, float] = field(default_factory=lambda: {"autoplay": 0.05, "autoplay_plus": 0.08})
    country_multiplier: Mapping[str, float] = field(
        default_factory=lambda: {"US": 1.6, "GB": 1.0, "DE": 1.0, "CA": 1.2, "BR": 0.6, "MX": 0.6, "IN": 0.2, "JP": 0.8}
    )
    device_multiplier: Mapping[str, float] = field(
        default_factory=lambda: {"tv": 1.4, "ios": 1.0, "android": 0.8, "web": 0.3}
    )
    novelty_floor: float = 0.7
    novelty_peak: float = 0.9
    novelty_decay_days: float = 2.5
    session_lift: Mapping[str, float] = field(default_factory=lambda: {"autoplay": 0.02, "autoplay_plus": 0.03})
    latency_change: Mapping[str, float] = field(default_factory=lambda: {"autoplay": 0.0, "autoplay_plus": -0.10})
    #: autoplay_plus's planted guardrail regression: +12% rebuffering, far beyond the demo's 2% margin on
    #: rebuffer_rate, so the ship decision must say "don't ship" for that cell (and why)
    rebuffer_change: Mapping[str, float] = field(default_factory=lambda: {"autoplay": 0.0, "autoplay_plus": 0.12})
    cancel_change: Mapping[str, float] = field(default_factory=lambda: {"autoplay": -0.05, "autoplay_plus": -0.10})
    rental_lift: Mapping[str, float] = field(default_factory=lambda: {"autoplay": 0.0, "autoplay_plus": 0.10})

    def day_profile(self, day: int | NDArray[np.int64]) -> Any:
        """Novelty: the lift multiplier on day ``day`` of the window (0-based), decaying to ``novelty_floor``."""
        return self.novelty_floor + self.novelty_peak * np.exp(-np.asarray(day, dtype=np.float64) / self.novelty_decay_days)

    def watch_lift_at(self, cell: str, country: str, device: str, day: int) -> float:
        """True relative lift of expected watch seconds per session for one segment on one day."""
        base = self.watch_lift.get(cell, 0.0)
        return float(base * self.country_multiplier[country] * self.device_multiplier[device] * self.day_profile(day))


@dataclass(frozen=True)
class SyntheticConfig:
    """Scale and shape of the generated data (defaults: 1M users, a 10-day window, a 7-day pre-period)."""

    users: int = 1_000_000
    seed: int = 0
    start: date = date(2026, 1, 5)
    days: int = 10
    pre_days: int = 7
    cells: tuple[str, ...] = ("control", "autoplay", "autoplay_plus")
    control: str = "control"
    sessions_per_day: float = 0.5
    unallocated_share: float = 0.01
    double_allocated_share: float = 0.0005
    effects: TrueEffects = field(default_factory=TrueEffects)

    def __post_init__(self) -> None:
        if self.users < 10:
            raise InputError("synthetic data needs at least 10 users")
        if self.days < 1 or self.pre_days < 0:
            raise InputError("synthetic data needs days >= 1 and pre_days >= 0")
        if self.control not in self.cells or len(self.cells) < 2:
            raise InputError(f"cells {self.cells} must have at least two cells and include control {self.control!r}")

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.days - 1)


@dataclass(frozen=True)
class SyntheticData:
    """The raw tables and the configuration (with its true effects) that produced them."""

    config: SyntheticConfig
    allocations: pa.Table
    users: pa.Table
    playback: pa.Table
    billing: pa.Table
    account: pa.Table

    def tables(self) -> dict[str, pa.Table]:
        return {
            "allocations": self.allocations,
            "users": self.users,
            "playback": self.playback,
            "billing": self.billing,
            "account": self.account,
        }


def _labels(names: tuple[str, ...], idx: NDArray[np.integer]) -> pa.Array:
    return pa.array(names, pa.string()).take(pa.array(idx.astype(np.int32)))


def _dates(start: date, offsets: NDArray[np.integer]) -> pa.Array:
    base = (start - EPOCH).days
    return pa.array(offsets.astype(np.int32) + np.int32(base), type=pa.date32())


def generate(config: SyntheticConfig | None = None) -> SyntheticData:
    """Draw every raw table for ``config`` (deterministic in ``config.seed``)."""
    cfg = config or SyntheticConfig()
    eff = cfg.effects
    rng = np.random.default_rng(cfg.seed)
    n = cfg.users
    user_id = np.arange(1, n + 1, dtype=np.int64)

    country = rng.choice(len(COUNTRIES), size=n, p=COUNTRY_SHARE).astype(np.int8)
    device = rng.choice(len(DEVICES), size=n, p=DEVICE_SHARE).astype(np.int8)
    plan = rng.choice(len(PLANS), size=n, p=PLAN_SHARE).astype(np.int8)
    tenure_days = np.minimum(rng.exponential(500.0, size=n), 3650).astype(np.int64)
    cell = rng.integers(0, len(cfg.cells), size=n).astype(np.int8)
    engagement = rng.lognormal(0.0, 0.75, size=n)

    # per-user treatment parameters (control: all zero)
    cell_names = cfg.cells

    def per_cell(values: Mapping[str, float]) -> NDArray[np.float64]:
        return np.array([values.get(c, 0.0) if c != cfg.control else 0.0 for c in cell_names])[cell]

    watch_lift = (
        per_cell(eff.watch_lift)
        * np.array([eff.country_multiplier[c] for c in COUNTRIES])[country]
        * np.array([eff.device_multiplier[d] for d in DEVICES])[device]
    )
    session_lift = per_cell(eff.session_lift)
    latency_change = per_cell(eff.latency_change)
    rebuffer_change = per_cell(eff.rebuffer_change)
    rental_lift = per_cell(eff.rental_lift)
    cancel_p = np.minimum(0.02 / np.sqrt(engagement), 0.2) * (1.0 + per_cell(eff.cancel_change))
    cancels = rng.random(n) < cancel_p
    cancel_day = np.where(cancels, rng.integers(0, cfg.days, size=n), cfg.days + 10)
    billing_offset = rng.integers(0, 30, size=n)

    session_rate = cfg.sessions_per_day * engagement * _DEVICE_RATE[device]
    session_mean = 1800.0 * engagement**0.25 * _DEVICE_LENGTH[device]
    rental_rate = 0.01 * engagement
    log_latency = np.log(_DEVICE_LATENCY_MS[device])
    log_latency_treated = np.log(_DEVICE_LATENCY_MS[device] * (1.0 + latency_change))
    rebuffer_rate = _DEVICE_REBUFFER[device]
    rebuffer_rate_treated = _DEVICE_REBUFFER[device] * (1.0 + rebuffer_change)
    price = np.array(PLAN_PRICE_CENTS)[plan]

    play: dict[str, list[NDArray[Any]]] = {k: [] for k in ("user", "day", "watch", "rebuffer", "latency", "title")}
    bill: dict[str, list[NDArray[Any]]] = {k: [] for k in ("user", "day", "amount", "kind")}
    first_day, last_day = -cfg.pre_days, cfg.days  # one day past the window on purpose
    for d in range(first_day, last_day + 1):
        weekday = (cfg.start + timedelta(days=d)).weekday()
        active = d <= cancel_day
        in_window = d >= 0
        rate = session_rate * _DAY_OF_WEEK[weekday] * (1.0 + session_lift * in_window) * active
        counts = rng.poisson(rate)
        idx = np.repeat(np.arange(n, dtype=np.int32), counts)
        lift = 1.0 + watch_lift[idx] * float(eff.day_profile(d)) * in_window
        watch = np.maximum(np.rint(rng.gamma(1.3, session_mean[idx] / 1.3) * lift), 1).astype(np.int32)
        play["user"].append(idx)
        play["day"].append(np.full(len(idx), d, dtype=np.int16))
        play["watch"].append(watch)
        rb = (rebuffer_rate_treated if in_window else rebuffer_rate)[idx]
        play["rebuffer"].append(rng.poisson(watch * rb).astype(np.int32))
        mu = (log_latency_treated if in_window else log_latency)[idx]
        play["latency"].append(np.rint(np.exp(mu + 0.45 * rng.standard_normal(len(idx)))).astype(np.int32))
        play["title"].append((rng.random(len(idx)) ** 4 * 20_000).astype(np.int32))

        charged = np.flatnonzero(((d - billing_offset) % 30 == 0) & active)
        rental_day = rental_rate * _DAY_OF_WEEK[weekday] * active * (1.0 + rental_lift * in_window)
        rentals = np.repeat(np.arange(n), rng.poisson(rental_day))
        bill["user"] += [charged, rentals]
        bill["day"] += [np.full(len(charged) + len(rentals), d, dtype=np.int16)]
        bill["amount"] += [price[charged], np.where(rng.random(len(rentals)) < 0.7, 399, 599)]
        bill["kind"] += [np.zeros(len(charged), np.int8), np.ones(len(rentals), np.int8)]

    users = pa.table(
        {
            "user_id": user_id,
            "country": _labels(COUNTRIES, country),
            "device": _labels(DEVICES, device),
            "plan": _labels(PLANS, plan),
            "signup_date": _dates(cfg.start, -tenure_days - 1),
        }
    )
    allocations = _allocations(cfg, rng, user_id, cell)
    p_user = np.concatenate(play["user"])
    playback = pa.table(
        {
            "user_id": user_id[p_user],
            "event_date": _dates(cfg.start, np.concatenate(play["day"])),
            "watch_seconds": np.concatenate(play["watch"]),
            "rebuffer_seconds": np.concatenate(play["rebuffer"]),
            "startup_latency_ms": np.concatenate(play["latency"]),
            "title_id": np.concatenate(play["title"]),
        }
    )
    b_user = np.concatenate(bill["user"])
    billing = pa.table(
        {
            "user_id": user_id[b_user],
            "event_date": _dates(cfg.start, np.concatenate(bill["day"])),
            "amount_cents": np.concatenate(bill["amount"]).astype(np.int32),
            "kind": _labels(("subscription", "rental"), np.concatenate(bill["kind"])),
        }
    )
    cancelled_users = np.flatnonzero(cancels)
    edits = np.flatnonzero(rng.random(n) < 0.05)
    edit_days = rng.integers(first_day, last_day + 1, size=len(edits))
    account = pa.table(
        {
            "user_id": user_id[np.concatenate([cancelled_users, edits])],
            "event_date": _dates(cfg.start, np.concatenate([cancel_day[cancelled_users], edit_days])),
            "event_type": _labels(
                ("cancel", "profile_edit"),
                np.concatenate([np.zeros(len(cancelled_users), np.int8), np.ones(len(edits), np.int8)]),
            ),
        }
    )
    return SyntheticData(cfg, allocations, users, playback, billing, account)


def _allocations(
    cfg: SyntheticConfig, rng: np.random.Generator, user_id: NDArray[np.int64], cell: NDArray[np.int8]
) -> pa.Table:
    """Most users once; ``unallocated_share`` never; ``double_allocated_share`` twice in different cells."""
    n = len(user_id)
    keep = rng.random(n) >= cfg.unallocated_share
    users = user_id[keep]
    cells = cell[keep]
    doubles = rng.random(len(users)) < cfg.double_allocated_share
    other = (cells[doubles] + 1 + rng.integers(0, len(cfg.cells) - 1, size=int(doubles.sum()))) % len(cfg.cells)
    all_users = np.concatenate([users, users[doubles]])
    all_cells = np.concatenate([cells, other.astype(np.int8)])
    return pa.table(
        {
            "user_id": all_users,
            "cell": _labels(cfg.cells, all_cells),
            "allocation_date": _dates(cfg.start, np.zeros(len(all_users), np.int64)),
        }
    )


def write_parquet(data: SyntheticData, root: str | ObjectStore, prefix: str = "") -> dict[str, str]:
    """Write each table as ``{prefix}/{name}.parquet`` (zstd) under ``root``; returns name -> URI."""
    store = open_store(root) if isinstance(root, str) else root
    fs, _ = store.filesystem()
    out = {}
    for name, table in data.tables().items():
        key = join_key(prefix, f"{name}.parquet")
        path = store.path(key)
        with storage_errors(f"writing synthetic {name} to {store.uri_for(key)}"):
            if isinstance(root, str) and "://" not in root:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, filesystem=fs, compression="zstd", row_group_size=1_000_000)
        out[name] = store.uri_for(key)
    return out


#: The demo experiment's roles: the change is meant to raise watch time; it must not make playback rebuffer
#: more than 2% (relative) or lose more than 0.5 pp of retained subscribers.
DEMO_ROLES: dict[str, Any] = {
    "goal": ["streaming_hours"],
    "guardrails": {"rebuffer_rate": {"margin": 0.02, "relative": True},
                   "retained": {"margin": 0.005, "relative": False}},
}


def demo_roles(metrics: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``DEMO_ROLES`` restricted to ``metrics`` (a spec may analyse a subset of the catalog)."""
    present = set(metrics)
    return {
        "goal": [m for m in DEMO_ROLES["goal"] if m in present],
        "guardrails": {m: g for m, g in DEMO_ROLES["guardrails"].items() if m in present},
    }


def experiment_spec(
    uris: Mapping[str, str],
    config: SyntheticConfig | None = None,
    experiment_id: str = "synthetic_autoplay",
    metrics: tuple[str, ...] | None = None,
    covariates: tuple[str, ...] | None = None,
    daily: bool = True,
    roles: Mapping[str, Any] | None = None,
) -> Any:
    """An ``ExperimentSpec`` over tables written by ``write_parquet`` (all catalog metrics by default).

    ``roles`` default to ``DEMO_ROLES`` (goal streaming_hours; guardrails rebuffer_rate and retained) for the
    metrics analysed; pass ``{}`` for none.
    """
    from xpcompute.experiment import ExperimentSpec
    from xpcompute.metrics import covariate_names, metric_names

    cfg = config or SyntheticConfig()
    names = list(metrics if metrics is not None else metric_names(builtin_only=True))
    return ExperimentSpec.parse(
        {
            "id": experiment_id,
            "cells": list(cfg.cells),
            "control": cfg.control,
            "window": {"start": cfg.start, "end": cfg.end, "pre_days": cfg.pre_days},
            "sources": {name: {"uri": uri} for name, uri in uris.items()},
            "dimensions": ["country", "device", "tenure_bucket", "plan"],
            "covariates": list(covariates if covariates is not None else covariate_names(builtin_only=True)),
            "metrics": names,
            "roles": dict(roles) if roles is not None else demo_roles(names),
            "daily": daily,
        }
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m xpcompute.synthetic --users N --out DIR``: write the raw tables and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--pre-days", type=int, default=7)
    parser.add_argument("--out", required=True, help="local folder or s3://bucket/prefix")
    args = parser.parse_args(argv)
    cfg = SyntheticConfig(users=args.users, seed=args.seed, days=args.days, pre_days=args.pre_days)
    started = time.perf_counter()
    data = generate(cfg)
    generated = time.perf_counter() - started
    uris = write_parquet(data, args.out)
    summary = {
        "users": cfg.users,
        "rows": {k: t.num_rows for k, t in data.tables().items()},
        "uris": uris,
        "generate_seconds": round(generated, 2),
        "total_seconds": round(time.perf_counter() - started, 2),
        "effects": {k: v for k, v in asdict(cfg.effects).items() if not k.startswith("novelty")},
        "window": {"start": cfg.start.isoformat(), "end": cfg.end.isoformat(), "pre_days": cfg.pre_days},
    }
    print(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
