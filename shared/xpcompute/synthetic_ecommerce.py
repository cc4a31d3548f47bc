"""A seeded e-commerce shop's raw tables, shaped the way real teams' tables are, with known true effects.

The streaming generator (``xpcompute.synthetic``) draws tidy tables: integer
user ids, one allocation row per user on the launch day, one ``event_date``
per event. Teams' own tables are not like that, and every way they differ is
a way an analysis can silently go wrong. This generator draws them the other
way on purpose, so the e-commerce example (``examples/ecommerce``) and its
oracle test (``tests/e2e``) catch each mistake:

- customer ids are strings (``c-<uuid4>``): nothing may cast them to integers;
- two cells with an unequal planned split (60/40), so the sample-ratio check
  must read the declared shares;
- exposure is a timestamp spread over the window (and at any time of day);
  each unit is logged several times (the first exposure counts), a few are
  exposed only after the window ends (left out), some before it starts (their
  analysis starts at the window start), a few are logged in both cells (left
  out) and a few also carry a row of an undeclared legacy cell, earlier than
  their real exposure (which must not count as their exposure);
- events fall before and after each unit's exposure, and only events after it
  are treated: counting a unit's pre-exposure events dilutes the effect;
- shopping peaks late in the evening and the window's last day is a sale day,
  so an end cut at midnight of the last day drops many orders;
- timestamps are ``timestamp[us]``: naive (UTC) for assignments and page
  views, ``timestamp[us, tz=UTC]`` for orders; returns carry a plain date;
- ``basket_size_cents`` sits near 1e6 with a spread of about one cent, so a
  variance taken as ``E[y^2] - E[y]^2`` without shifting loses every digit;
- a pre-period spend level per customer drives orders before and after
  exposure alike, so pre-period covariates predict outcomes (CUPED).

Everything is drawn with one seeded NumPy generator in vectorised passes, so
``generate(out, customers, seed)`` always writes the same tables and 200k
customers take a few seconds. ``TrueEffects`` states what treatment does.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray

from xpcompute.errors import InputError

CELLS = ("control", "one_page")
CONTROL = "control"
SHARES = (0.6, 0.4)
LEGACY_CELL = "legacy_checkout"
COUNTRIES = ("US", "GB", "DE", "FR", "BR", "IN")
COUNTRY_SHARE = (0.40, 0.12, 0.12, 0.10, 0.14, 0.12)
TIERS = ("bronze", "silver", "gold")
TIER_SHARE = (0.6, 0.3, 0.1)
_TIER_SPEND = np.array([1.0, 1.6, 2.8])  # order rate multiplier per loyalty tier
PLATFORMS = ("web", "ios", "android")
PLATFORM_SHARE = (0.5, 0.3, 0.2)
STATUSES = ("completed", "cancelled", "refunded")
STATUS_SHARE = (0.88, 0.07, 0.05)
PAGES = ("home", "search", "product", "cart", "checkout")
PAGE_SHARE = (0.25, 0.2, 0.35, 0.12, 0.08)
# share of the day's activity in each UTC hour: quiet nights, a peak from 19:00 to 23:59
_HOUR_WEIGHT = np.array([0.4, 0.25, 0.15, 0.1, 0.1, 0.15, 0.3, 0.6, 0.8, 0.9, 1.0, 1.0,
                         1.1, 1.0, 0.9, 0.9, 1.0, 1.2, 1.5, 2.2, 2.8, 3.2, 3.4, 3.0])
US = 1_000_000  # microseconds per second
DAY_US = 86_400 * US
EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True)
class TrueEffects:
    """What the one-page checkout does to a customer after their first exposure (control: nothing).

    Expected revenue per customer rises by ``(1 + order_rate_lift) * (1 + amount_lift) - 1``
    of its post-exposure value; orders and the chance of ordering at all rise
    with ``order_rate_lift``; page views rise by ``page_view_lift``; each
    order's basket size grows by ``basket_shift_cents`` on average.
    """

    order_rate_lift: float = 0.15
    amount_lift: float = 0.04
    page_view_lift: float = 0.06
    basket_shift_cents: float = 0.4

    @property
    def revenue_lift(self) -> float:
        """True relative lift of expected post-exposure revenue per customer."""
        return (1 + self.order_rate_lift) * (1 + self.amount_lift) - 1


@dataclass(frozen=True)
class EcommerceConfig:
    """Scale and shape: a 14-day window from 2026-03-02 with a 14-day pre-period, by default."""

    customers: int = 20_000
    seed: int = 7
    start: date = date(2026, 3, 2)
    days: int = 14
    pre_days: int = 14
    orders_per_day: float = 0.06
    page_views_per_day: float = 0.5
    unallocated_share: float = 0.08
    early_share: float = 0.04  # first exposed in the 3 days before the window starts
    late_share: float = 0.05  # first exposed in the 3 days after the window ends (left out)
    double_share: float = 0.006  # logged in both cells (left out)
    legacy_share: float = 0.01  # also logged in an undeclared cell, earlier
    last_day_sale: float = 2.5  # order-rate multiplier on the window's last day
    effects: TrueEffects = field(default_factory=TrueEffects)

    def __post_init__(self) -> None:
        if self.customers < 100:
            raise InputError("the e-commerce generator needs at least 100 customers")
        if self.days < 2 or self.pre_days < 1:
            raise InputError("the e-commerce generator needs days >= 2 and pre_days >= 1")

    @property
    def end(self) -> date:
        """The window's last day (inclusive)."""
        return self.start + timedelta(days=self.days - 1)


