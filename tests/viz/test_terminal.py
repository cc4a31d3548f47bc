"""The headline scorecard in a terminal: one estimate per metric and cell, whole numbers, units, and a footer.

Every number is checked against the record it came from, on records from real
fits (``fit_table`` on a seeded table with a pre-period covariate), at the
widths people actually have: 80 columns (a default terminal) and 120.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from rich.cells import cell_len
from rich.console import Console

from xpcompute.models import fit_table
from xpcompute.postprocess import adjust_pvalues
from xpcompute.records import ResultRecord
from xpcompute.spec import FitSpec
from xpcompute.viz import (
    MetricInfo,
    decimals_for,
    fixed,
    headlines,
    headlines_to_csv,
    headlines_to_json,
    metric_infos,
    render_scorecard,
    scorecard_text,
)
from xpcompute.viz.headline import Headline
from xpcompute.viz.scorecard import MARKERS

WINDOW = (date(2026, 1, 5), date(2026, 1, 18))
THROUGH = date(2026, 1, 17)
CELLS = np.array(["control", "treatment_a", "b"])

INFOS: dict[str, MetricInfo] = {
    "revenue": MetricInfo("revenue", unit="USD", format="${:,.2f}", higher_is_better=True,
                          covariates=("pre_revenue",)),
    "converted": MetricInfo("converted", unit="share", format="{:.2%}", kind="proportion", higher_is_better=True),
    "bytes_sent": MetricInfo("bytes_sent", unit="bytes", format="{:,.0f}"),
    "hours": MetricInfo("hours", unit="hours/session", format="{:,.3f}", kind="ratio", higher_is_better=True),
}


def make_table(n: int = 4000, seed: int = 7) -> pa.Table:
    """Users with a strong pre-period covariate for revenue, a 0/1 conversion, a ratio, and a metric near 1e6.

    ``bytes_sent`` has a mean of a million and effects below one: the case
    where a fixed two-decimal format would print the effect as ``+0.00``.
    """
    rng = np.random.default_rng(seed)
    idx = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    pre = rng.gamma(2.0, 5.0, size=n)
    sessions = rng.poisson(3.0, size=n) + 1.0
    return pa.table({
        "cell": CELLS[idx].tolist(),
        "device": rng.choice(["ios", "tv"], size=n).tolist(),
        "pre_revenue": pre,
        "revenue": 3.0 + 0.9 * pre + np.array([0.0, 1.5, -0.2])[idx] + rng.normal(scale=4.0, size=n),
        "converted": (rng.random(n) < 0.20 + np.array([0.0, 0.04, 0.0])[idx]).astype(np.int64),
        "bytes_sent": 1e6 + np.array([0.0, 0.6, -0.1])[idx] + rng.normal(scale=5.0, size=n),
        "hours": sessions * (0.5 + 0.05 * idx) + rng.gamma(1.0, 0.5, size=n),
        "sessions": sessions,
    })


SPECS = (
    FitSpec(metric="revenue", treatment="cell", model="ttest"),
    FitSpec(metric="revenue", treatment="cell", model="ols", covariates=("pre_revenue",)),
    FitSpec(metric="converted", treatment="cell", model="proportion"),
    FitSpec(metric="bytes_sent", treatment="cell", model="ttest"),
    FitSpec(metric="bytes_sent", treatment="cell", model="mannwhitney"),
    FitSpec(metric="hours", treatment="cell", model="ratio", denominator="sessions"),
)


@pytest.fixture(scope="module")
def records() -> list[ResultRecord]:
    """BH-corrected records of every spec over two slices (all users, and tv only)."""
    table = make_table()
    out: list[ResultRecord] = []
    for label, device in (("all users", None), ("device=tv", "tv")):
        part = table if device is None else table.filter(pc.equal(table.column("device"), device))
        for spec in SPECS:
            out += [r.model_copy(update={"slice": label}) for r in fit_table(part, spec).records]
    return adjust_pvalues(out, "bh")


@pytest.fixture(scope="module")
def heads(records: list[ResultRecord]) -> list[Headline]:
    return headlines(records, INFOS)


def render(heads: list[Headline], width: int) -> str:
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    render_scorecard(heads, console=console, window=WINDOW, data_through=THROUGH, correction="bh")
    return console.export_text()


# -- reading the printed numbers back ------------------------------------------------------------

_NUM = re.compile(r"^[+-]?\$?[\d,]*\.?\d+(?:e[+-]\d+)?$")


def parse(text: str) -> tuple[float, float]:
    """A printed number and half a unit of its last digit (what "equal at the printed precision" allows)."""
    body = text.replace(" pp", "").rstrip("%").replace("$", "").replace(",", "")
    assert _NUM.match(body), f"not a whole number: {text!r}"
    value = float(body)
    if "e" in body:
        mantissa = body.split("e")[0]
        decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
        return value, 0.5 * 10.0 ** (int(body.split("e")[1]) - decimals)
    decimals = len(body.split(".")[1]) if "." in body else 0
    return value, 0.5 * 10.0 ** -decimals


def assert_shows(text: str, value: float | None, scale: float = 1.0) -> None:
    """``text`` is ``value * scale`` rounded to the decimals ``text`` itself prints."""
    assert value is not None
    printed, half = parse(text)
    assert abs(printed - value * scale) <= half * (1 + 1e-9) + 1e-12 * abs(value * scale), (text, value)


def assert_p(text: str, p: float | None) -> None:
    """A p-value: ``<0.0001`` is a bound the record must meet; otherwise the printed digits."""
    assert p is not None
    if text.startswith("<"):
        assert p < float(text[1:])
    else:
        assert_shows(text, p)


def body_rows(text: str, slice_label: str) -> list[list[str]]:
    """The table rows of one slice, split into cells (cells are separated by two or more spaces)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"Slice: {slice_label} "))
    rule = next(i for i in range(start, len(lines)) if lines[i].lstrip().startswith("─"))
    rows = []
    for line in lines[rule + 1:]:
        if not line.strip() or line.startswith(("Slice:", "Window")):
            break
        rows.append([c for c in re.split(r"\s{2,}", line.strip())])
    return rows


