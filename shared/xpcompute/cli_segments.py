"""``xpcompute segments ANALYSIS_ID``: the segments discovered in a stored analysis (``xpcompute.segments``).

The same report as ``GET /analyses/{id}/segments``: per-dimension heterogeneity tests and honest-tree segments,
BH-adjusted across all of them; ``--format json`` prints it whole, each segment with the slice filter to post to
``POST /analyses/{id}/slices`` (or pass to ``xpcompute run``'s slices).
"""

from __future__ import annotations

import argparse
import json


def add_segments_command(sub: argparse._SubParsersAction) -> None:
    """Add ``segments`` to the CLI's subcommands."""
    p = sub.add_parser("segments", help="segments discovered in a stored analysis (XPCOMPUTE_HOME names the store)")
    p.add_argument("analysis_id")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--max-depth", type=int, default=2, help="deepest conjunction (number of splits), 1 to 4")
    p.add_argument("--min-units", type=int, default=200,
                   help="fewest units of the control and of the treatment cell per tree node and half")
    p.set_defaults(func=cmd_segments)


def cmd_segments(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from xpcompute.config import Settings
    from xpcompute.coordinator.runtime import build_coordinator
    from xpcompute.segments.discovery import SegmentSettings
    from xpcompute.segments.service import analysis_segments
    from xpcompute.segments.view import segment_views

    coordinator = build_coordinator(Settings.from_env(), dispatcher=None)
    try:
        alpha = float(coordinator.state.get_analysis(args.analysis_id).request.get("alpha", 0.05))
        settings = SegmentSettings(max_depth=args.max_depth, min_units=args.min_units, alpha=alpha, fdr=alpha)
        report = analysis_segments(coordinator, args.analysis_id, settings)
    finally:
        coordinator.state.close()
    if args.format == "json":
        print(json.dumps(report.model_dump(mode="json"), indent=2))
        return 0
    view = segment_views(report.model_dump(mode="json"))
    console = Console()
    console.print(f"Segment discovery of analysis {args.analysis_id}: {view['tested']} tests, BH at "
                  f"{view['fdr']}: [bold]{view['discoveries']}[/bold] discoveries. Halves: {view['halves']}.")
    segments = Table(title="Segments (honest tree: split on one half, estimated on the other)")
    for col in ("metric", "cell", "segment", "users", "effect", "interval", "elsewhere", "difference", "adj. p", ""):
        segments.add_column(col)
    for s in view["segments"]:
        segments.add_row(s["metric"], s["cell"], s["label"], s["units"], s["effect"], s["interval"], s["rest"],
                         s["difference"], s["p_adjusted"], "differs" if s["discovered"] else "")
    tests = Table(title="Heterogeneity by dimension (Wald test of equal CATEs)")
    for col in ("metric", "cell", "dimension", "chi2 (df)", "p", "adj. p", ""):
        tests.add_column(col)
    for t in view["tests"]:
        tests.add_row(t["metric"], t["cell"], t["dimension"], t["chi2"], t["p"], t["p_adjusted"],
                      "varies" if t["discovered"] else t["note"])
    console.print(segments if view["segments"] else "The tree found no split worth testing: no segment.")
    console.print(tests)
    for note in view["notes"]:
        console.print(f"note: {note}")
    return 0
