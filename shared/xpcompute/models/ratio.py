"""Ratio metrics (for example hours per session): sum(y) / sum(d) per cell, delta-method variance.

The compressed data holds the metric y with the denominator d as its first
"covariate", so the degree-two moments (n, Sy, Sd, Syy, Sdd, Syd) are there.
Var(R) = (var_y - 2 R cov_yd + R^2 var_d) / (n * mean_d^2), with sample
(co)variances (ddof=1), the classic delta method for a ratio of means.
When the data holds the ratio's residual column ``r = y - c d`` (stage 1 and
``fit.prepare`` add it: ``columns.residual_coefficient``), the same
variance is taken as that of ``r`` over ``d``: with ``y`` nearly proportional
to ``d``, the three terms above are large and cancel to a few digits, while
``r``'s are small (``_ratio_gradient``).

CUPED for ratios (``spec.covariates = (x, w)``: the pre-period values of the
numerator and of the denominator, compressed after d with all their
cross-moments), as tea-tasting's ``RatioOfMeans`` with ``numer_covariate`` and
``denom_covariate`` does (Deng et al. 2013, CUPED with the delta method): the
ratio is adjusted by the covariates' own ratio,

    R_adj(cell) = y_bar / d_bar - theta (x_bar / w_bar - X / W),

where X / W is the covariate ratio over every unit of the subgroup (all cells),
and theta = cov(L, M) / var(M) with L = (y - R d) / d_bar and
M = (x - Rx w) / w_bar the per-unit delta-method linearizations of the two
ratios over all units of the subgroup (the CUPED slope of the ratio on its
pre-period counterpart; it is what minimizes the adjusted ratio's variance,
which adjusting numerator and denominator separately does not). Per cell,
Var(R_adj) = (var(L) - 2 theta cov(L, M) + theta^2 var(M)) / n with the cell's
own means and (co)variances (ddof=1), theta held fixed. Under randomization the
covariate ratios of the cells estimate the same value, so the adjustment
removes noise, not effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from xpcompute.columns import COVARIATE_RESIDUAL_SUFFIX, RESIDUAL_SUFFIX, float32
from xpcompute.compression.transform import ColumnTransform
from xpcompute.errors import CellError, InputError, ZeroVarianceError
from xpcompute.models.base import CausalModel, MeansCovariance
from xpcompute.models.data import ModelData, Subgroup
from xpcompute.records import ResultRecord

F64 = NDArray[np.float64]


def ratio_unit(data: ModelData) -> float:
    """The power of two ``ay / ad`` (scales of metric and denominator): the natural unit of the ratio.

    Variances are stated in it, so that a ratio of 1e-150 has a variance of
    order one rather than a subnormal 1e-300 with a few digits left.
    """
    exponent = math.frexp(data.transform(0).scale)[1] - math.frexp(data.transform(1).scale)[1]
    return math.ldexp(1.0, min(max(exponent, -1021), 1022))


def part_covariates(data: ModelData) -> tuple[str, str] | None:
    """The (numerator, denominator) covariates of a CUPED ratio fit, or None; checks the compressed layout."""
    spec = data.spec
    name = spec.metric
    if spec.denominator is None:
        raise InputError(f"ratio metric {name!r} needs a denominator column (--denominator COL)")
    covs = tuple(spec.covariates)
    if covs and (len(covs) != 2 or covs[0] == covs[1]):
        raise InputError(
            f"ratio metric {name!r}: covariates must be two columns, the numerator's pre-period value and the "
            f"denominator's (in that order), got {list(covs)}"
        )
    layout = data.layout.covariates
    if not layout or layout[0] != spec.denominator or any(c not in layout for c in covs):
        want = ", ".join((spec.denominator, *covs))
        raise InputError(
            f"ratio metric {name!r} needs data compressed with the denominator as its first covariate"
            f"{' and the covariates ' + ', '.join(covs) if covs else ''} (continuous columns {want}); "
            f"it has {', '.join(layout) or 'none'}"
        )
    return (covs[0], covs[1]) if covs else None


@dataclass(frozen=True)
class Adjustment:
    """The CUPED slope of a subgroup and the centre of its covariate ratio (``x / w`` over every cell)."""

    theta: float  # ratio_unit of R per covariate_unit of x / w
    centre: float  # X / W over the subgroup, in covariate_unit
    x: str
    w: str
    centre_less_shift: float | None = None  # X / W less its residual's constant c' (``residual_shift``), exactly

    def slope(self, data: ModelData) -> float:
        """theta in the metric's units (ratio per covariate ratio), for notes."""
        return self.theta * ratio_unit(data) / covariate_unit(data, self.x, self.w)


