"""The HTML report is one self-contained file that lists every result, and the terminal scorecard agrees with it."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs
from rich.console import Console
from viz_data import Analysis

from xpcompute.records import ResultRecord
from xpcompute.viz import print_scorecard, render_report, scorecard_rows, write_report

HIB = {"revenue": True, "hours": True, "converted": True, "watch_hours": True}
FIGURE_IDS = ("figure-heatmap", "figure-effects", "figure-cate", "figure-dte", "figure-qte", "figure-means")


def meta_of(analysis: Analysis) -> dict[str, object]:
    return {
        "analysis_id": "an-1", "experiment_id": "exp-7", "status": "SUCCEEDED",
        "srm": [{"slice": label, **res.__dict__} for label, res in analysis.srm],
        "progress": {"total": 14, "succeeded": 14, "failed": 0, "running": 0, "pending": 0},
        "spec": {"metrics": ["revenue", "hours"]},
    }


@pytest.fixture(scope="module")
def html(analysis: Analysis) -> str:
    return render_report(analysis.records, title="Homepage test", summaries=analysis.summaries,
                         meta=meta_of(analysis), higher_is_better=HIB)


def test_every_metric_and_headline_row_is_in_the_table(analysis: Analysis, html: str) -> None:
    rows = scorecard_rows(analysis.records, HIB)
    found = re.findall(r'<tr class="row" data-metric="([^"]*)" data-slice="([^"]*)" data-cell="([^"]*)" '
                       r'data-verdict="([^"]*)"', html)
    assert len(found) == len(rows)
    assert {m for m, *_ in found} == {r.metric for r in analysis.records}
    assert [(f[0], f[3]) for f in found] == [(r.metric, r.verdict) for r in rows]
    for metric in ("revenue", "hours", "converted", "watch_hours"):
        assert f">{metric}<" in html
    for text in ("an-1", "exp-7", "SUCCEEDED", "Benjamini–Hochberg", "Sample ratio", "14 of 14 jobs finished"):
        assert text in html


def test_self_contained_with_plotly_js_exactly_once(html: str) -> None:
    assert html.count(get_plotlyjs()[:400]) == 1
    assert html.count("* plotly.js v") == 1
    tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", html, flags=re.IGNORECASE)
    assert not [t for t in tags if re.search(r"\b(?:src|href)\s*=", t, flags=re.IGNORECASE)]
    head = html[: html.index("<script")]
    body = html[html.index("</head>"):]
    for part in (head, re.sub(r"<script.*?</script>", "", body, flags=re.DOTALL)):
        assert "http://" not in part and "https://" not in part
        assert "@import" not in part and "url(" not in part


def test_only_figures_with_records_behind_them(analysis: Analysis, html: str) -> None:
    for fid in FIGURE_IDS:
        assert html.count(f'id="{fid}"') == 1
    assert html.count("Plotly.newPlot(") == len(FIGURE_IDS)
    ttest_only = [r for r in analysis.records if r.model == "ttest"]
    small = render_report(ttest_only, title="t")
    assert 'id="figure-effects"' in small and 'id="figure-means"' in small
    for fid in ("figure-cate", "figure-dte", "figure-qte"):
        assert fid not in small
    assert small.count("* plotly.js v") == 1


def test_empty_and_unusual_values(analysis: Analysis) -> None:
    empty = render_report([], title="Nothing yet", meta={"status": "RUNNING", "complete": False,
                                                          "progress": {"total": 4, "succeeded": 1, "running": 2}})
    assert "No results yet" in empty and "RUNNING" in empty and "partial" in empty
    assert "plotly.js v" not in empty and "Plotly.newPlot" not in empty
    odd: list[ResultRecord] = []
    for r in analysis.records:
        if r.metric == "hours":
            odd.append(r.model_copy(update={"p_value": None, "p_value_adjusted": None}))
        elif r.metric == "converted":
            odd.append(r.model_copy(update={"p_value": float("nan"), "p_value_adjusted": float("nan"),
                                            "relative_effect": None, "ci_low": float("nan")}))
        else:
            odd.append(r)
    out = render_report(odd, title="odd", meta={"srm": None, "failures": []})
    visible = re.sub(r"<script.*?</script>", "", out, flags=re.DOTALL)
    assert 'data-metric="hours"' in visible and "no p-value" in visible
    assert not re.search(r"\bnan\b", visible, flags=re.IGNORECASE)


def test_meta_warnings_and_escaping(analysis: Analysis) -> None:
    bad_srm = {"slice": "all users", "chi2": 40.0, "df": 2, "p_value": 1e-9, "mismatch": True,
               "observed": {"control": 10.0, "a": 30.0}, "expected": {"control": 20.0, "a": 20.0}}
    failure = {"metric": "revenue", "model": "ols", "slice": "device=tv", "error": "zero variance in <cell>"}
    out = render_report(analysis.records[:2], title="<script>alert(1)</script>",
                        meta={"srm": bad_srm, "failures": [failure], "owner": "ana", "refresh_seconds": 5})
    assert "<script>alert(1)</script>" not in out and "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "MISMATCH" in out and "Sample ratio mismatch" in out
    assert "zero variance in &lt;cell&gt;" in out
    assert 'http-equiv="refresh" content="5"' in out and "ana" in out


def test_write_report(tmp_path: Path, analysis: Analysis) -> None:
    path = write_report(tmp_path / "sub" / "report.html", analysis.records, title="w")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")


def test_terminal_scorecard_matches_rows(analysis: Analysis) -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=100, force_terminal=False, color_system=None)
    print_scorecard(analysis.records, console=console, higher_is_better=HIB)
    text = buf.getvalue()
    rows = scorecard_rows(analysis.records, HIB)
    for label in ("all users", "device=ios", "device=tv"):
        assert f"Slice: {label}" in text
    for metric in {r.metric for r in rows}:
        assert metric in text
    assert text.count("✓") == sum(r.marker == "✓" for r in rows) + 1  # + the legend
    assert "Benjamini–Hochberg" in text
    narrow = io.StringIO()
    print_scorecard(analysis.records, console=Console(file=narrow, width=80, color_system=None))
    assert narrow.getvalue().count("▲") >= 1  # the marker column survives an 80-column terminal
    empty = io.StringIO()
    print_scorecard([], console=Console(file=empty, color_system=None))
    assert "No results" in empty.getvalue()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium is not installed")
def test_figures_render_offline_in_headless_chromium(tmp_path: Path, html: str) -> None:
    """The page draws every figure with no network: plotly marks a rendered div ``js-plotly-plot``."""
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout
    rendered = re.findall(r'id="(figure-[a-z]+)" class="plotly-graph-div js-plotly-plot"', dom)
    assert sorted(rendered) == sorted(FIGURE_IDS)
