"""Event-level quantiles (p50, p90 over events; 1000-replicate Poisson bootstrap clustered by unit), end to end.

Input: an experiment's stage-1 events table (one row per event: unit id, cell, a dimension, value, and stage 1's
int16 cell index ``_xp_cell`` and unit cluster ``_xp_cluster``, the cluster by the production SQL rule), generated
here as Parquet and published like stage 1 publishes it: ``--users`` units in two cells with Poisson
(``--events-per-user`` - 1) + 1 events each, log-normal values with a unit effect (events of a unit are
correlated), in cents (``round(v, 2)``).

xpcompute, timed (median of ``--repeat``):

* slice: ``pipeline.events.event_histogram`` (the slice job's work): DuckDB scans of the events table (the pooled
  edge sample from the first unit clusters; then the stored cell index and unit cluster and the value in 4M-row
  Arrow batches, the next batch decoded while the current one is counted) into the (cell x 1000 unit clusters x
  500 value buckets) histogram by the multi-threaded C++ pass ``native.event_histogram``;
* store: the histogram encoded to Parquet bytes and decoded again (what the slice and fit jobs write and read);
* fit: ``fit_compressed`` with model ``event_quantile`` (point estimates, the C++ clustered bootstrap, records);
  its C++ bootstrap alone is timed too;
* end to end = slice + store + fit (stage 1, once per experiment, is not included: the events table is its
  output).

Peers in the same run:

* DuckDB ``quantile_cont(value, [0.5, 0.9])`` per cell over the raw events Parquet: point estimates only, no
  interval (the least any tool must do to report the quantiles);
* a NumPy Poisson bootstrap clustered by unit on the raw rows (a weight per unit, weighted inverted-CDF
  quantile per cell and replicate) cannot run 1000 replicates on 125M events here, so it runs on the events of
  the first ``--sub`` units with ``--numpy-reps`` replicates; its time is scaled linearly to 1000 replicates and
  to all events (an EXTRAPOLATION, labelled so; its cost is at least linear in both). xpcompute runs on the same
  subsample for a measured like-for-like ratio.

Run: ``python benchmarks/bench_event_quantile.py`` (200k users, about 2.5M events);
``--users 10000000 --events-per-user 12.5`` for 10M users and about 125M events (about 310 MiB of Parquet in
``--dir``, default a temporary folder; generating it takes about 30 s here).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlglot import exp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, peak_rss_mb, table, timed

from xpcompute import native
from xpcompute.compression.events import EVENT_CLUSTERS, compress_events
from xpcompute.compression.schema import CompressedTable
from xpcompute.coordinator.stored import decode_derived, encode_derived
from xpcompute.experiment import ExperimentSpec
from xpcompute.models import fit_compressed
from xpcompute.models.event_quantile import EventHistogramView
from xpcompute.models.fit import model_data
from xpcompute.pipeline.events import event_histogram
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.pipeline.tables import publish_table
from xpcompute.spec import FitSpec
from xpcompute.sql.events import cluster_sql, digest_sql
from xpcompute.storage import keys
from xpcompute.storage.objects import open_store

PROBS = (0.5, 0.9)
CHUNK_USERS = 1_000_000


def unit_columns(ids: np.ndarray, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1's per-unit ``_xp_cell`` and ``_xp_cluster`` (int16), the cluster by the production SQL rule
    (``sql/events.cluster_sql``) run on DuckDB."""
    con = duckdb.connect()
    con.register("units", pa.table({"user_id": ids}))
    query = exp.select(cluster_sql(digest_sql(exp.column("user_id")), EVENT_CLUSTERS).as_("k")).from_("units")
    con.execute("SET preserve_insertion_order = true")
    k = con.sql(query.sql("duckdb")).to_arrow_table().column("k").to_numpy().astype(np.int16)
    con.close()
    return cell.astype(np.int16), k


