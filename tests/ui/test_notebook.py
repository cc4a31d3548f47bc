"""``xpcompute notebook``: the exported notebook runs, and reproduces every stored number.

One small analysis runs in-process (inline dispatch), including a CATE model,
a Holm correction and a live slice requested after it finished; its notebook
is executed with nbclient in a kernel of this interpreter, and the records it
computes are compared, field by field, with the stored scorecard. A tampered
scorecard must make the notebook's own final check fail.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from ui_helpers import EXPERIMENT_ID, analysis_spec, publish_experiment

from xpcompute.cli import main
from xpcompute.config import Settings
from xpcompute.coordinator.jobs import AnalysisState
from xpcompute.coordinator.runtime import EmbeddedRuntime, build_coordinator
from xpcompute.coordinator.service import Coordinator
from xpcompute.errors import ConflictError
from xpcompute.notebook import NotebookRunError, build_notebook, collect, execute_notebook, write_notebook
from xpcompute.pipeline.slices import SliceFilter
from xpcompute.records import ResultRecord
from xpcompute.storage import keys

LIVE = SliceFilter.where(plan="premium")


@dataclass
class Finished:
    coordinator: Coordinator
    analysis_id: str
    home: Path


@pytest.fixture
def finished(tmp_path: Path) -> Iterator[Finished]:
    """A finished analysis (3 pre-computed slices + 1 live one) in a store under ``tmp_path``."""
    settings = Settings(home=tmp_path / "home", dispatch="inline")
    with EmbeddedRuntime(settings) as rt:
        publish_experiment(rt.coordinator, tmp_path / "raw")
        spec = analysis_spec(models=("ttest", "ols", "cate", "mannwhitney", "quantile"), segment="device", correction="holm")
        analysis = rt.coordinator.submit(EXPERIMENT_ID, spec)
        rt.coordinator.request_slice(analysis.analysis_id, LIVE)
        # the live slice's last job may still be finalizing on the runtime's thread (CI saw 84 of 84 jobs done
        # and the analysis RUNNING): the tests read the finished analysis
        deadline = time.monotonic() + 60
        while rt.coordinator.state.get_analysis(analysis.analysis_id).state == AnalysisState.RUNNING:
            assert time.monotonic() < deadline, "the analysis did not finish within 60 s"
            time.sleep(0.05)
        yield Finished(rt.coordinator, analysis.analysis_id, settings.home)


def key(r: ResultRecord) -> tuple[object, ...]:
    return (r.slice, r.metric, r.model, r.cell, r.segment, r.time, r.quantile)


def test_the_exported_notebook_reproduces_every_stored_number(finished: Finished, tmp_path: Path) -> None:
    coord, aid = finished.coordinator, finished.analysis_id
    card = coord.results(aid)
    assert card.complete and not card.failures and card.correction == "holm"
    assert {r.slice for r in card.records} >= {"all users", "country=US", "plan=premium"}
    assert any(r.segment is not None for r in card.records)  # CATE rows are reproduced too

    path = write_notebook(coord, aid, tmp_path / "nb" / "analysis.ipynb")
    nb = nbformat.read(str(path), as_version=4)
    sources = "\n".join(c.source for c in nb.cells)
    for call in ("fit_input(ANALYSIS_ID, ", "from_parquet_bytes(store.get_bytes(key))", "fit_compressed(compressed, spec)",
                 "adjust_pvalues(records", "viz.effects_forest(", "viz.cate_by_segment(", "FitSpec(metric="):
        assert call in sources, call
    # the test's own read-out, after the notebook's cells: the records the notebook computed
    nb.cells.append(nbformat.v4.new_code_cell("print(json.dumps([r.to_json_dict() for r in records]))"))

    execute_notebook(nb, path.parent, timeout_s=120)

    assert "records equal the stored scorecard" in nb.cells[-2].outputs[0]["text"]
    mine = {key(r): r for r in (ResultRecord.model_validate(x) for x in json.loads(nb.cells[-1].outputs[0]["text"]))}
    stored = {key(r): r for r in card.records}
    assert mine.keys() == stored.keys()
    for k, record in stored.items():
        here, there = mine[k].to_json_dict(), record.to_json_dict()
        for field, expected in there.items():
            got = here[field]
            if isinstance(expected, float) and isinstance(got, float):
                assert math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12), (k, field, got, expected)
            else:
                assert got == expected, (k, field, got, expected)
    figures = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
               if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) >= 3  # effects, CATE by segment, cell means
    # the ship call is decided again from the notebook's records and equals the stored one
    assert card.decision, "the test experiment's metrics have roles, so its scorecard has a decision"
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "decision: same as stored" in outputs
    assert f"{card.decision[0]['cell']} vs {card.decision[0]['control']}: " in outputs


def test_the_decision_cell_fails_when_the_stored_call_differs(finished: Finished, tmp_path: Path) -> None:
    coord, aid = finished.coordinator, finished.analysis_id
    nb = build_notebook(collect(coord, aid))
    raw = json.loads(coord.store.get_bytes(keys.scorecard(aid)))
    first = raw["decision"][0]
    first["recommendation"] = "ship" if first["recommendation"] != "ship" else "don't ship"
    coord.store.put_bytes(keys.scorecard(aid), json.dumps(raw).encode())
    with pytest.raises(NotebookRunError, match="decision differs"):
        execute_notebook(nb, tmp_path, timeout_s=120)


def test_the_final_cell_fails_when_a_stored_number_differs(finished: Finished, tmp_path: Path) -> None:
    coord, aid = finished.coordinator, finished.analysis_id
    nb = build_notebook(collect(coord, aid))
    raw = json.loads(coord.store.get_bytes(keys.scorecard(aid)))
    raw["records"][0]["effect"] *= 1 + 1e-6
    coord.store.put_bytes(keys.scorecard(aid), json.dumps(raw).encode())
    with pytest.raises(NotebookRunError, match="effect"):
        execute_notebook(nb, tmp_path, timeout_s=120)


def test_cli_writes_the_notebook_from_the_store_xpcompute_home_names(
    finished: Finished, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XPCOMPUTE_HOME", str(finished.home))
    out = tmp_path / "cli.ipynb"
    assert main(["notebook", finished.analysis_id, "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    nb = nbformat.read(str(out), as_version=4)
    assert nb.metadata["xpcompute"]["analysis_id"] == finished.analysis_id

    assert main(["notebook", "no_such_analysis", "--out", str(tmp_path / "x.ipynb")]) == 2
    assert "not found" in capsys.readouterr().err


def test_a_running_analysis_is_refused_with_progress(tmp_path: Path) -> None:
    """Without a dispatcher nothing runs, so the analysis stays RUNNING: there is no final scorecard yet."""
    coord = build_coordinator(Settings(home=tmp_path / "home"), dispatcher=None)
    try:
        publish_experiment(coord, tmp_path / "raw", users=500)
        analysis = coord.submit(EXPERIMENT_ID, analysis_spec())
        with pytest.raises(ConflictError, match=r"still running \(0 of \d+ jobs finished\)"):
            collect(coord, analysis.analysis_id)
    finally:
        coord.state.close()
