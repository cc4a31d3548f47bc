"""Power benchmark: a power calculation from a 10M-user pre-period analysis table (Parquet), end to end.

The table has one row per user with the metric over the pre-period (``y``) and its pre-period covariate
(``pre``, the same metric one window earlier). One DuckDB pass over the Parquet file returns the sums
(n, sum y, sum y^2, sum pre, sum pre^2, sum pre*y); `xpcompute.inference` turns them into the raw and the
CUPED-reduced variance and then computes the sample size, the power at the planned n and the MDE.
Target: under 1 s end to end on 2 cores.

Peer, side by side: statsmodels' `NormalIndPower` on the same numbers (the same DuckDB pass, then its
`solve_power` for the sample size, `power` and `solve_power` for the MDE). The two sample sizes are printed
and checked to agree.

Run: ``python benchmarks/bench_power.py [--users 10000000] [--repeat 5]``. The Parquet file is written once
to ``--path`` (default /tmp/xpcompute-bench-power.parquet) and reused.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import machine, table, timed
from statsmodels.stats.power import NormalIndPower

from xpcompute.inference import (
    MetricDesign,
    minimum_detectable_effect,
    power_at,
    preperiod_variance,
    sample_size,
)

MDE_REL = 0.01  # 1% relative lift
ALPHA, POWER = 0.05, 0.8


def write_table(path: str, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    pre = rng.gamma(2.0, 5.0, n)
    y = 0.8 * pre + rng.gamma(2.0, 3.0, n)  # correlated with its pre-period value, skewed like revenue
    pq.write_table(
        pa.table({"user": np.arange(n, dtype=np.int64), "y": y, "pre": pre}), path, row_group_size=1 << 20
    )


def moments(path: str) -> tuple[float, ...]:
    """One pass: n and the first and second moments of y and pre (no rows leave DuckDB)."""
    con = duckdb.connect()
    row = con.execute(
        "SELECT count(*), sum(y), sum(y * y), sum(pre), sum(pre * pre), sum(pre * y) FROM read_parquet(?)",
        [path],
    ).fetchone()
    con.close()
    assert row is not None
    return tuple(float(v) for v in row)


def ours(m: tuple[float, ...]) -> tuple[float, float, float]:
    n, sy, syy, sx, sxx, sxy = m
    pre = preperiod_variance(n, sy, syy, sx, sxx, sxy)
    design = MetricDesign.from_preperiod(pre)
    need = sample_size(design, MDE_REL, relative=True, power=POWER, alpha=ALPHA)
    at = power_at(design, MDE_REL, need.n_control_ceil, relative=True, alpha=ALPHA)
    mde = minimum_detectable_effect(design, n / 2, power=POWER, alpha=ALPHA)
    return need.n_control, at.power, mde.mde_relative


def peer(m: tuple[float, ...]) -> tuple[float, float, float]:
    n, sy, syy, sx, sxx, sxy = m
    mean = sy / n
    var = (syy - sy * sy / n) / (n - 1)
    cov = (sxy - sx * sy / n) / (n - 1)
    rho2 = cov * cov / (var * (sxx - sx * sx / n) / (n - 1))
    sd = math.sqrt(var * (1 - rho2))
    es = MDE_REL * mean / sd
    p = NormalIndPower()
    nobs = float(p.solve_power(effect_size=es, nobs1=None, alpha=ALPHA, power=POWER, ratio=1.0))
    pw = float(p.power(effect_size=es, nobs1=math.ceil(nobs), alpha=ALPHA, ratio=1.0))
    mde_es = float(p.solve_power(effect_size=None, nobs1=n / 2, alpha=ALPHA, power=POWER, ratio=1.0))
    return nobs, pw, mde_es * sd / mean


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--path", default="/tmp/xpcompute-bench-power.parquet")
    args = ap.parse_args()
    if not os.path.exists(args.path) or pq.ParquetFile(args.path).metadata.num_rows != args.users:
        t0 = time.perf_counter()
        write_table(args.path, args.users)
        print(f"wrote {args.users:,} rows to {args.path} in {time.perf_counter() - t0:.1f} s")

    t_pass, m = timed(lambda: moments(args.path), args.repeat)
    t_ours, r_ours = timed(lambda: ours(m), args.repeat)
    t_peer, r_peer = timed(lambda: peer(m), args.repeat)
    t_e2e, _ = timed(lambda: ours(moments(args.path)), args.repeat)
    t_e2e_peer, _ = timed(lambda: peer(moments(args.path)), args.repeat)
    pre = preperiod_variance(*m[:3], *m[3:])
    assert abs(r_ours[0] / r_peer[0] - 1) < 1e-8, (r_ours, r_peer)

    print(f"\n{machine()}; {args.users:,} users; median of {args.repeat}")
    print(
        f"variance {pre.variance:.4f} raw, {pre.cuped_variance:.4f} with CUPED (R^2 = {pre.r_squared:.4f}); "
        f"n per arm for a {MDE_REL:.0%} lift at {POWER:.0%} power: xpcompute {r_ours[0]:,.1f}, statsmodels {r_peer[0]:,.1f}; "
        f"MDE at n/2 per arm: {r_ours[2]:.5f} vs {r_peer[2]:.5f}"
    )
    rows = [
        ("one DuckDB pass (moments)", f"{t_pass:.3f}", f"{t_pass:.3f}"),
        ("power: sample size + power + MDE", f"{t_ours * 1e3:.2f} ms", f"{t_peer * 1e3:.2f} ms"),
        ("end to end from Parquet", f"{t_e2e:.3f}", f"{t_e2e_peer:.3f}"),
    ]
    print(table(rows, ("step (s)", "xpcompute.inference", "statsmodels NormalIndPower")))


if __name__ == "__main__":
    main()
