"""Post-processing across an analysis: multiple-testing corrections and the sample-ratio check.

By default a correction runs over every record of an analysis at once (metrics x
slices x cells x segments/periods), which is the family a reader of a scorecard
scans. A *scope* narrows the families to follow the design: within one metric
across its cells, across the slices of one comparison, or across the goal metrics
only (the risk-aware decision rule corrects alpha across goals and nothing else).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from xpcompute.errors import InputError
from xpcompute.lazy import lazy
from xpcompute.records import ResultRecord

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
else:  # loaded on first use: the API imports this module for its types, and most of its requests compute nothing
    np = lazy("numpy")

Correction = Literal["bh", "holm", "hochberg", "bonferroni", "sidak", "holm-sidak", "none"]
"""Benjamini-Hochberg (FDR); Holm, Hochberg, Bonferroni, Sidak, Holm-Sidak (family-wise); or none."""
CORRECTIONS: tuple[str, ...] = get_args(Correction)

CorrectionScope = Literal["analysis", "metric", "slice"]
"""Which records form one family: the whole analysis; one metric's cells (per slice, model and
segment/period); or one comparison's slices (per metric, model, cell and segment/period). A set
of metric names instead of a scope name makes the goal metrics the one family (see ``adjust_pvalues``)."""
SCOPES: tuple[str, ...] = get_args(CorrectionScope)


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


def hochberg(p: NDArray[np.float64]) -> NDArray[np.float64]:
    """Hochberg step-up adjusted p-values (family-wise error under independence or positive dependence).

    As ``multipletests(method='simes-hochberg')``: more powerful than Holm, valid where BH is.
    """
    m = len(p)
    if m == 0:
        return p.copy()
    order = np.argsort(p)
    ranked = p[order] * (m - np.arange(m))
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def bonferroni(p: NDArray[np.float64]) -> NDArray[np.float64]:
    """Bonferroni adjusted p-values ``min(1, m p)``: family-wise error under any dependence."""
    return np.minimum(p * float(len(p)), 1.0)


def sidak(p: NDArray[np.float64]) -> NDArray[np.float64]:
    """Sidak adjusted p-values ``1 - (1 - p)^m`` (exact family-wise error for independent tests).

    Computed as ``-expm1(m log1p(-p))`` so small p-values keep their digits (as statsmodels does).
    """
    with np.errstate(divide="ignore"):  # p = 1: log1p(-1) = -inf, and the adjusted p-value is 1
        return np.minimum(-np.expm1(float(len(p)) * np.log1p(-p)), 1.0)


def holm_sidak(p: NDArray[np.float64]) -> NDArray[np.float64]:
    """Holm-Sidak step-down adjusted p-values, as ``multipletests(method='holm-sidak')``."""
    m = len(p)
    if m == 0:
        return p.copy()
    order = np.argsort(p)
    with np.errstate(divide="ignore"):  # p = 1 adjusts to 1
        ranked = -np.expm1((m - np.arange(m)) * np.log1p(-p[order]))
    adjusted = np.maximum.accumulate(ranked)
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


_ADJUST: dict[str, Callable[[NDArray[np.float64]], NDArray[np.float64]]] = {
    "bh": benjamini_hochberg,
    "holm": holm,
    "hochberg": hochberg,
    "bonferroni": bonferroni,
    "sidak": sidak,
    "holm-sidak": holm_sidak,
    "none": lambda p: p.copy(),
}


def _family_key(r: ResultRecord, scope: CorrectionScope) -> Hashable:
    """The family a record belongs to under a named scope (records with equal keys are corrected together)."""
    if scope == "analysis":
        return ()
    if scope == "metric":  # one metric's cells: everything but the cell fixed
        return (r.slice, r.metric, r.model, r.segment, r.time, r.quantile)
    return (r.metric, r.model, r.cell, r.segment, r.time, r.quantile)  # "slice": everything but the slice fixed


def adjust_pvalues(
    records: Sequence[ResultRecord],
    method: Correction = "bh",
    scope: CorrectionScope | AbstractSet[str] = "analysis",
) -> list[ResultRecord]:
    """Records with ``p_value_adjusted`` filled per family; missing p-values stay missing.

    ``scope`` says which records are tested together: ``"analysis"`` (default: one family of
    every record), ``"metric"`` (one family per metric, slice, model and segment/period: the
    metric's cells), ``"slice"`` (one family per metric, model, cell and segment/period: its
    slices), or a set of goal metric names: the goal metrics' records form one family, and
    every other record is left uncorrected (``p_value_adjusted = p_value``, correction
    ``"none"``), because guardrails are tested for non-inferiority with their power planned,
    not their alpha split (Schultzberg et al., 2024).
    """
    if method not in _ADJUST:
        raise InputError(f"unknown correction {method!r}; use one of {', '.join(CORRECTIONS)}")
    goals: frozenset[str] | None = None
    named: CorrectionScope = "analysis"
    if isinstance(scope, str):
        if scope not in SCOPES:
            raise InputError(
                f"unknown correction scope {scope!r}; use one of {', '.join(SCOPES)} or a set of goal metric names"
            )
        named = scope
    else:
        goals = frozenset(scope)
        if not goals:
            raise InputError("a goal-metric correction scope needs at least one metric name")
    p = np.array([np.nan if r.p_value is None else r.p_value for r in records], dtype=np.float64)
    families: dict[Hashable, list[int]] = {}
    labels: list[str] = [method] * len(records)
    for i, r in enumerate(records):
        if goals is not None:
            key: Hashable = "goals" if r.metric in goals else ("alone", i)
            if r.metric not in goals:
                labels[i] = "none"
        else:
            key = _family_key(r, named)
        families.setdefault(key, []).append(i)
    adjusted = np.full(len(p), np.nan)
    for members in families.values():
        idx = np.asarray(members, dtype=np.intp)
        idx = idx[np.isfinite(p[idx])]
        if idx.size:
            adjusted[idx] = _ADJUST[method](p[idx])
    return [
        r.model_copy(update={"p_value_adjusted": float(a) if np.isfinite(a) else None, "correction": label})
        for r, a, label in zip(records, adjusted, labels, strict=True)
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
    from scipy import stats  # here, not at import: every function imports this module for its types

    chi2, p = stats.chisquare(obs, exp)
    return SRMResult(
        chi2=float(chi2),
        df=len(cells) - 1,
        p_value=float(p),
        observed=dict(zip(cells, obs.tolist(), strict=True)),
        expected=dict(zip(cells, exp.tolist(), strict=True)),
        mismatch=bool(p < threshold),
    )
