"""``xpcompute archive`` and ``xpcompute meta``: the experiment archive and meta-analysis from a shell.

* ``xpcompute archive list EXPERIMENT [--json]``: the experiment's versions, stage-1 tables and analyses;
* ``xpcompute archive delete ANALYSIS``: remove one finished analysis and the objects derived for it;
* ``xpcompute meta replay --metric NEW [--baseline OLD] [--experiments A,B] [--report F] [--json F]``: replay a
  metric definition over the archived experiments (``xpcompute.meta.replay``);
* ``xpcompute meta compression --buckets N[,N..]``: n-tile against exact results over the archive
  (``xpcompute.meta.compression``), the smallest N per metric that meets the seeds' 99.9% agreement.

The store is the one ``XPCOMPUTE_HOME`` (or ``XPCOMPUTE_OBJECTS``/``_STATE``) names, or ``--home``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _coordinator(home: str | None) -> Any:
    from xpcompute.config import Settings
    from xpcompute.coordinator.runtime import build_coordinator

    settings = Settings.from_env()
    if home:
        settings = settings.model_copy(update={"home": Path(home)})
    return build_coordinator(settings, dispatcher=None)


def cmd_archive_list(args: argparse.Namespace) -> int:
    """The experiment's archive: versions, stage-1 tables, analyses (newest first)."""
    from xpcompute.meta.archive import describe

    coordinator = _coordinator(args.home)
    try:
        body = describe(coordinator, args.experiment_id)
    finally:
        coordinator.state.close()
    if args.json:
        print(json.dumps(body, indent=2, default=str))
        return 0
    versions = ", ".join(f"v{v['version']} ({v['created_at'][:19]})" for v in body["versions"])
    print(f"experiment {args.experiment_id}: versions {versions or '(none)'}")
    for label, table in body["tables"].items():
        if table is not None:
            print(f"  {label} table: {table['rows']:,} rows, run {table['run']}, built {table['created_at']}")
    print(f"  {len(body['analyses'])} analyses:")
    for a in body["analyses"]:
        print(f"    {a['analysis_id']}  {a['state']:<9} v{a['experiment_version']}  {len(a['metrics'])} metrics, "
              f"{a['slices']} slices")
    return 0


def cmd_archive_delete(args: argparse.Namespace) -> int:
    """Remove one finished analysis: its state records and the objects derived for it."""
    from xpcompute.meta.archive import delete_analysis

    coordinator = _coordinator(args.home)
    try:
        deleted = delete_analysis(coordinator, args.analysis_id)
    finally:
        coordinator.state.close()
    print(json.dumps(deleted.to_json_dict(), indent=2))
    return 0


