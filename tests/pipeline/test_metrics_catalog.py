"""The metrics repo: catalog contents, registry lookups, declaration checks, and values on sample data."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from pipeline_helpers import Experiment, allocated_cells, per_user_reference

from xpcompute.errors import InputError, UnsafeIdentifierError
from xpcompute.metrics import (
    Metric,
    QuantileMetric,
    RatioMetric,
    covariate_names,
    dimension_names,
    get_covariate,
    get_dimension,
    get_metric,
    metric_names,
)
from xpcompute.pipeline.stage1 import Stage1Result
from xpcompute.spec import ModelName


def test_catalog_has_the_streaming_metrics_dimensions_and_covariates() -> None:
    names = metric_names()
    assert len(names) >= 20  # the speed targets are stated for an analysis of 20 metrics
    for required in ("streaming_hours", "is_streamer", "sessions", "retained", "cancelled", "rebuffer_rate",
                     "playback_start_latency", "revenue", "rebuffered_session_rate", "slow_start_rate",
                     "early_abandons", "longest_session_hours", "rental_revenue", "is_renter", "profile_edits"):
        assert required in names
    assert set(dimension_names()) >= {"country", "device", "tenure_bucket", "plan"}
    assert "pre_streaming_hours" in covariate_names()


def test_every_metric_has_display_metadata_and_models() -> None:
    for name in metric_names():
        m = get_metric(name)
        meta = m.display()
        assert meta["name"] == name and meta["description"] and meta["unit"] and meta["format"]
        assert m.models, name
        assert "{" in m.format
        assert isinstance(meta["higher_is_better"], bool)


def test_metric_kinds_ratio_and_quantile() -> None:
    rebuffer = get_metric("rebuffer_rate")
    assert isinstance(rebuffer, RatioMetric)
    assert [c.name for c in rebuffer.columns()] == ["rebuffer_rate", "rebuffer_rate__den"]
    assert rebuffer.numerator().aggregation == rebuffer.denominator().aggregation == "sum"
    assert rebuffer.compressed_covariates(()) == ("rebuffer_rate__den", "rebuffer_rate__res")
    (spec,) = rebuffer.fit_specs()
    assert spec.model == "ratio" and spec.denominator == "rebuffer_rate__den"
    latency = get_metric("playback_start_latency")
    assert isinstance(latency, QuantileMetric)
    assert latency.quantiles == (0.5, 0.9)
    quantile_spec = next(s for s in latency.fit_specs() if s.model == "quantile")
    assert quantile_spec.quantiles == (0.5, 0.9)
    assert latency.higher_is_better is False


def test_count_ratios_and_the_longest_session() -> None:
    """Ratios of conditional counts, an extreme that stays null without events, and their CUPED covariate."""
    for name, numerator in (("rebuffered_session_rate", "rebuffer_seconds >= 30"),
                            ("slow_start_rate", "startup_latency_ms > 2000")):
        ratio = get_metric(name)
        assert isinstance(ratio, RatioMetric) and ratio.higher_is_better is False
        assert [c.name for c in ratio.columns()] == [name, name + "__den"]
        assert ratio.numerator().aggregation == ratio.denominator().aggregation == "count"
        condition = ratio.numerator().condition
        assert condition is not None and condition.sql() == numerator
        (spec,) = ratio.fit_specs()
        assert spec.model == "ratio" and spec.denominator == name + "__den"
    den = get_metric("slow_start_rate").denominator().condition
    assert den is not None and den.sql() == "NOT startup_latency_ms IS NULL"
    longest = get_metric("longest_session_hours")
    (column,) = longest.columns()
    assert column.aggregate.how == "max" and column.fill is None and column.divisor == 3600.0
    assert "longest_session_hours" in get_covariate("pre_streaming_hours").targets
    assert get_metric("is_renter").fill == 0.0 and get_metric("is_renter").models == ("proportion",)


def test_fit_specs_use_covariates_only_for_regression() -> None:
    specs = {s.model: s for s in get_metric("streaming_hours").fit_specs(("pre_streaming_hours",), control="control")}
    assert specs["ols"].covariates == ("pre_streaming_hours",)
    assert specs["ttest"].covariates == ()
    assert specs["ttest"].control == "control"


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(InputError, match=r"unknown metric 'watch_time'.*streaming_hours"):
        get_metric("watch_time")
    with pytest.raises(InputError, match="known dimensions: country"):
        get_dimension("region")
    with pytest.raises(InputError, match="known covariates"):
        get_covariate("pre_x")


def test_a_metric_is_one_class_and_its_declaration_is_checked() -> None:
    class WatchedTwoHours(Metric):
        name = "watched_two_hours"
        source = "playback"
        aggregation = "any"
        models: ClassVar[tuple[ModelName, ...]] = ("proportion",)

    m = WatchedTwoHours()
    assert m.fill == 0.0 and m.columns()[0].name == "watched_two_hours"

    with pytest.raises(UnsafeIdentifierError, match="lowercase"):
        class Bad(Metric):
            name = "x; DROP TABLE users"
            source = "playback"

    with pytest.raises(UnsafeIdentifierError):
        class Reserved(Metric):
            name = "a__m_1"
            source = "playback"

    with pytest.raises(InputError, match="cate and dte are chosen per analysis"):
        class WrongModel(Metric):
            name = "wrong_model"
            source = "playback"
            models: ClassVar[tuple[ModelName, ...]] = ("dte",)


def test_tenure_bucket_renders_on_every_dialect() -> None:
    from datetime import date

    from xpcompute.metrics import SqlContext
    from xpcompute.sql.dialects import render

    expr = get_dimension("tenure_bucket").expression(SqlContext(date(2026, 1, 5), date(2026, 1, 14)))
    assert "DATE_DIFF('DAY'" in render(expr, "duckdb")
    assert "DATEDIFF(DAY" in render(expr, "spark")
    assert "DATE_DIFF('DAY'" in render(expr, "trino")


def test_every_metric_on_sample_data_equals_an_independent_numpy_computation(
    synth: Experiment, duck_stage1: Stage1Result
) -> None:
    """The analysis table's per-user values equal the metric descriptions computed directly from the raw events."""
    table = duck_stage1.analysis.read().sort_by("user_id")
    users = np.asarray(table.column("user_id").to_numpy())
    expected_cells = allocated_cells(synth.data)
    assert sorted(expected_cells) == users.tolist()
    assert table.column("cell").to_pylist() == [expected_cells[u] for u in users.tolist()]
    reference = per_user_reference(synth.data)
    for name in synth.spec.analysis_columns():
        got = np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
        want = reference[name][users]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
        np.testing.assert_allclose(got, want, rtol=1e-13, equal_nan=True, err_msg=name)
    # the data exercise each metric: not all zero, not all equal
    for name in ("streaming_hours", "cancelled", "rentals", "pre_revenue", "playback_start_latency",
                 "rebuffered_session_rate", "slow_start_rate", "early_abandons", "longest_session_hours",
                 "rental_revenue", "is_renter", "profile_edits"):
        values = reference[name][users]
        assert np.nanstd(values) > 0, name
    # some members did not stream in the window: their longest session is null, not 0 (checked above)
    assert np.isnan(reference["longest_session_hours"][users]).any()
