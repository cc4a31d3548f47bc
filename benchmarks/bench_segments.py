"""Segment discovery benchmark: 4 dimensions, from the segment cube, at up to 10M users (target: under 2 s).

The table (``xpcompute.segments.simulate.Planted``: user id, two cells, country/device/plan/tenure, the metric
and a pre-period covariate, a planted effect in country=US & device=tv) is generated in memory (not timed).
Timed:

* the segment cube, once: halves by MD5 of the user id (DuckDB SQL) and the C++ group-by by cell x 4 dimensions x
  half (reported; the target is about what follows, "once the cube exists");
* discovery from the cube: decode the stored cube (Parquet with page checksums, as the service stores it) and run
  ``discover`` (4 CATE Wald tests, the honest tree, BH): the target, under 2 s at 10M users;
* peers in the same run: statsmodels OLS ``y ~ C(dim) * C(cell) + pre`` with HC1 and a chi-square ``wald_test`` of
  the interactions, once per dimension, on a subsample of ``--sub-users`` (its full-size time is extrapolated
  linearly and labelled so), checked against xpcompute on the same subsample; and DuckDB computing, over the full
  table, the per-dimension per-cell means and variances a person would compare by hand (4 GROUP BY queries).

Default: 1M users (about a minute). ``--users 10000000`` for the issue's figure.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa
from common import machine, table, timed

from xpcompute.compression.schema import CompressedTable
from xpcompute.coordinator.stored import encode_derived
from xpcompute.segments.cube import build_cube
from xpcompute.segments.discovery import SegmentSettings, discover, heterogeneity_tests
from xpcompute.segments.simulate import DIMENSIONS, Planted

DIMS = list(DIMENSIONS)


def statsmodels_wald(df: object) -> dict[str, tuple[float, float]]:
    import statsmodels.formula.api as smf

    out = {}
    for dim in DIMS:
        fit = smf.ols(f"y ~ C({dim}) * C(cell, Treatment('control')) + pre", df).fit(cov_type="HC1")
        names = list(fit.params.index)
        tested = [i for i, nm in enumerate(names) if ":" in nm]
        r = np.zeros((len(tested), len(names)))
        r[np.arange(len(tested)), tested] = 1.0
        w = fit.wald_test(r, use_f=False, scalar=True)
        out[dim] = (float(w.statistic), float(w.pvalue))
    return out


def duckdb_groupby(data: pa.Table) -> int:
    import duckdb

    con = duckdb.connect()
    con.register("t", data.select(["cell", *DIMS, "y"]))
    rows = 0
    for dim in DIMS:
        rows += len(con.sql(f"SELECT CAST({dim} AS VARCHAR) AS v, CAST(cell AS VARCHAR) AS c, count(*), avg(y), "
                            f"var_samp(y) FROM t GROUP BY 1, 2").fetchall())
    con.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--sub-users", type=int, default=200_000, help="users in the statsmodels subsample")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    t0 = time.perf_counter()
    data = Planted(users=args.users, seed=1, base_effect=0.1, planted_effect=0.2).table()
    gen_s = time.perf_counter() - t0
    cube_s, cube = timed(lambda: build_cube(data, "user_id", "cell", DIMS, {"y": ["pre"]}), 1)
    stored = encode_derived(cube)

    def from_store() -> object:
        import pyarrow.parquet as pq

        decoded = CompressedTable.from_arrow(pq.read_table(pa.BufferReader(stored), page_checksum_verification=True))
        return discover(decoded, "cell", ["y"])

    discover(cube, "cell", ["y"])  # warm-up (imports)
    disc_s, report = timed(lambda: discover(cube, "cell", ["y"]), args.repeat)
    load_s, _ = timed(from_store, args.repeat)
    duck_s, _ = timed(lambda: duckdb_groupby(data), min(args.repeat, 3))

    sub = data.slice(0, min(args.sub_users, data.num_rows))
    sub_df = sub.select(["cell", *DIMS, "y", "pre"]).to_pandas()
    for c in ["cell", *DIMS]:
        sub_df[c] = sub_df[c].astype(str)
    sm_s, sm = timed(lambda: statsmodels_wald(sub_df), 1)

    def xp_sub() -> dict[str, tuple[float, float]]:
        c = build_cube(sub, "user_id", "cell", DIMS, {"y": ["pre"]})
        settings = SegmentSettings(min_units=2)
        return {d: (t.chi2 or np.nan, t.p_value or np.nan)
                for d in DIMS for t in heterogeneity_tests(c, "y", "cell", d, "control", settings)}

    xp_sub_s, xp = timed(xp_sub, args.repeat)
    worst = max(abs(xp[d][0] - sm[d][0]) / abs(sm[d][0]) for d in DIMS)
    scale = data.num_rows / sub.num_rows

    print(f"Segment discovery benchmark on {machine()}; median of {args.repeat} runs")
    print(f"{args.users:,} users, 4 dimensions ({', '.join(f'{d} {len(v)}' for d, v in DIMENSIONS.items())} values), "
          f"2 cells; table generated in {gen_s:.1f} s (not timed); cube {cube.table.num_rows:,} rows "
          f"({len(stored) / 2**10:.0f} KiB stored); {report.tested} tests, {report.discoveries} discoveries, "
          f"segments: {', '.join(s.label for s in report.segments if s.discovered) or 'none'}")
    rows: list[tuple[str, ...]] = [
        (f"xpcompute: build the segment cube from {args.users:,} rows (once)", f"{cube_s:.3f}"),
        ("xpcompute: discovery from the cube in memory", f"{disc_s:.3f}"),
        ("xpcompute: decode the stored cube + discovery (TARGET < 2 s)", f"{load_s:.3f}"),
        (f"DuckDB: per-dimension per-cell mean/variance GROUP BYs over {args.users:,} rows", f"{duck_s:.3f}"),
        (f"xpcompute: cube + 4 Wald tests, subsample {sub.num_rows:,} rows", f"{xp_sub_s:.3f}"),
        (f"statsmodels OLS HC1 + wald_test x 4, subsample {sub.num_rows:,} rows", f"{sm_s:.3f}"),
        (f"statsmodels, {args.users:,} rows EXTRAPOLATED (subsample x {scale:.0f})", f"{sm_s * scale:.1f}"),
    ]
    print(table(rows, ("step", "seconds")))
    print(f"ratios: DuckDB group-bys / discovery from the stored cube = {duck_s / load_s:,.1f}x; "
          f"statsmodels / xpcompute on the subsample (same rows, from rows) = {sm_s / xp_sub_s:,.1f}x; "
          f"statsmodels EXTRAPOLATED / discovery from the cube = {sm_s * scale / load_s:,.0f}x")
    print(f"Wald chi2 on the subsample, max relative difference to statsmodels: {worst:.2e}")
    print(f"target < 2 s from the cube: {'met' if load_s < 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
