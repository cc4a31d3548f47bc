"""Quantile treatment effects (p10/p50/p90/p99, 1000 Poisson-bootstrap replicates) on 10M rows via ntile:1000.

xpcompute: raw Arrow columns -> ``compress_values(..., ntile:1000)`` (pooled
quantile cuts + C++ hash group-by to about 2 x 1000 rows) -> ``fit_compressed``
(quantiles interpolated inside the n-tile buckets; 1000 Poisson replicates of
the compressed rows from ``native.poisson_weights``, all replicates' quantiles
at once with ``models.quantile.grouped_quantiles``).

Comparison: a plain NumPy bootstrap (multinomial resampling with
``rng.integers`` + ``np.quantile(method="inverted_cdf")`` per cell and
replicate) cannot run 1000 replicates on 10M rows here in reasonable time, so it
runs on a random subsample of ``--sub`` rows with ``--numpy-reps`` replicates.
Its time is reported as measured, then scaled linearly to 1000 replicates and
to the full row count: the full-size figure is an EXTRAPOLATION (labelled so;
NumPy's cost is at least linear in rows and replicates). xpcompute also runs on
the same subsample for a measured like-for-like ratio.

A second table shows the effect of N: compression time, groups, QTE and its
bootstrap SE at p50/p99, and the Mann–Whitney p-value, against the exact
values on the full data (exact QTE: ``np.quantile`` on all rows; exact
Mann–Whitney: lossless distribution compression).

A third measurement times one quantile fit on the ntile:1000 table (the service's unit of work),
median of ``--fit-repeats`` runs: the whole fit, and its bootstrap three ways: the former route
(``native.poisson_weights`` + NumPy ``grouped_quantiles`` per cell), the C++ ogive drawing every
bucket (``window_sd=0``; checked identical to the former route), and the C++ windowed draws the model
uses (``models.quantile.WINDOW_SD``; the same bootstrap in law, its SEs printed next to the full
draws'). ``--fit-only`` runs just that; ``--threads`` sets the C++ threads (0 = all).

Run: ``python benchmarks/bench_quantile.py [--rows 10000000]``;
``XPCOMPUTE_NATIVE=reference`` selects the NumPy specs of the primitives (slow).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
from common import machine, peak_rss_mb, table

from xpcompute import native
from xpcompute.compression.distribution import DistributionView, compress_values
from xpcompute.compression.schema import CompressedTable
from xpcompute.models import fit_compressed
from xpcompute.models.fit import model_data
from xpcompute.models.mannwhitney import cell_samples
from xpcompute.models.quantile import WINDOW_SD
from xpcompute.native.reference import grouped_quantiles
from xpcompute.records import ResultRecord
from xpcompute.spec import CompressSpec, FitSpec

PROBS = (0.1, 0.5, 0.9, 0.99)
CELLS = ("control", "treatment")


def make_data(rows: int, seed: int = 0) -> pa.Table:
    """Skewed revenue-like metric: 20% zeros, log-normal otherwise, +2% multiplicative lift in treatment."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, 2, size=rows)
    y = rng.lognormal(mean=0.02 * idx, sigma=1.2, size=rows)
    y[rng.random(rows) < 0.2] = 0.0
    cell = pa.array(list(CELLS)).take(pa.array(idx))
    return pa.table({"cell": cell, "y": y})


def spec(compress: str, reps: int = 1000, probs: tuple[float, ...] = PROBS, model: str = "quantile") -> FitSpec:
    return FitSpec(
        metric="y", treatment="cell", model=model, quantiles=probs, bootstrap_reps=reps,
        compress=CompressSpec.parse(compress),
    )


def xp_qte(data: pa.Table, compress: str, reps: int = 1000) -> tuple[list[ResultRecord], float, float, int]:
    """Records, compression seconds, fit seconds, compressed rows."""
    t0 = time.perf_counter()
    ct = compress_values(data, "y", ["cell"], compress=CompressSpec.parse(compress))
    t1 = time.perf_counter()
    records = fit_compressed(ct, spec(compress, reps))
    t2 = time.perf_counter()
    return records, t1 - t0, t2 - t1, ct.n_groups


