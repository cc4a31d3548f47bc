"""Meta-analysis replay: one metric definition over an archive of experiments, against re-running them.

Builds (or reuses, with ``--root``) the synthetic archive (``xpcompute.synthetic_archive``: raw sources,
YAML specs, each experiment registered and analysed), then times ``xpcompute.meta.replay`` of a new metric
definition over every archived experiment. Two definitions, one per route:

* ``capped``: the goal (streaming hours) winsorized at its pooled p99: derived from the archived stage-1 tables;
* ``filtered``: sessions of at least 10 minutes: the metric's own stage-1 step re-runs on the raw sources.

Peer, in the same run: what a team does without replay, re-running each experiment from scratch with the
new definition registered (stage 1 of the whole spec, slices, fits, decision; the coordinator on the
embedded default, ``--peer-experiments`` of them, the first ones), checked to give the same numbers. The
ratio is per experiment (peer seconds / replay seconds, both over the same experiments).

    .venv/bin/python benchmarks/bench_meta.py                                  # default: 50 x 20,000 users
    .venv/bin/python benchmarks/bench_meta.py --users 1000000 --same-size --root /tmp/xp-archive-1m \\
        --peer-experiments 5                                                   # the issue's 50 x 1M

Target (issue 15): replay of one metric over 50 archived experiments of 1M users each under 2 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "shared"))

DEFINITIONS: dict[str, dict[str, Any]] = {
    "capped": {"name": "streaming_hours", "source": "playback", "value": "watch_seconds", "aggregation": "sum",
               "divisor": 3600, "unit": "hours", "cap": {"upper": 0.99}},
    "filtered": {"name": "sessions", "source": "playback", "where": "watch_seconds >= 600", "aggregation": "count"},
}
TARGET_S = 120.0


def peer(archive: Any, coordinator: Any, name: str, ids: list[str], home: Path) -> dict[str, Any]:
    """Each experiment re-run from scratch with the new definition registered; seconds and the new records."""
    from xpcompute.coordinator.analysis_spec import AnalysisSpec
    from xpcompute.coordinator.runtime import EmbeddedRuntime
    from xpcompute.meta.replay import replay_spec

    definition = DEFINITIONS[name]
    out: dict[str, Any] = {"seconds": {}, "records": {}}
    with EmbeddedRuntime(archive.settings(dispatch="local").model_copy(update={"home": home})) as runtime:
        for experiment_id in ids:
            analysis = coordinator.state.get_analysis(archive.analyses[experiment_id])
            spec = replay_spec(coordinator.experiment_of(analysis), definition, definition["name"])
            spec = spec.model_copy(update={"id": f"{experiment_id}-{name}"})
            started = time.perf_counter()
            runtime.coordinator.register_experiment(spec)
            submitted = runtime.coordinator.submit(spec.id, AnalysisSpec(metrics=spec.metrics))
            while runtime.coordinator.state.get_analysis(submitted.analysis_id).state.value == "RUNNING":
                time.sleep(0.05)
            card = runtime.coordinator.results(submitted.analysis_id)
            out["seconds"][experiment_id] = time.perf_counter() - started
            out["records"][experiment_id] = [r for r in card.records if r.metric == definition["name"]
                                             and r.slice == "all users"]
    return out


def max_difference(replayed: list[Any], rerun: list[Any]) -> float:
    """Largest |replay - rerun| over effect, SE and p-value of matching records, relative to the control mean
    for effect and SE."""
    by_key = {(r.model, r.cell, r.quantile): r for r in rerun}
    worst = 0.0
    for r in replayed:
        o = by_key[(r.model, r.cell, r.quantile)]
        scale = max(abs(r.mean_control or 0.0), 1e-300)
        worst = max(worst, abs(r.effect - o.effect) / scale, abs((r.se or 0) - (o.se or 0)) / scale,
                    abs((r.p_value or 0) - (o.p_value or 0)))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--experiments", type=int, default=50)
    parser.add_argument("--users", type=int, default=20_000, help="units per experiment (x0.5-x2 unless --same-size)")
    parser.add_argument("--same-size", action="store_true", help="every experiment exactly --users units")
    parser.add_argument("--root", default=None, help="archive folder, reused when already written (default: a temp)")
    parser.add_argument("--definitions", default="capped,filtered")
    parser.add_argument("--peer-experiments", type=int, default=5, help="experiments re-run from scratch (peer)")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: cores)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    os.environ.setdefault("XPCOMPUTE_LOG_LEVEL", "WARNING")
    from xpcompute.config import Settings
    from xpcompute.coordinator.runtime import build_coordinator
    from xpcompute.meta.replay import replay
    from xpcompute.synthetic_archive import write_archive

    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="xp-archive-"))
    started = time.perf_counter()
    archive = write_archive(root, args.experiments, args.users, vary_size=not args.same_size,
                            dispatch="local", progress=lambda s: print(f"  archive {s}", file=sys.stderr))
    built = time.perf_counter() - started
    units = sum(p.users for p in archive.plans)
    print(f"archive: {len(archive.plans)} experiments, {units:,} units in all, ready in {built:.1f} s at {root}")
    coordinator = build_coordinator(Settings(home=archive.home), dispatcher=None)
    figures: dict[str, Any] = {"experiments": len(archive.plans), "units": units, "archive_seconds": round(built, 1),
                               "cpus": os.cpu_count(), "definitions": {}}
    try:
        for name in [n.strip() for n in args.definitions.split(",") if n.strip()]:
            t = time.perf_counter()
            result = replay(coordinator, DEFINITIONS[name], threads=args.threads)
            seconds = time.perf_counter() - t
            per = {e.experiment_id: e.seconds["total"] for e in result.experiments}
            stages = {k: round(sum(e.seconds.get(k, 0.0) for e in result.experiments), 2)
                      for k in ("prepare", "stage1", "fit", "decision")}
            ids = archive.experiment_ids[: max(0, args.peer_experiments)]
            entry: dict[str, Any] = {
                "replay_seconds": round(seconds, 2), "per_experiment_s": round(seconds / len(result.experiments), 3),
                "routes": sorted({e.route for e in result.experiments}), "stages_s": stages,
                "target_s": TARGET_S, "summary": result.summary(),
            }
            print(f"{name}: replay of {len(result.experiments)} experiments in {seconds:.1f} s "
                  f"({entry['per_experiment_s']:.2f} s each; route {', '.join(entry['routes'])}; stages {stages})")
            if ids:
                with tempfile.TemporaryDirectory(prefix="xp-peer-") as home:
                    ran = peer(archive, coordinator, name, ids, Path(home))
                replay_s = sum(per[i] for i in ids)
                peer_s = sum(ran["seconds"].values())
                diff = max(max_difference(next(e for e in result.experiments if e.experiment_id == i).new_records,
                                          ran["records"][i]) for i in ids)
                entry.update(peer="re-run from scratch (register + stage 1 + slices + fits + decision)",
                             peer_experiments=len(ids), peer_seconds=round(peer_s, 2),
                             replay_seconds_same_experiments=round(replay_s, 2), ratio=round(peer_s / replay_s, 1),
                             max_difference=diff)
                print(f"  peer (re-run from scratch) on {len(ids)} experiments: {peer_s:.1f} s against "
                      f"{replay_s:.1f} s replayed: {peer_s / replay_s:.1f}x; largest difference {diff:.2e}")
            figures["definitions"][name] = entry
    finally:
        coordinator.state.close()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