# -- the tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 120])
def test_no_number_is_cut_and_nothing_overflows(heads: list[Headline], width: int) -> None:
    text = render(heads, width)
    assert "…" not in text and "..." not in text
    assert max(cell_len(line.rstrip()) for line in text.splitlines()) <= width
    for h in heads:
        shown = h.shown()
        # every kept number is printed whole, on one line
        for number in (shown.effect, shown.p, shown.ci_low, shown.ci_high):
            assert number in text
        if width >= 120:
            assert shown.mean_control in text and shown.mean_cell in text and shown.ci in text


@pytest.mark.parametrize("width", [80, 120])
def test_every_printed_number_is_the_records_value(heads: list[Headline], width: int) -> None:
    """Read the table back row by row: each number equals its record's value at the printed precision."""
    text = render(heads, width)
    for label in ("all users", "device=tv"):
        mine = [h for h in heads if h.slice == label]
        rows = body_rows(text, label)
        assert len(rows) == len(mine)  # one line per headline: nothing wrapped at these widths
        for h, cells in zip(mine, rows, strict=True):
            r, scale = h.record, h.scale
            effect, ci, relative, p, marker = cells[-5:]
            assert cells[-6 if width < 120 else -8] == h.cell
            assert marker == MARKERS[h.verdict]
            assert_shows(effect, r.effect, scale)
            low, high = ci.strip("[]").split(", ")
            assert_shows(low, r.ci_low, scale)
            assert_shows(high, r.ci_high, scale)
            assert_shows(relative, r.relative_effect, 100.0)
            assert_p(p, r.p_value_adjusted)
            if width >= 120:
                control_mean, cell_mean = cells[-7:-5]
                mean_scale = 100.0 if h.info.number_format.percent else 1.0
                assert_shows(control_mean, r.mean_control, mean_scale)
                assert_shows(cell_mean, r.mean_cell, mean_scale)


