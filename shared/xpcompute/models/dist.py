"""Normal, Student-t and chi-square tails and quantiles, in plain Python (``math``), for p-values and intervals.

Why not ``scipy.stats``: importing it costs a new fit function more than the rest of its first fit (about five
times ``import numpy``; ``scipy.special`` alone about twice), and a fit needs four numbers from it. These are the
same functions scipy evaluates (``ndtr``, ``ndtri``, ``stdtr``, ``stdtrit``): the normal through ``math.erfc``
and ``statistics.NormalDist`` (Wichura's AS 241), the t through the regularized incomplete beta function
``I_z(df/2, 1/2)`` by its continued fraction (modified Lentz), with ``log B(a, 1/2)`` from Stirling's series for
large ``a``, so that Welch's degrees of freedom in the millions keep full precision. Where the continued fraction
would need too many terms (``df`` above ``DF_MAX``) or Newton's method does not settle, scipy.special answers.
The chi-square tail (a Wald test's p-value, e.g. difference in differences' joint pre-trend test) has integer
degrees of freedom, where it is a finite sum: Poisson terms for even ``df``, the normal tail plus half-integer
terms for odd ``df``, each term taken through logs so that no power or factorial overflows.
``tests/reference/test_dist.py`` holds them to scipy at 1e-12.
"""

from __future__ import annotations

import math
from statistics import NormalDist

DF_MAX = 1e7
"""Above this many degrees of freedom the t functions ask scipy.special (the continued fraction needs about
``sqrt(df)`` terms)."""

_STD = NormalDist()
_SQRT2 = math.sqrt(2.0)
_LGAMMA_HALF = math.lgamma(0.5)
_EPS = 4e-16
_TINY = 1e-300


class _NotSettled(Exception):
    """The plain-Python evaluation did not converge; scipy.special answers instead."""


def norm_sf(x: float) -> float:
    """``P(Z > x)`` for a standard normal ``Z`` (``scipy.stats.norm.sf``)."""
    return 0.5 * math.erfc(x / _SQRT2)


def norm_ppf(p: float) -> float:
    """The standard normal quantile of ``p`` (``scipy.stats.norm.ppf``)."""
    if math.isnan(p) or p < 0.0 or p > 1.0:
        return math.nan
    if p == 0.0:
        return -math.inf
    if p == 1.0:
        return math.inf
    return _STD.inv_cdf(p)