def cmd_meta_replay(args: argparse.Namespace) -> int:
    """Replay a metric definition over the archive; print the summary, write the report and the JSON."""
    from xpcompute.meta.replay import load_definition, replay

    definition = load_definition(args.metric)
    if args.pool:
        result = _replay_on_the_pool(args.home, definition, args.baseline, list(args.experiments) or None)
    else:
        coordinator = _coordinator(args.home)
        try:
            result = replay(coordinator, definition, args.baseline, args.experiments or None, threads=args.threads)
        finally:
            coordinator.state.close()
    body = result.to_json_dict()
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(body, indent=2, default=str))
    if args.report:
        from xpcompute.meta.report import write_replay_report

        path = write_replay_report(result, args.report)
        print(f"report: {path.resolve()}", file=sys.stderr)
    s = body["summary"]
    print(f"{result.metric} in place of {result.baseline} over {len(result.experiments)} experiments "
          f"({len(result.skipped)} skipped) in {result.seconds:.1f} s")

    def fmt(value: Any, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    print(f"  correlation of effects {fmt(s['effect_correlation'], '.3f')}, of z-scores {fmt(s['z_correlation'], '.3f')}, "
          f"sign agreement {fmt(s['sign_agreement'], '.1%')}")
    print(f"  significant at {s['alpha']:g}: old {fmt(s['share_significant_old'], '.1%')}, "
          f"new {fmt(s['share_significant_new'], '.1%')}; SE new/old median {fmt(s['se_ratio_median'], '.3f')}")
    print(f"  decisions that would change: {s['decisions_changed']}")
    for change in body["decision_changes"]:
        print(f"    {change['experiment_id']} {change['cell']}: {change['old_decision']} -> {change['new_decision']}")
    return 0


def _replay_on_the_pool(home: str | None, definition: Any, baseline: str | None,
                        experiments: list[str] | None) -> Any:
    """The replay as jobs (``meta.replay_jobs``) on the local worker pool: its experiments run side by side."""
    from xpcompute.config import Settings
    from xpcompute.coordinator.runtime import EmbeddedRuntime
    from xpcompute.errors import InputError
    from xpcompute.meta import replay_jobs

    if not isinstance(definition, dict | str):
        raise InputError("--pool replays a declared (YAML) definition or a registered metric's name; a Python "
                         "metric class runs in this process: leave --pool out")
    settings = Settings.from_env()
    settings = settings.model_copy(update={"dispatch": "local", **({"home": Path(home)} if home else {})})
    with EmbeddedRuntime(settings) as runtime:
        planned = replay_jobs.submit_replay(runtime.coordinator, definition, baseline, experiments)
        print(f"replaying {len(planned.request['experiments'])} experiments on {settings.workers} workers "
              f"(replay {planned.analysis_id})", file=sys.stderr)
        done = replay_jobs.wait(runtime.coordinator, planned.analysis_id, timeout_s=24 * 3600)
        if done.error:
            raise InputError(done.error)
        return replay_jobs.finished_replay(runtime.coordinator, planned.analysis_id)


def cmd_meta_compression(args: argparse.Namespace) -> int:
    """n-tile against exact results over the archive; the smallest N per metric that meets the criterion."""
    from xpcompute.meta.compression import validate_compression

    coordinator = _coordinator(args.home)
    try:
        check = validate_compression(coordinator, args.buckets, args.models, args.experiments or None,
                                     args.metrics or None, p_tolerance=args.p_tolerance, criterion=args.criterion)
    finally:
        coordinator.state.close()
    body = check.to_json_dict()
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({**body, "comparisons": [c.to_json_dict() for c in check.comparisons]},
                                              indent=2, default=str))
    s = body["summary"]
    print(f"ntile:N against exact over {body['experiments']} experiments ({', '.join(check.models)}); criterion "
          f"{s['criterion']:.1%} of p-values within {s['p_tolerance']:g} and of decisions the same")
    for metric, entry in s["metrics"].items():
        for n, row in entry["buckets"].items():
            effect = row["max_effect_difference_se"]
            print(f"  {metric:<20} ntile:{n:<6} p agree {row['p_value_agreement']:.2%}, decisions agree "
                  f"{row['decision_agreement']:.2%}, largest |dp| {row['max_p_difference']:.2g}, largest "
                  f"|d effect|/SE {'n/a' if effect is None else format(effect, '.2g')}"
                  f"{'  meets' if row['meets_criterion'] else ''}")
        rec = entry["recommended_buckets"]
        print(f"  {metric:<20} recommended: {'none of these' if rec is None else f'ntile:{rec}'}")
    return 0


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in _csv(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected bucket counts separated by commas, got {text!r}") from None


def add_meta_commands(sub: Any) -> None:
    """Add ``archive`` and ``meta`` to the ``xpcompute`` parser's subcommands."""
    archive = sub.add_parser("archive", help="list an experiment's archive (versions, tables, analyses), or delete "
                                            "an analysis")
    arch_sub = archive.add_subparsers(dest="archive_command", required=True)
    listing = arch_sub.add_parser("list", help="versions, stage-1 tables and analyses of one experiment")
    listing.add_argument("experiment_id")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--home", default=None, help="store folder (default $XPCOMPUTE_HOME)")
    listing.set_defaults(func=cmd_archive_list)
    delete = arch_sub.add_parser("delete", help="remove one finished analysis and the objects derived for it")
    delete.add_argument("analysis_id")
    delete.add_argument("--home", default=None, help="store folder (default $XPCOMPUTE_HOME)")
    delete.set_defaults(func=cmd_archive_delete)

    meta = sub.add_parser("meta", help="meta-analysis over the archived experiments")
    meta_sub = meta.add_subparsers(dest="meta_command", required=True)
    rp = meta_sub.add_parser("replay", help="how a changed metric definition would have read on past experiments")
    rp.add_argument("--metric", required=True,
                    help="the new definition: a registered metric's name, a YAML file with one metric declaration "
                         "(as under metrics: in an experiment YAML), or that mapping as JSON")
    rp.add_argument("--baseline", default=None, help="the archived metric it replaces (default: the same name)")
    rp.add_argument("--experiments", type=_csv, default=(), help="comma-separated ids (default: every registered one)")
    rp.add_argument("--report", default=None, help="write the HTML report here")
    rp.add_argument("--json", default=None, help="write the JSON document here")
    rp.add_argument("--threads", type=int, default=None, help="DuckDB threads for stage 1 (default: cores)")
    rp.add_argument("--pool", action="store_true",
                    help="run it as jobs on the local worker pool, one per experiment (XPCOMPUTE_WORKERS at once)")
    rp.add_argument("--home", default=None, help="store folder (default $XPCOMPUTE_HOME)")
    rp.set_defaults(func=cmd_meta_replay)
    cp = meta_sub.add_parser("compression", help="ntile:N against exact results over the archive (rank/quantile)")
    cp.add_argument("--buckets", type=_ints, required=True, help="N, or several: 10,100,1000")
    cp.add_argument("--models", type=_csv, default=("mannwhitney",), help="mannwhitney and/or quantile")
    cp.add_argument("--metrics", type=_csv, default=(), help="default: every simple metric of each experiment")
    cp.add_argument("--experiments", type=_csv, default=(), help="default: every registered experiment")
    cp.add_argument("--p-tolerance", type=float, default=0.001, help="p-values agree when they differ by at most this")
    cp.add_argument("--criterion", type=float, default=0.999, help="share that must agree (the seeds' 99.9%%)")
    cp.add_argument("--json", default=None, help="write the summary and every comparison here")
    cp.add_argument("--home", default=None, help="store folder (default $XPCOMPUTE_HOME)")
    cp.set_defaults(func=cmd_meta_compression)


__all__ = ["add_meta_commands"]
