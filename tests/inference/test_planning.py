"""Power planning on a registered experiment's table: the variances equal NumPy on the table, the sizes equal
statsmodels' NormalIndPower at 1e-8, sequential power is simulated and says so, and bad requests say what to fix."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from statsmodels.stats.power import NormalIndPower

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "coordinator"))

from service_helpers import raw_sources, spec_body

from xpcompute.errors import ConflictError, InputError
from xpcompute.experiment import ExperimentSpec
from xpcompute.inference.planning import plan_power
from xpcompute.pipeline.stage1 import run_stage1
from xpcompute.pipeline.tables import open_table
from xpcompute.storage import keys
from xpcompute.storage.objects import LocalObjectStore

METRIC = "streaming_hours"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExperimentSpec, LocalObjectStore, Path]:
    root = tmp_path_factory.mktemp("power")
    uris, config = raw_sources(str(root / "raw"), users=3000)
    experiment = ExperimentSpec.parse(spec_body(uris, config))
    store = LocalObjectStore(root / "objects")
    run_stage1(experiment, store)
    return experiment, store, root


def _numpy_variances(experiment: ExperimentSpec, store: LocalObjectStore) -> tuple[float, float, float]:
    """Raw pre-period variance (all units), CUPED R^2 (control cell) and the CUPED variance, by NumPy."""
    table = open_table(keys.analysis_table(experiment.id), store).read().to_pandas()
    pre = table["pre_streaming_hours"].fillna(0.0).to_numpy(dtype=np.float64)
    control = table[table["cell"] == experiment.control]
    y = control[METRIC].fillna(0.0).to_numpy(dtype=np.float64)
    x = np.column_stack([np.ones(len(control)), control["pre_streaming_hours"].fillna(0.0).to_numpy(dtype=np.float64)])
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ beta
    r2 = 1.0 - float(resid @ resid) / float(((y - y.mean()) ** 2).sum())
    variance = float(np.var(pre, ddof=1))
    return variance, r2, variance * (1.0 - r2)


def test_variances_equal_numpy_on_the_table(built: Any) -> None:
    experiment, store, _ = built
    plan = plan_power(experiment, METRIC, mde=0.1, store=store)
    variance, r2, cuped = _numpy_variances(experiment, store)
    assert plan.variance_raw == pytest.approx(variance, rel=1e-10)
    assert plan.r_squared == pytest.approx(r2, rel=1e-8)
    assert plan.variance_cuped == pytest.approx(cuped, rel=1e-8)
    assert 0 < plan.r_squared < 1 and plan.variance_cuped < plan.variance_raw
    assert plan.covariates == ["pre_streaming_hours"] and plan.variance_used == "cuped"
    assert "pre_streaming_hours" in plan.variance_source


def test_sample_size_and_mde_match_statsmodels(built: Any) -> None:
    experiment, store, _ = built
    variance, _, cuped = _numpy_variances(experiment, store)
    sd = math.sqrt(cuped)
    plan = plan_power(experiment, METRIC, mde=0.1, alpha=0.05, power=0.8, store=store)
    n1 = NormalIndPower().solve_power(effect_size=0.1 / sd, alpha=0.05, power=0.8, ratio=1.0)
    assert plan.n_control == pytest.approx(n1, rel=1e-8)
    assert plan.power == pytest.approx(0.8, rel=1e-10) and plan.solve_for == "users"
    cells = len(experiment.cells)  # equal shares: the control cell gets 1 / cells of the users
    assert cells == 3 and plan.users == math.ceil(cells * plan.n_control - 1e-9)
    assert any("3 cells" in note for note in plan.notes)

    fixed = plan_power(experiment, METRIC, users=6000, alpha=0.01, power=0.9, store=store)
    es = NormalIndPower().solve_power(nobs1=2000, alpha=0.01, power=0.9, ratio=1.0)
    assert fixed.n_control == pytest.approx(2000, rel=1e-12)
    # statsmodels' power at our MDE is the target (the defining equation, evaluated by them) to 1e-10; their
    # effect-size solver stops early (see tests/inference/test_power_reference.py), so its root only to 1e-4
    p = NormalIndPower().power(effect_size=fixed.mde_absolute / sd, nobs1=2000, alpha=0.01, ratio=1.0)
    assert p == pytest.approx(0.9, rel=1e-10) and fixed.power == pytest.approx(p, rel=1e-10)
    assert fixed.mde_absolute == pytest.approx(es * sd, rel=1e-4)

    relative = plan_power(experiment, METRIC, mde=0.05, relative=True, store=store)
    d = 0.05 * relative.baseline_mean
    n1r = NormalIndPower().solve_power(effect_size=d / sd, alpha=0.05, power=0.8, ratio=1.0)
    assert relative.n_control == pytest.approx(n1r, rel=1e-8)
    assert relative.mde_relative == pytest.approx(0.05, rel=1e-12)
    del variance


def test_days_use_the_enrollment_rate_and_a_running_test_reports_progress(built: Any) -> None:
    experiment, store, _ = built
    plan = plan_power(experiment, METRIC, mde=0.1, store=store)
    assert plan.daily_units is not None and plan.daily_units > 0
    assert plan.days == pytest.approx(plan.users / plan.daily_units, rel=1e-12)
    by_days = plan_power(experiment, METRIC, days=2, store=store)
    assert by_days.users == math.floor(plan.daily_units * 2) and by_days.solve_for == "mde"
    assert plan.running is not None  # the synthetic sources have data inside the window
    rows = open_table(keys.analysis_table(experiment.id), store).num_rows
    assert 0 < plan.running["power_now"] < 1 and plan.running["n_now"] == rows
    assert plan.running["days_remaining"] == math.ceil(plan.running["units_remaining"] / plan.daily_units - 1e-12)


def test_sequential_power_is_simulated_and_says_so(built: Any) -> None:
    experiment, store, _ = built
    plan = plan_power(experiment, METRIC, mde=0.1, sequential="group_sequential", looks=4, store=store,
                      n_sims=4000)
    seq = plan.sequential
    assert seq is not None and seq["simulated"] is True and seq["n_sims"] == 4000 and seq["looks"] == 4
    assert "simulated" in seq["note"] and any("simulated" in n for n in plan.notes)
    assert seq["power"] < plan.power + 3 * seq["mc_se"]  # looking early costs power at the same size
    fixed = plan_power(experiment, METRIC, mde=0.1, sequential="none", store=store)
    assert fixed.sequential is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mde": 0.1, "users": 100}, "exactly one of"),
    ({}, "exactly one of"),
    ({"mde": 0.1, "metric": "nope"}, "is not a metric"),
    ({"mde": 0.1, "metric": "rebuffer_rate"}, "ratio"),
    ({"mde": 0.0}, "non-zero"),
])
def test_bad_requests_say_what_to_fix(built: Any, kwargs: dict[str, Any], message: str) -> None:
    experiment, store, _ = built
    metric = kwargs.pop("metric", METRIC)
    with pytest.raises(InputError, match=message):
        plan_power(experiment, metric, store=store, **kwargs)


def test_no_table_yet_is_a_conflict_that_says_what_to_do(built: Any, tmp_path: Path) -> None:
    experiment, _, _ = built
    with pytest.raises(ConflictError, match=r"no analysis table yet.*submit an analysis"):
        plan_power(experiment, METRIC, mde=0.1, store=LocalObjectStore(tmp_path))


def test_cli_power_prints_the_plan_as_json(built: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from xpcompute.cli import main

    experiment, store, _ = built
    spec_path = tmp_path / "exp.yaml"
    spec_path.write_text(yaml.safe_dump(experiment.model_dump(mode="json")))
    home = tmp_path / "home"
    monkeypatch.setenv("XPCOMPUTE_HOME", str(home))
    # no table in this home yet: the command builds it (stage 1) first, then plans
    assert main(["power", str(spec_path), "--metric", METRIC, "--mde", "0.1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = plan_power(experiment, METRIC, mde=0.1, store=store).to_json_dict()
    assert out["n_control"] == pytest.approx(expected["n_control"], rel=1e-10)
    assert out["variance_cuped"] == pytest.approx(expected["variance_cuped"], rel=1e-10)
    assert main(["power", str(spec_path), "--metric", METRIC, "--users", "5000", "--sequential",
                 "always_valid", "--looks", "3"]) == 0
    text = capsys.readouterr().out
    assert "MDE" in text and "simulated" in text and "CUPED" in text
    assert main(["power", str(spec_path), "--metric", METRIC]) == 2
    assert "exactly one of" in capsys.readouterr().err


def test_power_plans_the_test_the_decision_applies_to_each_role(built: Any) -> None:
    """Goals: superiority at alpha / goals; guardrails: one-sided non-inferiority at the margin with beta / G
    (Schultzberg, Ankargren & Frånberg 2024); each equals statsmodels' NormalIndPower for that test at 1e-8."""
    experiment, store, _ = built
    spec = experiment.model_copy(update={"roles": experiment.roles.model_validate({
        "goal": ["streaming_hours", "longest_session_hours"],
        "guardrails": {"is_streamer": {"margin": 0.01}, "rebuffer_rate": {"margin": 0.02, "relative": True}},
    })})
    _, _, cuped = _numpy_variances(experiment, store)
    sd = math.sqrt(cuped)
    goal = plan_power(spec, METRIC, mde=0.1, alpha=0.05, power=0.8, store=store)
    n_goal = NormalIndPower().solve_power(effect_size=0.1 / sd, alpha=0.05 / 2, power=0.8, ratio=1.0)
    assert goal.role == "goal" and goal.test_alpha == pytest.approx(0.025, rel=1e-15)
    assert goal.n_control == pytest.approx(n_goal, rel=1e-8)
    assert any("2 goal metric(s)" in note for note in goal.notes)

    # the guardrail is planned at its margin (no mde needed), one-sided, power 1 - 0.2 / 2 guardrails = 0.9;
    # for a proportion non-inferiority is planned at a true effect of 0: both cells have p(1 - p)
    guard = plan_power(spec, "is_streamer", alpha=0.05, power=0.8, store=store)
    assert guard.role == "guardrail" and guard.test == "non-inferiority (one-sided)"
    assert guard.test_power == pytest.approx(0.9, rel=1e-12) and guard.mde_absolute == pytest.approx(0.01)
    p = guard.baseline_mean
    n_guard = NormalIndPower().solve_power(effect_size=0.01 / math.sqrt(p * (1 - p)), alpha=0.05, power=0.9,
                                           ratio=1.0, alternative="larger")
    assert guard.n_control == pytest.approx(n_guard, rel=1e-8)
    assert guard.n_control > plan_power(spec, "is_streamer", mde=0.01, by_role=False, store=store).n_control * 0.5

    # the same metric planned as secondary is the two-sided test at alpha
    plain = plan_power(spec, METRIC, mde=0.1, by_role=False, store=store)
    n_plain = NormalIndPower().solve_power(effect_size=0.1 / sd, alpha=0.05, power=0.8, ratio=1.0)
    assert plain.role == "secondary" and plain.n_control == pytest.approx(n_plain, rel=1e-8)
    assert goal.n_control > plain.n_control  # alpha / 2 costs units
