"""The ``xpcompute`` command on a team's own tables: validate, register, run, results, and the fit pipe.

The e-commerce example (string ids, exposure timestamps, declared metrics, a
plugin module) is copied next to freshly generated raw tables, so these tests
run what a new user runs, in the order the README gives.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xpcompute.cli import main, parse_slice
from xpcompute.experiment import ExperimentSpec
from xpcompute.synthetic_ecommerce import generate

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ecommerce"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's YAML and plugin module, with 3,000 customers of raw tables under data/."""
    folder = tmp_path_factory.mktemp("shop")
    for name in ("experiment.yaml", "shop_metrics.py"):
        shutil.copy(EXAMPLE / name, folder / name)
    generate(folder / "data", customers=3_000, seed=11)
    return folder


def test_validate_prints_the_resolved_spec_and_the_stage1_sql(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["experiment", "validate", str(shop / "experiment.yaml"), "--dialect", "trino"]) == 0
    out = capsys.readouterr().out
    assert "metric_definitions:" in out and "exposure_column: exposed_at" in out
    assert "-- stage 1: analysis table (trino)" in out and '"_xp_start"' in out


def test_validate_says_what_to_fix(shop: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (shop / "experiment.yaml").read_text().replace("value: amount_usd", "value: amount_eur")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("uri: data/", f"uri: {shop}/data/").replace("plugins: [shop_metrics]", "plugins: []")
                   .replace("  - net_revenue", "").replace("  - tenure ", "  # "))
    assert main(["experiment", "validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "source 'orders'" in err and "no column 'amount_eur'" in err


def test_run_then_results_show_the_same_analysis(shop: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    out_json, report = tmp_path / "card.json", tmp_path / "report.html"
    code = main(["run", str(shop / "experiment.yaml"), "--home", str(home), "--workers", "1", "--json", str(out_json),
                 "--report", str(report), "--slice", "all", "--slice", "platform=ios,android"])
    printed = capsys.readouterr().out
    card = json.loads(out_json.read_text())
    assert code == 0, card.get("failures")
    assert report.exists() and "revenue" in report.read_text()
    assert "CUPED on pre_revenue" in printed and "Window 2026-03-02" in printed
    assert {r["slice"] for r in card["records"]} == {"all users", "platform in (ios, android)"}

    monkeypatch.setenv("XPCOMPUTE_HOME", str(home))
    assert main(["results", card["analysis_id"], "--format", "json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["records"] == card["records"]
    assert main(["results", card["analysis_id"], "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    revenue = [r for r in rows if r["metric"] == "revenue" and r["slice"] == "all users"]
    assert len(revenue) == 1 and revenue[0]["model"] == "ols"
    ols = [r for r in card["records"] if r["metric"] == "revenue" and r["model"] == "ols" and r["slice"] == "all users"]
    assert float(revenue[0]["effect"]) == pytest.approx(ols[0]["effect"], rel=1e-12)
    # roles, margins and the decision's own test travel with the rows; the test only in the slice it read
    decided = {d["cell"]: d for d in card["decision"]}
    assert revenue[0]["role"] == "goal" and revenue[0]["decision_test"].startswith("superiority")
    assert revenue[0]["recommendation"] == decided[revenue[0]["cell"]]["recommendation"]
    returned = [r for r in rows if r["metric"] == "returned_items"]
    assert {r["role"] for r in returned} == {"guardrail"} and {r["margin"] for r in returned} == {"0.05"}
    assert {r["margin_relative"] for r in returned} == {"True"}
    other = [r for r in returned if r["slice"] != "all users"]
    assert other and all(r["decision_test"] == "" and r["recommendation"] == "" for r in other)


def test_slices_from_the_command_line_are_typed_by_their_dimension(shop: Path) -> None:
    experiment = ExperimentSpec.from_yaml(shop / "experiment.yaml")
    s = parse_slice("country=US,DE platform!=web", experiment)
    assert [(c.column, c.values, c.negate) for c in s.all_of] == [("country", ("US", "DE"), False),
                                                                 ("platform", ("web",), True)]
    assert parse_slice('{"any_of": [{"column": "tier", "values": ["gold"]}]}').any_of[0].values == ("gold",)
    assert parse_slice("all").label() == "all users"


def test_fit_json_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    data = tmp_path / "d.parquet"
    pq.write_table(pa.table({"cell": ["control", "treatment"] * 500, "y": [float(i % 7) for i in range(1000)]}), data)
    cli = Path(sys.executable).parent / "xpcompute"
    proc = subprocess.run(f"'{cli}' fit '{data}' --metric y --treatment cell --model quantile --json | head -c 10",
                          shell=True, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                          timeout=120, check=False)
    assert proc.stdout.startswith("[") and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_register_twice_keeps_one_version(shop: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPCOMPUTE_HOME", str(tmp_path / "home"))
    assert main(["experiment", "register", str(shop / "experiment.yaml")]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["experiment", "register", str(shop / "experiment.yaml")]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (first["version"], first["created"]) == (1, True) and (again["version"], again["created"]) == (1, False)


def test_fit_reads_csv_and_tsv_as_it_reads_parquet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A notebook user's export: the same rows as CSV, gzipped TSV and Parquet give the same records; a text
    file with another ending is refused saying which endings are read as text."""
    import gzip

    rows = pa.table({"user": [f"u{i}" for i in range(600)], "cell": ["control", "b", "c"] * 200,
                     "y": [float((i * 37) % 11) + 0.25 * (i % 3) for i in range(600)]})
    pq.write_table(rows, tmp_path / "rows.parquet")
    text = "user,cell,y\n" + "".join(f"{u},{c},{y!r}\n" for u, c, y in zip(*(rows.column(n).to_pylist() for n in
                                                                            ("user", "cell", "y")), strict=True))
    (tmp_path / "rows.csv").write_text(text)
    (tmp_path / "rows.tsv.gz").write_bytes(gzip.compress(text.replace(",", "\t").encode()))
    outputs = []
    for name in ("rows.parquet", "rows.csv", "rows.tsv.gz"):
        assert main(["fit", str(tmp_path / name), "--metric", "y", "--treatment", "cell", "--json"]) == 0
        outputs.append([{k: r[k] for k in ("cell", "effect", "se", "p_value")} for r in json.loads(capsys.readouterr().out)])
    assert outputs[0] == outputs[1] == outputs[2] and len(outputs[0]) == 2
    (tmp_path / "rows.txt").write_text(text)
    assert main(["fit", str(tmp_path / "rows.txt"), "--metric", "y", "--treatment", "cell"]) == 2
    assert "a text table needs a name ending in .csv" in capsys.readouterr().err
