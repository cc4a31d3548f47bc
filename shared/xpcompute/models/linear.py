"""Least squares on compressed rows, exact, with heteroskedasticity-robust (HC1) errors.

Each compressed row g stands for n_g input rows that share its discrete design
row ``d_g`` (intercept, cell dummies, discrete covariates, interactions) and
differ only in the metric y and the continuous covariates c. The row-level
design is ``x_i = (d_g, c_i)``. Everything OLS needs is a sum over rows of a
polynomial in (y, c), so it is a linear combination of the stored monomial
sums (``compression/schema.py``):

* Gram ``X'X = [[D' diag(n) D, D' Sc], [Sc' D, sum Scc]]`` and ``X'y``;
* HC meat ``sum_i e_i^2 x_i x_i'`` with ``e_i = y_i - d_g'b_d - c_i'b_c``:
  ``sum_i e_i^2 c_i^a`` expands into monomials of degree at most 4 with y at
  most squared, which is exactly the stored set.

All of it runs on the stored sums of ``z = (x - shift) / scale`` (per column,
``compression/transform.py``): with an intercept in the design, shifting a
covariate only re-parametrises the intercept and scaling it rescales its own
coefficient, so treatment coefficients, predictions and their HC1 covariance
are those of the raw data in units of the metric's scale, and the Gram matrix
stays well conditioned whatever the covariates' offsets (``LinearModel``
rescales). A metric that the terms reproduce exactly has no residual, hence
no standard error: that is refused, not reported as an SE of zero.

The heavy products run in the C++ primitives (``native.gram_meat``,
``native.cholesky_solve``); the small polynomial bookkeeping stays in NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from xpcompute import native
from xpcompute.errors import CollinearityError
from xpcompute.models.data import ModelData

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class OLSFit:
    """Coefficients, HC1 covariance and bookkeeping of one compressed least-squares fit."""

    coef: F64
    cov: F64
    names: tuple[str, ...]
    dropped: tuple[str, ...]
    nobs: float
    rank: int
    notes: tuple[str, ...] = ()


def _unit(k: int, j: int) -> tuple[int, ...]:
    e = [0] * k
    e[j] = 1
    return tuple(e)


def _add(*parts: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(sum(p)) for p in zip(*parts, strict=True))


def residual_moment(data: ModelData, alpha: tuple[int, ...], a: F64, bc: F64) -> F64:
    """``sum_i e_i^2 * c_i^alpha`` per compressed row, with ``e_i = y_i - a_g - c_i'bc``."""
    k = len(bc)

    def m(ey: int, exps: tuple[int, ...]) -> F64:
        return data.moment(ey, *exps)

    out = m(2, alpha) - 2 * a * m(1, alpha) + a * a * m(0, alpha)
    for l_ in range(k):
        el = _add(alpha, _unit(k, l_))
        out = out - 2 * bc[l_] * m(1, el) + 2 * a * bc[l_] * m(0, el)
        for m_ in range(k):
            out = out + bc[l_] * bc[m_] * m(0, _add(el, _unit(k, m_)))
    return out


def solve_identified(
    data: ModelData, xtx: F64, xty: F64, names: tuple[str, ...], protect: tuple[int, ...]
) -> tuple[native.SolveResult, tuple[str, ...]]:
    """Solve the normal equations, applying the collinearity policy; returns the solution and dropped names.

    Columns collinear with earlier ones are dropped (and reported) or refused,
    per ``spec.collinear_policy``; a dropped column listed in ``protect`` (a
    treatment column) is always refused, since its effect would be unidentified.
    """
    solved = native.cholesky_solve(xtx, xty)
    dropped = tuple(names[i] for i in solved.dropped)
    bad = [names[i] for i in solved.dropped if i in protect]
    if bad:
        raise CollinearityError(
            f"metric {data.spec.metric!r}: {', '.join(bad)} is collinear with the other columns, so its effect "
            "is not identified; remove covariates that are constant within a cell or duplicate the treatment"
        )
    if dropped and data.spec.collinear_policy == "refuse":
        raise CollinearityError(
            f"metric {data.spec.metric!r}: collinear columns {', '.join(dropped)}; remove them or set "
            "collinear_policy='drop' to drop and report them"
        )
    return solved, dropped


