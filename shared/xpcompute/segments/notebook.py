"""The segment-discovery notebook example (``examples/segments/segment_discovery.ipynb``).

``python -m xpcompute.segments.notebook PATH`` writes it (unexecuted); ``tests/segments/test_notebook.py``
executes the notebook it builds in a kernel of this interpreter (``notebook.execute_notebook``) and checks the
file in ``examples/`` is the same notebook, so the example cannot go stale. The notebook works on compressed
data only after its first cell: it generates seeded unit-level data with a planted segment, builds the
segment cube, discovers, shows a segment's live-slice body, and checks two numbers independently (a Wald test
against statsmodels, a leaf effect against the raw rows of the estimation half).
"""

from __future__ import annotations

import sys
from pathlib import Path

from nbformat import NotebookNode

from xpcompute.nbcells import code as _code
from xpcompute.nbcells import example_notebook, save
from xpcompute.nbcells import md as _md


def build_segments_notebook(users: int = 200_000, seed: int = 1) -> NotebookNode:
    """The example notebook (cells only; run it with ``notebook.execute_notebook``)."""
    cells = [
        _md("""
# Segment discovery on compressed data

Which users does the treatment help more, or less? Comparing slices one by one inflates false positives; here
xpcompute tests every declared dimension and searches combinations of them automatically, from a **moments cube**
(sums by cell x dimensions x a hashed half of the users), never reading raw rows after the cube is built, and
controls the false discovery rate across everything it tests.

1. **Heterogeneity per dimension**: a Wald test, from the CATE model's full HC1 covariance, that the effect is the
   same for every value of the dimension.
2. **An honest causal tree**: splits are chosen on one half of the users (the half is a hash of the user id) and
   every reported number comes from the other half, so the tests stay valid although the tree picked the segments.
3. **Benjamini–Hochberg** across all the tests and leaves.

In a served analysis the same report is `GET /analyses/{id}/segments`, the `segments` section of
`GET /analyses/{id}/results`, the *Segments* section of the scorecard page, and `xpcompute segments ID`.
"""),
        _md("## 1. Data with a planted segment\n\nThe treatment adds 0.1 everywhere and 0.3 more for US users on TV."),
        _code(f"""
import json
import pandas as pd
from xpcompute.segments import build_cube, discover, SegmentSettings, HALF_RULE
from xpcompute.segments.cube import half_query
from xpcompute.segments.simulate import Planted, DIMENSIONS

truth = Planted(users={users}, seed={seed}, base_effect=0.1, planted_effect=0.3)
table = truth.table()
table.slice(0, 5).to_pandas()
"""),
        _md("## 2. The segment cube\n\nEach user's half is computed in SQL from the MD5 of the user id; the same "
            "expression runs on DuckDB, Spark and Trino."),
        _code("""
cube = build_cube(table, "user_id", "cell", list(DIMENSIONS), {"y": ["pre"]})
print(HALF_RULE)
for dialect in ("duckdb", "spark", "trino"):
    print(dialect, ":", half_query("user_id", dialect=dialect))
print(f"{table.num_rows:,} users -> {cube.table.num_rows:,} cube rows")
"""),
        _md("## 3. Discover"),
        _code("""
report = discover(cube, "cell", ["y"], settings=SegmentSettings())
print(f"{report.tested} tests, {report.discoveries} discoveries (BH at {report.settings.fdr})")
pd.DataFrame([t.model_dump(exclude={"values", "left_out"}) for t in report.tests])
"""),
        _code("""
segments = pd.DataFrame([s.model_dump(exclude={"slice"}) for s in report.segments])
segments[["label", "n_cell", "n_control", "effect", "ci_low", "ci_high", "rest_effect", "difference", "p_adjusted",
          "discovered"]]
"""),
        _md("## 4. One call to a live slice\n\nEach segment carries the body of `POST /analyses/{id}/slices`:"),
        _code("""
top = min((s for s in report.segments if s.discovered), key=lambda s: s.p_value)
print(json.dumps(top.slice.model_dump(mode="json", exclude_none=True)))
"""),
        _md("## 5. Check two numbers independently\n\nThe Wald test for `country` against statsmodels (OLS with "
            "country x cell interactions and `pre`, HC1), and the top segment's effect against the raw rows of the "
            "estimation half (CUPED with that half's pooled slope)."),
        _code("""
import hashlib
import numpy as np
import statsmodels.formula.api as smf

df = table.to_pandas()
for c in ["cell", *DIMENSIONS]:
    df[c] = df[c].astype(str)
fit = smf.ols("y ~ C(country) * C(cell, Treatment('control')) + pre", df).fit(cov_type="HC1")
names = list(fit.params.index)
tested = [i for i, n in enumerate(names) if ":" in n]
R = np.zeros((len(tested), len(names)))
R[np.arange(len(tested)), tested] = 1.0
ref = fit.wald_test(R, use_f=False, scalar=True)
ours = next(t for t in report.tests if t.dimension == "country")
assert np.isclose(ours.chi2, float(ref.statistic), rtol=1e-8), (ours.chi2, float(ref.statistic))

half = np.array([int(hashlib.md5(str(u).encode()).hexdigest()[-1], 16) % 2 for u in df["user_id"]])
est = half == 1
treated = (df["cell"] == "treatment").to_numpy()
y, pre = df["y"].to_numpy(), df["pre"].to_numpy()
num = sum(((pre - pre[est & g].mean()) * (y - y[est & g].mean()))[est & g].sum() for g in (treated, ~treated))
den = sum(((pre - pre[est & g].mean()) ** 2)[est & g].sum() for g in (treated, ~treated))
u = y - num / den * pre
inside = np.asarray(top.slice.to_arrow_mask(table).to_numpy(zero_copy_only=False), dtype=bool)
raw = u[inside & est & treated].mean() - u[inside & est & ~treated].mean()
assert np.isclose(top.effect, raw, rtol=1e-9), (top.effect, raw)
print(f"country: chi2 {ours.chi2:.4f} = statsmodels {float(ref.statistic):.4f}; "
      f"{top.label}: effect {top.effect:.4f} = rows {raw:.4f}")
"""),
    ]
    return example_notebook(cells)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else "examples/segments/segment_discovery.ipynb")
    print(save(build_segments_notebook(), path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
