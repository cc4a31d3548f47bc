"""An analysis's segments: the segment cube of its table, discovery over its metrics, and the scorecard section.

``analysis_segments`` is what ``GET /analyses/{id}/segments`` and ``xpcompute segments`` answer;
``with_segments`` adds the section to the scorecard when the coordinator finalizes an analysis of a registered
experiment that declares dimensions (a failure becomes a note in the section, never a failed analysis).

The cube is the costly part (a pass over the analysis table: 12 s at 10M users), so the all-users slice job
builds and stores it (``prebuild_cube``, from ``coordinator/table_jobs.run_slice``), on the slice function with a
lease and retries; finalize, on the coordinator, then reads it and runs only the discovery over its arrays. An
analysis without an all-users slice, or whose prebuild failed, has its cube built at finalize, as before.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from xpcompute.columns import is_residual
from xpcompute.errors import InputError, XPError
from xpcompute.segments.cube import segment_cube
from xpcompute.segments.discovery import SegmentReport, SegmentSettings, discover
from xpcompute.storage import keys

if TYPE_CHECKING:
    from xpcompute.compression.schema import CompressedTable
    from xpcompute.coordinator.analysis_spec import AnalysisSpec
    from xpcompute.coordinator.jobs import Analysis
    from xpcompute.coordinator.ledger import JobLedger
    from xpcompute.coordinator.scorecard import Scorecard
    from xpcompute.experiment import ExperimentSpec

log = logging.getLogger(__name__)
#: the analysis table's unit column (``sql/stage1.USER``)
UNIT = "user_id"


def analysis_segments(
    coordinator: JobLedger, analysis_id: str, settings: SegmentSettings | None = None
) -> SegmentReport:
    """Segment discovery over the analysis's metrics and its experiment's declared dimensions.

    Raises ``NotFoundError`` for an unknown analysis (or a table not yet published) and ``InputError`` when
    there is nothing to discover over (an ad-hoc table, or an experiment without dimensions).
    """
    from xpcompute.coordinator.analysis_spec import AnalysisSpec

    analysis = coordinator.analysis(analysis_id)
    spec = AnalysisSpec.model_validate(analysis.request)
    experiment = coordinator.experiment_of(analysis)
    if experiment is None or not experiment.dimensions:
        raise InputError(
            f"analysis {analysis_id!r}: segment discovery needs a registered experiment that declares dimensions "
            "(its `dimensions:`); an ad-hoc table has none"
        )
    alpha = float(analysis.request.get("alpha", 0.05))
    settings = settings or SegmentSettings(alpha=alpha, fdr=alpha)
    cube = _cube_of(coordinator, analysis, spec, experiment)
    control = spec.control or experiment.control
    return discover(cube, spec.treatment, [m for m in spec.metrics if m in cube.layout.metrics], control=control,
                    settings=settings, analysis_id=analysis_id)


def _cube_of(ledger: JobLedger, analysis: Analysis, spec: AnalysisSpec, experiment: ExperimentSpec) -> CompressedTable:
    """The analysis's segment cube (stored once per analysis and table run: ``cube.segment_cube``)."""
    metrics = list(spec.metrics)
    # not a ratio's residual columns: discovery regresses each metric on its covariates (CATE), and the numerator
    # is an exact linear function of its denominator and residual
    covariates = {m: tuple(c for c in experiment.compressed_covariates(m) if not is_residual(c))
                  for m in metrics if m in experiment.metrics}
    table_key = spec.table or keys.analysis_table(analysis.experiment_id)
    return segment_cube(ledger.store, analysis.analysis_id, table_key, spec.treatment, experiment.dimensions,
                        metrics, covariates, unit=UNIT)


def _discovers(analysis: Analysis, experiment: ExperimentSpec | None) -> bool:
    """Whether finalize runs discovery on this analysis, discovery being on (see ``with_segments``)."""
    if experiment is None or not experiment.dimensions or analysis.request.get("table"):
        return False
    # a quasi-experiment's groups are not randomized: an honest tree's effects would not be causal
    return analysis.request.get("design", getattr(experiment, "design", "randomized")) == "randomized"


def prebuild_cube(ledger: JobLedger, analysis: Analysis, spec: AnalysisSpec, experiment: ExperimentSpec | None) -> str | None:
    """Build and store the segment cube finalize will read, when it will run discovery; the reason when it could
    not (recorded in the slice job's output; finalize then tries again and reports what fails there)."""
    if experiment is None or not discovery_enabled() or not _discovers(analysis, experiment):
        return None
    try:
        _cube_of(ledger, analysis, spec, experiment)
    except (XPError, ValueError, ArithmeticError) as exc:
        log.warning("segment cube of analysis %s not built by its slice job: %s", analysis.analysis_id, exc)
        return str(exc)
    return None


def discovery_enabled() -> bool:
    """``XPCOMPUTE_SEGMENTS`` (``config.Settings.segments``): whether finalize runs segment discovery."""
    from xpcompute.config import Settings

    try:
        return Settings.from_env().segments
    except XPError:  # another variable is invalid: the service reports that where it reads it
        return True


def _not_run(analysis: Analysis, experiment: ExperimentSpec, reason: str) -> SegmentReport:
    """The segments section of an analysis whose discovery could not run: no tests, the reason in its notes."""
    return SegmentReport(analysis_id=analysis.analysis_id, dimensions=list(experiment.dimensions),
                         metrics=list(analysis.request.get("metrics") or ()), settings=SegmentSettings(),
                         notes=[f"segment discovery did not run: {reason}"])


def with_segments(coordinator: JobLedger, card: Scorecard, analysis: Analysis) -> Scorecard:
    """The scorecard with its ``segments`` section (``SegmentReport`` as JSON), when the experiment declares
    dimensions (and the analysis is of a randomized experiment); a discovery that cannot run leaves a report with
    the reason in ``notes``."""
    if not discovery_enabled():
        return card
    experiment = coordinator.experiment_of(analysis)
    if experiment is None or not _discovers(analysis, experiment):
        return card
    try:
        report = analysis_segments(coordinator, analysis.analysis_id)
    except (XPError, ValueError, ArithmeticError) as exc:
        log.warning("segment discovery of analysis %s failed: %s", analysis.analysis_id, exc)
        report = _not_run(analysis, experiment, str(exc))
    except Exception as exc:  # a bug in discovery must not keep the analysis from finishing: note it, log it
        log.exception("segment discovery of analysis %s failed unexpectedly", analysis.analysis_id)
        report = _not_run(analysis, experiment, f"{type(exc).__name__}: {exc} (an internal error, logged)")
    return replace(card, segments=report.model_dump(mode="json"))
