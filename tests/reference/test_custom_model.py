"""A scientist adds a model by writing train and predict only; the base supplies effects and a bootstrap variance."""

from __future__ import annotations

import numpy as np
from datagen import make_experiment
from numpy.typing import NDArray
from scipy import stats

from xpcompute.models import CausalModel, ModelData, fit_table, model_data, prepare, register
from xpcompute.spec import CompressSpec, FitSpec


class CellMeanModel(CausalModel):
    """The simplest potential-outcomes model: E[y | X = cell] is the cell's mean. No variance formula."""

    name = "cellmean"

    def train(self, data: ModelData) -> None:
        labels = data.cell_labels
        self.means = {c: data.sum_y[labels == c].sum() / data.n[labels == c].sum() for c in data.cells}

    def predict(self, data: ModelData, cell: str) -> NDArray[np.float64]:
        return np.full(len(data.n), self.means[cell])


def test_two_method_model_gets_effects_and_bootstrap_intervals() -> None:
    table = make_experiment(n=3000, seed=31)
    spec = FitSpec(metric="y", treatment="cell", model="ttest", compress=CompressSpec(kind="none"), bootstrap_reps=400, seed=7)
    data = model_data(prepare(table, spec), spec)
    records = CellMeanModel().estimate(data)
    y = np.asarray(table.column("y").to_numpy())
    cell = np.asarray(table.column("cell").to_pylist())
    assert [r.cell for r in records] == ["a", "b"]
    for r in records:
        a, b = y[cell == r.cell], y[cell == "control"]
        np.testing.assert_allclose(r.effect, a.mean() - b.mean(), rtol=1e-12)
        welch_se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        # the bootstrap SE estimates the same quantity; with 400 replicates it is within ~10%
        assert abs(r.se / welch_se - 1) < 0.12
        assert r.ci_low < r.effect < r.ci_high
        assert 0 <= r.p_value <= 1
    # deterministic for a seed
    again = CellMeanModel().estimate(data)
    assert [r.se for r in again] == [r.se for r in records]


def test_registered_model_runs_through_fit_table() -> None:
    register("cellmean", f"{__name__}:CellMeanModel")
    table = make_experiment(n=800, seed=2)
    spec = FitSpec.model_construct(**{**FitSpec(metric="y", treatment="cell").model_dump(), "model": "cellmean",
                                      "compress": CompressSpec(kind="none"), "bootstrap_reps": 100})
    out = fit_table(table, spec)
    assert {r.model for r in out.records} == {"cellmean"}
    res = stats.ttest_ind(
        np.asarray(table.column("y").to_numpy())[np.asarray(table.column("cell").to_pylist()) == "a"],
        np.asarray(table.column("y").to_numpy())[np.asarray(table.column("cell").to_pylist()) == "control"],
        equal_var=False,
    )
    rec = next(r for r in out.records if r.cell == "a")
    assert np.sign(rec.statistic) == np.sign(res.statistic)
