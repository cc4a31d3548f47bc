"""The ``xpcompute`` command: the same library calls a notebook makes, from a shell.

Every subcommand is a thin parser over one library function. Errors raised on
purpose (``XPError``) print their message and exit 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from xpcompute.errors import XPError
from xpcompute.records import ResultRecord

Command = Callable[[argparse.Namespace], int]


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(p) for p in _csv(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from exc


def cmd_fit(args: argparse.Namespace) -> int:
    """Fit one model to one metric of a Parquet file and print the result records."""
    import pyarrow.parquet as pq

    from xpcompute.models import fit_table
    from xpcompute.spec import CompressSpec, FitSpec

    try:
        table = pq.read_table(args.data)
    except (OSError, ValueError) as exc:
        raise XPError(f"cannot read {args.data!r} as Parquet: {exc}") from exc
    options = dict(
        metric=args.metric,
        treatment=args.treatment,
        model=args.model,
        control=args.control,
        covariates=args.covariates,
        segment=args.segment,
        time=args.time,
        cluster=args.cluster,
        denominator=args.denominator,
        weights=args.weights,
        compress=CompressSpec.parse(args.compress),
        alpha=args.alpha,
        null_policy=args.null_policy,
        collinear_policy=args.collinear_policy,
        bootstrap_reps=args.bootstrap_reps,
        seed=args.seed,
    )
    if args.quantiles is not None:
        options["quantiles"] = args.quantiles
    spec = FitSpec(**options)
    out = fit_table(table, spec)
    if args.summaries:
        from xpcompute.models import model_data
        from xpcompute.summary import cell_summaries

        summaries = cell_summaries(model_data(out.compressed, spec))
        print(json.dumps([s.model_dump() for s in summaries], indent=None if args.compact else 2))
        return 0
    if args.json:
        print(json.dumps([r.to_json_dict() for r in out.records], indent=None if args.compact else 2))
    else:
        print_records(out.records, title=f"{spec.model} on {spec.metric} ({out.compressed.n_groups} compressed rows, "
                      f"ratio {out.compressed.compression_ratio:,.0f}x)")
    return 0


def print_records(records: Sequence[ResultRecord], title: str = "") -> None:
    """A terminal table of records (rich)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None)
    for col in ("metric", "cell", "where", "effect", "95% CI", "p", "relative"):
        table.add_column(col)
    for r in records:
        where = r.segment or r.time or (f"q{r.quantile:g}" if r.quantile is not None else "all")
        ci = "" if r.ci_low is None or r.ci_high is None else f"[{r.ci_low:.4g}, {r.ci_high:.4g}]"
        rel = "" if r.relative_effect is None else f"{100 * r.relative_effect:+.2f}%"
        p = "" if r.p_value is None else f"{r.p_value:.3g}"
        table.add_row(r.metric, r.cell, where, f"{r.effect:.4g}", ci, p, rel)
    Console().print(table)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run a whole synthetic analysis on the embedded default; non-zero exit if anything failed."""
    from pathlib import Path

    from rich.console import Console

    from xpcompute.demo import run_demo

    console = Console()
    result = run_demo(users=args.users, home=Path(args.home), workers=args.workers, console=console)
    card = result.scorecard
    console.print(f"\n[bold]Report:[/] {result.report.resolve()}  (open it in a browser; it works offline)")
    console.print(f"[bold]Analysis:[/] {card.analysis_id}, {len(card.records)} results in {result.seconds:.1f} s")
    console.print(
        f"[bold]Notebook:[/] XPCOMPUTE_HOME={result.home} .venv/bin/xpcompute notebook {card.analysis_id} "
        "writes a notebook that reproduces it"
    )
    console.print(f"[bold]Serve it:[/] XPCOMPUTE_HOME={result.home} .venv/bin/xpcompute serve, then open "
                  f"http://127.0.0.1:8000/analyses/{card.analysis_id}/scorecard")
    if card.failures or not card.complete:
        for failure in card.failures:
            console.print(f"[red]failed:[/] {failure}")
        return 1
    return 0


def cmd_notebook(args: argparse.Namespace) -> int:
    """Write a notebook that reproduces a stored analysis; ``--execute`` runs it (its last cell checks the numbers)."""
    from pathlib import Path

    from xpcompute.config import Settings

    try:
        from xpcompute.notebook import open_coordinator, write_notebook
    except ImportError as exc:
        raise XPError(f"`xpcompute notebook` needs the viz extra ({exc}); install it: pip install 'xpcompute[viz]'") from exc

    settings = Settings.from_env()
    coordinator = open_coordinator(settings)
    try:
        path = write_notebook(coordinator, args.analysis_id, Path(args.out) if args.out else None,
                              execute=args.execute, timeout_s=args.timeout)
    finally:
        coordinator.state.close()
    ran = " and ran it: every record equals the stored scorecard" if args.execute else ""
    print(f"wrote {path}{ran}")
    if not args.execute:
        print("open it in Jupyter or VS Code with this environment's kernel, or run it here: "
              f"xpcompute notebook {args.analysis_id} --out {path} --execute")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the HTTP API (embedded default unless XPCOMPUTE_* variables say otherwise)."""
    from xpcompute.api import serve

    serve(args.host, args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xpcompute", description="Analyse A/B tests on compressed statistics.")
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="fit one causal model to a Parquet file")
    fit.add_argument("data", help="Parquet file, one row per user (or per user-period for dte)")
    fit.add_argument("--metric", required=True)
    fit.add_argument("--treatment", required=True, help="column holding the cell of each row")
    fit.add_argument("--control", default=None, help="control cell (default: 'control' if present, else the first)")
    fit.add_argument("--covariates", type=_csv, default=(), help="comma-separated; strings are dummy-coded")
    fit.add_argument(
        "--model", default="ttest",
        choices=["ttest", "proportion", "ols", "cate", "dte", "mannwhitney", "quantile", "ratio"],
    )
    fit.add_argument("--segment", default=None, help="segment column for CATE")
    fit.add_argument("--time", default=None, help="period column for DTE")
    fit.add_argument("--cluster", default=None, help="cluster (user) column for DTE")
    fit.add_argument("--quantiles", type=_floats, default=None, help="e.g. 0.1,0.5,0.9")
    fit.add_argument("--denominator", default=None, help="denominator column of a ratio metric")
    fit.add_argument("--weights", default=None, help="frequency-weight column")
    fit.add_argument("--compress", default="lossless", help="lossless | none | ntile:N")
    fit.add_argument("--alpha", type=float, default=0.05)
    fit.add_argument("--null-policy", choices=["drop", "refuse"], default="drop")
    fit.add_argument("--collinear-policy", choices=["drop", "refuse"], default="drop")
    fit.add_argument("--bootstrap-reps", type=int, default=1000)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--json", action="store_true", help="print a JSON array of result records")
    fit.add_argument("--compact", action="store_true", help="one-line JSON")
    fit.add_argument("--summaries", action="store_true",
                     help="print per-cell summaries (count, mean, variance, quantiles) as JSON instead of effects")
    fit.set_defaults(func=cmd_fit)

    demo = sub.add_parser("demo", help="generate a synthetic experiment and analyse it end to end")
    demo.add_argument("--users", type=int, default=1_000_000)
    demo.add_argument("--home", default=".xpcompute/demo", help="where the demo's state, tables and report go")
    demo.add_argument("--workers", type=int, default=None, help="most local worker processes (default: cores)")
    demo.set_defaults(func=cmd_demo)

    notebook = sub.add_parser("notebook", help="write a Jupyter notebook that reproduces a stored analysis")
    notebook.add_argument("analysis_id", help="a finished analysis in the store XPCOMPUTE_HOME (or _OBJECTS/_STATE) names")
    notebook.add_argument("--out", default=None, help="notebook path (default: analysis-<id>.ipynb here)")
    notebook.add_argument("--execute", action="store_true",
                          help="run it before saving; fails if any number differs from the stored scorecard")
    notebook.add_argument("--timeout", type=int, default=600, help="seconds one cell may run with --execute")
    notebook.set_defaults(func=cmd_notebook)

    serve = sub.add_parser("serve", help="serve the HTTP API on 127.0.0.1")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except XPError as exc:
        print(f"xpcompute: error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors())
        print(f"xpcompute: invalid options: {problems}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"xpcompute: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
