"""``GET /analyses/{id}/segments``: segment discovery of an analysis (``xpcompute.segments``).

Registered on the app with one line (``add_segment_routes``). Each segment carries its slice filter, the body
``POST /analyses/{id}/slices`` accepts, so any of them is one call away from a live slice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import Depends, FastAPI, Query

from xpcompute.coordinator.service import Coordinator
from xpcompute.segments.report import SegmentReport, SegmentSettings


def add_segment_routes(
    app: FastAPI, coordinator: Callable[[], Coordinator], auth: Sequence[Any], responses: dict[int | str, Any]
) -> None:
    """Add the segment route to ``app`` (``coordinator``: the app's dependency; ``auth``: its key check)."""

    @app.get("/analyses/{analysis_id}/segments", response_model=SegmentReport, responses=responses,
             dependencies=list(auth), tags=["analyses"])
    def get_segments(
        analysis_id: str,
        max_depth: int = Query(default=2, ge=1, le=4, description="Deepest conjunction (number of splits)."),
        min_units: int = Query(default=200, ge=2, le=1_000_000_000,
                               description="Fewest units of the control and of the treatment cell per node and half."),
        coord: Coordinator = Depends(coordinator),
    ) -> SegmentReport:
        """Segment discovery: a Wald test of equal CATEs per declared dimension, and an honest causal tree (splits
        chosen on one hashed half of the units, effects estimated on the other), Benjamini–Hochberg across all
        tests. Each segment has its effect, interval, adjusted p-value and the slice filter to POST to
        /analyses/{id}/slices."""
        alpha = float(coord.state.get_analysis(analysis_id).request.get("alpha", 0.05))
        settings = SegmentSettings(max_depth=max_depth, min_units=min_units, alpha=alpha, fdr=alpha)
        from xpcompute.segments.service import (
            analysis_segments,  # the cube and discovery: only this route's work
        )

        return analysis_segments(coord, analysis_id, settings)
