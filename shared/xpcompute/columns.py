"""The columns stage 1 derives from a ratio metric (their suffixes, and the residual's constant), in one module
that imports nothing heavy.

Why here: the SQL builders and metrics (``metrics/base.py``) write these columns, and the compression layout
(``compression/schema.py``, which loads pyarrow), local fits (``models/fit.py``) and the ratio model read them;
the metrics must not load pyarrow, and neither the compression nor the fit function should load the metrics.
"""

from __future__ import annotations

import math
import struct

#: the ratio's denominator (per unit), next to its numerator ``{ratio}``
DENOMINATOR_SUFFIX = "__den"
#: a ratio's numerator less a table-wide multiple of its denominator (``columns.residual_coefficient``):
#: what keeps the ratio's variance and effect exact when the numerator is nearly proportional to the denominator
RESIDUAL_SUFFIX = "__res"
#: the same for the ratio of its CUPED covariates (pre-period numerator over pre-period denominator)
COVARIATE_RESIDUAL_SUFFIX = "__xres"

def is_residual(column: str) -> bool:
    """Whether ``column`` is a ratio's residual column (of the ratio, or of its CUPED covariates)."""
    return column.endswith((RESIDUAL_SUFFIX, COVARIATE_RESIDUAL_SUFFIX))


#: ``residual_coefficient`` keeps a ratio within these magnitudes, else 0 (the residual is the numerator itself)
RESIDUAL_RANGE = (1e-30, 1e30)
#: and 0 where a numerator, or c times a denominator, exceeds this (their difference could overflow)
RESIDUAL_LIMIT = 1e300


def residual_coefficient(sum_numerator: float, sum_denominator: float, largest_numerator: float = 0.0,
                         largest_denominator: float = 0.0) -> float:
    """The constant ``c`` of a ratio's residual column ``numerator - c * denominator``: the table's ratio of
    totals rounded to float32 (24 bits), or 0 where that ratio is undefined or outside ``RESIDUAL_RANGE``, or
    where ``numerator - c * denominator`` could overflow (``largest_*``: the largest absolute values; beyond
    ``RESIDUAL_LIMIT``).

    Why: when the numerator is nearly proportional to the denominator (orders of $100.00 +- 0.01 per order),
    the ratio's delta-method variance ``var(y) - 2 R cov(y, d) + R^2 var(d)`` cancels all but a few digits of
    its terms (8 lost at a spread of 1e-4 of the mean, all at 1e-8). The same variance is that of
    ``y - c d`` against ``d`` with ``R - c`` in place of ``R``, and with ``c`` within 2**-24 of ``R`` nothing
    large is left to cancel. Any ``c`` is exact algebra; rounding it to 24 bits makes it the same constant on
    every engine whatever order each sums in (stage 1 computes it in SQL as ``sql/stage1.residual_columns``).
    """
    if not sum_denominator or not math.isfinite(sum_numerator) or not math.isfinite(sum_denominator):
        return 0.0
    ratio = sum_numerator / sum_denominator
    low, high = RESIDUAL_RANGE
    if not low <= abs(ratio) <= high or largest_numerator > RESIDUAL_LIMIT or \
            largest_denominator * abs(ratio) > RESIDUAL_LIMIT:
        return 0.0
    return float32(ratio)


def float32(x: float) -> float:
    """``x`` rounded to the nearest float32 (an infinity beyond its range)."""
    try:
        return float(struct.unpack("f", struct.pack("f", x))[0])
    except OverflowError:
        return math.copysign(math.inf, x)
