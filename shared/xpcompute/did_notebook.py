"""The difference-in-differences notebook example (``examples/notebooks/did.ipynb``).

``python -m xpcompute.did_notebook [PATH]`` writes it (unexecuted); ``tests/ui/test_did_notebook.py`` executes
the notebook it builds in a kernel of this interpreter (``notebook.execute_notebook``) and checks that the file
in ``examples/`` is the same notebook, so the example cannot go stale. The notebook walks a quasi-experiment
step by step with the library's public functions: seeded raw tables with a known effect
(``synthetic_quasi``), the ``design: quasi`` spec, stage 1's unit-by-week panel in event time, the lossless
panel compression and the ``did`` fit, the event-study figure, another reference period, a check of every
number against statsmodels on the raw panel, and the same analysis through the service.
"""

from __future__ import annotations

import sys
from pathlib import Path

from nbformat import NotebookNode

from xpcompute.nbcells import code as _code
from xpcompute.nbcells import example_notebook, save
from xpcompute.nbcells import md as _md

DEFAULT_PATH = "examples/notebooks/did.ipynb"


def build_did_notebook(customers: int = 6000, seed: int = 3) -> NotebookNode:
    """The example notebook (cells only; run it with ``notebook.execute_notebook``)."""
    cells = [
        _md("""
# Difference in differences for a quasi-experiment

Some changes cannot be randomised: here a shop raised prices by 10% in two of its six regions on 2026-03-16.
Comparing those regions with the others *after* the change mixes the price with every other difference between
regions; comparing them with themselves *before* mixes it with the season. Difference in differences compares how
the treated regions **changed** with how the comparison regions changed, week by week, relative to the last week
before the change, and checks the weeks before the change (they should show no effect: parallel trends).

xpcompute fits it as an event study (period effects, group effects and group-by-week effects, standard errors
clustered by customer) exactly from a compressed panel: per group of customers, sums of their week vectors and
cross-products, never the raw rows. Everything below is a public function; `xpcompute run` and the service call
the same ones.
"""),
        _md("## 1. Raw tables with a known effect\n\nCustomers (string ids, a region each) and their orders "
            "(timestamps), seeded; `truth` is the true average effect on the treated per week relative to the change."),
        _code(f"""
from pathlib import Path
import pandas as pd
from xpcompute.synthetic_quasi import QuasiConfig, generate, draw

config = QuasiConfig(customers={customers}, seed={seed})
paths = generate("did_data", config)
truth = draw(config).truth
print(f"{{truth.treated_customers:,}} treated and {{truth.comparison_customers:,}} comparison customers")
pd.read_parquet(paths["orders"]).head()
"""),
        _md("## 2. The quasi-experiment spec\n\nA group column of the users source and the change date replace the "
            "allocation and the cells (`docs/experiment-yaml.md`, *Quasi-experiments*)."),
        _code("""
from xpcompute.experiment import ExperimentSpec

spec = ExperimentSpec.parse({
    "id": "price-change-regions",
    "design": "quasi",
    "quasi": {"group_column": "region", "treated": ["north", "west"], "change_date": "2026-03-16", "period": "week"},
    "users_source": "customers",
    "window": {"start": "2026-02-23", "end": "2026-04-05"},
    "sources": {
        "customers": {"uri": str(paths["customers"].resolve()), "user_column": "customer_id"},
        "orders": {"uri": str(paths["orders"].resolve()), "user_column": "customer_id", "date_column": "ordered_at"},
    },
    "metrics": [{"name": "revenue", "source": "orders", "value": "amount", "aggregation": "sum"}],
})
print(spec.cells, spec.control, spec.allocation)
spec.fit_specs_for("revenue")
"""),
        _md("## 3. Stage 1: the customer-by-week panel\n\nOne row per customer and week; `day` is the event time "
            "(weeks relative to the change: -1 is the last week before it)."),
        _code("""
from xpcompute.pipeline.stage1 import run_stage1
from xpcompute.pipeline.tables import open_table
from xpcompute.storage import keys
from xpcompute.storage.objects import LocalObjectStore

store = LocalObjectStore("did_store")
run_stage1(spec, store)
panel = open_table(keys.user_day_table(spec.id), store).read()
panel.to_pandas().sort_values(["user_id", "day"]).head(8)
"""),
        _md("## 4. Compress and fit\n\nThe panel compresses to one row per group (treated, comparison); the fit "
            "reads only those sums."),
        _code("""
from xpcompute.compression.panel import compress_panel
from xpcompute.models import fit_compressed

fit_spec = spec.fit_specs_for("revenue")[0]
compressed = compress_panel(panel, fit_spec)
records = fit_compressed(compressed, fit_spec)
print(f"{panel.num_rows:,} customer-weeks -> {compressed.n_groups} compressed rows")
pd.DataFrame([{"week": r.time, "segment": r.segment, "effect": r.effect, "se": r.se, "p": r.p_value,
               "true": truth.revenue.get(int(r.time)) if r.time is not None else None} for r in records])
"""),
        _md("The rows with a week are the effects relative to week -1 (before the change they are placebos); the row "
            "without one is the average over the weeks after the change (the headline), and `pre-trend` is the "
            "joint Wald test that every pre-change effect is zero."),
        _md("## 5. The event-study figure\n\nBuilt from the records only, as in the report and the scorecard page."),
        _code("""
from xpcompute.viz.did import event_study

event_study(records)
"""),
        _md("## 6. Another reference period\n\nRelative to the first week instead: no pre-periods are left to test."),
        _code("""
first = fit_spec.model_copy(update={"reference_period": "-3"})
pd.DataFrame([{"week": r.time, "effect": r.effect, "se": r.se} for r in fit_compressed(compressed, first)])
"""),
        _md("## 7. Check every number against statsmodels\n\nOLS on the raw customer-week rows with week dummies, a "
            "treated dummy and treated x week dummies (all but week -1), errors clustered by customer."),
        _code("""
import numpy as np
import statsmodels.api as sm

df = panel.to_pandas()
treated = (df["cell"] == "treated").to_numpy(float)
weeks = sorted(df["day"].unique())
cols = [(df["day"] == w).to_numpy(float) for w in weeks] + [treated]
index = {}
for w in weeks:
    if w != -1:
        index[str(w)] = len(cols)
        cols.append(treated * (df["day"] == w).to_numpy(float))
groups = pd.factorize(df["user_id"])[0]
ols = sm.OLS(df["revenue"].to_numpy(), np.column_stack(cols)).fit(cov_type="cluster", cov_kwds={"groups": groups})
for r in records:
    if r.time is not None:
        j = index[r.time]
        assert np.allclose([r.effect, r.se], [ols.params[j], ols.bse[j]], rtol=1e-8, atol=0)
pre = [j for w, j in index.items() if int(w) < -1]
R = np.zeros((len(pre), len(ols.params)))
R[np.arange(len(pre)), pre] = 1.0
wald = ols.wald_test(R, use_f=False, scalar=True)
test = next(r for r in records if r.segment == "pre-trend")
assert np.isclose(test.statistic, float(wald.statistic), rtol=1e-8)
post = [j for w, j in index.items() if int(w) >= 0]
average = next(r for r in records if r.segment is None and r.time is None)
contrast = np.zeros(len(ols.params))
contrast[post] = 1 / len(post)
assert np.isclose(average.effect, float(ols.t_test(contrast).effect[0]), rtol=1e-8)
print(f"{len(index)} effects, their average and the pre-trend test (chi2 {test.statistic:.4f}) = statsmodels")
"""),
        _md("## 8. The same through the service\n\nRegister the spec, analyse, read the scorecard: the records are "
            "the ones above, and there is no sample-ratio check (no random assignment), as the scorecard says."),
        _code("""
from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.runtime import EmbeddedRuntime

with EmbeddedRuntime(Settings(home=Path("did_home"), dispatch="inline", slice_engine="arrow")) as rt:
    rt.coordinator.register_experiment(spec)
    analysis = rt.coordinator.submit(spec.id, AnalysisSpec(metrics=("revenue",)))
    card = rt.coordinator.results(analysis.analysis_id)
served = {(r.time, r.segment): r.effect for r in card.records}
assert all(np.isclose(served[(r.time, r.segment)], r.effect, rtol=1e-9) for r in records)
print(card.state, "| sample ratio:", card.srm_note)
"""),
    ]
    return example_notebook(cells)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else DEFAULT_PATH)
    print(save(build_did_notebook(), path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
