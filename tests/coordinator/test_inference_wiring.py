"""The inference pass in ``Coordinator.finalize``: looks are stored state, and every sequential, Bayesian and
shrinkage field equals the library function (``xpcompute.inference``) on the record's own effect and se."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from service_helpers import FakeClock, analysis_table, publish

from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.inference_pass import apply_inference, record_key
from xpcompute.coordinator.jobs import AnalysisState
from xpcompute.coordinator.runtime import EmbeddedRuntime
from xpcompute.errors import InputError
from xpcompute.inference import (
    confidence_sequence,
    effect_from_record,
    empirical_bayes_shrinkage,
    group_sequential_boundaries,
    normal_posterior,
)
from xpcompute.inference.settings import InferenceSpec, PriorSpec
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.records import ResultRecord
from xpcompute.storage import keys
from xpcompute.viz.headline import headlines, metric_infos
from xpcompute.viz.scorecard import decision_p, to_row
from xpcompute.viz.terminal import scorecard_text

US = SliceFilter.where(country="US")
CA = SliceFilter.where(country="CA")
SLICES = (SliceFilter(), US, CA)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[EmbeddedRuntime]:
    settings = Settings(home=tmp_path, dispatch="inline", slice_engine="arrow")
    rt = EmbeddedRuntime(settings)
    rt.coordinator.clock = FakeClock()
    yield rt
    rt.stop()


def _spec(inference: InferenceSpec | None, **kw: Any) -> AnalysisSpec:
    base: dict[str, Any] = dict(metrics=("hours", "is_streamer"), models=("ttest", "ols"),
                                covariates=("pre_hours",), slices=SLICES, table=keys.analysis_table("exp"),
                                inference=inference)
    base.update(kw)
    return AnalysisSpec(**base)


def _ids(count: int) -> list[str]:
    """Fresh analysis ids: a warm worker's decoded-slice cache is per process and keyed by object key."""
    tag = uuid.uuid4().hex[:10]
    return [f"{tag}-a{k}" for k in range(1, count + 1)]


def _analyse(rt: EmbeddedRuntime, n: int, spec: AnalysisSpec, aid: str) -> Any:
    """Publish a table of ``n`` users (the experiment's data so far), analyse it, return the finalized card."""
    coord = rt.coordinator
    publish(coord.store, "exp", analysis_table(n, seed=n))
    clock = coord.clock
    assert isinstance(clock, FakeClock)
    clock.advance(3600.0)
    coord.submit("exp", spec, analysis_id=aid)
    assert coord.state.get_analysis(aid).state == AnalysisState.SUCCEEDED, coord.state.get_analysis(aid).error
    return coord.results(aid)


def _looks(rt: EmbeddedRuntime) -> list[dict[str, Any]]:
    store = rt.coordinator.store
    return sorted((json.loads(store.get_bytes(k)) for k in store.list(keys.experiment_look("exp"))),
                  key=lambda d: d["created_at"])


def _sequential(records: list[ResultRecord]) -> list[ResultRecord]:
    return [r for r in records if r.model in ("ttest", "ols")]


def _headline_estimates(records: list[ResultRecord], cell: str) -> list[ResultRecord]:
    """CUPED (ols) is the headline of every metric here: the request declares pre_hours for both."""
    return [r for r in records if r.cell == cell and r.model == "ols"]


