"""DTE benchmark: 1M users x 10 days (10M user-day rows), errors clustered by user, end to end from Arrow.

End to end means from the raw Arrow columns (user id, day, cell string,
metric) through the panel compression (``compress_panel``) and the fit
(``fit_compressed``) to the result records. Target: under 5 s on 2 cores.

statsmodels cannot fit 10M rows with 30 dummy columns and clustered errors in
reasonable time and memory here, so it runs on a subsample of
``--sub-users`` users (200k rows by default) in the same run; its time is
also shown scaled linearly to the full size (clearly labelled: an
extrapolation, statsmodels' cost is at least linear in rows). xpcompute runs on
the same subsample too, for a like-for-like ratio, and the two are checked to
agree.

Run: ``XPCOMPUTE_NATIVE=reference`` selects the NumPy specs of the primitives
(slow, for debugging); by default the compiled ``_core`` is used.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from common import machine, peak_rss_mb, reset_peak_rss, rss_mb, table, timed

from xpcompute import native
from xpcompute.compression.panel import compress_panel
from xpcompute.models import fit_compressed
from xpcompute.records import ResultRecord
from xpcompute.spec import FitSpec

CELLS = ("control", "a", "b")
SPEC = FitSpec(metric="y", treatment="cell", model="dte", time="day", cluster="user")


def make_panel(n_users: int, n_days: int, seed: int = 0) -> pa.Table:
    """One row per user-day, users in random row order; cell-specific and day-specific effects."""
    rng = np.random.default_rng(seed)
    cell_u = rng.choice(len(CELLS), size=n_users, p=[0.5, 0.25, 0.25]).astype(np.int32)
    user_effect = rng.normal(size=n_users)
    user_ids = rng.permutation(n_users).astype(np.int64) * 13 + 1000
    u = np.repeat(np.arange(n_users), n_days)
    d = np.tile(np.arange(n_days, dtype=np.int32), n_users)
    y = 5.0 + 0.1 * d + user_effect[u] + 0.02 * d * (cell_u[u] == 1) + rng.normal(size=n_users * n_days)
    order = rng.permutation(len(u))
    cell = pa.DictionaryArray.from_arrays(pa.array(cell_u[u][order]), pa.array(CELLS)).cast(pa.string())
    return pa.table({"user": user_ids[u][order], "day": d[order], "cell": cell, "y": y[order]})


def xp_end_to_end(table: pa.Table, repeat: int) -> tuple[list[ResultRecord], float, float, float]:
    """Records and the median seconds of compression, fit and both (end to end) over ``repeat`` runs."""
    comp, fit, total = [], [], []
    records: list[ResultRecord] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        compressed = compress_panel(table, SPEC)
        t1 = time.perf_counter()
        records = fit_compressed(compressed, SPEC)
        t2 = time.perf_counter()
        comp.append(t1 - t0)
        fit.append(t2 - t1)
        total.append(t2 - t0)
    return records, statistics.median(comp), statistics.median(fit), statistics.median(total)


def statsmodels_fit(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Dummy design (period + period x cell) from the Arrow columns, OLS, clustered by user."""
    import statsmodels.api as sm

    day = table.column("day").to_numpy()
    cell = table.column("cell").to_numpy(zero_copy_only=False)
    user = table.column("user").to_numpy()
    days = np.unique(day)
    cols = [(day == t).astype(float) for t in days]
    for c in CELLS[1:]:
        cols += [((day == t) & (cell == c)).astype(float) for t in days]
    x = np.column_stack(cols)
    groups = np.unique(user, return_inverse=True)[1]
    res = sm.OLS(table.column("y").to_numpy(), x).fit(cov_type="cluster", cov_kwds={"groups": groups})
    return np.asarray(res.params), np.asarray(res.bse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--sub-users", type=int, default=20_000, help="users in the statsmodels subsample")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    data = make_panel(args.users, args.days)
    input_mb = data.nbytes / 2**20
    xp_end_to_end(data, 1)  # warm-up (page faults, imports)
    base_rss = rss_mb()
    reset_peak_rss()
    records, comp_s, fit_s, full_s = xp_end_to_end(data, args.repeat)
    peak_mb = peak_rss_mb() - base_rss
    compressed = compress_panel(data, SPEC)

    users = np.unique(data.column("user").to_numpy())[: args.sub_users]
    sub = data.filter(pc.is_in(data.column("user"), pa.array(users)))
    sub_records, _, _, xp_sub_s = xp_end_to_end(sub, args.repeat)
    sm_sub_s, (params, bse) = timed(lambda: statsmodels_fit(sub), min(args.repeat, 3))
    scale = data.num_rows / sub.num_rows
    sm_full_est = sm_sub_s * scale

    # agreement on the subsample: per-period effects of cell 'a' (columns days .. 2*days-1)
    by_key = {(r.time, r.cell): r for r in sub_records}
    days = args.days
    ours = np.array([[by_key[(str(t), "a")].effect, by_key[(str(t), "a")].se] for t in range(days)])
    ref = np.column_stack([params[days: 2 * days], bse[days: 2 * days]])
    max_rel = float(np.max(np.abs(ours - ref) / np.abs(ref)))

    print(f"DTE benchmark on {machine()}; backend={native.backend()}; median of {args.repeat} runs")
    print(f"{args.users:,} users x {days} days = {data.num_rows:,} user-day rows ({input_mb:.0f} MiB of input columns); "
          f"compressed to {compressed.n_groups} rows (ratio {compressed.compression_ratio:,.0f}x); {len(records)} records; "
          f"peak memory above the loaded input during the fits {peak_mb:.0f} MiB ({peak_mb / input_mb:.2f}x the input)")
    rows: list[tuple[str, ...]] = [
        (f"xpcompute, {data.num_rows:,} rows: compress (pivot + group-by)", f"{comp_s:.3f}"),
        (f"xpcompute, {data.num_rows:,} rows: fit + records", f"{fit_s:.3f}"),
        (f"xpcompute, {data.num_rows:,} rows: end to end", f"{full_s:.3f}"),
        (f"xpcompute, subsample {sub.num_rows:,} rows: end to end", f"{xp_sub_s:.3f}"),
        (f"statsmodels OLS cluster, subsample {sub.num_rows:,} rows", f"{sm_sub_s:.3f}"),
        (f"statsmodels, {data.num_rows:,} rows EXTRAPOLATED (subsample x {scale:.0f})", f"{sm_full_est:.1f}"),
    ]
    print(table(rows, ("step", "seconds")))
    print(f"speed-up on the subsample (measured, same rows): {sm_sub_s / xp_sub_s:,.0f}x")
    print(f"speed-up at full size (vs EXTRAPOLATED statsmodels): {sm_full_est / full_s:,.0f}x")
    print(f"max relative difference vs statsmodels on the subsample (effects, SEs of cell a): {max_rel:.2e}")
    print(f"target < 5 s end to end: {'met' if full_s < 5 else 'NOT met'}")


if __name__ == "__main__":
    main()
