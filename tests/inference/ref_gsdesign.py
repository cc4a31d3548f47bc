"""Reference Lan-DeMets boundaries built on gsdesign's recursive integration (run in .venv-ref; JSON in/out).

gsdesign (a port of gsDesign's C grid routines) supplies the grid and the density recursion: `h1` gives the
weighted density of Z_1 on an interval and `hupdate` moves a density from one look to the next on a new interval.
Here only the spending functions (gsDesign's sfLDOF and sfLDPocock, spent per tail at alpha/2 as in a symmetric
test.type=2 design), the crossing probability and the root finding are added. As in gsDesign's C `gsbound`, the
upper-tail crossing probability at look k sums the previous look's weighted density h_j times the conditional
normal tail, sum_j h_j * (1 - Phi((c sqrt(t_k) - z_j sqrt(t_{k-1})) / sqrt(t_k - t_{k-1}))), and c solves
    crossing probability = alpha_tail(t_k) - alpha_tail(t_{k-1});
the lower tail is its mirror image. (Integrating hupdate's density over (c, inf) instead loses ~1e-5 in c once
c > 6, where the grid's tail points are sparse.)
Input: {"cases": [{"fractions": [...], "alpha": float, "spending": "obrien_fleming"|"pocock", "r": int}]}
Output: per case the list of boundaries (Infinity where a look has no alpha left).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import numpy as np
from gsdesign import h1, hupdate
from scipy.optimize import brentq
from scipy.stats import norm


def spend(t: float, a: float, kind: str) -> float:
    t = min(t, 1.0)
    if kind == "obrien_fleming":
        return float(2.0 * norm.sf(norm.isf(a / 2.0) / math.sqrt(t)))
    return float(a * math.log(1.0 + (math.e - 1.0) * t))


def boundaries(fractions: list[float], alpha: float, kind: str, r: int) -> list[float]:
    a = alpha / 2.0
    out: list[float] = []
    gm: Any = None
    prev_t, prev_cum = 0.0, 0.0
    for t in fractions:
        cum = spend(t, a, kind)
        inc = cum - prev_cum
        if inc <= 1e-15:  # nothing left to spend (past full information): no boundary, nothing rejected
            c = math.inf
            gm = (
                h1(r=r, theta=0.0, info=t)
                if gm is None
                else hupdate(r, 0.0, t, -np.inf, np.inf, 0.0, prev_t, gm)
            )
        elif gm is None:
            c = float(norm.isf(inc))
            gm = h1(r=r, theta=0.0, info=t, a=-c, b=c)
        else:
            g_prev, tp = gm, prev_t

            def upper(c: float, g_prev: Any = g_prev, tp: float = tp, t: float = t) -> float:
                z_prev, _, h_prev = g_prev
                return float(
                    h_prev @ norm.sf((c * math.sqrt(t) - z_prev * math.sqrt(tp)) / math.sqrt(t - tp))
                )

            c = float(brentq(lambda c, inc=inc: upper(c) - inc, 0.05, 40.0, xtol=1e-13, rtol=1e-15))
            gm = hupdate(r, 0.0, t, -c, c, 0.0, prev_t, gm)
        out.append(c)
        prev_t, prev_cum = t, cum
    return out


if __name__ == "__main__":
    cases = json.load(sys.stdin)["cases"]
    json.dump([boundaries(c["fractions"], c["alpha"], c["spending"], c["r"]) for c in cases], sys.stdout)
