"""Engine benchmarks (issue 2): OLS+HC1 with ~40 covariate columns, CATE, compression ratio, peak memory.

    .venv/bin/python benchmarks/bench_engine.py --rows 10000000

Peers run side by side in the same process on the same data: statsmodels OLS
(HC1, dummies) and pyfixest feols with the categorical covariates absorbed as
fixed effects (HC1), when pyfixest is installed (`pip install pyfixest`).
Figures print as a markdown table to paste into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

import numpy as np
import pyarrow as pa
from common import machine, peak_rss_mb, reset_peak_rss, rss_mb, table, timed

from xpcompute.models import fit_compressed, fit_table, model_data, prepare
from xpcompute.native import backend
from xpcompute.spec import FitSpec

CARDINALITIES = {"country": 30, "device": 8, "tenure": 4, "plan": 2, "is_new": 2}


def make_data(rows: int, seed: int = 0) -> pa.Table:
    """Users with 5 categorical covariates (41 dummies), a continuous pre-period covariate, two cells."""
    rng = np.random.default_rng(seed)
    cols: dict[str, pa.Array] = {}
    effect = np.zeros(rows)
    for name, card in CARDINALITIES.items():
        idx = rng.integers(0, card, size=rows).astype(np.int32)
        dictionary = pa.array([f"{name}_{i:02d}" for i in range(card)])
        cols[name] = pa.DictionaryArray.from_arrays(pa.array(idx), dictionary)
        effect += 0.05 * idx / card
    cell = rng.integers(0, 2, size=rows).astype(np.int32)
    cols["cell"] = pa.DictionaryArray.from_arrays(pa.array(cell), pa.array(["control", "treatment"]))
    pre = rng.gamma(2.0, 1.0, size=rows)
    cols["pre"] = pa.array(pre)
    cols["y"] = pa.array(1.0 + 0.02 * cell + effect + 0.7 * pre + rng.normal(size=rows) * (1 + 0.2 * pre))
    return pa.table(cols)


class Rows(list[tuple[str, ...]]):
    """Result rows, echoed to stderr as they land so a run cut short still reports."""

    def append(self, row: tuple[str, ...]) -> None:
        print(" | ".join(row), file=sys.stderr, flush=True)
        super().append(row)


def column_bytes(t: pa.Table, names: list[str]) -> int:
    return sum(t.column(n).nbytes for n in names)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--segments", type=int, default=120)
    ap.add_argument("--skip-statsmodels", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"# engine benchmark: {args.rows:,} rows; {machine()}; native backend: {backend()}", file=sys.stderr)

    data = make_data(args.rows)
    covs = (*tuple(CARDINALITIES), "pre")
    spec = FitSpec(metric="y", treatment="cell", model="ols", covariates=covs)
    rows = Rows()

    # ours, end to end from Arrow columns (compression included)
    gc.collect()
    base_rss = rss_mb()
    reset_peak_rss()
    t_ours, out = timed(lambda: fit_table(data, spec), args.repeat)
    peak = peak_rss_mb() - base_rss
    in_bytes = column_bytes(data, ["cell", *covs, "y"]) / 2**20
    rec = out.records[0]
    compressed = out.compressed
    t_fit, _ = timed(lambda: fit_compressed(compressed, spec), max(args.repeat, 5))
    k = 1 + sum(c - 1 for c in CARDINALITIES.values()) + 1 + 1
    rows.append(("xpcompute OLS+HC1, end to end (compress + fit)", f"{t_ours:.3f} s", "1.0x"))
    rows.append(("xpcompute fit on compressed rows alone", f"{1000 * t_fit:.1f} ms", ""))
    rows.append(("compression ratio (rows / compressed rows)", f"{compressed.compression_ratio:,.0f}x", f"{compressed.n_groups:,} rows"))
    rows.append(("peak extra memory / input column bytes", f"{peak:,.0f} MiB / {in_bytes:,.0f} MiB", f"{peak / in_bytes:.2f}x"))
    print(f"ours: effect={rec.effect:.6f} se={rec.se:.6f} K={k}", file=sys.stderr)

    # pyfixest with fixed effects absorbed
    try:
        import pyfixest as pf

        df = data.to_pandas()
        for c in [*CARDINALITIES, "cell"]:
            df[c] = df[c].astype(str)
        fml = "y ~ C(cell, Treatment('control')) + pre | " + " + ".join(CARDINALITIES)
        pf.feols(fml, data=df.head(10_000), vcov="hetero")  # warm-up (JIT)
        t_pf, fit = timed(lambda frame=df: pf.feols(fml, data=frame, vcov="hetero"), 1)
        coef = fit.coef().iloc[0]
        se = fit.se().iloc[0]
        rows.append(("pyfixest feols, 5 FE absorbed, HC1", f"{t_pf:.2f} s", f"{t_pf / t_ours:.0f}x slower"))
        print(f"pyfixest: effect={coef:.6f} se={se:.6f} (rel diff {abs(coef / rec.effect - 1):.1e}, {abs(se / rec.se - 1):.1e})", file=sys.stderr)
        del df
    except ImportError:
        rows.append(("pyfixest", "not installed", ""))
    gc.collect()

    if not args.skip_statsmodels:
        import statsmodels.api as sm

        def statsmodels_fit() -> object:
            cols = [np.ones(args.rows), (data.column("cell").combine_chunks().indices.to_numpy() == 1).astype(float)]
            for name in CARDINALITIES:
                idx = data.column(name).combine_chunks().indices.to_numpy()
                cols += [(idx == j).astype(float) for j in range(1, CARDINALITIES[name])]
            cols.append(data.column("pre").to_numpy())
            x = np.column_stack(cols)
            return sm.OLS(data.column("y").to_numpy(), x).fit(cov_type="HC1")

        t_sm, fit = timed(statsmodels_fit, 1)
        rows.append(("statsmodels OLS + HC1 (dummies)", f"{t_sm:.1f} s", f"{t_sm / t_ours:.0f}x slower"))
        print(f"statsmodels: effect={fit.params[1]:.6f} se={fit.bse[1]:.6f} (rel diff {abs(fit.params[1] / rec.effect - 1):.1e}, "
              f"{abs(fit.bse[1] / rec.se - 1):.1e})", file=sys.stderr)
        gc.collect()

    # CATE: 100+ segments, one saturated model with HC1
    rng = np.random.default_rng(1)
    seg = pa.DictionaryArray.from_arrays(
        pa.array(rng.integers(0, args.segments, size=args.rows).astype(np.int32)),
        pa.array([f"s{i:03d}" for i in range(args.segments)]),
    )
    cate_data = pa.table({"cell": data.column("cell"), "segment": seg, "y": data.column("y")})
    cate_spec = FitSpec(metric="y", treatment="cell", model="cate", segment="segment")
    t_cate, cate = timed(lambda: fit_table(cate_data, cate_spec), args.repeat)
    n_cates = sum(1 for r in cate.records if r.segment)
    rows.append((f"{n_cates} CATEs with HC1 SEs, end to end", f"{t_cate:.3f} s", "target < 0.5 s"))
    t0 = time.perf_counter()
    compressed_cate = prepare(cate_data, cate_spec)
    model_data(compressed_cate, cate_spec)
    rows.append(("  of which compression", f"{time.perf_counter() - t0:.3f} s", ""))

    print(table(rows, ("what", "time / value", "ratio")))


if __name__ == "__main__":
    main()