def test_narrow_terminal_drops_means_first_and_says_so(heads: list[Headline]) -> None:
    narrow, wide = render(heads, 80), render(heads, 120)
    assert "control mean" not in narrow.split("Window")[0] and "treatment mean" not in narrow.split("Window")[0]
    assert "Not shown at 80 columns: control mean, treatment mean" in narrow.replace("\n", " ")
    assert "control mean" in wide and "Not shown" not in wide
    tiny = render(heads, 34)  # narrower than the kept columns: each headline becomes a block of lines
    assert "…" not in tiny
    assert max(cell_len(line.rstrip()) for line in tiny.splitlines()) <= 34
    for h in heads:
        assert h.shown().effect in tiny


def test_proportions_are_in_percentage_points(heads: list[Headline]) -> None:
    conv = [h for h in heads if h.metric == "converted"]
    assert conv and all(h.info.in_points and h.effect_unit == "pp" for h in conv)
    text = render(heads, 80)
    for h in conv:
        shown = h.shown()
        assert shown.effect.endswith(" pp") and shown.effect in text
        assert_shows(shown.effect, h.record.effect, 100.0)
        assert_shows(shown.ci_low, h.record.ci_low, 100.0)
        assert shown.mean_control.endswith("%")
        assert_shows(shown.mean_control, h.record.mean_control, 100.0)
        assert shown.relative.endswith("%")
    assert "pp: percentage points" in text


def test_cuped_is_the_headline_when_covariates_are_declared(heads: list[Headline], records: list[ResultRecord]) -> None:
    revenue = [h for h in heads if h.metric == "revenue"]
    assert len(revenue) == 4  # two slices x two treatment cells
    for h in revenue:
        assert h.model == "ols" and h.adjusted and h.covariates == ("pre_revenue",)
        assert h.unadjusted is not None and h.unadjusted.model == "ttest"
        assert [d.model for d in h.details] == ["ttest"]
        assert h.se_reduction is not None and h.record.se is not None and h.unadjusted.se is not None
        assert h.se_reduction == pytest.approx(1 - h.record.se / h.unadjusted.se, rel=1e-12)
        assert h.se_reduction > 0.3  # pre_revenue explains most of revenue's variance in make_table
        assert h.estimator == "CUPED on pre_revenue"
    # without declared covariates, the same records give the t-test: the primary model of a simple metric
    plain = headlines(records, {**INFOS, "revenue": MetricInfo("revenue", unit="USD", format="${:,.2f}")})
    assert {h.model for h in plain if h.metric == "revenue"} == {"ttest"}
    assert all(not h.adjusted and h.se_reduction is None for h in plain)
    # other metrics: the proportion test, the ratio (delta method) and the t-test over the rank test
    models = {h.metric: h.model for h in heads}
    assert models == {"revenue": "ols", "converted": "proportion", "bytes_sent": "ttest", "hours": "ratio"}


def test_footer_shows_window_data_date_correction_and_the_se_cut(heads: list[Headline]) -> None:
    text = render(heads, 120)
    footer = text[text.index("Window"):]
    assert "Window 2026-01-05 – 2026-01-18 (14 days); data through 2026-01-17." in footer
    assert "Benjamini–Hochberg" in footer
    cuts = sorted(round(100 * h.se_reduction) for h in heads if h.metric == "revenue" and h.se_reduction is not None)
    amount = f"{cuts[0]}%" if cuts[0] == cuts[-1] else f"{cuts[0]}–{cuts[-1]}%"
    assert f"revenue: CUPED on pre_revenue cuts SE by {amount}." in footer
    for h in heads:
        assert MARKERS[h.verdict] in footer  # every marker in the table is in the legend
    # without a window, the footer says so rather than leaving it out silently
    bare = Console(record=True, width=80, color_system=None, file=io.StringIO())
    render_scorecard(heads[:1], console=bare)
    assert "Window not given; data date not given." in bare.export_text()


def test_large_means_with_tiny_effects_and_tiny_p_values_stay_readable(heads: list[Headline]) -> None:
    big = [h for h in heads if h.metric == "bytes_sent"]
    for h in big:
        shown = h.shown()
        value, half = parse(shown.effect)
        assert value != 0 and h.record.se is not None and half <= h.record.se / 10  # not "+0.00"
        assert parse(shown.relative)[0] != 0  # a relative effect of ~1e-7 is not printed as "+0.0%"
        assert shown.mean_control.startswith(("999,99", "1,000,0"))  # the metric's own grouped format
    tiny_p = [h for h in heads if h.p is not None and h.p < 1e-4]
    assert tiny_p, "the fixture should contain very small p-values"
    text = render(heads, 80)
    assert "<0.0001" in text and "e-" not in text.split("Window")[0]


