"""Post-processing across an analysis: multiple-testing corrections and the sample-ratio check.

Corrections run over every record of an analysis at once (metrics x slices x
cells x segments/periods), which is the family a reader of a scorecard scans.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from xpcompute.errors import InputError
from xpcompute.records import ResultRecord

Correction = Literal["bh", "holm", "none"]


def benjamini_hochberg(p: NDArray[np.float64]) -> NDArray[np.float64]:
    """BH step-up adjusted p-values (false discovery rate), as ``statsmodels multipletests(method='fdr_bh')``."""
    m = len(p)
    if m == 0:
        return p.copy()
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def holm(p: NDArray[np.float64]) -> NDArray[np.float64]:
    """Holm step-down adjusted p-values (family-wise error), as ``multipletests(method='holm')``."""
    m = len(p)
    if m == 0:
        return p.copy()
    order = np.argsort(p)
    ranked = p[order] * (m - np.arange(m))
    adjusted = np.maximum.accumulate(np.minimum(ranked, 1.0))
    out = np.empty(m)
    out[order] = adjusted
    return out


def adjust_pvalues(records: Sequence[ResultRecord], method: Correction = "bh") -> list[ResultRecord]:
    """Records with ``p_value_adjusted`` filled across the whole family; missing p-values stay missing."""
    if method not in ("bh", "holm", "none"):
        raise InputError(f"unknown correction {method!r}; use bh, holm or none")
    p = np.array([np.nan if r.p_value is None else r.p_value for r in records], dtype=np.float64)
    ok = np.isfinite(p)
    adjusted = np.full(len(p), np.nan)
    if method == "none":
        adjusted[ok] = p[ok]
    else:
        adjusted[ok] = (benjamini_hochberg if method == "bh" else holm)(p[ok])
    return [
        r.model_copy(update={"p_value_adjusted": float(a) if np.isfinite(a) else None, "correction": method})
        for r, a in zip(records, adjusted, strict=True)
    ]


@dataclass(frozen=True)
class SRMResult:
    """Sample-ratio-mismatch chi-square test of observed cell counts against the planned split."""

    chi2: float
    df: int
    p_value: float
    observed: dict[str, float]
    expected: dict[str, float]
    mismatch: bool


def srm_test(
    counts: Mapping[str, float], expected_shares: Mapping[str, float] | None = None, threshold: float = 0.001
) -> SRMResult:
    """Chi-square goodness of fit of cell counts to the planned shares (equal split by default).

    A p-value below ``threshold`` (0.001 is the common convention) flags a
    mismatch: the assignment or logging is broken and effects are suspect.
    """
    cells = sorted(counts)
    if len(cells) < 2:
        raise InputError("the sample-ratio check needs at least two cells")
    shares = expected_shares or {c: 1.0 for c in cells}
    missing = [c for c in cells if c not in shares]
    if missing:
        raise InputError(f"no planned share for cells {', '.join(missing)}")
    obs = np.array([counts[c] for c in cells], dtype=np.float64)
    share = np.array([shares[c] for c in cells], dtype=np.float64)
    if (share <= 0).any():
        raise InputError("planned shares must be positive")
    exp = obs.sum() * share / share.sum()
    chi2, p = stats.chisquare(obs, exp)
    return SRMResult(
        chi2=float(chi2),
        df=len(cells) - 1,
        p_value=float(p),
        observed=dict(zip(cells, obs.tolist(), strict=True)),
        expected=dict(zip(cells, exp.tolist(), strict=True)),
        mismatch=bool(p < threshold),
    )
