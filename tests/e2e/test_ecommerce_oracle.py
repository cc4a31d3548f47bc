"""The e-commerce example through the library equals an independent pandas/statsmodels analysis to 1e-8.

Stage 1 (``run_stage1`` on DuckDB) builds the analysis table from the raw
tables: string customer ids, exposure timestamps, a timestamp-with-time-zone
source, a date source, a plugin metric. Each declared model is then fitted
(``fit_table`` with the spec's ``fit_specs_for``), and every headline number
(effect, SE, p-value, n and mean per cell) must equal what ``oracle.py``
computes from the same Parquet files. A last test shows the comparison has
power: the two old ways of drawing windows give materially different numbers
on this data, so they could not pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import oracle as O
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from oracle import TREATMENT

RTOL = 1e-8


@pytest.fixture(scope="module")
def stage1(example_yaml: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, pa.Table]:
    """The spec and the analysis table stage 1 publishes for it."""
    from xpcompute.experiment import ExperimentSpec
    from xpcompute.pipeline import run_stage1

    spec = ExperimentSpec.from_yaml(example_yaml)
    result = run_stage1(spec, str(tmp_path_factory.mktemp("store")), daily=False)
    return spec, result.analysis.read()


@pytest.fixture(scope="module")
def library(stage1: tuple[Any, pa.Table]) -> dict[tuple[str, str], dict[str, float]]:
    """Every declared (metric, model) fit on the analysis table, as field -> value.

    Event-level quantile metrics have no column in the per-unit analysis table (stage 1 writes them an events
    table; tests/e2e/test_event_quantile_service.py checks them against the raw events), so they are not here.
    """
    from xpcompute.models import fit_table

    spec, table = stage1
    out: dict[tuple[str, str], dict[str, float]] = {}
    for metric in spec.metrics:
        for fit_spec in spec.fit_specs_for(metric, control=spec.control):
            if fit_spec.model == "event_quantile":
                continue
            for record in fit_table(table, fit_spec).records:
                if record.cell == TREATMENT and record.segment is None:
                    out[(metric, fit_spec.model)] = {f: getattr(record, f) for f in O.FIELDS}
    return out


def test_analysis_table_has_exactly_the_oracles_units_with_string_ids(
    stage1: tuple[Any, pa.Table], oracle: O.Oracle
) -> None:
    """Same units (late, double-allocated and legacy-only units left out), ids kept as strings, same cells."""
    _, table = stage1
    assert pa.types.is_string(table.schema.field("user_id").type) or pa.types.is_large_string(
        table.schema.field("user_id").type
    )
    got = dict(zip(table.column("user_id").to_pylist(), table.column("cell").to_pylist(), strict=True))
    want = oracle.units["cell"].to_dict()
    assert len(got) == table.num_rows
    assert got == want


def test_per_unit_values_equal_the_oracle(stage1: tuple[Any, pa.Table], oracle: O.Oracle) -> None:
    """Each unit's metric and covariate values, before any model: where a mismatch starts, this names it."""
    _, table = stage1
    frame = table.to_pandas().set_index("user_id").loc[oracle.units.index]
    worst: dict[str, float] = {}
    for column in ("revenue", "orders", "purchaser", "page_views", "active_days", "avg_basket_cents",
                   "returned_items", "net_revenue", "pre_revenue", "pre_page_views"):
        have = frame[column].astype(float)
        want = oracle.units[column].astype(float)
        assert (have.isna() == want.isna()).all(), f"{column}: null in one side only"
        diff = (have - want).abs() / want.abs().clip(lower=1.0)
        worst[column] = float(diff.max())
    assert max(worst.values()) <= RTOL, worst
    aov_den = frame["aov__den"].astype(float)
    assert (aov_den == oracle.units["orders"]).all()


