"""The ``xpcompute`` command: the same library calls a notebook makes, from a shell.

Every subcommand is a thin parser over one library function. Errors raised on
purpose (``XPError``) print their message and exit 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from xpcompute.errors import XPError
from xpcompute.records import ResultRecord

if TYPE_CHECKING:
    from xpcompute.experiment import ExperimentSpec
    from xpcompute.pipeline.slices import SliceFilter

Command = Callable[[argparse.Namespace], int]


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(p) for p in _csv(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from exc


#: file endings ``xpcompute fit`` reads as delimited text (everything else is read as Parquet)
TEXT_TABLES = {".csv": ",", ".csv.gz": ",", ".tsv": "\t", ".tsv.gz": "\t"}


def read_rows(path: str) -> Any:
    """A Parquet file, or a CSV/TSV file (by its ending; ``.gz`` too) with a header row, as an Arrow table."""
    ending = next((e for e in TEXT_TABLES if path.lower().endswith(e)), None)
    if ending is None:
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path)
        except (OSError, ValueError) as exc:
            raise XPError(f"cannot read {path!r} as Parquet: {exc}; a text table needs a name ending in "
                          f"{', '.join(TEXT_TABLES)}") from exc
    import pyarrow.csv as pcsv

    try:
        return pcsv.read_csv(path, parse_options=pcsv.ParseOptions(delimiter=TEXT_TABLES[ending]))
    except (OSError, ValueError) as exc:
        raise XPError(f"cannot read {path!r} as {ending.lstrip('.').split('.')[0].upper()} with a header row: "
                      f"{exc}") from exc


def cmd_fit(args: argparse.Namespace) -> int:
    """Fit one model to one metric of a Parquet (or CSV/TSV) file and print the result records."""
    from xpcompute.models import fit_table
    from xpcompute.spec import CompressSpec, FitSpec

    table = read_rows(args.data)
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
        reference_period=args.reference_period,
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


def _load_experiment(path: str) -> ExperimentSpec:
    from xpcompute.experiment import ExperimentSpec

    return ExperimentSpec.from_yaml(path)


def parse_slice(text: str, experiment: ExperimentSpec | None = None) -> SliceFilter:
    """A slice from the command line: JSON (``{"all_of": [...]}``) or ``col=v1,v2 col2=v3`` (AND of INs).

    Values are typed by the experiment's dimension (``bigint`` and ``boolean``
    dimensions take numbers and true/false); ``col!=v`` negates a condition.
    """
    from xpcompute.pipeline.slices import Condition, SliceFilter

    text = text.strip()
    if text in ("", "all", "{}"):
        return SliceFilter()
    if text.startswith("{"):
        try:
            return SliceFilter.model_validate(json.loads(text))
        except json.JSONDecodeError as exc:
            raise XPError(f"slice {text!r} is not valid JSON: {exc}") from exc
    conditions = []
    for part in text.split():
        negate = "!=" in part
        column, sep, values = part.partition("!=" if negate else "=")
        if not sep or not column or not values:
            raise XPError(f"slice condition {part!r} must look like column=value[,value...] or column!=value")
        dtype = experiment.dimension(column).dtype if experiment is not None and column in experiment.dimensions else "string"
        typed: list[object] = []
        for v in values.split(","):
            if dtype == "bigint":
                try:
                    typed.append(int(v))
                except ValueError as exc:
                    raise XPError(f"slice value {v!r} for {column!r} must be an integer") from exc
            elif dtype == "boolean":
                if v.lower() not in ("true", "false"):
                    raise XPError(f"slice value {v!r} for {column!r} must be true or false")
                typed.append(v.lower() == "true")
            else:
                typed.append(v)
        conditions.append(Condition(column=column, values=tuple(typed), negate=negate))
    return SliceFilter(all_of=tuple(conditions))


def cmd_experiment_validate(args: argparse.Namespace) -> int:
    """Print the resolved spec and its stage-1 SQL, or what to fix (exit 2)."""
    import yaml

    from xpcompute.pipeline.stage1 import stage1_sql, time_kinds, validate_sources

    experiment = _load_experiment(args.spec)
    schemas = validate_sources(experiment)
    resolved = experiment.model_dump(mode="json", exclude_defaults=False)
    if args.json:  # the body for PUT /experiments/{id}: source uris already absolute
        print(json.dumps(resolved, indent=2))
        return 0
    print("# resolved experiment spec (declarations moved under *_definitions)")
    print(yaml.safe_dump(resolved, sort_keys=False).rstrip())
    tables = {name: f"xp_{name}" for name in experiment.sources}
    for table, text in stage1_sql(experiment, args.dialect, tables, time_kinds(experiment, schemas)).items():
        print(f"\n-- stage 1: {table} table ({args.dialect})\n{text};")
    print(f"\n# ok: {len(experiment.metrics)} metrics, {len(experiment.dimensions)} dimensions, "
          f"{len(experiment.covariates)} covariates over {len(schemas)} sources", file=sys.stderr)
    return 0


def cmd_experiment_register(args: argparse.Namespace) -> int:
    """Validate against the sources and store the spec as the experiment's next version."""
    from xpcompute.config import Settings
    from xpcompute.coordinator.runtime import build_coordinator
    from xpcompute.pipeline.stage1 import validate_sources

    experiment = _load_experiment(args.spec)
    validate_sources(experiment)
    coordinator = build_coordinator(Settings.from_env(), dispatcher=None)
    try:
        registered = coordinator.register_experiment(experiment)
    finally:
        coordinator.state.close()
    print(json.dumps(registered.to_json_dict(), indent=2, default=str))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Raw tables to the terminal scorecard (and the HTML report / JSON) on the embedded default."""
    from pathlib import Path

    from rich.console import Console

    from xpcompute.config import Settings
    from xpcompute.runner import run_experiment

    experiment = _load_experiment(args.spec)
    slices = [parse_slice(s, experiment) for s in args.slice] if args.slice else None
    console = Console()
    home = Path(args.home) if args.home else Settings.from_env().home
    result = run_experiment(
        experiment, home=home, slices=slices, workers=args.workers, console=console,
        report=Path(args.report) if args.report else None, json_path=Path(args.json) if args.json else None,
        refresh=args.refresh,
    )
    _say_where(console, result.scorecard.analysis_id, result.home, result.report, result.seconds,
               len(result.scorecard.records))
    return 0 if result.ok else 1


def _say_where(console: Any, analysis_id: str, home: Any, report: Any, seconds: float, n: int) -> None:
    if report is not None:
        console.print(f"\n[bold]Report:[/] {report.resolve()}  (open it in a browser; it works offline)")
    console.print(f"[bold]Analysis:[/] {analysis_id}, {n} results in {seconds:.1f} s")
    console.print(f"[bold]Again:[/] XPCOMPUTE_HOME={home} .venv/bin/xpcompute results {analysis_id} "
                  "[--format json|csv] [--report FILE]")
    console.print(
        f"[bold]Notebook:[/] XPCOMPUTE_HOME={home} .venv/bin/xpcompute notebook {analysis_id} "
        "writes a notebook that reproduces it"
    )
    console.print(f"[bold]Serve it:[/] XPCOMPUTE_HOME={home} .venv/bin/xpcompute serve, then open "
                  f"http://127.0.0.1:8000/analyses/{analysis_id}/scorecard")


def cmd_results(args: argparse.Namespace) -> int:
    """Show a stored analysis (run by ``xpcompute run`` or over HTTP): table, JSON or CSV; optionally the report."""
    from pathlib import Path

    from rich.console import Console

    from xpcompute.config import Settings
    from xpcompute.coordinator.runtime import build_coordinator
    from xpcompute.runner import show_scorecard, write_html
    from xpcompute.viz import headlines, headlines_to_csv, headlines_to_json, metric_infos

    coordinator = build_coordinator(Settings.from_env(), dispatcher=None)
    try:
        card = coordinator.results(args.analysis_id)
        experiment = coordinator.experiment_of(coordinator.state.get_analysis(args.analysis_id))
    finally:
        coordinator.state.close()
    if args.format == "json":
        print(json.dumps(card.to_json_dict(), indent=2, sort_keys=True, default=str))
    elif args.format in ("csv", "headlines"):
        rows = headlines(card.records, metric_infos(sorted({r.metric for r in card.records}), experiment))
        if args.format == "csv":
            sys.stdout.write(headlines_to_csv(rows, card.decision))
        else:
            print(json.dumps(headlines_to_json(rows, card.decision), indent=2, default=str))
    else:
        show_scorecard(card, experiment, Console())
        if not card.complete:
            print(f"(analysis {card.analysis_id} is {card.state}: the scorecard is partial)")
    if args.report:
        path = write_html(card, experiment, Path(args.report), f"xpcompute: {card.experiment_id}")
        print(f"report: {path.resolve()}", file=sys.stderr)
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    """Run an analysis's failed jobs (and fits whose result is damaged) again on the embedded default, follow them,
    and show the scorecard."""
    from rich.console import Console

    from xpcompute.config import Settings
    from xpcompute.coordinator.runtime import EmbeddedRuntime
    from xpcompute.runner import follow, show_scorecard

    console = Console()
    with EmbeddedRuntime(Settings.from_env()) as runtime:
        coord = runtime.coordinator
        retried = coord.retry_failed(args.analysis_id)
        if not retried:
            console.print(f"analysis {args.analysis_id} has no failed job and no damaged result to retry")
            return 0
        console.print(f"retrying {len(retried)} job(s) of {args.analysis_id}")
        follow(coord, args.analysis_id, console, label="retry")
        card = coord.results(args.analysis_id)
        experiment = coord.experiment_of(coord.state.get_analysis(args.analysis_id))
    show_scorecard(card, experiment, console)
    return 0 if card.complete and not card.failures else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """Run a whole synthetic analysis on the embedded default; non-zero exit if anything failed."""
    from pathlib import Path

    from rich.console import Console
    from rich.markup import escape

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
            console.print(f"[red]failed:[/] {escape(failure.describe())}")
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


def cmd_power(args: argparse.Namespace) -> int:
    """Power, sample size or MDE of one metric from the experiment's pre-period data (``inference.planning``).

    The variance comes from the experiment's analysis table in the store (``--home``/``XPCOMPUTE_HOME``); when
    there is none yet, or it is older than the spec or its sources, stage 1 builds it here first (DuckDB).
    """
    from pathlib import Path

    from xpcompute.config import Settings
    from xpcompute.coordinator.runtime import build_coordinator
    from xpcompute.inference.planning import plan_power
    from xpcompute.pipeline.stage1 import run_stage1

    experiment = _load_experiment(args.spec)
    settings = Settings.from_env()
    if args.home:
        settings = Settings(home=Path(args.home))
    coordinator = build_coordinator(settings, dispatcher=None)
    try:
        reason = coordinator.stage1_reason(experiment)
        if reason is not None:
            print(f"building the analysis table first ({reason})", file=sys.stderr)
            run_stage1(experiment, coordinator.store)
        plan = plan_power(
            experiment, args.metric, mde=args.mde, users=args.users, days=args.days, relative=args.relative,
            alpha=args.alpha, power=args.power, sequential=args.sequential, looks=args.looks,
            spending=args.spending, daily_units=args.daily_units, store=coordinator.store,
            by_role=not args.ignore_role,
        )
    finally:
        coordinator.state.close()
    if args.json:
        print(json.dumps(plan.to_json_dict(), indent=2, sort_keys=True))
        return 0
    print(power_text(plan.to_json_dict()))
    return 0


def power_text(plan: dict[str, Any]) -> str:
    """The plan as a few lines for a terminal: inputs, variance (raw and CUPED), the answer, sequential, progress."""
    lines = [f"{plan['experiment_id']} / {plan['metric']} ({plan['kind']}), alpha {plan['alpha']:g}, "
             f"target power {plan['target_power']:g}"]
    if plan.get("role", "secondary") != "secondary" and plan.get("test_alpha") is not None:
        lines.append(f"  {plan['role']}: {plan['test']} at level {plan['test_alpha']:.4g}, "
                     f"planned power {plan['test_power']:.4g} for this test")
    lines.append(f"  variance: raw {plan['variance_raw']:.6g}, CUPED {plan['variance_cuped']:.6g} "
                 f"(R^2 {plan['r_squared']:.4f} on {', '.join(plan['covariates']) or 'no covariates'}); "
                 f"planning with the {plan['variance_used']} variance")
    lines.append(f"  from: {plan['variance_source']}")
    rel = "" if plan["mde_relative"] is None else f" ({plan['mde_relative']:+.2%} of {plan['baseline_mean']:.6g})"
    days = "" if plan["days"] is None else f", {plan['days']:.1f} days at {plan['daily_units']:,.0f} units/day"
    if plan["solve_for"] == "users":
        lines.append(f"  needed: {plan['users']:,} units in all cells{days} to detect MDE "
                     f"{plan['mde_absolute']:+.6g}{rel} with power {plan['power']:.3f}")
    else:
        lines.append(f"  MDE {plan['mde_absolute']:+.6g}{rel} with {plan['users']:,} units{days}, "
                     f"power {plan['power']:.3f}")
    seq = plan.get("sequential")
    if seq:
        lines.append(f"  sequential {seq['method']} ({seq['looks']} looks): power {seq['power']:.3f} "
                     f"+- {seq['mc_se']:.3f}, simulated ({seq['n_sims']:,} seeded experiments)")
    run = plan.get("running")
    if run:
        lines.append(f"  running (data through {run['data_through']}): power now {run['power_now']:.3f} with "
                     f"{run['n_now']:,.0f} units; {run['days_remaining']} more day(s) to the target")
    lines += [f"  note: {n}" for n in plan["notes"]]
    lines.append(f"  method: {plan['method']}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xpcompute", description="Analyse A/B tests on compressed statistics.")
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="fit one causal model to a Parquet (or CSV/TSV) file")
    fit.add_argument("data", help="Parquet file, or .csv/.tsv (.gz) with a header row; one row per user (or per "
                     "user-period for dte)")
    fit.add_argument("--metric", required=True)
    fit.add_argument("--treatment", required=True, help="column holding the cell of each row")
    fit.add_argument("--control", default=None, help="control cell (default: 'control' if present, else the first)")
    fit.add_argument("--covariates", type=_csv, default=(), help="comma-separated; strings are dummy-coded")
    fit.add_argument(
        "--model", default="ttest",
        choices=["ttest", "proportion", "ols", "cate", "dte", "did", "mannwhitney", "quantile", "ratio",
                 "event_quantile"],
    )
    fit.add_argument("--segment", default=None, help="segment column for CATE")
    fit.add_argument("--time", default=None, help="period column for DTE")
    fit.add_argument("--cluster", default=None, help="cluster (user) column for DTE")
    fit.add_argument("--quantiles", type=_floats, default=None, help="e.g. 0.1,0.5,0.9")
    fit.add_argument("--denominator", default=None, help="denominator column of a ratio metric")
    fit.add_argument("--reference-period", default=None,
                     help="did: the reference period (a label of --time, e.g. 2 or -1); default the first period")
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

    run = sub.add_parser("run", help="raw tables to a scorecard: stage 1, slices and fits on the embedded default")
    run.add_argument("spec", help="experiment YAML (docs/experiment-yaml.md)")
    run.add_argument("--slice", action="append", default=[],
                     help="a slice to analyse (repeatable): 'country=US,CA device=tv', 'plan!=basic' or JSON; "
                          "default: the spec's precompute list")
    run.add_argument("--json", default=None, help="also write the scorecard as JSON to this file")
    run.add_argument("--report", default=None, help="also write the self-contained HTML report to this file")
    run.add_argument("--home", default=None,
                     help="state and object store folder (default $XPCOMPUTE_HOME, else .xpcompute)")
    run.add_argument("--workers", type=int, default=None, help="most local worker processes (default: cores)")
    run.add_argument("--refresh", action="store_true", help="rebuild the analysis table even if it is current")
    run.set_defaults(func=cmd_run)

    results = sub.add_parser("results", help="show a stored analysis (XPCOMPUTE_HOME names the store)")
    results.add_argument("analysis_id")
    results.add_argument("--format", choices=["table", "json", "csv", "headlines"], default="table",
                         help="table (terminal scorecard), json (every record), csv or headlines (one row per "
                              "metric, cell and slice)")
    results.add_argument("--report", default=None, help="also write the HTML report to this file")
    results.set_defaults(func=cmd_results)

    from xpcompute.cli_segments import add_segments_command

    add_segments_command(sub)  # xpcompute segments ANALYSIS_ID (cli_segments.py)

    retry = sub.add_parser("retry", help="run the failed jobs of a stored analysis again, and recompute fits whose stored result "
                           "is damaged (XPCOMPUTE_HOME names the store)")
    retry.add_argument("analysis_id")
    retry.set_defaults(func=cmd_retry)

    experiment = sub.add_parser("experiment", help="validate or register an experiment spec")
    exp_sub = experiment.add_subparsers(dest="experiment_command", required=True)
    validate = exp_sub.add_parser("validate", help="print the resolved spec and its stage-1 SQL, or what to fix")
    validate.add_argument("spec")
    validate.add_argument("--dialect", choices=["duckdb", "spark", "trino"], default="duckdb")
    validate.add_argument("--json", action="store_true",
                          help="print only the resolved spec as JSON (the body of PUT /experiments/{id})")
    validate.set_defaults(func=cmd_experiment_validate)
    register = exp_sub.add_parser("register", help="store the spec as the experiment's next version")
    register.add_argument("spec")
    register.set_defaults(func=cmd_experiment_register)

    power = sub.add_parser("power", help="power, sample size or MDE of a metric from the experiment's pre-period")
    power.add_argument("spec", help="experiment YAML (docs/experiment-yaml.md)")
    power.add_argument("--metric", required=True, help="one of the spec's metrics (not a ratio); a guardrail is "
                       "planned at its margin when --mde, --users and --days are all left out")
    size = power.add_mutually_exclusive_group()
    size.add_argument("--mde", type=float, default=None, help="effect to detect -> units and days needed")
    size.add_argument("--users", type=int, default=None, help="units in all cells -> the MDE")
    size.add_argument("--days", type=float, default=None, help="days at the current enrollment rate -> the MDE")
    power.add_argument("--relative", action="store_true", help="--mde is relative to the baseline mean (0.02 = 2%%)")
    power.add_argument("--alpha", type=float, default=0.05)
    power.add_argument("--power", type=float, default=0.8, help="target power")
    power.add_argument("--sequential", choices=["none", "always_valid", "group_sequential"], default=None,
                       help="simulate the power of a sequential test (default: the spec's inference.sequential)")
    power.add_argument("--looks", type=int, default=None, help="looks of the sequential test (default: the spec's)")
    power.add_argument("--spending", choices=["obrien_fleming", "pocock"], default=None)
    power.add_argument("--daily-units", type=float, default=None,
                       help="enrollment per day (default: units in the table / days it covers)")
    power.add_argument("--home", default=None, help="state and object store folder (default $XPCOMPUTE_HOME)")
    power.add_argument("--json", action="store_true", help="print the plan as JSON")
    power.add_argument("--ignore-role", action="store_true",
                       help="plan a two-sided test at --alpha, not the test the ship decision applies to the "
                            "metric's role (goals: alpha / goals; guardrails: non-inferiority at the margin)")
    power.set_defaults(func=cmd_power)

    serve = sub.add_parser("serve", help="serve the HTTP API on 127.0.0.1")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=cmd_serve)

    from xpcompute.cli_meta import add_meta_commands

    add_meta_commands(sub)  # xpcompute archive ..., xpcompute meta ...
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from xpcompute.plugins import load_plugins

    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
    try:
        load_plugins(origin="the command line")
        return func(args)
    except BrokenPipeError:
        # `xpcompute fit --json | head`: the reader left; stop quietly like other Unix tools
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except XPError as exc:
        print(f"xpcompute: error: {_elide(str(exc))}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors())
        print(f"xpcompute: invalid options: {problems}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"xpcompute: error: {_elide(str(exc))}", file=sys.stderr)
        return 2
    except Exception as exc:
        # a bug or an unforeseen input: a one-line typed message and exit code 2, never a traceback
        print(f"xpcompute: error: unexpected {type(exc).__name__}: {_elide(str(exc))}", file=sys.stderr)
        return 2



def _elide(message: str, limit: int = 2000) -> str:
    """A message cut in the middle (an echoed 200,000-character name), keeping its end: what to fix."""
    from xpcompute.api.security import elide

    return elide(message, limit)


if __name__ == "__main__":
    sys.exit(main())
