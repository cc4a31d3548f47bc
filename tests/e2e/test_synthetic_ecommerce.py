"""The e-commerce generator draws the traps its docstring promises, so the oracle tests keep their power.

If a change of the generator lost, say, the late exposures or the evening
orders of the last day, the oracle tests would still pass while no longer
testing those rules; these checks fail instead.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from xpcompute.synthetic_ecommerce import CELLS, LEGACY_CELL, EcommerceConfig, EcommerceData, draw


@pytest.fixture(scope="module")
def data() -> EcommerceData:
    return draw(EcommerceConfig(customers=5_000, seed=3))


def test_same_seed_same_tables_other_seed_other_tables() -> None:
    a, b = draw(EcommerceConfig(customers=300, seed=1)), draw(EcommerceConfig(customers=300, seed=1))
    assert all(a.tables[k].equals(b.tables[k]) for k in a.tables)
    c = draw(EcommerceConfig(customers=300, seed=2))
    assert not c.tables["orders"].equals(a.tables["orders"])


def test_types_are_the_ones_teams_have(data: EcommerceData) -> None:
    t = data.tables
    ids = t["customers"].column("customer_id")
    assert pa.types.is_string(ids.type) and pc.count_distinct(ids).as_py() == len(ids)
    assert all(v.startswith("c-") and len(v) == 38 for v in ids.to_pylist()[:50])  # c- + a canonical UUID
    assert t["assignments"].schema.field("exposed_at").type == pa.timestamp("us")
    assert t["orders"].schema.field("ordered_at").type == pa.timestamp("us", tz="UTC")
    assert t["page_views"].schema.field("viewed_at").type == pa.timestamp("us")
    assert t["returns"].schema.field("returned_on").type == pa.date32()


def test_exposures_hold_every_case_the_rule_handles(data: EcommerceData) -> None:
    cfg = data.config
    rows = data.tables["assignments"].to_pandas()
    declared = rows[rows["variant"].isin(CELLS)]
    first = declared.groupby("customer_id")["exposed_at"].min()
    start = datetime(cfg.start.year, cfg.start.month, cfg.start.day)
    end = start + timedelta(days=cfg.days)
    assert (first < start).sum() > 0 and (first >= end).sum() > 0  # before the window, after it
    inside = first[(first >= start) & (first < end)]
    assert (inside.dt.hour * 60 + inside.dt.minute > 0).mean() > 0.99  # not at midnight
    assert (declared.groupby("customer_id")["variant"].nunique() > 1).sum() > 0  # in two cells
    assert declared.groupby("customer_id").size().max() > 1  # logged more than once
    legacy = rows[rows["variant"] == LEGACY_CELL].set_index("customer_id")["exposed_at"]
    assert len(legacy) > 0 and (legacy < first.reindex(legacy.index)).all()  # earlier than the real exposure
    shares = declared.drop_duplicates("customer_id")["variant"].value_counts(normalize=True)
    assert shares["control"] == pytest.approx(0.6, abs=0.03)


def test_orders_fall_before_and_after_exposure_and_late_on_the_last_day(data: EcommerceData) -> None:
    cfg = data.config
    orders = data.tables["orders"].to_pandas()
    first = data.tables["assignments"].to_pandas().groupby("customer_id")["exposed_at"].min().dt.tz_localize("UTC")
    at = orders["ordered_at"]
    exposed = orders["customer_id"].map(first)
    assert ((at < exposed) & (at >= exposed - timedelta(days=cfg.pre_days))).sum() > 0
    assert (at >= exposed).sum() > 0
    last = datetime(cfg.end.year, cfg.end.month, cfg.end.day, tzinfo=UTC)
    last_day = at[(at >= last) & (at < last + timedelta(days=1))]
    typical = len(at[(at >= last - timedelta(days=3)) & (at < last - timedelta(days=2))])
    assert len(last_day) > 1.5 * typical  # the sale day
    assert (last_day.dt.hour >= 19).mean() > 0.3  # mostly in the evening
    basket = orders["basket_size_cents"].to_numpy()
    assert abs(np.median(basket) - 1_000_000) <= 1 and 0.5 < basket.std() < 2  # a large mean, a tiny spread