def test_group_sequential_looks_boundaries_posterior_and_shrinkage(runtime: EmbeddedRuntime) -> None:
    planned = 3000
    inference = InferenceSpec(sequential="group_sequential", planned_units=planned, planned_looks=3,
                              bayesian=True, shrinkage=True)
    sizes = (1000, 2000, 3000)
    ids = _ids(3)
    fractions = [n / planned for n in sizes]
    for k, n in enumerate(sizes, start=1):
        card = _analyse(runtime, n, _spec(inference), ids[k - 1])
        expected = group_sequential_boundaries(fractions[:k], 0.05, "obrien_fleming", 2)
        c = expected.z[-1]
        summary = card.inference
        assert summary["method"] == "group_sequential" and summary["look"] == k and summary["planned_looks"] == 3
        assert summary["label"] == f"look {k} of 3" and summary["n"] == n
        assert summary["boundary_z"] == pytest.approx(c, rel=1e-12)
        assert summary["alpha_spent"] == pytest.approx(expected.cumulative_alpha[-1], rel=1e-12)
        assert all(r.inference is not None for r in card.records)
        crossed = []
        for r in _sequential(card.records):
            assert r.inference == "group_sequential" and r.look == k and r.planned_looks == 3
            assert r.information_fraction == pytest.approx(fractions[k - 1], rel=1e-15)
            assert r.boundary_z == pytest.approx(c, rel=1e-12)
            assert r.se is not None and r.sequential_ci_low is not None and r.sequential_ci_high is not None
            assert r.sequential_ci_low == pytest.approx(r.effect - c * r.se, rel=1e-12)
            assert r.sequential_ci_high == pytest.approx(r.effect + c * r.se, rel=1e-12)
            assert r.boundary_crossed == (abs(r.effect / r.se) >= c)
            assert r.sequential_p_value is not None
            assert (r.sequential_p_value <= 0.05) == r.boundary_crossed  # the decision scale
            assert decision_p(r) == r.sequential_p_value_adjusted
            if r.boundary_crossed:
                crossed.append(record_key(r))
            post = normal_posterior(effect_from_record(r), None, alpha=0.05)
            assert r.prior == "flat"
            assert r.posterior_mean == pytest.approx(post.posterior_mean, rel=1e-12)
            assert r.posterior_sd == pytest.approx(post.posterior_sd, rel=1e-12)
            assert r.credible_low == pytest.approx(post.ci_low, rel=1e-12)
            assert r.credible_high == pytest.approx(post.ci_high, rel=1e-12)
            assert r.chance_to_beat_control == pytest.approx(post.chance_to_beat_control, rel=1e-12)
            assert r.expected_loss_ship == pytest.approx(post.expected_loss_ship, rel=1e-12)
            assert r.expected_loss_no_ship == pytest.approx(post.expected_loss_not_ship, rel=1e-12)
        assert summary["crossed"] == crossed
        heads = _headline_estimates(card.records, "treatment")
        assert len(heads) == 2 * len(SLICES)
        ref = empirical_bayes_shrinkage(np.array([r.relative_effect for r in heads], dtype=np.float64),
                                        np.array([r.relative_se for r in heads], dtype=np.float64), alpha=0.05)
        for j, r in enumerate(heads):
            assert r.shrunk_effect == pytest.approx(float(ref.posterior_mean[j]), rel=1e-12)
            assert r.shrunk_se == pytest.approx(float(ref.posterior_sd[j]), rel=1e-12)
            assert r.shrunk_ci_low == pytest.approx(float(ref.ci_low[j]), rel=1e-12)
            assert r.shrunk_ci_high == pytest.approx(float(ref.ci_high[j]), rel=1e-12)
            assert r.shrinkage_prior_sd == pytest.approx(math.sqrt(ref.prior_variance), rel=1e-12)
        assert all(r.shrunk_effect is None for r in card.records if r.model == "ttest")
        stored = _looks(runtime)
        assert [d["analysis_id"] for d in stored] == ids[:k]
        assert stored[-1]["n"] == n and stored[-1]["boundary_z"] == pytest.approx(c, rel=1e-12)

    # a live slice re-finalizes analysis 3: it keeps its look (no fourth look, same boundary)
    before = runtime.coordinator.results(ids[2]).inference
    assert before is not None
    runtime.coordinator.request_slice(ids[2], SliceFilter.where(country="MX"))
    assert runtime.coordinator.state.get_analysis(ids[2]).state == AnalysisState.SUCCEEDED
    after = runtime.coordinator.results(ids[2])
    assert len(_looks(runtime)) == 3 and after.inference is not None
    assert after.inference["look"] == 3 and after.inference["boundary_z"] == before["boundary_z"]
    assert {r.slice for r in after.records} >= {"country=MX"}


def test_a_reanalysis_of_the_same_data_is_the_same_look(runtime: EmbeddedRuntime) -> None:
    inference = InferenceSpec(sequential="group_sequential", planned_units=4000, planned_looks=4)
    ids = _ids(2)
    _analyse(runtime, 1000, _spec(inference), ids[0])
    card = _analyse(runtime, 1000, _spec(inference), ids[1])
    assert card.inference["look"] == 1 and len(_looks(runtime)) == 1
    assert any("did not grow" in note for note in card.inference["notes"])


def test_always_valid_records_equal_the_confidence_sequence_and_priors_apply(runtime: EmbeddedRuntime) -> None:
    prior = PriorSpec(mean=0.0, sd=0.05, scale="relative")
    inference = InferenceSpec(sequential="always_valid", planned_units=5000, bayesian=True,
                              priors={"hours": prior})
    card = _analyse(runtime, 2000, _spec(inference), _ids(1)[0])
    n_look = card.inference["n"]
    assert n_look == 2000 and card.inference["label"] == "look 1"
    checked = 0
    for r in _sequential(card.records):
        assert r.se is not None
        n_rec = r.n_cell + r.n_control
        cs = confidence_sequence(r.effect, r.se, n_rec, 5000 * n_rec / n_look, 0.05)
        if r.slice == "all users":
            assert n_rec == n_look  # two cells: the all-users record's plan is planned_units itself
        assert r.inference == "always_valid"
        assert r.sequential_ci_low == pytest.approx(cs.ci_low, rel=1e-12)
        assert r.sequential_ci_high == pytest.approx(cs.ci_high, rel=1e-12)
        assert r.sequential_p_value == pytest.approx(cs.p_value, rel=1e-12)
        assert r.boundary_z is None and r.boundary_crossed == (cs.p_value <= 0.05)
        post = normal_posterior(effect_from_record(r), prior.prior() if r.metric == "hours" else None, alpha=0.05)
        assert r.posterior_mean == pytest.approx(post.posterior_mean, rel=1e-12)
        assert r.credible_high == pytest.approx(post.ci_high, rel=1e-12)
        assert r.prior == ("N(0, 0.05^2) relative" if r.metric == "hours" else "flat")
        checked += 1
    assert checked == 2 * 2 * len(SLICES)
    assert len(_looks(runtime)) == 1

    # the terminal says which inference decided, and shows the sequential interval and p (the deciding ones)
    heads = headlines(card.records, metric_infos(["hours", "is_streamer"]))
    text = scorecard_text(heads, width=200, inference=card.inference)
    assert "look 1: always-valid intervals" in text and "anytime p-values" in text
    for h in heads:
        assert h.record.inference == "always_valid" and h.p == h.record.sequential_p_value_adjusted
        row = to_row(h.record)
        assert row.ci == (h.record.sequential_ci_low, h.record.sequential_ci_high)
        assert row.p == h.record.sequential_p_value and row.p_adjusted == h.record.sequential_p_value_adjusted