def test_effect_decimals_follow_the_standard_error() -> None:
    assert decimals_for(0.0034, 2) == 4  # two significant digits of the SE
    assert decimals_for(50.0, 2) == 2  # never fewer than the metric's own format
    assert decimals_for(None, 3) == 3
    assert fixed(1234.5678, 2, sign=True) == "+1,234.57"
    assert fixed(-3.4e-12, 13, sign=True) == "-3.4e-12"  # beyond MAX_DECIMALS: scientific, never cut


def test_csv_and_json_carry_the_same_rows(heads: list[Headline]) -> None:
    rows = headlines_to_json(heads)
    json.dumps(rows, allow_nan=False)
    assert len(rows) == len(heads)
    for h, row in zip(heads, rows, strict=True):
        assert (row["metric"], row["cell"], row["slice"], row["model"]) == (h.metric, h.cell, h.slice, h.model)
        assert row["shown_effect"] == h.shown().effect and row["effect"] == h.record.effect
    table = list(csv.DictReader(io.StringIO(headlines_to_csv(heads))))
    assert len(table) == len(heads)
    for h, row in zip(heads, table, strict=True):
        assert float(row["effect"]) == h.record.effect  # full precision survives the CSV
        assert row["covariates"] == ";".join(h.covariates)
        assert row["shown_ci"] == h.shown().ci


def test_plain_text_writer_and_catalog_metadata(heads: list[Headline]) -> None:
    text = scorecard_text(heads, width=80, window=WINDOW, data_through=THROUGH)
    assert "\x1b[" not in text and "Slice: all users" in text and "…" not in text
    infos = metric_infos(["revenue", "is_streamer", "not_in_catalog"])
    assert infos["revenue"].format == "${:,.2f}" and infos["revenue"].unit == "USD"
    assert infos["is_streamer"].in_points
    assert infos["not_in_catalog"] == MetricInfo("not_in_catalog")


def test_no_headlines_prints_a_sentence() -> None:
    console = Console(record=True, width=80, color_system=None, file=io.StringIO())
    render_scorecard([], console=console)
    assert "No results" in console.export_text()


def _small_table(seed: int = 0, n: int = 600) -> pa.Table:
    rng = np.random.default_rng(seed)
    pre = rng.normal(size=n)
    return pa.table({
        "cell": rng.choice(["control", "a"], n).tolist(),
        "y": 1.0 + pre + rng.normal(size=n),
        "pre": pre,
        "flat": np.ones(n),
    })


def test_covariates_the_fit_dropped_are_not_claimed() -> None:
    """A covariate OLS dropped as collinear adjusted nothing; with none left, the t-test is the headline."""
    table = _small_table()
    recs = [*fit_table(table, FitSpec(metric="y", treatment="cell", model="ttest")).records,
            *fit_table(table, FitSpec(metric="y", treatment="cell", model="ols", covariates=("pre", "flat"))).records]
    (h,) = headlines(recs, {"y": MetricInfo("y", covariates=("pre", "flat"))})
    assert h.adjusted and h.covariates == ("pre",) and h.estimator == "CUPED on pre"
    only_flat = [*recs[:1], *fit_table(table, FitSpec(metric="y", treatment="cell", model="ols",
                                                       covariates=("flat",))).records]
    (g,) = headlines(only_flat, {"y": MetricInfo("y", covariates=("flat",))})
    assert g.model == "ttest" and not g.adjusted and [d.model for d in g.details] == ["ols"]


def test_a_quantile_metric_headlines_its_median() -> None:
    table = _small_table(seed=1)
    recs = fit_table(table, FitSpec(metric="y", treatment="cell", model="quantile", quantiles=(0.25, 0.5, 0.9),
                                    bootstrap_reps=50)).records
    (h,) = headlines(recs, {})
    assert h.info.kind == "quantile" and h.record.quantile == 0.5
    assert sorted(d.quantile for d in h.details if d.quantile is not None) == [0.25, 0.9]
    assert h.estimator.endswith("p50")