def _us(d: date) -> int:
    """Microseconds since the epoch at 00:00 UTC of ``d``."""
    return int((datetime(d.year, d.month, d.day) - EPOCH).total_seconds()) * US


def _uuid_ids(rng: np.random.Generator, n: int) -> list[str]:
    """``c-<uuid4>`` strings from the seeded generator (version and variant bits set as uuid4 sets them)."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexes = raw.tobytes().hex()
    out = []
    for i in range(n):
        h = hexes[32 * i: 32 * i + 32]
        out.append(f"c-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def _labels(names: tuple[str, ...], idx: NDArray[np.integer]) -> pa.Array:
    return pa.array(names, pa.string()).take(pa.array(idx.astype(np.int32)))


def _times(
    rng: np.random.Generator, n: int, first_day_us: int, day_weights: NDArray[np.float64]
) -> NDArray[np.int64]:
    """``n`` event times: a day by ``day_weights``, an hour by the evening-heavy profile, then any microsecond."""
    days = rng.choice(len(day_weights), size=n, p=day_weights / day_weights.sum())
    hours = rng.choice(24, size=n, p=_HOUR_WEIGHT / _HOUR_WEIGHT.sum())
    within = rng.integers(0, 3600 * US, size=n)
    return first_day_us + days.astype(np.int64) * DAY_US + hours.astype(np.int64) * 3600 * US + within


def _events(
    rng: np.random.Generator,
    rate: NDArray[np.float64],
    lift: float,
    treated: NDArray[np.bool_],
    exposure_us: NDArray[np.int64],
    first_day_us: int,
    day_weights: NDArray[np.float64],
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
    """A Poisson process per customer at ``rate`` per average day, ``(1 + lift)`` times that once treated.

    Drawn at the treated intensity and thinned by ``1 / (1 + lift)`` wherever a
    customer is not (yet) treated. Returns (customer index, time in us, treated-at-the-time flag).
    """
    span = float(day_weights.sum())
    counts = rng.poisson(rate * span * (1 + lift))
    who = np.repeat(np.arange(len(rate), dtype=np.int64), counts)
    at = _times(rng, len(who), first_day_us, day_weights)
    on = treated[who] & (at >= exposure_us[who])
    keep = on | (rng.random(len(who)) < 1 / (1 + lift))
    return who[keep], at[keep], on[keep]


@dataclass(frozen=True)
class EcommerceData:
    """The raw tables, by source name, and the configuration that drew them."""

    config: EcommerceConfig
    tables: dict[str, pa.Table]


def draw(config: EcommerceConfig | None = None) -> EcommerceData:
    """Draw every table for ``config`` (deterministic in ``config.seed``)."""
    cfg = config or EcommerceConfig()
    eff = cfg.effects
    rng = np.random.default_rng(cfg.seed)
    n = cfg.customers
    ids = np.array(_uuid_ids(rng, n), dtype=object)

    country = rng.choice(len(COUNTRIES), size=n, p=COUNTRY_SHARE)
    tier = rng.choice(len(TIERS), size=n, p=TIER_SHARE)
    tenure_days = np.minimum(rng.exponential(400.0, size=n), 3000).astype(np.int64)
    spend = rng.gamma(1.5, 1 / 1.5, size=n) * _TIER_SPEND[tier]  # latent: drives pre and post alike
    platform = rng.choice(len(PLATFORMS), size=n, p=PLATFORM_SHARE)
    cell = (rng.random(n) >= SHARES[0]).astype(np.int64)  # 0 control, 1 one_page

    # first exposure: mostly inside the window at any time of day; some before it, some after it
    w0, w_end = _us(cfg.start), _us(cfg.end) + DAY_US  # window end is exclusive: 00:00 after the last day
    kind = rng.random(n)
    early = kind < cfg.early_share
    late = (kind >= cfg.early_share) & (kind < cfg.early_share + cfg.late_share)
    first = w0 + (rng.random(n) ** 1.6 * (w_end - w0)).astype(np.int64)  # front-loaded ramp-up
    first = np.where(early, w0 - rng.integers(1, 3 * DAY_US, size=n), first)
    first = np.where(late, w_end + rng.integers(0, 3 * DAY_US, size=n), first)
    allocated = rng.random(n) >= cfg.unallocated_share

    alloc_idx = np.flatnonzero(allocated)
    repeats = 1 + rng.poisson(1.2, size=len(alloc_idx))  # logged again on later visits
    row_unit = np.repeat(alloc_idx, repeats)
    later = (rng.exponential(2.0, size=len(row_unit)) * DAY_US).astype(np.int64)
    is_first = np.r_[True, row_unit[1:] != row_unit[:-1]]
    row_time = first[row_unit] + np.where(is_first, 0, later)
    row_cell = cell[row_unit]
    doubles = alloc_idx[rng.random(len(alloc_idx)) < cfg.double_share]
    legacy = alloc_idx[rng.random(len(alloc_idx)) < cfg.legacy_share]
    all_units = np.concatenate([row_unit, doubles, legacy])
    all_times = np.concatenate([
        row_time,
        first[doubles] + rng.integers(0, 2 * DAY_US, size=len(doubles)),
        first[legacy] - rng.integers(1, 20 * DAY_US, size=len(legacy)),
    ])
    cell_names = (*CELLS, LEGACY_CELL)
    all_cells = np.concatenate([row_cell, 1 - cell[doubles], np.full(len(legacy), 2)])
    order = rng.permutation(len(all_units))  # the first exposure is not the first row
    assignments = pa.table({
        "customer_id": pa.array(ids[all_units[order]], pa.string()),
        "variant": _labels(cell_names, all_cells[order]),
        "platform": _labels(PLATFORMS, platform[all_units[order]]),
        "exposed_at": pa.array(all_times[order], pa.timestamp("us")),
    })

    customers = pa.table({
        "customer_id": pa.array(ids, pa.string()),
        "country": _labels(COUNTRIES, country),
        "loyalty_tier": _labels(TIERS, tier),
        "signup_date": pa.array(((cfg.start - EPOCH.date()).days - tenure_days - 1).astype(np.int32), pa.date32()),
    })

    # events from two days before the longest pre-period to two days after the window
    first_day = cfg.start - timedelta(days=cfg.pre_days + cfg.days + 2)
    span = (cfg.days + cfg.pre_days + 2) + cfg.days + 2
    last_index = (cfg.end - first_day).days
    order_days = np.ones(span)
    order_days[last_index] = cfg.last_day_sale
    treated = allocated & (cell == 1)
    never = np.iinfo(np.int64).max
    exposure = np.where(allocated, first, never)

    who, at, on = _events(rng, cfg.orders_per_day * spend, eff.order_rate_lift, treated, exposure,
                          _us(first_day), order_days)
    by_time = np.argsort(at, kind="stable")  # an order table is in time order, not grouped by customer
    who, at, on = who[by_time], at[by_time], on[by_time]
    k = len(who)
    amount = rng.lognormal(np.log(45.0), 0.6, size=k) * np.where(on, 1 + eff.amount_lift, 1.0)
    status = rng.choice(len(STATUSES), size=k, p=STATUS_SHARE)
    basket = np.rint(1_000_000 + rng.normal(0.0, 1.0, size=k) + on * eff.basket_shift_cents).astype(np.int64)
    orders = pa.table({
        "order_id": pc.binary_join_element_wise(
            "o-", pc.utf8_lpad(pc.cast(pa.array(np.arange(k)), pa.string()), width=9, padding="0"), ""),
        "customer_id": pa.array(ids[who], pa.string()),
        "ordered_at": pa.array(at, pa.timestamp("us", tz="UTC")),
        "amount_usd": np.round(amount, 2),
        "status": _labels(STATUSES, status),
        "basket_size_cents": basket,
    })

    pv_who, pv_at, _ = _events(rng, cfg.page_views_per_day * np.sqrt(spend), eff.page_view_lift, treated,
                               exposure, _us(first_day), np.ones(span))
    by_time = np.argsort(pv_at, kind="stable")
    pv_who, pv_at = pv_who[by_time], pv_at[by_time]
    page_views = pa.table({
        "customer_id": pa.array(ids[pv_who], pa.string()),
        "viewed_at": pa.array(pv_at, pa.timestamp("us")),
        "page": _labels(PAGES, rng.choice(len(PAGES), size=len(pv_who), p=PAGE_SHARE)),
    })

    # returns: a plain date column; some completed orders come back 0-6 days later
    back = np.flatnonzero((status == 0) & (rng.random(k) < 0.08))
    returned_day = (at[back] // DAY_US) + rng.integers(0, 7, size=len(back))
    returns = pa.table({
        "customer_id": pa.array(ids[who[back]], pa.string()),
        "returned_on": pa.array(returned_day.astype(np.int32), pa.date32()),
        "items": rng.integers(1, 4, size=len(back)).astype(np.int64),
        "refund_usd": np.round(amount[back], 2),
    })
    return EcommerceData(cfg, {
        "assignments": assignments, "customers": customers, "orders": orders,
        "page_views": page_views, "returns": returns,
    })


def generate(out_dir: str | Path, customers: int = 20_000, seed: int = 7) -> dict[str, Path]:
    """Write each table as ``{out_dir}/{name}.parquet`` (zstd) and ``truth.json``; returns name -> path."""
    data = draw(EcommerceConfig(customers=customers, seed=seed))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, table in data.tables.items():
        paths[name] = out / f"{name}.parquet"
        pq.write_table(table, paths[name], compression="zstd")
    cfg = data.config
    truth = {
        "customers": cfg.customers, "seed": cfg.seed, "cells": list(CELLS), "shares": dict(zip(CELLS, SHARES, strict=True)),
        "window": {"start": cfg.start.isoformat(), "end": cfg.end.isoformat(), "pre_days": cfg.pre_days},
        "effects": {**asdict(cfg.effects), "revenue_lift": cfg.effects.revenue_lift},
        "rows": {name: t.num_rows for name, t in data.tables.items()},
    }
    paths["truth"] = out / "truth.json"
    paths["truth"].write_text(json.dumps(truth, indent=1) + "\n")
    return paths


def main(argv: list[str] | None = None) -> int:
    """``python -m xpcompute.synthetic_ecommerce --out DIR --customers N``: write the tables, print a summary."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the Parquet files into")
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    paths = generate(args.out, customers=args.customers, seed=args.seed)
    truth = json.loads(paths["truth"].read_text())
    print(json.dumps({"paths": {k: str(v) for k, v in paths.items()}, "rows": truth["rows"],
                      "effects": truth["effects"], "seconds": round(time.perf_counter() - started, 2)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
