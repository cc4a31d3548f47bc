"""Request and response bodies of the HTTP API (pydantic: they are the edge, and they make /openapi.json)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from xpcompute.records import ResultRecord
from xpcompute.segments.report import SegmentReport


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable code, e.g. invalid_input, not_found, unauthorized.")
    message: str = Field(description="What is wrong and what to change.")


class ProgressBody(BaseModel):
    total: int
    pending: int
    running: int
    succeeded: int
    failed: int


class FailureBody(BaseModel):
    job_id: str
    kind: str = Field(description="stage1, slice, fit or srm.")
    slice: str
    metric: str | None
    model: str | None
    attempts: int
    error: str


class SliceStateBody(BaseModel):
    slice_id: str
    label: str
    state: str = Field(description="State of the slice's compression job.")


class SRMBody(BaseModel):
    slice: str
    slice_id: str
    chi2: float
    df: int
    p_value: float
    mismatch: bool
    observed: dict[str, float]
    expected: dict[str, float]


class Stage1Body(BaseModel):
    """The analysis's stage-1 job: present when the analysis table was missing or stale and had to be (re)built."""

    job_id: str
    state: str = Field(description="PENDING, RUNNING, SUCCEEDED or FAILED.")
    reason: str | None = Field(description="Why stage 1 runs: no table, the spec changed, a source changed, refresh.")
    attempts: int
    error: str | None = Field(description="The last failure's reason; slice jobs then fail with 'stage 1 failed: ...'.")
    output: dict[str, Any] = Field(description="On success: rows, run id, spec hash, engine.")


class AnalysisCreated(BaseModel):
    analysis_id: str
    experiment_id: str
    experiment_version: int | None = Field(
        description="Version of the registered spec the analysis uses; null for an ad-hoc 'table'."
    )
    state: str
    jobs: int
    stage1: bool = Field(description="Whether a stage-1 job (re)builds the analysis table before the slices.")
    status_path: str = Field(description="Relative to the API's base URL.")
    results_path: str


class ExperimentVersionBody(BaseModel):
    """One version of a registered experiment spec."""

    experiment_id: str
    version: int = Field(description="1, 2, ...: a new number for each registration with different content.")
    spec_hash: str = Field(description="SHA-256 of the spec's canonical JSON; the same content has the same hash.")
    created_at: str = Field(description="When this version was first registered (ISO 8601, UTC).")
    created: bool = Field(description="True when this request stored a new version (PUT answers 201), else 200.")
    spec: dict[str, Any] = Field(description="The validated spec as stored (inline declarations included).")


class ExperimentSummary(BaseModel):
    experiment_id: str
    version: int
    spec_hash: str
    created_at: str
    description: str
    cells: list[str]
    control: str
    metrics: list[str]
    dimensions: list[str]


class ExperimentList(BaseModel):
    """Every registered experiment at its current version."""

    experiments: list[ExperimentSummary]


class ExperimentVersionList(BaseModel):
    """Every version of one experiment, oldest first."""

    experiment_id: str
    versions: list[ExperimentSummary]


class AnalysisStatusBody(BaseModel):
    """Status and progress, failures with their reasons, and the results available so far."""

    model_config = ConfigDict(extra="forbid")

    analysis_id: str
    experiment_id: str
    experiment_version: int | None = Field(
        description="Version of the registered spec the analysis uses; null for an ad-hoc 'table'."
    )
    state: str
    progress: ProgressBody
    stage1: Stage1Body | None = Field(description="The stage-1 job, when the analysis (re)builds the table.")
    slices: list[SliceStateBody]
    failures: list[FailureBody]
    error: str | None
    created_at: float
    finished_at: float | None
    records: list[ResultRecord] = Field(description="Partial results: uncorrected records of the fits done so far.")