def covariate_unit(data: ModelData, x: str, w: str) -> float:
    """The power of two ``ax / aw``: the natural unit of the covariate ratio (as ``ratio_unit`` for y / d)."""
    layout = data.layout.covariates
    ax, aw = data.transform(1 + layout.index(x)).scale, data.transform(1 + layout.index(w)).scale
    exponent = math.frexp(ax)[1] - math.frexp(aw)[1]
    return math.ldexp(1.0, min(max(exponent, -1021), 1022))


class _Moments:
    """Degree <= 2 sums of (z_y, z_d, z_x, ...) over some rows, with named access."""

    def __init__(self, data: ModelData, sel: NDArray[np.bool_]) -> None:
        self.names = ("y", *data.layout.covariates)
        k = len(self.names)
        self.sums = {e: float(data.moment(*e)[sel].sum()) for e in data.layout.exponents if sum(e) <= 2 and len(e) == k}
        self.n = self.sums[(0,) * k]

    def s(self, **exps: int) -> float:
        vec = [0] * len(self.names)
        for name, e in exps.items():
            vec[self.names.index(name)] = e
        return self.sums[tuple(vec)]

    def cov(self, a: str, b: str) -> float:
        """Sample covariance (ddof=1) of z_a and z_b."""
        sab = self.s(**{a: 2}) if a == b else self.s(**{a: 1, b: 1})
        return (sab - self.s(**{a: 1}) * (self.s(**{b: 1}) / self.n)) / (self.n - 1)


def _linearization(data: ModelData, m: _Moments, num: str, den: str, unit: float) -> tuple[float, dict[str, float]]:
    """(ratio in ``unit``, coefficients g of the centred linearization on the z variables).

    For R = mean(a) / mean(b) with a = sa + aa za, b = sb + ab zb, the per-unit linearization
    (a - R b) / mean(b), centred and in ``unit``, is g_a (za - mean za) + g_b (zb - mean zb) with
    g_a = aa / (unit mean(b)) and g_b = -R ab / (unit mean(b)).
    """
    layout = ("y", *data.layout.covariates)
    ta, tb = data.transform(layout.index(num)), data.transform(layout.index(den))
    ma = ta.shift + ta.scale * m.s(**{num: 1}) / m.n
    mb = tb.shift + tb.scale * m.s(**{den: 1}) / m.n
    if mb == 0:
        raise ZeroVarianceError(
            f"ratio metric {data.spec.metric!r}: {den!r} sums to zero here, so the ratio over it is undefined "
            "(check the denominator, its covariate or the slice)"
        )
    r = ma / mb
    return r / unit, {num: ta.scale / (unit * mb), den: -r * tb.scale / (unit * mb)}


def residual_of(data: ModelData) -> str | None:
    """The ratio's residual column in the compressed layout (``columns.residual_coefficient``), or None
    (data compressed without one: the variance then comes from the numerator's own moments)."""
    name = data.spec.metric + RESIDUAL_SUFFIX
    return name if name in data.layout.covariates else None