def generate(directory: str, users: int, per_user: float, seed: int) -> tuple[int, float]:
    """Write the events table in chunks of units; returns (events, seconds)."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    total = 0
    for part, first in enumerate(range(0, users, CHUNK_USERS)):
        n = min(CHUNK_USERS, users - first)
        ids = np.arange(first, first + n, dtype=np.int64)
        cell = np.where(rng.random(n) < 0.5, 0, 1)
        k = rng.poisson(per_user - 1, n) + 1
        unit = np.repeat(np.arange(n), k)
        value = np.round(np.exp(3.0 + rng.normal(0, 0.6, n)[unit] + rng.normal(0, 0.5, len(unit))), 2)
        labels = pa.DictionaryArray.from_arrays(pa.array(cell[unit].astype(np.int32)), pa.array(["control", "treatment"]))
        platform = pa.DictionaryArray.from_arrays(pa.array((ids[unit] % 3).astype(np.int32)), pa.array(["web", "ios", "tv"]))
        cell_index, cluster = unit_columns(ids, cell)
        t = pa.table({"user_id": ids[unit], "cell": labels.cast(pa.string()), "platform": platform.cast(pa.string()),
                      "value": value, "_xp_cell": cell_index[unit], "_xp_cluster": cluster[unit]})
        pq.write_table(t, f"{directory}/part-{part:04d}.parquet", compression="zstd", row_group_size=1_000_000)
        total += len(unit)
    return total, time.perf_counter() - started


def experiment() -> ExperimentSpec:
    return ExperimentSpec.parse({
        "id": "bench", "allocation": {"source": "alloc", "cell_column": "cell"}, "users_source": "alloc",
        "cells": ["control", "treatment"], "control": "control",
        "window": {"start": "2026-01-01", "end": "2026-01-14", "pre_days": 7},
        "sources": {"alloc": {"uri": "alloc.parquet", "user_column": "user_id"},
                    "events": {"uri": "events.parquet", "user_column": "user_id", "date_column": "t"}},
        "dimensions": ["platform"],
        "metrics": [{"name": "amount", "source": "events", "value": "amount", "aggregation": "event_quantile",
                     "quantiles": list(PROBS)}],
        "daily": False,
    })


def numpy_cluster_bootstrap(unit: np.ndarray, cell: np.ndarray, value: np.ndarray, reps: int, seed: int) -> np.ndarray:
    """``[reps, 2, P]`` weighted inverted-CDF quantiles per cell under one Poisson(1) weight per unit."""
    rng = np.random.default_rng(seed)
    probs = np.asarray(PROBS)
    out = np.empty((reps, 2, len(probs)))
    sorted_cells = []
    for k in (0, 1):
        sel = cell == k
        order = np.argsort(value[sel], kind="stable")
        sorted_cells.append((value[sel][order], unit[sel][order]))
    n_units = int(unit.max()) + 1
    for b in range(reps):
        w_unit = rng.poisson(1.0, n_units)
        for k, (v, u) in enumerate(sorted_cells):
            cum = np.cumsum(w_unit[u])
            out[b, k] = v[np.minimum(np.searchsorted(cum, probs * cum[-1]), len(v) - 1)]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--events-per-user", type=float, default=12.5)
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sub", type=int, default=20_000, help="units in the NumPy peer's subsample")
    ap.add_argument("--numpy-reps", type=int, default=50)
    ap.add_argument("--dir", default=None, help="where the events table goes (default: a temporary folder)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    root = Path(args.dir or tempfile.mkdtemp(prefix="bench-eq-"))
    store = open_store(str(root))
    key = keys.events_table("bench", "amount")
    gen: dict[str, float] = {}

    def write(fs: object, directory: str) -> pa.Schema:
        Path(directory).mkdir(parents=True, exist_ok=True)
        gen["events"], gen["seconds"] = generate(directory, args.users, args.events_per_user, args.seed)
        return pq.read_schema(next(Path(directory).glob("*.parquet")))

    published = publish_table(store, key, write, {"table_kind": "events"})
    n_events = int(gen["events"])
    files = [str(p) for p in published.paths()]
    print(f"# {machine()}\n# {args.users:,} users, {n_events:,} events ({published.manifest['bytes'] / 2**20:,.0f} MiB Parquet, "
          f"generated in {gen['seconds']:.1f} s)")
    exp = experiment()
    spec = FitSpec(metric="amount", treatment="cell", model="event_quantile", quantiles=PROBS,
                   bootstrap_reps=args.reps, seed=3)

    t_slice, compressed = timed(lambda: event_histogram(key, exp, "amount", SliceFilter.everyone(), store),
                                args.repeat)
    t_store, decoded = timed(lambda: decode_derived_bytes(encode_derived(compressed)), args.repeat)
    t_fit, records = timed(lambda: fit_compressed(decoded, spec), args.repeat)
    view = EventHistogramView(model_data(decoded, spec))
    probs = np.asarray(PROBS)
    t_boot, _ = timed(lambda: native.bootstrap_cluster_quantiles(
        view.groups, view.buckets, view.clusters, view.n, view.lo, view.hi, len(view.cells), view.n_buckets,
        view.n_clusters, probs, args.reps, 3), args.repeat)
    e2e = t_slice + t_store + t_fit

    con = duckdb.connect()
    duck_sql = (f"SELECT cell, quantile_cont(value, [0.5, 0.9]) FROM read_parquet({files!r}) GROUP BY cell "
                "ORDER BY cell")
    t_duck, duck = timed(lambda: con.sql(duck_sql).fetchall(), args.repeat)

    # NumPy peer on the events of the first --sub units (whole units: the clustering is kept)
    sub_q = f"SELECT user_id, cell, value FROM read_parquet({files!r}) WHERE user_id < {args.sub}"
    sub = con.sql(sub_q).to_arrow_table()
    unit = sub.column("user_id").to_numpy()
    cell = (sub.column("cell").to_numpy(zero_copy_only=False) == "treatment").astype(np.int64)
    value = sub.column("value").to_numpy()
    started = time.perf_counter()
    numpy_cluster_bootstrap(unit, cell, value, args.numpy_reps, 5)
    t_numpy_sub = time.perf_counter() - started
    numpy_full = t_numpy_sub * (args.reps / args.numpy_reps) * (n_events / max(len(value), 1))
    sub_spec = spec.model_copy(update={"cluster": "user_id"})
    t_ours_sub, _ = timed(lambda: fit_compressed(compress_events(sub, "value", "user_id", "cell"),
                                                 sub_spec.model_copy(update={"metric": "value"})), args.repeat)
    numpy_sub_1000 = t_numpy_sub * args.reps / args.numpy_reps

    info = decoded.layout.extra["event_quantile"]
    print(f"# histogram: {decoded.n_groups:,} rows (cells x clusters x buckets), {info['buckets']} buckets, "
          f"lossless={info['lossless']}; {len(encode_derived(compressed)) / 2**20:.1f} MiB stored")
    rows = [
        ("xpcompute slice (DuckDB scan + C++ histogram)", f"{t_slice:.2f}", ""),
        ("xpcompute store (encode + decode the histogram)", f"{t_store:.3f}", ""),
        (f"xpcompute fit ({args.reps} reps, 2 quantiles)", f"{t_fit * 1000:.0f} ms", ""),
        ("  of which the C++ clustered bootstrap", f"{t_boot * 1000:.0f} ms", ""),
        ("xpcompute end to end (slice + store + fit)", f"{e2e:.2f}", "1.0x"),
        ("DuckDB quantile_cont per cell (point estimates only)", f"{t_duck:.2f}", f"{t_duck / e2e:.2f}x"),
        (f"NumPy clustered bootstrap, {args.sub:,} units, {args.numpy_reps} reps (measured)", f"{t_numpy_sub:.2f}", ""),
        (f"NumPy clustered bootstrap, {args.sub:,} units, {args.reps} reps (scaled)", f"{numpy_sub_1000:.1f}", ""),
        (f"xpcompute on the same {len(value):,} events ({args.reps} reps, measured)", f"{t_ours_sub:.2f}",
         f"NumPy/xpcompute = {numpy_sub_1000 / t_ours_sub:.0f}x"),
        (f"NumPy clustered bootstrap, all events, {args.reps} reps (EXTRAPOLATION)", f"{numpy_full:,.0f}",
         f"{numpy_full / e2e:,.0f}x"),
    ]
    print(table(rows, ("step", "seconds", "vs xpcompute end to end")))
    print("\nestimates (all events):")
    for r in records:
        print(f"  p{r.quantile * 100:g}: control {r.mean_control:.4f}, treatment {r.mean_cell:.4f}, effect {r.effect:+.4f} "
              f"(se {r.se:.4f}, 95% CI [{r.ci_low:.4f}, {r.ci_high:.4f}])")
    print(f"  DuckDB quantile_cont: {duck}")
    print(f"peak RSS {peak_rss_mb():,.0f} MiB")
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


def decode_derived_bytes(data: bytes, root: list[Path] = []) -> CompressedTable:  # noqa: B006 - one scratch store
    """Decode stored histogram bytes as the fit job does (written to and read from a local store)."""
    if not root:
        root.append(Path(tempfile.mkdtemp(prefix="bench-eq-store-")))
    store = open_store(str(root[0]))
    store.put_bytes("h.parquet", data)
    return decode_derived(store, "h.parquet")


if __name__ == "__main__":
    main()