class MetricCheckBody(BaseModel):
    """One metric's test in a cell's decision (``decision.rule.MetricCheck``)."""

    metric: str
    role: str = Field(description="goal, guardrail, secondary or diagnostic.")
    test: str = Field(description="superiority (two-sided|one-sided), non-inferiority, deterioration, or none.")
    outcome: str = Field(description="better, not_better, non_inferior, not_non_inferior, regressed or missing.")
    text: str = Field(description="The check in words, as the scorecard shows it.")
    model: str | None = None
    estimator: str | None = Field(default=None, description="How the headline was estimated (CUPED on ...).")
    effect: float | None = None
    relative_effect: float | None = None
    p_value: float | None = Field(default=None, description="The test's own p-value (unadjusted).")
    level: float | None = Field(default=None, description="The level it was tested at (goals: alpha / goals).")
    bound: float | None = Field(default=None, description="One-sided confidence bound on the bad side.")
    margin: float | None = Field(default=None, description="A guardrail's non-inferiority margin.")
    relative: bool = False
    sequential: bool = False


class CellDecisionBody(BaseModel):
    """The ship call for one treatment cell: recommendation, reasons, and every test behind it."""

    cell: str
    control: str
    recommendation: Literal["ship", "don't ship", "keep running"]
    reasons: list[str] = Field(description="Why, most decisive first (e.g. a guardrail with its margin and bound).")
    warnings: list[str] = Field(default_factory=list, description="Not decisive: secondary metrics that regressed.")
    summary: str = Field(description="'recommendation: first reason', one line.")
    rule: str = Field(description="The decision rule that made the call (default risk_aware).")
    slice: str | None = Field(default=None, description="The slice the decision reads (all users).")
    alpha: float
    goal_alpha: float | None = Field(default=None, description="Per-goal level: alpha / number of goals.")
    checks: list[MetricCheckBody] = Field(default_factory=list)


class ScorecardBody(BaseModel):
    """The scorecard: the ship decision per cell first, then every result record (with its slice) corrected
    across the analysis, SRM per slice."""

    analysis_id: str
    experiment_id: str
    experiment_version: int | None = Field(default=None, description="Version of the registered spec used.")
    state: str
    complete: bool
    decision: list[CellDecisionBody] = Field(
        default_factory=list, description="The recommendation per treatment cell (ship, don't ship, keep running)."
    )
    decision_note: str | None = Field(default=None, description="Why there is no decision, when the rule could not run.")
    correction: str
    progress: ProgressBody
    records: list[ResultRecord]
    srm: list[SRMBody]
    srm_note: str | None = Field(
        default=None, description="Why there is no sample-ratio check: a quasi-experiment has no random assignment."
    )
    failures: list[FailureBody]
    spec: dict[str, Any]
    created_at: float
    finished_at: float | None
    inference: InferenceSummaryBody | None = Field(
        default=None, description="Which inference produced the decisions: method, look k of K, alpha spent, crossings."
    )
    segments: SegmentReport | None = Field(
        default=None, description="Segment discovery: heterogeneity tests per dimension and honest-tree segments, "
        "each with its BH-adjusted p-value and the slice filter that requests it as a live slice."
    )


class InferenceSummaryBody(BaseModel):
    """The scorecard's inference summary (``coordinator.inference_pass.InferenceSummary``)."""

    method: str = Field(description="fixed_horizon, always_valid or group_sequential.")
    look: int | None = Field(default=None, description="This analysis's look at the experiment (1-based).")
    planned_looks: int | None = None
    label: str | None = Field(default=None, description="'look k of K'.")
    n: float | None = Field(default=None, description="Units of this look (all-users slice, all cells).")
    planned_units: int | None = None
    information_fraction: float | None = None
    spending: str | None = None
    boundary_z: float | None = Field(default=None, description="Critical |z| at this look (group-sequential).")
    alpha_spent: float | None = Field(default=None, description="Cumulative alpha spent by this look.")
    alpha_spent_before: float | None = None
    crossed: list[str] = Field(default_factory=list, description="Records that crossed: 'slice|metric|model|cell'.")
    any_crossed: bool = False
    bayesian: bool = False
    shrinkage: bool = False
    shrinkage_prior_sd: dict[str, float] = Field(default_factory=dict, description="Fitted prior SD per cell.")
    notes: list[str] = Field(default_factory=list)
    description: str = Field(default="", description="One line, as the terminal and the page show it.")