def _covariate_gradient(data: ModelData, m: _Moments, x: str, w: str, unit: float) -> tuple[float, dict[str, float]]:
    """(x / w in ``unit``, the linearization of x / w): on (covariate residual, w) when the data has that column,
    as ``_ratio_gradient`` does for y / d."""
    ratio, h = _linearization(data, m, x, w, unit)
    name = data.spec.metric + COVARIATE_RESIDUAL_SUFFIX
    if name in data.layout.covariates:
        h = _linearization(data, m, name, w, unit)[1]
    return ratio, h


def _mean(data: ModelData, m: _Moments, name: str) -> float:
    """The mean of variable ``name`` ("y" or a covariate) in its own units, from the sums of its ``z``."""
    t = data.transform(("y", *data.layout.covariates).index(name))
    return t.shift + t.scale * m.s(**{name: 1}) / m.n


def residual_shift(data: ModelData, num: str, den: str, res: str | None) -> float:
    """The constant ``c`` of the residual column ``res = num - c den``, recovered exactly from the sums; 0 where
    there is no such column or ``c`` cannot be recovered (then nothing is computed relative to it).

    Why exactly: ``mean(num) / mean(den) - mean(res) / mean(den)`` is ``c`` in exact arithmetic on any rows, and
    ``c`` is a float32 value (``columns.residual_coefficient``), so the computed difference, off by about
    1e-13 of the ratio, rounds back to it. Accepted only if it is a float32 value to 1e-9 of itself: a ``c`` of
    0 (no constant was taken) leaves a difference made of rounding alone, which is refused.
    """
    if res is None or res not in data.layout.covariates:
        return 0.0
    m = _Moments(data, data.n > 0)
    if m.n <= 0:
        return 0.0
    mean_den = _mean(data, m, den)
    if mean_den == 0:
        return 0.0
    diff = _mean(data, m, num) / mean_den - _mean(data, m, res) / mean_den
    c = float32(diff)
    return c if math.isfinite(c) and c != 0 and abs(c - diff) <= 1e-9 * abs(c) else 0.0


def _ratio_gradient(data: ModelData, m: _Moments, unit: float) -> dict[str, float]:
    """The linearization of y / d (``_linearization``), on (residual, d) when the data has the residual column.

    With ``r = y - c d``, ``y - R d = r - (R - c) d`` and ``R - c = mean(r) / mean(d)``: the same per-unit
    linearization as the ratio of ``r`` to ``d``, whose variance has nothing large to cancel when ``c`` is
    near ``R`` (``y`` nearly proportional to ``d``), where ``var(y) - 2 R cov + R^2 var(d)`` keeps few digits.
    """
    d = data.spec.denominator
    assert d is not None
    res = residual_of(data)
    return _linearization(data, m, res or "y", d, unit)[1]


def _quad(m: _Moments, g: dict[str, float], h: dict[str, float]) -> float:
    """Covariance of two linearizations: g' C h with C the z-covariances of the rows."""
    return sum(gi * hj * m.cov(i, j) for i, gi in g.items() for j, hj in h.items())


def adjustment(data: ModelData, mask: NDArray[np.bool_]) -> Adjustment | None:
    """The CUPED slope of the ratio on its covariate ratio over every unit of ``mask`` (None without covariates)."""
    parts = part_covariates(data)
    if parts is None:
        return None
    x, w = parts
    d = data.spec.denominator
    assert d is not None
    total = _Moments(data, mask & (data.n > 0))
    if total.n < 2:
        raise CellError(f"ratio metric {data.spec.metric!r}: fewer than two rows here; no CUPED slope")
    g = _ratio_gradient(data, total, ratio_unit(data))
    unit_x = covariate_unit(data, x, w)
    centre, h = _covariate_gradient(data, total, x, w, unit_x)
    var_m = _quad(total, h, h)
    theta = _quad(total, g, h) / var_m if var_m > 0 else 0.0  # a constant covariate ratio explains nothing
    xres = data.spec.metric + COVARIATE_RESIDUAL_SUFFIX
    less = None
    if residual_shift(data, x, w, xres) != 0.0:
        less = _linearization(data, total, xres, w, unit_x)[0]
    return Adjustment(theta=theta, centre=centre, x=x, w=w, centre_less_shift=less)


