"""DiD benchmark: 1M units x 30 periods (30M unit-period rows), event study clustered by unit, end to end from Arrow.

End to end means from the raw Arrow columns of the unit-by-period panel (unit
id, event time -15..14, group string, metric) through the panel compression
(``compress_panel``) and the ``did`` fit (``fit_compressed``: 29 per-period
effects relative to event time -1, their average after the change and the
pre-trend Wald test) to the result records. Stage 1 (raw events -> this panel)
is not timed here: it is the same SQL as any unit-by-day table
(``bench_pipeline.py`` times stage 1). Target: under 10 s on this machine.

The peers run in the same process on a subsample of ``--sub-units`` units
(all their periods), since they hold the whole dummy design in memory (30M x
60 doubles would be 14 GiB): linearmodels ``PanelOLS`` (clustered by entity)
and statsmodels ``OLS`` with ``cov_type='cluster'`` on the same design (period
dummies, group dummy, group x period dummies but the reference). xpcompute runs
on the same subsample for a like-for-like ratio, and all three are checked to
agree; the peers' full-size time is also shown scaled linearly by rows,
labelled as an extrapolation (their cost is at least linear in rows).
"""

from __future__ import annotations

import argparse
import os
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

GROUPS = ("comparison", "treated")
SPEC = FitSpec(metric="y", treatment="group", model="did", time="t", cluster="unit", control="comparison",
               reference_period="-1")