ScorecardBody.model_rebuild()


class PowerRequest(BaseModel):
    """``POST /experiments/{id}/power``: exactly one of mde, users or days."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(description="One of the experiment's metrics (not a ratio).")
    mde: float | None = Field(default=None, description="Effect to detect -> units and days needed.")
    users: int | None = Field(default=None, gt=3, description="Units in all cells -> the MDE.")
    days: float | None = Field(default=None, gt=0, description="Days at the enrollment rate -> the MDE.")
    relative: bool = Field(default=False, description="mde is relative to the baseline mean (0.02 = +2%).")
    alpha: float = Field(default=0.05, gt=0, lt=1)
    power: float = Field(default=0.8, gt=0, lt=1, description="Target power.")
    sequential: Literal["none", "always_valid", "group_sequential"] | None = Field(
        default=None, description="Simulate a sequential test's power; default the experiment's inference.sequential."
    )
    looks: int | None = Field(default=None, ge=1, le=1000, description="Looks of the sequential test.")
    spending: Literal["obrien_fleming", "pocock"] | None = None
    daily_units: float | None = Field(default=None, gt=0, description="Enrollment per day; default from the table.")
    by_role: bool = Field(
        default=True,
        description="Plan the test the ship decision applies to the metric's role: goals at alpha / goals, "
        "guardrails one-sided non-inferiority at their margin with beta corrected across guardrails (then mde, "
        "users and days may all be left out: the margin is the effect). False: a two-sided test at alpha.",
    )


class PowerBody(BaseModel):
    """The plan (``inference.planning.PowerPlan``): variances raw and CUPED, sizes, power, how it was computed."""

    experiment_id: str
    metric: str
    kind: str = Field(description="mean or proportion.")
    solve_for: str = Field(description="'users' (mde given) or 'mde' (users or days given).")
    alpha: float
    target_power: float
    relative: bool
    baseline_mean: float
    variance_raw: float = Field(description="Per-unit variance of the metric in the pre-period.")
    variance_cuped: float = Field(description="variance_raw * (1 - r_squared): what CUPED leaves.")
    r_squared: float
    covariates: list[str]
    variance_source: str
    variance_used: str = Field(description="'cuped' when the metric has covariates, else 'raw'.")
    mde_absolute: float
    mde_relative: float | None
    users: int = Field(description="Units in all cells (needed, or given).")
    n_control: float
    n_treatment: float
    days: float | None
    daily_units: float | None
    power: float = Field(description="Analytic (fixed-horizon) power at these sizes.")
    method: str
    role: str = Field(default="secondary", description="The metric's role in the ship decision.")
    test: str = Field(default="two-sided", description="The test planned: two-sided, superiority, non-inferiority.")
    test_alpha: float | None = Field(default=None, description="The level of this one test (goals: alpha / goals).")
    test_power: float | None = Field(default=None, description="The power this one test is planned for "
                                                                "(guardrails: beta corrected across guardrails).")
    sequential: dict[str, Any] | None = Field(
        default=None, description="Simulated power of the sequential test ('simulated': true, n_sims, mc_se)."
    )
    running: dict[str, Any] | None = Field(
        default=None, description="While the test runs: power now at the current n and days still needed."
    )
    notes: list[str] = Field(default_factory=list)


class LiveSliceAccepted(BaseModel):
    analysis_id: str
    slice_id: str
    label: str
    job_id: str
    state: str


class RetryAccepted(BaseModel):
    """The failed jobs of an analysis put back to run again (``POST /analyses/{id}/retry``)."""

    analysis_id: str
    retried: int = Field(description="Jobs put back (failed jobs, and fits whose stored result was damaged); 0 when "
                         "nothing had failed or was damaged.")
    job_ids: list[str]
    state: str


class Health(BaseModel):
    status: str
    version: str
    mode: str
    state_store: str
    dispatch: str
    plugins: list[str] = Field(default_factory=list, description="Metrics-repo modules loaded in this process.")
    reason: str | None = Field(default=None, description="Why the status is 'degraded' (503), e.g. a failing pool.")
