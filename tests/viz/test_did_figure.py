"""The event-study figure of did records: effect by event time, bands, the reference point, the pre-trend test."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from xpcompute.models import fit_table
from xpcompute.records import ResultRecord
from xpcompute.spec import FitSpec
from xpcompute.viz import render_report
from xpcompute.viz.did import event_study, pre_trend_text, reference_of


def did_records(labels: Sequence[object], reference: str, seed: int = 0) -> list[ResultRecord]:
    rng = np.random.default_rng(seed)
    n = 300
    treated = rng.random(n) < 0.4
    rows: dict[str, list[object]] = {"unit": [], "t": [], "group": [], "y": []}
    for i in range(n):
        for k, label in enumerate(labels):
            rows["unit"].append(i)
            rows["t"].append(label)
            rows["group"].append("treated" if treated[i] else "comparison")
            rows["y"].append(float(rng.normal() + 0.3 * k + (1.0 if treated[i] and k >= 3 else 0.0)))
    spec = FitSpec(metric="y", treatment="group", model="did", time="t", cluster="unit", control="comparison",
                   reference_period=reference)
    return fit_table(pa.table(rows), spec).records


def traces(fig: Any, role: str) -> list[Any]:
    return [t for t in fig.data if (t.meta or {}).get("role") == role]


def test_event_time_axis_reference_and_pre_trend() -> None:
    records = did_records([-3, -2, -1, 0, 1, 2], "-1")
    fig = event_study(records)
    (effect,) = traces(fig, "effect")
    per_period = sorted((r for r in records if r.segment is None and r.time is not None), key=lambda r: int(r.time or 0))
    assert list(effect.x) == [float(r.time or 0) for r in per_period] == [-3.0, -2.0, 0.0, 1.0, 2.0]
    np.testing.assert_allclose(np.asarray(effect.y), np.array([r.effect for r in per_period]))
    assert [c == "#ffffff" for c in effect.marker.color] == [True, True, False, False, False]  # hollow pre-periods
    (band,) = traces(fig, "band")
    expected = [r.ci_high for r in per_period] + [r.ci_low for r in per_period][::-1]
    np.testing.assert_allclose(np.asarray(band.y), np.array(expected, dtype=float))
    (ref,) = traces(fig, "reference")
    assert list(ref.x) == [-1.0] and list(ref.y) == [0.0]
    (average,) = traces(fig, "average")
    (mean_record,) = [r for r in records if r.segment is None and r.time is None]
    assert list(average.x) == [0.0, 2.0] and list(average.y) == [mean_record.effect] * 2
    (test,) = [r for r in records if r.segment == "pre-trend"]
    text = pre_trend_text(test)
    assert text == f"pre-trend test chi2(2) = {test.statistic:.3g}, p = {test.p_value:.3g}"
    assert any(text in a.text for a in fig.layout.annotations)
    assert fig.layout.xaxis.title.text == "period relative to the change"


def test_dates_stay_in_order_and_without_pre_periods_there_is_no_test() -> None:
    dates = ["2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23", "2026-03-30"]
    records = did_records(dates, dates[0])
    assert reference_of(records[0]) == dates[0] and not any(r.segment == "pre-trend" for r in records)
    fig = event_study(records)
    (effect,) = traces(fig, "effect")
    assert list(effect.x) == dates[1:]
    assert any("no pre-periods before the reference" in a.text for a in fig.layout.annotations)


def test_report_shows_did_in_its_own_section() -> None:
    records = did_records([-2, -1, 0, 1], "-1", seed=2)
    html = render_report(records, title="did", meta={"srm_note": "Quasi-experiment: no sample-ratio check."})
    assert 'id="did"' in html and 'id="dte"' not in html and 'id="cate"' not in html
    assert "Not applicable: no random assignment" in html and "Quasi-experiment: no sample-ratio check." in html
    empty = event_study([r for r in records if r.model != "did"])
    assert "No difference-in-differences records" in empty.layout.annotations[0].text
