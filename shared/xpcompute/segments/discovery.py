"""Segment discovery from a segment cube: per-dimension heterogeneity tests and an honest causal tree.

Input: a moments cube grouped by (treatment cell, every declared dimension,
half) (``segments.cube``), no raw rows. Two kinds of hypotheses are tested,
and Benjamini–Hochberg controls the false discovery rate across all of them
(per analysis: every metric, treatment cell, dimension and leaf together):

1. **Heterogeneity per dimension.** For each (metric, treatment cell,
   dimension): the CATE model (``models.ols.CATEModel``: OLS saturated in
   dimension value x cell, plus the metric's continuous covariates, HC1) is
   fitted on the cube summed over the other dimensions and both halves, and
   its ``heterogeneity_test`` is the Wald test, from the model's full
   coefficient covariance, that the CATEs of every value are equal
   (chi-square with (values - 1) degrees of freedom). This equals the Wald
   test that every cell x value interaction coefficient is zero in
   ``y ~ C(dim) * C(cell) + covariates`` with HC1 errors. Values with fewer
   than ``min_units`` units in a cell are left out of the test (and named).

2. **An honest causal tree.** Units are split into two fixed halves by a hash
   of their id (``segments.cube.half_sql``). The tree is grown on the *split
   half* only; every number reported for its leaves comes from the other,
   *estimation half* only, so a leaf's test is a valid test even though the
   leaf was chosen because it looked different (Athey & Imbens 2016, "honest"
   estimation). Splits are binary, ``dim = v`` against ``dim != v`` (the
   slice-filter semantics: a unit whose ``dim`` is null follows neither
   branch). The *splitting criterion* is the squared z-statistic of the
   difference between the two children's effects on the split half,
   ``(tau_L - tau_R)^2 / (V_L + V_R)``, where an effect is the difference in
   means of the CUPED-adjusted metric ``y - theta'c`` (``c``: the metric's
   continuous covariates in the cube; ``theta``: the pooled within-cell
   least-squares slope over the whole half, fixed for the half) with its
   Welch variance (``theta`` taken as known, as CUPED does); the best split
   of a node is taken when that statistic exceeds the chi-square(1)
   quantile at ``split_alpha`` and both children have at least
   ``min_units`` units of the control and of the treatment cell in each
   half; the depth is at most ``max_depth``. A leaf's label keeps only
   ``dim = v`` when a later split fixed ``dim`` (earlier ``dim != w`` are
   then implied). Each leaf of a tree with at least one split is tested on
   the estimation half: its effect against the effect in the rest of the
   units (everyone not in the leaf),
   ``z = (tau_leaf - tau_rest) / sqrt(V_leaf + V_rest)``, two-sided normal
   p-value (disjoint sets of units; ``theta`` is the estimation half's own
   slope, again taken as known). The leaf's own effect and interval are
   reported alongside. The per-dimension tests use both halves: they are
   fixed in advance, so nothing was selected on their data.

A *discovery* is a test whose BH-adjusted p-value is at most ``fdr``. Each
leaf carries its slice filter (``SliceFilter`` JSON), so it can be posted
as a live slice (``POST /analyses/{id}/slices``) unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from xpcompute.compression.schema import COUNT_COLUMN, CompressedLayout, CompressedTable
from xpcompute.errors import XPError
from xpcompute.lazy import lazy
from xpcompute.pipeline.slices import Condition, SliceFilter
from xpcompute.postprocess import benjamini_hochberg
from xpcompute.segments.cube import HALF_COLUMN
from xpcompute.segments.report import HeterogeneityTest, Segment, SegmentReport, SegmentSettings

if TYPE_CHECKING:
    import pyarrow.compute as pc
else:  # loaded on first use: only a discovery run computes with it
    pc = lazy("pyarrow.compute")

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
#: the half the tree is grown on; the other one estimates the leaves
SPLIT_HALF = 0
ESTIMATION_HALF = 1


# ---- the cube as arrays ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CubeArrays:
    """One metric's view of the cube: per cube row its cell, half, dimension codes and moment sums.

    ``moments`` columns, all in the stored z units: n, sum y, sum y^2, then per covariate j sum c_j and
    sum y c_j, then sum c_j c_l for j <= l.
    """

    cells: tuple[str, ...]
    cell: I64
    half: I64
    dims: dict[str, tuple[list[object], I64]]  # per dimension: levels (typed values) and codes (-1 = null)
    moments: F64
    k: int
    scale: float

    @property
    def n(self) -> F64:
        return self.moments[:, 0]

    @staticmethod
    def of(cube: CompressedTable, metric: str, treatment: str) -> CubeArrays:
        table = cube.table
        layout = cube.layout.metrics[metric]
        k = len(layout.covariates)
        cells_arr = pc.dictionary_encode(table.column(treatment).cast(pa.string())).combine_chunks()
        dims: dict[str, tuple[list[object], I64]] = {}
        for name in cube.layout.keys:
            if name in (treatment, HALF_COLUMN):
                continue
            enc = pc.dictionary_encode(table.column(name)).combine_chunks()
            codes = np.asarray(pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
            dims[name] = (enc.dictionary.to_pylist(), codes)

        def col(ey: int, *exps: int) -> F64:
            name = layout.column(ey, *(exps or (0,) * k))
            return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)

        def unit(*js: int) -> tuple[int, ...]:
            e = [0] * k
            for j in js:
                e[j] += 1
            return tuple(e)

        columns = [col(0), col(1), col(2)]
        columns += [col(0, *unit(j)) for j in range(k)] + [col(1, *unit(j)) for j in range(k)]
        columns += [col(0, *unit(j, m)) for j in range(k) for m in range(j, k)]
        return CubeArrays(
            cells=tuple(str(c) for c in cells_arr.dictionary.to_pylist()),
            cell=np.asarray(cells_arr.indices.to_numpy(zero_copy_only=False), dtype=np.int64),
            half=np.asarray(table.column(HALF_COLUMN).to_numpy(zero_copy_only=False), dtype=np.int64),
            dims=dims, moments=np.column_stack(columns), k=k, scale=layout.transform(0).scale,
        )

    def sums(self, mask: NDArray[np.bool_]) -> F64:
        """``[half, cell, moment]`` sums over the rows in ``mask``."""
        cells = len(self.cells)
        idx = (self.half * cells + self.cell)[mask]
        rows = self.moments[mask]
        out = np.zeros((2, cells, rows.shape[1]))
        for j in range(rows.shape[1]):
            out[:, :, j] = np.bincount(idx, weights=rows[:, j], minlength=2 * cells).reshape(2, cells)
        return out

    def unpack(self, s: F64) -> tuple[float, float, float, F64, F64, F64]:
        """(n, sum y, sum y^2, sum c, sum y c, sum c c') of one cell's moment vector."""
        k = self.k
        scc = np.zeros((k, k))
        iu = np.triu_indices(k)
        scc[iu] = s[3 + 2 * k:]
        scc = scc + np.triu(scc, 1).T
        return float(s[0]), float(s[1]), float(s[2]), s[3:3 + k], s[3 + k:3 + 2 * k], scc

    def slope(self, half_sums: F64) -> F64:
        """CUPED slope: the pooled within-cell least-squares slope of the metric on the covariates (z units)."""
        k = self.k
        if not k:
            return np.zeros(0)
        a, b = np.zeros((k, k)), np.zeros(k)
        for s in half_sums:
            n, sy, _, sc, syc, scc = self.unpack(s)
            if n > 0:
                a += scc - np.outer(sc, sc) / n
                b += syc - sc * sy / n
        try:
            return np.asarray(np.linalg.solve(a, b), dtype=np.float64)
        except np.linalg.LinAlgError:
            return np.zeros(k)

    def effect(self, half_sums: F64, cell: int, control: int, theta: F64) -> tuple[float, float]:
        """Difference in means (cell - control) of ``y - theta'c`` and its Welch variance, in the metric's units."""
        means, variances = [], []
        for c in (cell, control):
            n, sy, syy, sc, syc, scc = self.unpack(half_sums[c])
            if n < 2:
                return float("nan"), float("nan")
            su = sy - float(theta @ sc)
            suu = syy - 2 * float(theta @ syc) + float(theta @ scc @ theta)
            mean = su / n
            means.append(mean)
            variances.append(max(suu - su * mean, 0.0) / (n - 1) / n)
        return self.scale * (means[0] - means[1]), self.scale * self.scale * (variances[0] + variances[1])


# ---- 1. heterogeneity per dimension ------------------------------------------------------------------------
def collapse(cube: CompressedTable, mask: NDArray[np.bool_], keys: Sequence[str]) -> CompressedTable:
    """The cube rows in ``mask``, their moments summed by ``keys`` (what a slice of the cube is)."""
    values = [c for c in cube.table.column_names if c not in cube.layout.keys]
    table = cube.table.filter(pa.array(mask))
    grouped = table.group_by(list(keys)).aggregate([(c, "sum") for c in values])
    grouped = grouped.rename_columns([c.removesuffix("_sum") for c in grouped.column_names])
    grouped = grouped.select([*keys, *values]).sort_by([(k, "ascending") for k in keys])
    n_rows = int(pc.sum(grouped.column(COUNT_COLUMN)).as_py() or 0)
    dropped = {m: n_rows - int(pc.sum(grouped.column(lay.count_column())).as_py() or 0)
               for m, lay in cube.layout.metrics.items()}
    layout = CompressedLayout(kind="moments", keys=tuple(keys), metrics=cube.layout.metrics, n_rows=n_rows,
                              dropped=dropped, extra={"segment_cube": True})
    return CompressedTable(table=grouped, layout=layout)


def heterogeneity_tests(
    cube: CompressedTable, metric: str, treatment: str, dimension: str, control: str | None,
    settings: SegmentSettings,
) -> list[HeterogeneityTest]:
    """The Wald test of equal CATEs across ``dimension``'s values, one per treatment cell."""
    from xpcompute.models.base import check_min_count
    from xpcompute.models.fit import model_data
    from xpcompute.models.ols import CATEModel
    from xpcompute.spec import FitSpec

    arrays = CubeArrays.of(cube, metric, treatment)
    levels, codes = arrays.dims[dimension]
    k = len(arrays.cells)
    # units per (value, cell), both halves; the null group is a value of its own here
    counts = np.zeros((len(levels) + 1, k))
    np.add.at(counts, (codes + 1, arrays.cell), arrays.n)
    labels = ["(null)", *(str(v) for v in levels)]
    present = counts.sum(axis=1) > 0
    kept = present & (counts.min(axis=1) >= settings.min_units)
    left_out = [labels[i] for i in np.flatnonzero(present & ~kept)]
    values = [labels[i] for i in np.flatnonzero(kept)]
    if len(values) < 2:  # said before any fit: with no value kept the fit would only say no cell has data
        smallest = arrays.cells[int(np.argmin(counts[present].sum(axis=0)))] if present.any() else "(none)"
        return [HeterogeneityTest(metric=metric, cell="*", control=control or "", dimension=dimension, values=values,
                                  left_out=left_out, chi2=None, df=None, p_value=None,
                                  note=f"fewer than two values of {dimension} with {settings.min_units} units in "
                                       f"every cell (the smallest cell is {smallest!r})")]
    layout = cube.layout.metrics[metric]
    spec = FitSpec(metric=metric, treatment=treatment, model="cate", segment=dimension, control=control,
                   covariates=tuple(layout.covariates), alpha=settings.alpha)
    compressed = collapse(cube, kept[codes + 1], [treatment, dimension])
    try:
        data = model_data(compressed, spec)
        treatments = data.treatments
        if len(values) < 2:
            return [HeterogeneityTest(metric=metric, cell=c, control=data.control, dimension=dimension, values=values,
                                      left_out=left_out, chi2=None, df=None, p_value=None,
                                      note=f"fewer than two values with {settings.min_units} units in every cell")
                    for c in treatments]
        data.check_cells_nonempty()
        check_min_count(data)
        model = CATEModel()
        model.train(data)
    except XPError as exc:
        return [HeterogeneityTest(metric=metric, cell="*", control=control or "", dimension=dimension,
                                  values=values, left_out=left_out, chi2=None, df=None, p_value=None,
                                  note=f"{type(exc).__name__}: {exc}")]
    out = []
    for c in treatments:
        chi2, df, p = model.heterogeneity_test(data, c)
        if not (np.isfinite(chi2) and np.isfinite(p) and df > 0):
            out.append(HeterogeneityTest(metric=metric, cell=c, control=data.control, dimension=dimension,
                                         values=values, left_out=left_out, chi2=None, df=None, p_value=None,
                                         note=f"the Wald statistic cannot be computed (chi2 {chi2}, df {df})"))
            continue
        out.append(HeterogeneityTest(metric=metric, cell=c, control=data.control, dimension=dimension,
                                     values=values, left_out=left_out, chi2=chi2, df=df, p_value=p))
    return out


# ---- 2. the honest tree -----------------------------------------------------------------------------------------
@dataclass
class _Node:
    mask: NDArray[np.bool_]
    conditions: tuple[Condition, ...]
    statistic: float | None = None


def grow_tree(arrays: CubeArrays, cell: int, control: int, settings: SegmentSettings) -> list[_Node]:
    """The leaves of the tree grown on the split half (``SPLIT_HALF``)."""
    from scipy import stats

    threshold = float(stats.chi2.isf(settings.split_alpha, 1))
    theta = arrays.slope(arrays.sums(np.ones(len(arrays.n), dtype=bool))[SPLIT_HALF])

    def enough(s: F64) -> bool:
        return bool(s[:, [cell, control], 0].min() >= settings.min_units)

    def grow(node: _Node, depth: int) -> list[_Node]:
        if depth >= settings.max_depth:
            return [node]
        fixed = {c.column for c in node.conditions if not c.negate}
        best: tuple[float, _Node, _Node] | None = None
        for name, (levels, codes) in arrays.dims.items():
            if name in fixed:
                continue
            in_node = node.mask & (codes >= 0)
            for v in np.unique(codes[node.mask & (codes >= 0)]):
                left = node.mask & (codes == v)
                right = in_node & (codes != v)
                sl, sr = arrays.sums(left), arrays.sums(right)
                if not (enough(sl) and enough(sr)):
                    continue
                tl, vl = arrays.effect(sl[SPLIT_HALF], cell, control, theta)
                tr, vr = arrays.effect(sr[SPLIT_HALF], cell, control, theta)
                if not vl + vr > 0:
                    continue
                z2 = (tl - tr) ** 2 / (vl + vr)
                if best is None or z2 > best[0]:
                    value = _scalar(levels[int(v)])
                    # dim = v makes earlier dim != w conditions redundant (same rows): the label keeps dim = v only
                    kept = tuple(c for c in node.conditions if c.column != name)
                    best = (z2, _Node(left, (*kept, Condition(column=name, values=(value,)))),
                            _Node(right, (*node.conditions, Condition(column=name, values=(value,), negate=True))))
        if best is None or best[0] <= threshold:
            return [node]
        z2, left_node, right_node = best
        left_node.statistic = right_node.statistic = float(z2)
        return grow(left_node, depth + 1) + grow(right_node, depth + 1)

    return grow(_Node(np.ones(len(arrays.n), dtype=bool), ()), 0)


def _scalar(value: object) -> str | int | bool:
    """A dimension value as a slice filter accepts it (strings, integers, booleans; anything else as text)."""
    if isinstance(value, bool | int | str):
        return value
    return str(value)


def tree_segments(
    arrays: CubeArrays, metric: str, cell: str, control: str, settings: SegmentSettings
) -> list[Segment]:
    """Grow the tree for one (metric, treatment cell) and estimate each leaf on the estimation half."""
    from scipy import stats

    ci, cc = arrays.cells.index(cell), arrays.cells.index(control)
    leaves = grow_tree(arrays, ci, cc, settings)
    if len(leaves) < 2:
        return []
    q = float(stats.norm.isf(settings.alpha / 2))
    everyone = arrays.sums(np.ones(len(arrays.n), dtype=bool))[ESTIMATION_HALF]
    theta = arrays.slope(everyone)
    out = []
    for leaf in leaves:
        s = arrays.sums(leaf.mask)[ESTIMATION_HALF]
        rest = everyone - s
        tau, var = arrays.effect(s, ci, cc, theta)
        tau_rest, var_rest = arrays.effect(rest, ci, cc, theta)
        se = _sqrt(var)
        diff = tau - tau_rest
        dse = _sqrt(var + var_rest)
        p = float(2 * stats.norm.sf(abs(diff) / dse)) if dse is not None and dse > 0 else None
        slice_filter = SliceFilter(all_of=leaf.conditions)
        out.append(Segment(
            metric=metric, cell=cell, control=control, label=slice_filter.label(), slice=slice_filter,
            depth=len(leaf.conditions), n_cell=float(s[ci, 0]), n_control=float(s[cc, 0]),
            effect=_num(tau), se=se, ci_low=_num(tau - q * se) if se is not None else None,
            ci_high=_num(tau + q * se) if se is not None else None, rest_effect=_num(tau_rest),
            difference=_num(diff), difference_se=dse,
            difference_ci_low=_num(diff - q * dse) if dse is not None else None,
            difference_ci_high=_num(diff + q * dse) if dse is not None else None,
            p_value=p, split_statistic=leaf.statistic,
        ))
    return out


def _sqrt(var: float) -> float | None:
    return float(np.sqrt(var)) if np.isfinite(var) and var >= 0 else None


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


# ---- everything, corrected together -----------------------------------------------------------------------------
def discover(
    cube: CompressedTable, treatment: str, metrics: Sequence[str], control: str | None = None,
    settings: SegmentSettings | None = None, analysis_id: str | None = None,
) -> SegmentReport:
    """Heterogeneity tests and honest-tree leaves for every metric and treatment cell, BH across all of them."""
    settings = settings or SegmentSettings()
    dims = [k for k in cube.layout.keys if k not in (treatment, HALF_COLUMN)]
    tests: list[HeterogeneityTest] = []
    segments: list[Segment] = []
    notes: list[str] = []
    for metric in metrics:
        if metric not in cube.layout.metrics:
            notes.append(f"metric {metric!r} is not in the segment cube")
            continue
        for dim in dims:
            tests.extend(heterogeneity_tests(cube, metric, treatment, dim, control, settings))
        arrays = CubeArrays.of(cube, metric, treatment)
        totals = arrays.sums(np.ones(len(arrays.n), dtype=bool))[:, :, 0].sum(axis=0)
        present = [c for c, n in zip(arrays.cells, totals, strict=True) if n > 0]
        ctrl = _control(present, control)
        for cell in (c for c in present if c != ctrl):
            segments.extend(tree_segments(arrays, metric, cell, ctrl, settings))
    return corrected(SegmentReport(analysis_id=analysis_id, dimensions=dims, metrics=list(metrics),
                                   settings=settings, tests=tests, segments=segments, notes=notes))


def _control(cells: Sequence[str], requested: str | None) -> str:
    from xpcompute.models.data import choose_control

    return choose_control(list(cells), requested)


def corrected(report: SegmentReport) -> SegmentReport:
    """BH-adjusted p-values and discoveries across every test and every leaf of the report."""
    p = [t.p_value for t in report.tests] + [s.p_value for s in report.segments]
    tested = np.array([x for x in p if x is not None], dtype=np.float64)
    adjusted = iter(benjamini_hochberg(tested).tolist())
    fdr = report.settings.fdr

    def adj(value: float | None) -> dict[str, object]:
        if value is None:
            return {}
        a = next(adjusted)
        return {"p_adjusted": a, "discovered": a <= fdr}

    tests = [t.model_copy(update=adj(t.p_value)) for t in report.tests]
    segments = [s.model_copy(update=adj(s.p_value)) for s in report.segments]
    found = sum(t.discovered for t in tests) + sum(s.discovered for s in segments)
    return report.model_copy(update={"tests": tests, "segments": segments, "tested": len(tested),
                                     "discoveries": found})