def test_headline_numbers_equal_the_oracle(
    library: dict[tuple[str, str], dict[str, float]], expected: dict[tuple[str, str], O.Estimate]
) -> None:
    """Effect, SE, p-value, n and means of every declared model, to 1e-8 relative."""
    assert set(library) == set(expected), (sorted(library), sorted(expected))
    diffs = O.relative_differences(library, expected)
    bad = {k: v for k, v in diffs.items() if not v <= RTOL}
    per_field = {f: max(v for k, v in diffs.items() if k[2] == f) for f in O.FIELDS}
    print(f"max relative difference (library): {max(diffs.values()):.2e} at {max(diffs, key=diffs.__getitem__)};"
          " by field", {f: f"{v:.1e}" for f, v in per_field.items()})
    assert not bad, bad


def test_the_old_windows_would_be_caught(
    example_yaml: Path, library: dict[tuple[str, str], dict[str, float]]
) -> None:
    """Counting every event in the window, or cutting the last day at midnight, moves the headline numbers.

    Both broken rules are computed by the oracle on the same data; each must
    miss xpcompute's numbers by far more than the tolerance, or the equality
    test above would not show that stage 1 honours exposure and end of day.
    """
    data = example_yaml.parent / "data"
    metrics = (("revenue", "ttest"), ("orders", "ttest"), ("page_views", "ols"))
    no_exposure = O.headline(O.compute(data, example_yaml, O.Rule(exposure=False)), TREATMENT)
    for key in metrics:
        got, bad = library[key], no_exposure[key]
        assert bad.n_cell > got["n_cell"] and bad.n_control > got["n_control"]  # late units counted
        assert abs(bad.mean_control / got["mean_control"] - 1) > 0.2, (key, got, bad)
        # the lift relative to control is diluted by events before each unit's exposure
        lift, bad_lift = got["effect"] / got["mean_control"], bad.effect / bad.mean_control
        assert bad_lift < lift * 0.9, (key, lift, bad_lift)
    midnight = O.headline(O.compute(data, example_yaml, O.Rule(midnight_end=True)), TREATMENT)
    for key in (("revenue", "ttest"), ("orders", "ttest"), ("revenue", "ols")):  # orders: the sale day
        got, bad = library[key], midnight[key]
        # the last day (a sale day, busiest in the evening) is lost: lower means, a smaller effect
        assert bad.mean_control < got["mean_control"] * 0.9, (key, got, bad)
        assert abs(bad.effect) < abs(got["effect"]) * 0.9, (key, got, bad)


STAGE1_SCRIPT = """
import sys
import pyarrow.parquet as pq
from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline import run_stage1
spec = ExperimentSpec.from_yaml(sys.argv[1])
pq.write_table(run_stage1(spec, sys.argv[2], daily=False).analysis.read(), sys.argv[3])
"""


def test_stage1_reads_time_zones_as_utc_on_a_machine_that_is_not_in_utc(
    example_yaml: Path, oracle: O.Oracle, tmp_path: Path
) -> None:
    """Orders carry ``timestamp[us, tz=UTC]``: the machine's own time zone must not move any order across a window edge.

    Stage 1 runs in a child process whose ``TZ`` is Los Angeles (a time zone
    is read once per process, so it cannot be changed in this one).
    """
    import os
    import subprocess
    import sys

    out = tmp_path / "analysis.parquet"
    env = {**os.environ, "TZ": "America/Los_Angeles"}
    subprocess.run([sys.executable, "-c", STAGE1_SCRIPT, str(example_yaml), str(tmp_path / "store"), str(out)],
                   check=True, env=env, timeout=300)
    frame = pq.read_table(out).to_pandas().set_index("user_id").loc[oracle.units.index]
    for column in ("revenue", "orders", "purchaser", "avg_basket_cents", "net_revenue", "pre_revenue"):
        have, want = frame[column].astype(float), oracle.units[column].astype(float)
        assert (have.isna() == want.isna()).all(), f"{column}: null in one side only"
        assert float(((have - want).abs() / want.abs().clip(lower=1.0)).max()) <= RTOL, column
