"""The synthetic generator: deterministic, shaped like the sources the catalog reads, with the stated effects."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pipeline_helpers import Experiment, per_user_reference

from xpcompute.errors import InputError
from xpcompute.metrics import get_dimension
from xpcompute.synthetic import COUNTRIES, DEVICES, SyntheticConfig, generate


def test_same_seed_same_tables_other_seed_other_tables() -> None:
    a = generate(SyntheticConfig(users=2000, seed=3))
    b = generate(SyntheticConfig(users=2000, seed=3))
    c = generate(SyntheticConfig(users=2000, seed=4))
    for name, table in a.tables().items():
        assert table.equals(b.tables()[name]), name
    assert not a.playback.equals(c.playback)


def test_tables_have_the_columns_the_catalog_reads(synth: Experiment) -> None:
    data = synth.data
    assert data.users.num_rows == synth.data.config.users
    assert data.playback.schema.field("event_date").type == pa.date32()
    assert data.playback.schema.field("watch_seconds").type == pa.int32()
    assert data.playback.schema.field("user_id").type == pa.int64()
    assert set(data.users.column("country").unique().to_pylist()) <= set(get_dimension("country").values or ())
    assert set(data.users.column("device").unique().to_pylist()) <= set(get_dimension("device").values or ())
    assert set(data.billing.column("kind").unique().to_pylist()) == {"subscription", "rental"}
    assert set(data.account.column("event_type").unique().to_pylist()) == {"cancel", "profile_edit"}
    cfg = data.config
    dates = data.playback.column("event_date")
    assert pc.min(dates).as_py() == cfg.start - timedelta(days=cfg.pre_days)
    assert pc.max(dates).as_py() == cfg.end + timedelta(days=1)  # one day past the window, which metrics ignore


def test_allocation_has_unallocated_and_double_allocated_users(synth: Experiment) -> None:
    alloc = synth.data.allocations
    users = np.asarray(alloc.column("user_id").to_numpy())
    n_users = synth.data.config.users
    assert n_users * 0.97 < len(np.unique(users)) < n_users
    assert len(users) > len(np.unique(users))  # some users are allocated twice


def test_pre_period_covariate_predicts_the_outcome(synth: Experiment) -> None:
    ref = per_user_reference(synth.data)
    for metric in ("streaming_hours", "sessions", "active_days"):
        corr = np.corrcoef(ref[metric][1:], ref["pre_" + metric][1:])[0, 1]
        assert corr > 0.5, (metric, corr)


def _watch_lift(config: SyntheticConfig, cell: str, country: str, device: str, days: range) -> tuple[float, float]:
    """(estimated, true) relative lift of watch seconds per session in one segment over ``days``."""
    data = generate(config)
    n = config.users + 1
    users = data.users
    uid = np.asarray(users.column("user_id").to_numpy())
    in_segment = np.zeros(n, bool)
    in_segment[uid] = np.asarray(
        pc.and_(pc.equal(users.column("country"), country), pc.equal(users.column("device"), device)).to_numpy(
            zero_copy_only=False
        )
    )
    cell_of = np.full(n, -1)
    alloc = data.allocations
    codes = {c: i for i, c in enumerate(config.cells)}
    cell_of[np.asarray(alloc.column("user_id").to_numpy())] = [codes[c] for c in alloc.column("cell").to_pylist()]
    pb = data.playback
    p_user = np.asarray(pb.column("user_id").to_numpy())
    day = np.asarray(pc.cast(pb.column("event_date"), pa.int32()).to_numpy()) - (config.start.toordinal() - 719163)
    keep = np.isin(day, list(days)) & in_segment[p_user]
    watch = np.asarray(pb.column("watch_seconds").to_numpy(), dtype=float)
    treated = keep & (cell_of[p_user] == codes[cell])
    control = keep & (cell_of[p_user] == codes[config.control])
    estimate = watch[treated].mean() / watch[control].mean() - 1
    truth = float(np.mean([config.effects.watch_lift_at(cell, country, device, int(d)) for d in np.unique(day[treated])]))
    return estimate, truth


@pytest.mark.parametrize("country,device", [("US", "tv"), ("IN", "android")])
def test_segment_effects_match_the_stated_truth(country: str, device: str) -> None:
    config = SyntheticConfig(users=150_000, seed=11)
    estimate, truth = _watch_lift(config, "autoplay_plus", country, device, range(config.days))
    assert abs(estimate - truth) < 0.025, (estimate, truth)


def test_effects_differ_by_segment_and_decay_over_time() -> None:
    eff = SyntheticConfig().effects
    assert eff.watch_lift_at("autoplay_plus", "US", "tv", 0) > 10 * eff.watch_lift_at("autoplay_plus", "IN", "web", 0)
    assert eff.watch_lift_at("autoplay", "US", "tv", 0) > 1.8 * eff.watch_lift_at("autoplay", "US", "tv", 9)
    assert eff.watch_lift_at("control", "US", "tv", 0) == 0.0
    config = SyntheticConfig(users=120_000, seed=5)
    early, early_truth = _watch_lift(config, "autoplay_plus", "US", "tv", range(0, 2))
    late, late_truth = _watch_lift(config, "autoplay_plus", "US", "tv", range(7, 10))
    assert early_truth > 1.5 * late_truth
    assert early > late + 0.05, (early, late)


def test_generation_is_vectorised_enough() -> None:
    """Scale check at 200k users; 1M users is measured in benchmarks/bench_pipeline.py."""
    import time

    started = time.perf_counter()
    data = generate(SyntheticConfig(users=200_000, seed=1))
    elapsed = time.perf_counter() - started
    assert data.playback.num_rows > 1_000_000
    assert elapsed < 5.0, elapsed


def test_bad_configs_are_refused() -> None:
    with pytest.raises(InputError, match="include control"):
        SyntheticConfig(users=100, cells=("a", "b"))
    with pytest.raises(InputError, match="at least 10 users"):
        SyntheticConfig(users=1)
    assert set(COUNTRIES) == set(SyntheticConfig().effects.country_multiplier)
    assert set(DEVICES) == set(SyntheticConfig().effects.device_multiplier)
