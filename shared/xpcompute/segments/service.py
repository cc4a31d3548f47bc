"""An analysis's segments: the segment cube of its table, discovery over its metrics, and the scorecard section.

``analysis_segments`` is what ``GET /analyses/{id}/segments`` and ``xpcompute segments`` answer;
``with_segments`` adds the section to the scorecard when the coordinator finalizes an analysis of a registered
experiment that declares dimensions (a failure becomes a note in the section, never a failed analysis).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from xpcompute.errors import InputError, XPError
from xpcompute.segments.cube import segment_cube
from xpcompute.segments.discovery import SegmentReport, SegmentSettings, discover
from xpcompute.storage import keys

if TYPE_CHECKING:
    from xpcompute.coordinator.jobs import Analysis
    from xpcompute.coordinator.scorecard import Scorecard
    from xpcompute.coordinator.service import Coordinator

log = logging.getLogger(__name__)
#: the analysis table's unit column (``sql/stage1.USER``)
UNIT = "user_id"


def analysis_segments(
    coordinator: Coordinator, analysis_id: str, settings: SegmentSettings | None = None
) -> SegmentReport:
    """Segment discovery over the analysis's metrics and its experiment's declared dimensions.

    Raises ``NotFoundError`` for an unknown analysis (or a table not yet published) and ``InputError`` when
    there is nothing to discover over (an ad-hoc table, or an experiment without dimensions).
    """
    from xpcompute.coordinator.analysis_spec import AnalysisSpec

    analysis = coordinator.state.get_analysis(analysis_id)
    spec = AnalysisSpec.model_validate(analysis.request)
    experiment = coordinator.experiment_of(analysis)
    if experiment is None or not experiment.dimensions:
        raise InputError(
            f"analysis {analysis_id!r}: segment discovery needs a registered experiment that declares dimensions "
            "(its `dimensions:`); an ad-hoc table has none"
        )
    alpha = float(analysis.request.get("alpha", 0.05))
    settings = settings or SegmentSettings(alpha=alpha, fdr=alpha)
    metrics = list(spec.metrics)
    covariates = {m: experiment.compressed_covariates(m) for m in metrics if m in experiment.metrics}
    table_key = spec.table or keys.analysis_table(analysis.experiment_id)
    cube = segment_cube(coordinator.store, analysis_id, table_key, spec.treatment, experiment.dimensions,
                        metrics, covariates, unit=UNIT)
    control = spec.control or experiment.control
    return discover(cube, spec.treatment, [m for m in metrics if m in cube.layout.metrics], control=control,
                    settings=settings, analysis_id=analysis_id)


def discovery_enabled() -> bool:
    """``XPCOMPUTE_SEGMENTS`` (``config.Settings.segments``): whether finalize runs segment discovery."""
    from xpcompute.config import Settings

    try:
        return Settings.from_env().segments
    except XPError:  # another variable is invalid: the service reports that where it reads it
        return True


def with_segments(coordinator: Coordinator, card: Scorecard, analysis: Analysis) -> Scorecard:
    """The scorecard with its ``segments`` section (``SegmentReport`` as JSON), when the experiment declares
    dimensions (and the analysis is of a randomized experiment); a discovery that cannot run leaves a report with
    the reason in ``notes``."""
    if not discovery_enabled():
        return card
    experiment = coordinator.experiment_of(analysis)
    if experiment is None or not experiment.dimensions or analysis.request.get("table"):
        return card
    if analysis.request.get("design", getattr(experiment, "design", "randomized")) != "randomized":
        return card  # a quasi-experiment's groups are not randomized: an honest tree's effects would not be causal
    try:
        report = analysis_segments(coordinator, analysis.analysis_id)
    except (XPError, ValueError, ArithmeticError) as exc:
        log.warning("segment discovery of analysis %s failed: %s", analysis.analysis_id, exc)
        report = SegmentReport(analysis_id=analysis.analysis_id, dimensions=list(experiment.dimensions),
                               metrics=list(analysis.request.get("metrics") or ()),
                               settings=SegmentSettings(), notes=[f"segment discovery did not run: {exc}"])
    return replace(card, segments=report.model_dump(mode="json"))
