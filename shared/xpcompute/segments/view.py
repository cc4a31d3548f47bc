"""The segments section of the scorecard page (and any page that shows a scorecard): a plain view for the
``report/segments.html.j2`` partial (numbers formatted here, markup in the template)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xpcompute.segments.report import SegmentReport
from xpcompute.templates import render


def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"


def segment_views(section: Mapping[str, Any]) -> dict[str, Any]:
    """What the partial shows: the settings, one row per heterogeneity test and per segment (discoveries first)."""
    report = SegmentReport.model_validate(section)
    tests = [{
        "metric": t.metric, "cell": t.cell, "dimension": t.dimension,
        "chi2": "–" if t.chi2 is None else f"{t.chi2:.2f} ({t.df})", "p": _p(t.p_value), "p_adjusted": _p(t.p_adjusted),
        "discovered": t.discovered, "note": t.note or (f"left out: {', '.join(t.left_out)}" if t.left_out else ""),
    } for t in sorted(report.tests, key=lambda t: (not t.discovered, t.p_value if t.p_value is not None else 2.0))]
    segments = [{
        "metric": s.metric, "cell": s.cell, "label": s.label, "units": f"{s.n_cell + s.n_control:,.0f}",
        "effect": _num(s.effect), "interval": f"[{_num(s.ci_low)}, {_num(s.ci_high)}]",
        "rest": _num(s.rest_effect), "difference": _num(s.difference),
        "difference_interval": f"[{_num(s.difference_ci_low)}, {_num(s.difference_ci_high)}]",
        "p_adjusted": _p(s.p_adjusted), "discovered": s.discovered, "slice": s.slice.model_dump(mode="json"),
    } for s in sorted(report.segments, key=lambda s: (not s.discovered, s.p_value if s.p_value is not None else 2.0))]
    st = report.settings
    return {"tests": tests, "segments": segments, "discoveries": report.discoveries, "tested": report.tested,
            "fdr": f"{st.fdr:g}", "level": f"{100 * (1 - st.alpha):g}", "depth": st.max_depth,
            "min_units": st.min_units, "halves": report.halves, "notes": report.notes}


def render_segments(section: Mapping[str, Any] | None, live: bool = False) -> str:
    """The segments section (empty when the scorecard has none); ``live``: with a live-slice button per segment."""
    if not section:
        return ""
    return render("report/segments.html.j2", live=live, **segment_views(section))