def ratio_moments(
    data: ModelData, mask: NDArray[np.bool_], cell: str, adjust: Adjustment | None = None, shift: float = 0.0,
) -> tuple[float, float, float]:
    """(count, ratio less ``shift``, variance of the ratio in ``ratio_unit`` squared) of one cell, from the stored
    sums of ``z``. ``shift``: 0, or the residual column's constant (``residual_shift``), where the ratio less it
    is the residual's ratio, computed without the ratio's own magnitude (a 1e-4 effect on a ratio near 1e9).

    With ``y = sy + ay zy`` and ``d = sd + ad zd`` (``compression/transform.py``),
    the (co)variances are ``ay^2 var(zy)``, ``ad^2 var(zd)``, ``ay ad cov(zy, zd)``,
    so Var(R) = (ay / mean_d)^2 (var(zy) - 2 rho cov + rho^2 var(zd)) / n with
    ``rho = R ad / ay``: no digit is lost to the means, nothing squares a value
    near 1e300. With ``adjust`` (CUPED), the ratio is ``R - theta (Rx - centre)`` and
    its variance that of the linearization ``L - theta M`` (module docstring), from
    the same sums. A cell of one row has no variance (NaN; the base refuses or notes it).
    """
    if adjust is None:
        part_covariates(data)  # checks the layout
    m = _Moments(data, mask & (data.cell_labels == cell))
    n = m.n
    if n <= 0:
        raise CellError(f"ratio metric {data.spec.metric!r}: cell {cell!r} has no rows here")
    d = data.spec.denominator
    assert d is not None
    ty, td = data.transform(0), data.transform(1)
    mzy, mzd = m.s(y=1) / n, m.s(**{d: 1}) / n
    my, md = ty.shift + ty.scale * mzy, td.shift + td.scale * mzd
    if md == 0:
        raise ZeroVarianceError(
            f"ratio metric {data.spec.metric!r}: the denominator {d!r} sums to zero in cell "
            f"{cell!r}; the ratio is undefined there (check the denominator or the slice)"
        )
    r = my / md
    res = residual_of(data)
    if shift != 0.0:
        assert res is not None
        r = _mean(data, m, res) / md  # R - c, exactly as the residual's ratio
    if adjust is not None:
        return (n, *_adjusted(data, m, adjust, shift))
    if n < 2:
        return n, r, float("nan")
    if res is not None:
        g = _ratio_gradient(data, m, ratio_unit(data))
        return n, r, _quad(m, g, g) / n
    vzy, vzd, czyd = m.cov("y", "y"), m.cov(d, d), m.cov("y", d)
    rho = r * (td.scale / ty.scale)
    u = ty.scale / (ratio_unit(data) * md)
    return n, r, u * u * (vzy - 2 * rho * czyd + rho * rho * vzd) / n


def _adjusted(data: ModelData, m: _Moments, adjust: Adjustment, shift: float = 0.0) -> tuple[float, float]:
    """(CUPED ratio less ``shift`` in the metric's units, its variance in ``ratio_unit`` squared) of one cell's
    sums. With the shift, R - c and Rx - centre come from the residuals' ratios (``ratio_moments``)."""
    d = data.spec.denominator
    assert d is not None
    unit = ratio_unit(data)
    unit_x = covariate_unit(data, adjust.x, adjust.w)
    res = residual_of(data)
    r, _ = _linearization(data, m, res if shift != 0.0 and res is not None else "y", d, unit)
    g = _ratio_gradient(data, m, unit)
    rx, h = _covariate_gradient(data, m, adjust.x, adjust.w, unit_x)
    offset = rx - adjust.centre
    if shift != 0.0 and adjust.centre_less_shift is not None:
        xres = data.spec.metric + COVARIATE_RESIDUAL_SUFFIX
        offset = _linearization(data, m, xres, adjust.w, unit_x)[0] - adjust.centre_less_shift
    adjusted = (r - adjust.theta * offset) * unit
    if m.n < 2:
        return adjusted, float("nan")
    t = adjust.theta
    return adjusted, (_quad(m, g, g) - 2 * t * _quad(m, g, h) + t * t * _quad(m, h, h)) / m.n


