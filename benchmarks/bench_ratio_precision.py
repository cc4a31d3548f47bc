"""Precision of a ratio metric's standard error when the numerator is nearly proportional to the denominator.

    .venv/bin/python benchmarks/bench_ratio_precision.py [--units 4000]

Each row: units with Poisson(3) + 1 orders at prices ``mean +- spread``, cell b's orders ``spread / 2`` dearer.
The same rows are fitted twice by the library's ratio model: compressed without the residual column (the
textbook ``var(y) - 2 R cov(y, d) + R^2 var(d)`` from the moments, and the effect as the difference of the two
ratios: what the model did before stage 1 wrote ``{ratio}__res``) and as ``fit_table`` does now (with it). Both
are compared with the delta method evaluated exactly, in rationals, on the same per-unit values.
"""

from __future__ import annotations

import argparse
import math
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shared"))

from xpcompute.compression.lossless import compress_moments
from xpcompute.compression.transform import column_transforms
from xpcompute.models import fit_compressed, fit_table
from xpcompute.spec import FitSpec

CASES = [(100.0, 1.0), (100.0, 0.01), (100.0, 1e-4), (1e9, 1e-3)]


def exact(y: np.ndarray, d: np.ndarray, cell: np.ndarray) -> tuple[float, float]:
    """(effect, SE) of the delta method, exactly in rationals: b's ratio of totals less control's."""
    total, ratios = Fraction(0), {}
    for c in ("b", "control"):
        ys, ds = [Fraction(float(v)) for v in y[cell == c]], [Fraction(float(v)) for v in d[cell == c]]
        n = len(ys)
        ratios[c] = sum(ys) / sum(ds)
        resid = [a - ratios[c] * b for a, b in zip(ys, ds, strict=True)]
        mean = sum(resid) / n
        total += sum((e - mean) ** 2 for e in resid) / (n - 1) / (n * (sum(ds) / n) ** 2)
    return float(ratios["b"] - ratios["control"]), math.sqrt(float(total))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=4000)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    spec = FitSpec(metric="y", treatment="cell", model="ratio", denominator="d")
    print("| prices | relative error of the SE: textbook formula | with the residual column | of the effect: "
          "difference of the ratios | of the residuals' ratios |")
    print("|---|---|---|---|---|")
    for mean, spread in CASES:
        cell = np.where(rng.random(args.units) < 0.5, "control", "b")
        d = rng.poisson(3, args.units) + 1.0
        y = np.array([float(np.sum(mean + spread * rng.normal(0, 1, int(k)))) for k in d])
        y += np.where(cell == "b", 0.5 * spread * d, 0.0)
        table = pa.table({"cell": cell, "y": y, "d": d})
        plain = compress_moments(table, ["cell"], {"y": ["d"]}, transforms=column_transforms(table, ["y", "d"]))
        (textbook,) = fit_compressed(plain, spec)
        (now,) = fit_table(table, spec).records
        effect, se = exact(y, d, cell)
        errors = [abs(r.se / se - 1) if math.isfinite(r.se) else float("nan") for r in (textbook, now)]
        errors += [abs(r.effect / effect - 1) for r in (textbook, now)]
        print(f"| {mean:g} +- {spread:g} | " + " | ".join(f"{e:.1e}" for e in errors) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
