"""A seeded quasi-experiment: a price change in some regions of a shop, with its true effect known.

No random assignment: customers of the regions ``north`` and ``west`` (about
30% of customers, so the groups are unequal) saw prices rise by
``price_change`` from ``change_date`` on; the other regions kept the old
price. The regions differ in level (a region effect on the order rate), every
customer has their own level, and the order rate follows a common weekly
pattern and trend, so a before/after comparison of the treated regions alone,
or a treated-against-comparison comparison after the change alone, is biased;
difference in differences is not, because every part of the expected outcome
except the treatment is additive in the customer and the day (parallel trends
hold by construction)::

    orders of customer u on day d ~ Poisson(lam_ud),  lam_ud = base_u + region_g(u) + season_d
    treated and d >= change:  lam_ud * (1 - order_drop),  price * (1 + price_change)

Each order's amount is ``price * quantity`` with ``quantity`` in 1..3 (mean 2).
The true effect of one post-change period ``t`` on a treated customer's
revenue is the expectation given the drawn rates, averaged over the treated
customers (the average treatment effect on the treated)::

    ATT_t = mean_u sum_{d in t} lam_ud * 2 * price * ((1 - order_drop)(1 + price_change) - 1)

and ``-order_drop * mean_u sum_{d in t} lam_ud`` for orders; zero before the
change. ``truth.json`` lists them by event time. Customer ids are strings
(``c-<hex>``), order times are timestamps at any time of day (UTC).

``python -m xpcompute.synthetic_quasi --out DIR`` writes ``customers.parquet``,
``orders.parquet`` and ``truth.json``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REGIONS = ("north", "west", "south", "east", "central", "coast")
REGION_SHARE = (0.18, 0.12, 0.25, 0.2, 0.15, 0.10)
TREATED_REGIONS = ("north", "west")
#: additive region effect on the daily order rate (levels differ between the groups)
REGION_LEVEL = (0.05, 0.08, 0.0, 0.02, 0.04, 0.01)


@dataclass(frozen=True)
class QuasiConfig:
    """What to draw: customers, the window in weeks before and after the change, and the change itself."""

    customers: int = 20_000
    start: date = date(2026, 2, 23)  # a Monday
    weeks_before: int = 3
    weeks_after: int = 3
    price: float = 20.0
    price_change: float = 0.10
    order_drop: float = 0.05
    seed: int = 11

    @property
    def change_date(self) -> date:
        return self.start + timedelta(weeks=self.weeks_before)

    @property
    def end(self) -> date:
        return self.start + timedelta(weeks=self.weeks_before + self.weeks_after, days=-1)

    @property
    def days(self) -> int:
        return 7 * (self.weeks_before + self.weeks_after)


@dataclass(frozen=True)
class QuasiTruth:
    """The true average effects on the treated per event time (weeks relative to the change; -1 = last before)."""

    revenue: dict[int, float]
    orders: dict[int, float]
    treated_customers: int
    comparison_customers: int

    def to_json_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["revenue"] = {str(k): v for k, v in self.revenue.items()}
        out["orders"] = {str(k): v for k, v in self.orders.items()}
        return out


@dataclass(frozen=True)
class QuasiData:
    customers: pa.Table
    orders: pa.Table
    truth: QuasiTruth


def draw(config: QuasiConfig | None = None) -> QuasiData:
    """Draw the customers and their orders (one seeded generator, vectorised)."""
    c = config or QuasiConfig()
    rng = np.random.default_rng(c.seed)
    n, days = c.customers, c.days
    region = rng.choice(len(REGIONS), size=n, p=list(REGION_SHARE))
    treated = np.isin(region, [REGIONS.index(r) for r in TREATED_REGIONS])
    base = rng.gamma(2.0, 0.05, size=n)
    d = np.arange(days)
    season = 0.04 * np.isin(d % 7, (4, 5)) + 0.002 * d  # Fridays and Saturdays, and a slow rise
    lam0 = base[:, None] + np.asarray(REGION_LEVEL)[region][:, None] + season[None, :]
    post = d >= 7 * c.weeks_before
    hit = treated[:, None] & post[None, :]
    lam = np.where(hit, lam0 * (1 - c.order_drop), lam0)
    counts = rng.poisson(lam)
    unit, day = np.nonzero(counts)
    reps = counts[unit, day]
    unit, day = np.repeat(unit, reps), np.repeat(day, reps)
    m = len(unit)
    price = np.where(treated[unit] & post[day], c.price * (1 + c.price_change), c.price)
    quantity = rng.integers(1, 4, size=m)
    seconds = rng.integers(0, 86_400, size=m)
    epoch = datetime(c.start.year, c.start.month, c.start.day)
    start_us = int((epoch - datetime(1970, 1, 1)).total_seconds()) * 1_000_000
    ts = start_us + (day.astype(np.int64) * 86_400 + seconds) * 1_000_000
    # distinct hex ids in no particular order: an odd multiplier is a bijection modulo 2**32
    ids = np.array([f"c-{h:08x}" for h in (np.arange(n, dtype=np.uint64) * 2654435761 + 12345) % 2**32], dtype=object)
    order = rng.permutation(m)
    orders = pa.table({
        "order_id": pa.array(np.arange(m, dtype=np.int64)[order]),
        "customer_id": pa.array(ids[unit][order].tolist(), pa.string()),
        "ordered_at": pa.array(ts[order], pa.timestamp("us", tz="UTC")),
        "amount": pa.array((price * quantity)[order]),
        "items": pa.array(quantity[order].astype(np.int64)),
    })
    customers = pa.table({
        "customer_id": pa.array(ids.tolist(), pa.string()),
        "region": pa.array(np.asarray(REGIONS, dtype=object)[region].tolist(), pa.string()),
    })
    revenue, n_orders = {}, {}
    for t in range(-c.weeks_before, c.weeks_after):
        week = slice(7 * (t + c.weeks_before), 7 * (t + c.weeks_before + 1))
        if t < 0:
            revenue[t] = n_orders[t] = 0.0
            continue
        lam_sum = lam0[treated, week].sum(axis=1)
        revenue[t] = float(np.mean(lam_sum * 2 * c.price * ((1 - c.order_drop) * (1 + c.price_change) - 1)))
        n_orders[t] = float(np.mean(-c.order_drop * lam_sum))
    truth = QuasiTruth(revenue, n_orders, int(treated.sum()), int(n - treated.sum()))
    return QuasiData(customers=customers, orders=orders, truth=truth)


def generate(out_dir: str | Path, config: QuasiConfig | None = None) -> dict[str, Path]:
    """Write ``customers.parquet``, ``orders.parquet`` and ``truth.json`` under ``out_dir``."""
    data = draw(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"customers": out / "customers.parquet", "orders": out / "orders.parquet", "truth": out / "truth.json"}
    pq.write_table(data.customers, paths["customers"])
    pq.write_table(data.orders, paths["orders"])
    paths["truth"].write_text(json.dumps(data.truth.to_json_dict(), indent=2))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", default="examples/quasi/data")
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    paths = generate(args.out, QuasiConfig(customers=args.customers, seed=args.seed))
    print(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