def chi2_sf(x: float, df: int) -> float:
    """``P(X > x)`` for a chi-square ``X`` with an integer ``df >= 1`` (``scipy.stats.chi2(df).sf``)."""
    if math.isnan(x) or isinstance(df, bool) or int(df) != df or df < 1:
        return math.nan
    if x <= 0.0:
        return 1.0
    if math.isinf(x):
        return 0.0
    half, k = 0.5 * x, int(df)
    if k % 2 == 0:  # exp(-h) * sum_{i < k/2} h^i / i!
        return math.fsum(math.exp(-half + i * math.log(half) - math.lgamma(i + 1)) for i in range(k // 2))
    # erfc(sqrt(h)) + sqrt(2/pi) exp(-h) * sum_{i=1}^{(k-1)/2} x^(i - 1/2) / (2i - 1)!!
    log_scale = -half + 0.5 * math.log(2.0 / math.pi)
    terms = (math.exp(log_scale + (i - 0.5) * math.log(x) - _log_odd_factorial(i)) for i in range(1, (k + 1) // 2))
    return math.fsum((math.erfc(math.sqrt(half)), *terms))


def _log_odd_factorial(i: int) -> float:
    """``log((2i - 1)!!) = log((2i)! / (2^i i!))``."""
    return math.lgamma(2 * i + 1) - i * math.log(2.0) - math.lgamma(i + 1)


def t_sf(x: float, df: float) -> float:
    """``P(T > x)`` for Student's t with ``df`` degrees of freedom (``scipy.stats.t(df).sf``); ``df=inf``: normal."""
    if math.isnan(x) or math.isnan(df) or df <= 0.0:
        return math.nan
    if math.isinf(df):
        return norm_sf(x)
    if x == 0.0:
        return 0.5
    if math.isinf(x):
        return 0.0 if x > 0 else 1.0
    if df > DF_MAX:
        return _scipy_t_sf(x, df)
    try:
        tail = 0.5 * _incomplete_beta_t(abs(x), df)
    except _NotSettled:
        return _scipy_t_sf(x, df)
    return tail if x > 0 else 1.0 - tail


def t_ppf(p: float, df: float) -> float:
    """The quantile of ``p`` for Student's t with ``df`` degrees of freedom (``scipy.stats.t(df).ppf``)."""
    if math.isnan(p) or math.isnan(df) or df <= 0.0 or p < 0.0 or p > 1.0:
        return math.nan
    if math.isinf(df):
        return norm_ppf(p)
    if p == 0.5:
        return 0.0
    if p in (0.0, 1.0):
        return math.inf if p == 1.0 else -math.inf
    if df > DF_MAX:
        return _scipy_t_ppf(p, df)
    upper = p > 0.5
    q = 1.0 - p if upper else p  # exact for p in [0.5, 1] (Sterbenz); the smaller tail keeps its precision
    try:
        x = _t_isf(q, df)
    except _NotSettled:
        return _scipy_t_ppf(p, df)
    return x if upper else -x


# ---------------------------------------------------------------------------------------------- the t by hand


def _log_beta_half(a: float) -> float:
    """``log B(a, 1/2)``; for large ``a`` by Stirling's series for ``lgamma(a + 1/2) - lgamma(a)``, which
    lgamma's own difference would lose to cancellation (``lgamma(a)`` is about ``a log a``)."""
    if a < 10.0:
        return math.lgamma(a) + _LGAMMA_HALF - math.lgamma(a + 0.5)

    def s(x: float) -> float:  # lgamma(x) - ((x - 1/2) log x - x + log(2 pi) / 2)
        x2 = x * x
        return (1.0 / 12.0 - (1.0 / 360.0 - (1.0 / 1260.0 - (1.0 / 1680.0 - 1.0 / (1188.0 * x2)) / x2) / x2) / x2) / x

    diff = (a * math.log1p(0.5 / a) - 0.5) + 0.5 * math.log(a) + s(a + 0.5) - s(a)
    return _LGAMMA_HALF - diff


def _continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of ``I_x(a, b)`` (Numerical Recipes' ``betacf``, modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 200_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        step = d * c
        h *= step
        if abs(step - 1.0) <= _EPS:
            return h
    raise _NotSettled


def _incomplete_beta_t(x: float, df: float) -> float:
    """``I_z(df/2, 1/2)`` with ``z = df / (df + x^2)``, ``x > 0``: twice the upper tail of t at ``x``."""
    a, b = 0.5 * df, 0.5
    r = x * x / df
    if math.isinf(r):
        return 0.0
    z = 1.0 / (1.0 + r)
    w = r / (1.0 + r)  # 1 - z, without the cancellation
    log_front = -a * math.log1p(r) + b * (math.log(r) - math.log1p(r)) - _log_beta_half(a)
    if z < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _continued_fraction(a, b, z) / a
    return 1.0 - math.exp(log_front) * _continued_fraction(b, a, w) / b


def _t_log_pdf(x: float, df: float) -> float:
    return -0.5 * (df + 1.0) * math.log1p(x * x / df) - 0.5 * math.log(df) - _log_beta_half(0.5 * df)


def _t_isf(q: float, df: float) -> float:
    """``x >= 0`` with ``t_sf(x, df) == q`` for ``0 < q < 1/2``: Newton's method on ``log sf`` (steady in the
    far tail), from the Cornish-Fisher expansion around the normal quantile."""
    z = -norm_ppf(q)
    x = z + (z**3 + z) / (4.0 * df) + (5.0 * z**5 + 16.0 * z**3 + 3.0 * z) / (96.0 * df * df)
    x = max(x, 1e-8)
    target = math.log(q)
    last = math.inf
    for _ in range(100):
        sf = 0.5 * _incomplete_beta_t(x, df)
        if sf <= 0.0:
            raise _NotSettled
        step = (math.log(sf) - target) * sf / math.exp(_t_log_pdf(x, df))
        if abs(step) <= 1e-12 * max(1.0, x):  # quadratic: what is left is far below this
            return x + step
        if abs(step) >= last and abs(step) <= 1e-8 * x:  # the noise floor of sf (~1e-10 relative near DF_MAX)
            return x
        last = abs(step)
        x = x + step if x + step > 0.0 else x / 2.0
    raise _NotSettled


# ---------------------------------------------------------------------------------------------- the fallback


def _scipy_t_sf(x: float, df: float) -> float:
    from scipy import special  # only past DF_MAX or when the continued fraction does not settle

    return float(special.stdtr(df, -x))


def _scipy_t_ppf(p: float, df: float) -> float:
    from scipy import special  # only past DF_MAX or when Newton's method does not settle

    return float(special.stdtrit(df, p))


__all__ = ["DF_MAX", "norm_ppf", "norm_sf", "t_ppf", "t_sf"]