def numpy_bootstrap(data: pa.Table, reps: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """Plain NumPy: per replicate and cell, resample rows with replacement and take the quantiles."""
    y = data.column("y").to_numpy()
    cell = np.asarray(data.column("cell").to_pylist())
    groups = [y[cell == c] for c in CELLS]
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    out = np.empty((reps, len(PROBS)))
    for b in range(reps):
        qs = [np.quantile(g[rng.integers(0, len(g), len(g))], PROBS, method="inverted_cdf") for g in groups]
        out[b] = qs[1] - qs[0]
    return out.std(axis=0, ddof=1), time.perf_counter() - t0


def numpy_route(ct: CompressedTable, reps: int, seed: int = 0) -> np.ndarray:
    """The bootstrap as it ran before the C++ port: C++ Poisson weights, NumPy ogive per cell."""
    data = model_data(ct, spec("ntile:1000", reps))
    samples = cell_samples(data, DistributionView.of(ct, "y", "quantile"))
    probs = np.asarray(PROBS)
    cells = tuple(samples)
    counts = np.concatenate([samples[c].counts for c in cells])
    weights = native.poisson_weights(counts, reps, seed)
    out = np.full((reps, len(cells), len(probs)), np.nan)
    start = 0
    for k, c in enumerate(cells):
        s = samples[c]
        stop = start + len(s.values)
        out[:, k, :] = grouped_quantiles(s.values, s.lower, s.upper, weights[:, start:stop], probs)
        start = stop
    return out


def fit_timing(data: pa.Table, reps: int, repeats: int, threads: int = 0) -> None:
    """Median time of one QTE fit (ntile:1000), and of its bootstrap by the former, the full and the windowed route."""
    ct = compress_values(data, "y", ["cell"], compress=CompressSpec.parse("ntile:1000"))
    s = spec("ntile:1000", reps)
    samples = cell_samples(model_data(ct, s), DistributionView.of(ct, "y", "quantile"))
    probs = np.asarray(PROBS)
    cells = tuple(samples)
    values = np.concatenate([samples[c].values for c in cells])
    lower = np.concatenate([samples[c].lower for c in cells])  # type: ignore[arg-type]
    upper = np.concatenate([samples[c].upper for c in cells])  # type: ignore[arg-type]
    counts = np.concatenate([samples[c].counts for c in cells])
    groups = np.concatenate([np.full(len(samples[c].values), k, dtype=np.int32) for k, c in enumerate(cells)])

    def boot(window_sd: float) -> np.ndarray:
        return native.bootstrap_grouped_quantiles(values, lower, upper, counts, groups, len(cells), probs, reps, 0,
                                                  threads, window_sd)

    def median_ms(fn: Callable[[], object]) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 1000 * float(np.median(times))

    old, full, fast = numpy_route(ct, reps), boot(0.0), boot(WINDOW_SD)
    same = bool(np.array_equal(full, old, equal_nan=True))
    fit_ms = median_ms(lambda: fit_compressed(ct, s))
    numpy_ms = median_ms(lambda: numpy_route(ct, reps))
    full_ms = median_ms(lambda: boot(0.0))
    fast_ms = median_ms(lambda: boot(WINDOW_SD))
    print(f"\none quantile fit on ntile:1000 ({ct.n_groups} compressed rows, {counts.sum() / ct.n_groups:,.0f} rows "
          f"each on average), {reps} replicates, quantiles {PROBS}, median of {repeats}, threads={threads or 'all'}")
    print(table([
        ("whole fit (fit_compressed: windowed C++ bootstrap)", f"{fit_ms:.1f}"),
        ("bootstrap, former route: C++ poisson_weights + NumPy ogive", f"{numpy_ms:.1f}"),
        (f"bootstrap, C++ every bucket drawn (identical to former: {same})", f"{full_ms:.1f}"),
        (f"bootstrap, C++ windowed (window_sd={WINDOW_SD:g}, the model's)", f"{fast_ms:.1f}"),
        ("former whole fit (estimated: fit - windowed + former bootstrap)", f"{fit_ms - fast_ms + numpy_ms:.1f}"),
    ], ("step", "ms")))
    sd_full = np.nanstd(full[:, 1] - full[:, 0], axis=0, ddof=1)
    sd_fast = np.nanstd(fast[:, 1] - fast[:, 0], axis=0, ddof=1)
    print("bootstrap SE of the QTE, every bucket / windowed: "
          + ", ".join(f"p{p * 100:g} {a:.5f}/{b:.5f}" for p, a, b in zip(PROBS, sd_full, sd_fast, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--sub", type=int, default=200_000, help="rows in the NumPy-bootstrap subsample")
    parser.add_argument("--numpy-reps", type=int, default=100, help="replicates actually run by NumPy")
    parser.add_argument("--reps", type=int, default=1000)
    parser.add_argument("--fit-repeats", type=int, default=15, help="runs of one fit for the per-fit timing")
    parser.add_argument("--fit-only", action="store_true", help="only the per-fit timing")
    parser.add_argument("--threads", type=int, default=0, help="C++ threads of the per-fit bootstrap timings (0 = all)")
    args = parser.parse_args()
    if args.fit_only:
        fit_timing(make_data(args.rows), args.reps, args.fit_repeats, args.threads)
        return

    data = make_data(args.rows)
    input_mb = data.nbytes / 2**20
    xp_qte(data.slice(0, 100_000), "ntile:1000", 50)  # warm-up (imports, page faults)
    records, comp_s, fit_s, groups = xp_qte(data, "ntile:1000", args.reps)
    total_s = comp_s + fit_s

    sub = data.take(pa.array(np.sort(np.random.default_rng(1).choice(args.rows, args.sub, replace=False))))
    sub_records, sub_comp, sub_fit, _ = xp_qte(sub, "ntile:1000", args.reps)
    np_se, np_s = numpy_bootstrap(sub, args.numpy_reps)
    np_sub_1000 = np_s * args.reps / args.numpy_reps
    np_full_est = np_sub_1000 * args.rows / args.sub

    print(f"Quantile benchmark on {machine()}; backend={native.backend()}")
    print(f"{args.rows:,} rows ({input_mb:.0f} MiB of input columns), 2 cells, quantiles {PROBS}, {args.reps} Poisson "
          f"bootstrap replicates; ntile:1000 -> {groups} compressed rows (ratio {args.rows / groups:,.0f}x); "
          f"peak RSS {peak_rss_mb():.0f} MiB")
    rows: list[tuple[str, ...]] = [
        (f"xpcompute, {args.rows:,} rows: compress ntile:1000", f"{comp_s:.3f}"),
        (f"xpcompute, {args.rows:,} rows: QTE fit, {args.reps} reps", f"{fit_s:.3f}"),
        (f"xpcompute, {args.rows:,} rows: end to end", f"{total_s:.3f}"),
        (f"xpcompute, subsample {args.sub:,} rows: end to end, {args.reps} reps", f"{sub_comp + sub_fit:.3f}"),
        (f"NumPy bootstrap, subsample {args.sub:,} rows, {args.numpy_reps} reps (measured)", f"{np_s:.3f}"),
        (f"NumPy bootstrap, subsample, {args.reps} reps (scaled x{args.reps / args.numpy_reps:.0f} in reps)",
         f"{np_sub_1000:.1f}"),
        (f"NumPy bootstrap, {args.rows:,} rows, {args.reps} reps EXTRAPOLATED (x{args.rows / args.sub:.0f} in rows)",
         f"{np_full_est:.0f}"),
    ]
    print(table(rows, ("step", "seconds")))
    print(table(
        [(f"p{(r.quantile or 0.0) * 100:g}", f"{r.effect:.5f}", f"{r.se:.5f}", f"[{r.ci_low:.5f}, {r.ci_high:.5f}]",
          f"{r.p_value:.3g}" if r.p_value is not None else "-", f"{r.relative_effect:+.4f}") for r in records],
        ("quantile", "QTE", "bootstrap SE", "95% percentile CI", "p", "relative"),
    ))
    print(f"ratio on the subsample (NumPy scaled to {args.reps} reps / xpcompute measured): "
          f"{np_sub_1000 / (sub_comp + sub_fit):,.0f}x")
    print(f"ratio at full size (NumPy EXTRAPOLATED / xpcompute measured): {np_full_est / total_s:,.0f}x")
    print("subsample SEs, xpcompute (ntile:1000, Poisson) vs NumPy (exact rows, multinomial): "
          + ", ".join(f"p{int(p * 100)} {r.se:.4f}/{s:.4f}" for p, r, s in zip(PROBS, sub_records, np_se, strict=True)))

    # ---- the effect of N, against the exact full-data values ------------------
    y = data.column("y").to_numpy()
    cell = np.asarray(data.column("cell").to_numpy(zero_copy_only=False))
    exact_qte = [
        float(np.quantile(y[cell == "treatment"], p, method="inverted_cdf")
              - np.quantile(y[cell == "control"], p, method="inverted_cdf"))
        for p in (0.5, 0.99)
    ]
    del cell
    t0 = time.perf_counter()
    lossless = compress_values(data, "y", ["cell"])
    (mw_exact,) = fit_compressed(lossless, spec("lossless", model="mannwhitney"))
    mw_s = time.perf_counter() - t0
    print(f"\nexact (full data): QTE p50 {exact_qte[0]:.5f}, p99 {exact_qte[1]:.4f}; Mann–Whitney p {mw_exact.p_value:.4e} "
          f"(lossless: {lossless.n_groups:,} rows, compress + test {mw_s:.2f} s)")
    n_rows: list[tuple[str, ...]] = []
    for n_b in (10, 100, 1000, 10_000):
        c = f"ntile:{n_b}"
        t0 = time.perf_counter()
        ct = compress_values(data, "y", ["cell"], compress=CompressSpec.parse(c))
        comp = time.perf_counter() - t0
        q = {r.quantile: r for r in fit_compressed(ct, spec(c, args.reps, (0.5, 0.99)))}
        (mw,) = fit_compressed(ct, spec(c, model="mannwhitney"))
        assert mw.p_value is not None and mw_exact.p_value is not None
        n_rows.append((
            str(n_b), f"{ct.n_groups:,}", f"{comp:.2f}",
            f"{q[0.5].effect:.5f} ({q[0.5].effect - exact_qte[0]:+.1e})", f"{q[0.5].se:.5f}",
            f"{q[0.99].effect:.4f} ({q[0.99].effect - exact_qte[1]:+.1e})", f"{q[0.99].se:.4f}",
            f"{mw.p_value:.4e}", f"{abs(mw.p_value - mw_exact.p_value):.1e}",
        ))
    print(table(n_rows, ("N", "groups", "compress s", "QTE p50 (vs exact)", "SE p50", "QTE p99 (vs exact)", "SE p99",
                         "MW p", "|Δp| vs exact")))
    fit_timing(data, args.reps, args.fit_repeats, args.threads)


if __name__ == "__main__":
    main()
