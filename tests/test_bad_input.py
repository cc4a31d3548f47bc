"""Bad input gets a typed error whose message says what to fix; nothing crashes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datagen import make_experiment

from xpcompute.errors import (
    CellError,
    CollinearityError,
    ColumnTypeError,
    InputError,
    MissingColumnError,
    MissingValuesError,
    XPError,
    ZeroVarianceError,
)
from xpcompute.models import fit_table
from xpcompute.spec import FitSpec


def spec(**kw: object) -> FitSpec:
    return FitSpec(**{"metric": "y", "treatment": "cell", **kw})  # type: ignore[arg-type]


def test_missing_column_names_the_available_ones() -> None:
    with pytest.raises(MissingColumnError, match=r"'revenue' not found.*cell, country"):
        fit_table(make_experiment(n=100), spec(metric="revenue"))
    with pytest.raises(MissingColumnError, match="covariate 'age'"):
        fit_table(make_experiment(n=100), spec(model="ols", covariates=("age",)))


def test_non_numeric_metric() -> None:
    with pytest.raises(ColumnTypeError, match="must be numeric"):
        fit_table(make_experiment(n=100), spec(metric="country"))


def test_infinite_values_are_refused() -> None:
    t = make_experiment(n=100)
    y = np.asarray(t.column("y").to_numpy()).copy()
    y[3] = np.inf
    with pytest.raises(ColumnTypeError, match="infinite"):
        fit_table(t.set_column(t.schema.get_field_index("y"), "y", pa.array(y)), spec())


def test_fewer_than_two_cells_and_unknown_or_empty_control() -> None:
    t = pa.table({"cell": ["a"] * 10, "y": np.arange(10.0)})
    with pytest.raises(CellError, match="at least two cells"):
        fit_table(t, spec())
    with pytest.raises(CellError, match="control cell 'ctl' not found"):
        fit_table(make_experiment(n=100), spec(control="ctl"))
    # a cell whose metric is entirely missing is empty after dropping nulls
    t2 = pa.table({"cell": ["a"] * 5 + ["b"] * 5 + ["c"] * 5, "y": [1.0, 2, 3, 4, 5] + [None] * 5 + [2.0, 3, 4, 5, 6]})
    with pytest.raises(CellError, match="'b' not found"):
        fit_table(t2, spec(control="b"))
    empty = t.slice(0, 0)
    with pytest.raises(CellError):
        fit_table(empty, spec())


def test_zero_variance() -> None:
    t = pa.table({"cell": ["a", "b"] * 10, "y": [1.0] * 20})
    with pytest.raises(ZeroVarianceError, match="zero variance"):
        fit_table(t, spec())
    with pytest.raises(ZeroVarianceError):
        fit_table(t, spec(model="ols"))


def test_null_policy_drop_counts_and_refuse_raises() -> None:
    t = make_experiment(n=500, seed=1)
    y = np.asarray(t.column("y").to_numpy()).copy()
    y[:7] = np.nan
    t = t.set_column(t.schema.get_field_index("y"), "y", pa.array(y, from_pandas=True))
    out = fit_table(t, spec())
    assert all("dropped 7 of 500 rows" in r.notes[0] for r in out.records)
    assert sum(r.n_cell for r in out.records) + out.records[0].n_control == 493
    with pytest.raises(MissingValuesError, match="7 rows"):
        fit_table(t, spec(null_policy="refuse"))


def test_collinear_covariates_dropped_and_reported_or_refused() -> None:
    t = make_experiment(n=800, seed=2)
    t = t.append_column("pre2", pa.array(2.0 * np.asarray(t.column("pre").to_numpy())))
    out = fit_table(t, spec(model="ols", covariates=("pre", "pre2")))
    assert all("dropped collinear columns: pre2" in r.notes for r in out.records)
    with pytest.raises(CollinearityError, match="pre2"):
        fit_table(t, spec(model="ols", covariates=("pre", "pre2"), collinear_policy="refuse"))
    # a covariate that duplicates the treatment leaves the effect unidentified: always refused
    t3 = t.append_column("arm", t.column("cell"))
    with pytest.raises(CollinearityError, match="not identified"):
        fit_table(t3, spec(model="ols", covariates=("arm",)))


def test_spec_validation_messages() -> None:
    with pytest.raises(ValueError, match="needs a segment"):
        spec(model="cate")
    with pytest.raises(ValueError, match="alpha"):
        spec(alpha=1.5)
    with pytest.raises(ValueError, match="ntile"):
        FitSpec(metric="y", treatment="cell", compress={"kind": "ntile"})  # type: ignore[arg-type]
    with pytest.raises(InputError, match="only applies to rank and quantile"):
        fit_table(make_experiment(n=100), spec(compress={"kind": "ntile", "buckets": 10}))


def test_every_error_is_an_xperror_with_a_status() -> None:
    for cls in (CellError, CollinearityError, ColumnTypeError, MissingColumnError, ZeroVarianceError):
        assert issubclass(cls, XPError) and 400 <= cls.status < 500


def test_cli_prints_records_and_clean_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "d.parquet"
    pq.write_table(make_experiment(n=600, seed=3), path)
    ok = subprocess.run(
        [sys.executable, "-m", "xpcompute.cli", "fit", str(path), "--metric", "y", "--treatment", "cell",
         "--model", "ols", "--covariates", "pre,country", "--json"],
        capture_output=True, text=True, check=True,
    )
    records = json.loads(ok.stdout)
    assert {r["cell"] for r in records} == {"a", "b"}
    required = {"metric", "model", "cell", "control", "effect", "se", "ci_low", "ci_high", "p_value", "relative_effect",
                "relative_ci_low", "relative_ci_high", "n_cell", "n_control", "mean_cell", "mean_control"}
    assert required <= set(records[0])
    bad = subprocess.run(
        [sys.executable, "-m", "xpcompute.cli", "fit", str(path), "--metric", "nope", "--treatment", "cell"],
        capture_output=True, text=True,
    )
    assert bad.returncode == 2 and "not found" in bad.stderr and "Traceback" not in bad.stderr