def compressed_ols(
    data: ModelData,
    design: F64,
    names: tuple[str, ...],
    protect: tuple[int, ...] = (),
) -> OLSFit:
    """OLS of the metric on ``[design, continuous covariates]`` with HC1 errors, from moments alone.

    ``design`` holds the discrete part ``d_g`` (one row per compressed row);
    collinear columns are handled by ``solve_identified``.
    """
    k = len(data.layout.covariates)
    zero = (0,) * k
    n = data.n
    sy = data.moment(1, *zero)
    kd = design.shape[1]
    cont_names = tuple(data.layout.covariates)
    all_names = names + cont_names
    sc = np.column_stack([data.moment(0, *_unit(k, j)) for j in range(k)]) if k else np.zeros((len(n), 0))

    dtd, dty, _ = native.gram_meat(design, n, sy, None)
    xtx = np.zeros((kd + k, kd + k))
    xty = np.zeros(kd + k)
    xtx[:kd, :kd] = dtd
    xty[:kd] = dty
    if k:
        cross = design.T @ sc
        xtx[:kd, kd:] = cross
        xtx[kd:, :kd] = cross.T
        for j in range(k):
            xty[kd + j] = data.moment(1, *_unit(k, j)).sum()
            for l_ in range(k):
                xtx[kd + j, kd + l_] = data.moment(0, *_add(_unit(k, j), _unit(k, l_))).sum()

    solved, dropped = solve_identified(data, xtx, xty, all_names, protect)
    coef = solved.x
    a = design @ coef[:kd]
    bc = coef[kd:]
    e0 = residual_moment(data, zero, a, bc)
    meat = np.zeros_like(xtx)
    meat[:kd, :kd] = native.gram_meat(design, e0, np.zeros_like(e0), None)[0]
    if k:
        e1 = np.column_stack([residual_moment(data, _unit(k, j), a, bc) for j in range(k)])
        cross = design.T @ e1
        meat[:kd, kd:] = cross
        meat[kd:, :kd] = cross.T
        for j in range(k):
            for l_ in range(j, k):
                v = residual_moment(data, _add(_unit(k, j), _unit(k, l_)), a, bc).sum()
                meat[kd + j, kd + l_] = meat[kd + l_, kd + j] = v
    nobs = float(n.sum())
    notes = check_residuals(data, float(e0.sum()), all_names, dropped)
    rank = solved.rank
    bread = solved.inverse
    cov = bread @ meat @ bread * (nobs / (nobs - rank))
    return OLSFit(coef=coef, cov=cov, names=all_names, dropped=dropped, nobs=nobs, rank=rank, notes=notes)


#: residual sum of squares below this fraction of the total: indistinguishable from an exact fit
EXACT_FIT = 1e-10
#: below this fraction, the sums' rounding limits the SE's precision to worse than ~1e-8: say so
NEAR_EXACT_FIT = 1e-6


def check_residuals(
    data: ModelData, rss: float, names: tuple[str, ...], dropped: tuple[str, ...]
) -> tuple[str, ...]:
    """Refuse an exact fit (no residual, so no standard error); note a near-exact one.

    The residual sum of squares comes from expanding ``sum (z - x'b)^2`` over
    the stored sums, which carries a rounding error of about 1e-16 of the
    total sum of squares: a residual within 1e-10 of it is zero as far as the
    data can tell. That is a covariate equal to (or an exact linear function
    of) the metric, or a metric fixed by the discrete terms.
    """
    k = len(data.layout.covariates)
    zero = (0,) * k
    nobs = float(data.n.sum())
    s1 = float(data.moment(1, *zero).sum())
    tss = float(data.moment(2, *zero).sum()) - s1 * (s1 / nobs)
    if not tss > 0:
        return ()
    share = rss / tss
    kept = [nm for nm in names if nm not in dropped and nm != "intercept"]
    if share <= EXACT_FIT:
        raise CollinearityError(
            f"metric {data.spec.metric!r} is an exact linear function of the model's terms ({', '.join(kept)}) "
            f"as far as its stored sums can tell (they leave {share:.1e} of its variance, under their rounding of "
            f"{EXACT_FIT:.0e}): there is no standard error to compute; remove the covariate that reproduces the "
            "metric (for example the metric itself), or fit without it"
        )
    if share <= NEAR_EXACT_FIT:
        return (
            f"the terms explain all but {share:.1e} of the metric's variance: the SE is accurate to about "
            f"{2e-16 / share:.0e} relative",
        )
    return ()