def test_fixed_horizon_is_the_default_and_says_so(runtime: EmbeddedRuntime) -> None:
    (aid,) = _ids(1)
    card = _analyse(runtime, 1500, _spec(None), aid)
    assert card.inference["method"] == "fixed_horizon" and card.inference["look"] is None
    assert {r.inference for r in card.records} == {"fixed_horizon"}
    assert all(r.sequential_p_value is None and r.posterior_mean is None for r in card.records)
    assert _looks(runtime) == []
    request = runtime.coordinator.state.get_analysis(aid).request
    assert request["inference"]["sequential"] == "none"  # stored resolved


def test_a_prior_for_a_metric_not_analysed_is_refused(runtime: EmbeddedRuntime) -> None:
    publish(runtime.coordinator.store, "exp", analysis_table(500))
    bad = InferenceSpec(bayesian=True, priors={"revenue": PriorSpec(sd=0.1)})
    with pytest.raises(InputError, match=r"inference\.priors names"):
        runtime.coordinator.submit("exp", _spec(bad))


def test_the_notebook_reproduces_a_sequential_bayesian_shrunk_analysis(runtime: EmbeddedRuntime,
                                                                       tmp_path: Path) -> None:
    """The exported notebook runs the pass again (looks read from the store) and its final check passes."""
    nbformat = pytest.importorskip("nbformat", reason="the notebook export needs nbformat")
    from xpcompute.notebook import execute_notebook, write_notebook

    inference = InferenceSpec(sequential="group_sequential", planned_units=3000, planned_looks=2, bayesian=True,
                              shrinkage=True, priors={"hours": PriorSpec(sd=0.1)})
    ids = _ids(2)
    _analyse(runtime, 1500, _spec(inference), ids[0])
    card = _analyse(runtime, 3000, _spec(inference), ids[1])
    assert card.inference["look"] == 2
    path = write_notebook(runtime.coordinator, ids[1], tmp_path / "nb" / "analysis.ipynb")
    nb = nbformat.read(str(path), as_version=4)
    execute_notebook(nb, path.parent, timeout_s=120)
    assert "records equal the stored scorecard" in nb.cells[-1].outputs[0]["text"]


def _record(metric: str, slice_: str, effect: float, se: float, rel_se: float) -> ResultRecord:
    return ResultRecord(metric=metric, model="ttest", cell="b", control="a", effect=effect, se=se,
                        ci_low=effect - 1.96 * se, ci_high=effect + 1.96 * se, p_value=0.5,
                        relative_effect=effect / 10.0, relative_se=rel_se, relative_ci_low=None,
                        relative_ci_high=None, n_cell=500.0, n_control=500.0, mean_cell=10.0 + effect,
                        mean_control=10.0, slice=slice_)


def test_records_without_a_usable_lift_are_left_out_of_shrinkage_not_the_pass() -> None:
    """A lift with a non-finite or zero se (a zero control mean, a constant metric) must not sink the analysis."""
    records = [_record("m", f"s{i}", 0.1 * i, 0.2, 0.02) for i in range(4)]
    records.append(_record("m", "bad", 0.3, 0.2, float("nan")))
    records.append(_record("m", "zero", 0.3, 0.2, 0.0))
    out, summary = apply_inference(records, InferenceSpec(shrinkage=True, bayesian=True), alpha=0.05,
                                   correction="bh", covariates={})
    assert all(r.shrunk_effect is not None for r in out[:4])
    assert out[4].shrunk_effect is None and out[5].shrunk_effect is None
    assert all(r.posterior_mean is not None for r in out)  # the absolute posterior still applies
    ref = empirical_bayes_shrinkage([r.relative_effect or 0.0 for r in records[:4]], [0.02] * 4, alpha=0.05)
    assert [r.shrunk_effect for r in out[:4]] == pytest.approx(list(ref.posterior_mean), rel=1e-12)
    assert summary.shrinkage_prior_sd["b"] == pytest.approx(math.sqrt(ref.prior_variance), rel=1e-12)
