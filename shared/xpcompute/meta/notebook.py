"""The replay notebook example (``examples/meta/replay.ipynb``): archive, replay, plots, and a check from scratch.

``python -m xpcompute.meta.notebook [--out PATH] [--execute]`` writes it (the cells are the source of truth
here, so the example never drifts from the library); ``--execute`` runs it in a fresh kernel of this
interpreter, which fails if its last cell finds a replayed number that differs from re-running an
experiment from scratch with the new definition.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from nbformat import NotebookNode

from xpcompute.nbcells import code, example_notebook, md, save

DEFAULT_OUT = Path("examples/meta/replay.ipynb")

CELLS: list[tuple[str, str]] = [
    ("md", """# Meta-analysis replay: how would a new metric definition have read on past experiments?

The seed paper's *"change a metric definition and view how this would have affected hundreds of completed
tests"*. This notebook builds a small synthetic archive (each experiment registered and analysed by the
coordinator, as `xpcompute run` does), replays a new definition of the goal metric over it, plots old
against new, and checks the replay against re-running experiments from scratch with the new definition.
The same replay from a shell: `xpcompute meta replay --metric NEW.yaml --report replay.html`; over HTTP:
`POST /meta/replay`."""),
    ("code", """import tempfile
from pathlib import Path

from xpcompute.config import Settings
from xpcompute.coordinator.runtime import build_coordinator
from xpcompute.synthetic_archive import write_archive

root = Path(tempfile.mkdtemp(prefix="xp-archive-"))
archive = write_archive(root, n=12, users=1_500, pre_days=3)  # 12 past experiments, every 4th an A/A test
coordinator = build_coordinator(Settings(home=archive.home), dispatcher=None)
print(f"{len(archive.plans)} archived experiments in {archive.seconds:.1f} s")
[(p.experiment_id, p.users, p.days, p.watch_lift) for p in archive.plans[:4]]"""),
    ("md", """## The new definition

Streaming hours winsorized at the pooled 99th percentile of the per-member values: the same mapping a
`metrics:` entry of the experiment YAML takes. It can be derived from the archived stage-1 tables, so the
replay reads those (route `table`); a new aggregate (another `where`, another column) re-runs only this
metric's stage-1 step on the archived raw sources (route `raw`)."""),
    ("code", """from xpcompute.meta.replay import replay

capped = {"name": "streaming_hours", "source": "playback", "value": "watch_seconds", "aggregation": "sum",
          "divisor": 3600, "unit": "hours", "cap": {"upper": 0.99}}
result = replay(coordinator, capped)
print(f"{len(result.experiments)} experiments in {result.seconds:.2f} s, routes {sorted({e.route for e in result.experiments})}")
result.summary()"""),
    ("code", """for row in result.rows():
    old, new = row["old"], row["new"]
    print(f"{row['experiment_id']} {row['cell']:<10} old {old['relative_effect']:+.3%} (se {old['relative_se']:.3%}, "
          f"p {old['p_value']:.3f})  new {new['relative_effect']:+.3%} (se {new['relative_se']:.3%}, "
          f"p {new['p_value']:.3f})  {row['old_decision']} -> {row['new_decision']}")"""),
    ("code", """from xpcompute.meta.report import effects_figure, se_figure, write_replay_report

effects_figure(result)"""),
    ("code", """se_figure(result)"""),
    ("code", """report = write_replay_report(result, root / "replay.html")
print(f"self-contained report: {report}")"""),
    ("md", """## Check: the replay equals re-running from scratch

Register the experiment again (in another store) with the new definition in place of the old one, run the
whole analysis (stage 1 from the raw sources, slices, fits, decision), and compare."""),
    ("code", """import math

from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.runtime import EmbeddedRuntime
from xpcompute.meta.replay import replay_spec

with EmbeddedRuntime(Settings(home=root / "scratch", dispatch="inline")) as runtime:
    for e in result.experiments[:3]:
        archived = coordinator.experiment_of(coordinator.state.get_analysis(e.analysis_id))
        spec = replay_spec(archived, capped, "streaming_hours")
        runtime.coordinator.register_experiment(spec)
        card = runtime.coordinator.results(runtime.coordinator.submit(spec.id, AnalysisSpec(metrics=spec.metrics)).analysis_id)
        rerun = {(r.model, r.cell): r for r in card.records if r.metric == "streaming_hours" and r.slice == "all users"}
        for r in e.new_records:
            o = rerun[(r.model, r.cell)]
            scale = abs(o.mean_control)
            assert math.isclose(r.effect, o.effect, rel_tol=1e-10, abs_tol=1e-10 * scale), (e.experiment_id, r.model)
            assert math.isclose(r.se, o.se, rel_tol=1e-10, abs_tol=1e-10 * scale), (e.experiment_id, r.model)
            assert math.isclose(r.p_value, o.p_value, rel_tol=1e-10, abs_tol=1e-10), (e.experiment_id, r.model)
        assert e.new_decisions == {d["cell"]: d["recommendation"] for d in card.decision}
        print(f"{e.experiment_id}: replay = re-run from scratch ({len(e.new_records)} records, decision {e.new_decisions})")"""),
]


def build() -> NotebookNode:
    return example_notebook([md(src) if kind == "md" else code(src) for kind, src in CELLS])


def write(path: Path = DEFAULT_OUT, execute: bool = False, timeout_s: int = 600) -> Path:
    nb = build()
    if execute:
        from xpcompute.notebook import execute_notebook

        with tempfile.TemporaryDirectory() as cwd:
            execute_notebook(nb, Path(cwd), timeout_s)
    return save(nb, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--execute", action="store_true", help="run it first (fails if its check fails)")
    args = parser.parse_args(argv)
    print(f"wrote {write(Path(args.out), args.execute)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