def make_panel(n_units: int, n_periods: int, seed: int = 0) -> pa.Table:
    """One row per unit-period in random row order; 30% treated, unit and period effects, an effect from t = 0."""
    rng = np.random.default_rng(seed)
    treated = (rng.random(n_units) < 0.3).astype(np.int32)
    level = rng.normal(size=n_units) + 0.5 * treated
    first = -(n_periods // 2)
    u = np.repeat(np.arange(n_units), n_periods)
    t = np.tile(np.arange(first, first + n_periods, dtype=np.int32), n_units)
    g = treated[u]
    y = 2.0 + 0.05 * t + level[u] + 0.3 * g * (t >= 0) + rng.normal(size=len(u))
    order = rng.permutation(len(u))
    ids = rng.permutation(n_units).astype(np.int64) * 7 + 100
    group = pa.DictionaryArray.from_arrays(pa.array(g[order]), pa.array(GROUPS)).cast(pa.string())
    return pa.table({"unit": ids[u][order], "t": t[order], "group": group, "y": y[order]})


def xp_end_to_end(data: pa.Table, repeat: int) -> tuple[list[ResultRecord], float, float, float, float]:
    """Records and the median wall seconds of compression, fit and both, and the median CPU seconds of both
    (this process, all threads), over ``repeat`` runs."""
    comp, fit, total, cpu = [], [], [], []
    records: list[ResultRecord] = []
    for _ in range(repeat):
        c0 = time.process_time()
        t0 = time.perf_counter()
        compressed = compress_panel(data, SPEC)
        t1 = time.perf_counter()
        records = fit_compressed(compressed, SPEC)
        t2 = time.perf_counter()
        cpu.append(time.process_time() - c0)
        comp.append(t1 - t0)
        fit.append(t2 - t1)
        total.append(t2 - t0)
    return (records, statistics.median(comp), statistics.median(fit), statistics.median(total),
            statistics.median(cpu))


def design(data: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """y, the dummy design, unit ids, periods, and the columns of the interactions (in period order, ref left out)."""
    t = data.column("t").to_numpy()
    g = (data.column("group").to_numpy(zero_copy_only=False) == "treated").astype(float)
    periods = np.unique(t)
    cols = [(t == p).astype(float) for p in periods] + [g]
    inter = []
    for p in periods:
        if p != -1:
            inter.append(len(cols))
            cols.append(g * (t == p))
    return data.column("y").to_numpy(), np.column_stack(cols), data.column("unit").to_numpy(), t, inter


def statsmodels_fit(data: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    import statsmodels.api as sm

    y, x, unit, _, inter = design(data)
    groups = np.unique(unit, return_inverse=True)[1]
    res = sm.OLS(y, x).fit(cov_type="cluster", cov_kwds={"groups": groups})
    return np.asarray(res.params)[inter], np.asarray(res.bse)[inter]


def linearmodels_fit(data: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd
    from linearmodels import PanelOLS

    y, x, unit, t, inter = design(data)
    index = pd.MultiIndex.from_arrays([unit, t])
    exog = pd.DataFrame(x, index=index, columns=[f"x{j}" for j in range(x.shape[1])])
    res = PanelOLS(pd.Series(y, index=index), exog).fit(cov_type="clustered", cluster_entity=True, debiased=True,
                                                       group_debias=True)
    return np.asarray(res.params)[inter], np.asarray(res.std_errors)[inter]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--periods", type=int, default=30)
    parser.add_argument("--sub-units", type=int, default=20_000, help="units in the peers' subsample")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peer-repeat", type=int, default=1, help="runs of each peer (each takes about a minute)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    data = make_panel(args.units, args.periods)
    gen_s = time.perf_counter() - t0
    input_mb = data.nbytes / 2**20
    xp_end_to_end(data, 1)  # warm-up (page faults, imports)
    base_rss = rss_mb()
    reset_peak_rss()
    load = os.getloadavg()[0]
    records, comp_s, fit_s, full_s, cpu_s = xp_end_to_end(data, args.repeat)
    peak_mb = peak_rss_mb() - base_rss

    units = np.unique(data.column("unit").to_numpy())[: args.sub_units]
    sub = data.filter(pc.is_in(data.column("unit"), pa.array(units)))
    sub_records, _, _, xp_sub_s, _ = xp_end_to_end(sub, args.repeat)
    sm_s, (sm_params, sm_bse) = timed(lambda: statsmodels_fit(sub), args.peer_repeat)
    lm_s, (lm_params, lm_bse) = timed(lambda: linearmodels_fit(sub), args.peer_repeat)
    scale = data.num_rows / sub.num_rows

    per_period = sorted((r for r in sub_records if r.segment is None and r.time is not None), key=lambda r: int(r.time or 0))
    ours = np.array([[r.effect, r.se or np.nan] for r in per_period])
    worst = {
        name: float(np.max(np.abs(ours - np.column_stack([p, b])) / np.abs(np.column_stack([p, b]))))
        for name, (p, b) in {"statsmodels": (sm_params, sm_bse), "linearmodels": (lm_params, lm_bse)}.items()
    }
    average = next(r for r in records if r.segment is None and r.time is None)
    pre = next(r for r in records if r.segment == "pre-trend")

    print(f"DiD benchmark on {machine()}; backend={native.backend()}; xpcompute: median of {args.repeat} runs, "
          f"peers: median of {args.peer_repeat}")
    print(f"{args.units:,} units x {args.periods} periods = {data.num_rows:,} unit-period rows ({input_mb:.0f} MiB of "
          f"input columns, generated in {gen_s:.1f} s, not timed); {len(records)} records; average effect after the "
          f"change {average.effect:.4f} (SE {average.se:.4f}; planted 0.3), pre-trend chi2({pre.df:g}) p = "
          f"{pre.p_value:.3f}; peak memory above the loaded input {peak_mb:.0f} MiB ({peak_mb / input_mb:.2f}x the input)")
    rows: list[tuple[str, ...]] = [
        (f"xpcompute, {data.num_rows:,} rows: compress (pivot + group-by)", f"{comp_s:.3f}"),
        (f"xpcompute, {data.num_rows:,} rows: fit + records", f"{fit_s:.3f}"),
        (f"xpcompute, {data.num_rows:,} rows: end to end", f"{full_s:.3f}"),
        (f"xpcompute, {data.num_rows:,} rows: end to end, CPU seconds of this process", f"{cpu_s:.3f}"),
        (f"xpcompute, subsample {sub.num_rows:,} rows: end to end", f"{xp_sub_s:.3f}"),
        (f"statsmodels OLS cluster, subsample {sub.num_rows:,} rows", f"{sm_s:.3f}"),
        (f"linearmodels PanelOLS clustered, subsample {sub.num_rows:,} rows", f"{lm_s:.3f}"),
        (f"statsmodels, {data.num_rows:,} rows EXTRAPOLATED (subsample x {scale:.0f})", f"{sm_s * scale:.1f}"),
        (f"linearmodels, {data.num_rows:,} rows EXTRAPOLATED (subsample x {scale:.0f})", f"{lm_s * scale:.1f}"),
    ]
    print(table(rows, ("step", "seconds")))
    print(f"speed-up on the subsample (measured, same rows): statsmodels {sm_s / xp_sub_s:,.0f}x, "
          f"linearmodels {lm_s / xp_sub_s:,.0f}x")
    print(f"speed-up at full size (vs EXTRAPOLATED peers): statsmodels {sm_s * scale / full_s:,.0f}x, "
          f"linearmodels {lm_s * scale / full_s:,.0f}x")
    print("max relative difference on the subsample (29 effects and SEs): "
          + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    print(f"target < 10 s end to end: {'met' if full_s < 10 else 'NOT met'} (wall clock; load average "
          f"{load:.1f} on {os.cpu_count()} cores when the timed runs started: other processes share the cores)")


if __name__ == "__main__":
    main()