class RatioModel(CausalModel):
    """Ratio of sums per cell, cells independent; CUPED on both parts when the spec names their covariates."""

    name = "ratio"

    def outcome_units(self, data: ModelData) -> ColumnTransform:
        """Ratios, and their variances, in units of ``ratio_unit``, less the residual column's constant when the
        data has one (``residual_shift``): the effect is then a difference of residual ratios, exact however
        small it is against the ratio."""
        return ColumnTransform(shift=self._shift(data), scale=ratio_unit(data))

    def _shift(self, data: ModelData) -> float:
        d = data.spec.denominator
        assert d is not None
        return residual_shift(data, "y", d, residual_of(data))

    def __init__(self) -> None:
        super().__init__()
        self._adjust_cache: dict[bytes, Adjustment | None] = {}

    def _adjustment(self, data: ModelData, mask: NDArray[np.bool_]) -> Adjustment | None:
        """The CUPED slopes of a subgroup (computed once per subgroup and fit)."""
        key = mask.tobytes()
        if key not in self._adjust_cache:
            self._adjust_cache[key] = adjustment(data, mask)
        return self._adjust_cache[key]

    def train(self, data: ModelData) -> None:
        self._adjust_cache = {}
        everyone = np.ones(len(data.n), dtype=bool)
        unit = ratio_unit(data)
        adj = self._adjustment(data, everyone)
        shift = self._shift(data)
        self.ratios = {c: ratio_moments(data, everyone, c, adj, shift)[1] / unit for c in data.cells}
        if adj is not None:
            self.notes.append(
                f"ratio CUPED: adjusted by the pre-period ratio {adj.x} / {adj.w} (theta = {adj.slope(data):.6g}, "
                "over all cells); delta method on the linearized ratios, theta held fixed"
            )

    def predict(self, data: ModelData, cell: str) -> F64:
        return np.full(len(data.n), self.ratios[cell])

    def potential_outcome_mean(self, data: ModelData, group: Subgroup, cell: str) -> float:
        adj = self._adjustment(data, group.mask)
        return ratio_moments(data, group.mask, cell, adj, self._shift(data))[1] / ratio_unit(data)

    def means_covariance(self, data: ModelData, group: Subgroup, cell: str, control: str) -> MeansCovariance:
        adj = self._adjustment(data, group.mask)
        va = ratio_moments(data, group.mask, cell, adj)[2]
        vb = ratio_moments(data, group.mask, control, adj)[2]
        return MeansCovariance(cov=np.diag([va, vb]))

    def estimate(self, data: ModelData) -> list[ResultRecord]:
        """Records whose cell means are the observed (unadjusted) cell ratios, not the numerator means (from the
        residual's ratio plus its constant where the data has one: correct to the ratio's last digit)."""
        out = []
        shift = self._shift(data)
        for rec in super().estimate(data):
            mask = np.ones(len(data.n), dtype=bool)
            if rec.segment is not None and data.spec.segment:
                mask = data.labels(data.spec.segment) == rec.segment
            if rec.time is not None and data.spec.time:
                mask = data.labels(data.spec.time) == rec.time
            out.append(
                rec.model_copy(
                    update={
                        "mean_cell": shift + ratio_moments(data, mask, rec.cell, shift=shift)[1],
                        "mean_control": shift + ratio_moments(data, mask, rec.control, shift=shift)[1],
                    }
                )
            )
        return out
