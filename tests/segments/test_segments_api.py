"""Segment discovery through the service: the scorecard section, GET /analyses/{id}/segments, one call to a live slice."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ui"))
from ui_helpers import EXPERIMENT_ID, METRICS, analysis_spec, publish_experiment

from xpcompute.api.app import create_app
from xpcompute.config import Settings


class Buttons(HTMLParser):
    """The live-slice bodies of a page's segment buttons, and how many table rows it has."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[str] = []
        self.rows = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs).get("data-slice-body")
        if tag == "button" and found is not None:
            self.bodies.append(found)
        self.rows += tag == "tr"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str, Path]]:
    tmp = tmp_path_factory.mktemp("segments")
    settings = Settings(home=tmp / "home", dispatch="inline", slice_engine="cube")
    app = create_app(settings)
    with TestClient(app) as client:
        experiment = publish_experiment(app.state.backend.coordinator, tmp / "raw", users=6000)
        assert experiment.dimensions
        created = client.post(f"/experiments/{EXPERIMENT_ID}/analyses", json=analysis_spec().model_dump(mode="json"))
        assert created.status_code == 202, created.text
        aid = created.json()["analysis_id"]
        app.state.backend.coordinator.tick()
        state = client.get(f"/analyses/{aid}").json()["state"]
        assert state == "SUCCEEDED", client.get(f"/analyses/{aid}").json()
        yield client, aid, tmp / "home"


def test_the_scorecard_carries_the_segments_section(finished: tuple[TestClient, str, Path]) -> None:
    client, aid, _ = finished
    results = client.get(f"/analyses/{aid}/results")
    assert results.status_code == 200
    section = results.json()["segments"]
    dims = section["dimensions"]
    assert dims and section["halves"].startswith("half = lowest bit of MD5")
    cells = {t["cell"] for t in section["tests"]}
    # one Wald test per metric x dimension x treatment cell, every one corrected
    assert len(section["tests"]) == len(METRICS) * len(dims) * len(cells)
    assert all(t["p_adjusted"] is not None and t["p_adjusted"] >= t["p_value"] for t in section["tests"])
    assert section["tested"] == len(section["tests"]) + len(section["segments"])
    # the same report as the route's with the default settings
    again = client.get(f"/analyses/{aid}/segments").json()
    assert again["tests"] == section["tests"] and again["segments"] == section["segments"]


def test_a_segment_is_one_call_from_a_live_slice(finished: tuple[TestClient, str, Path]) -> None:
    client, aid, _ = finished
    answer = client.get(f"/analyses/{aid}/segments", params={"min_units": 20, "max_depth": 2})
    assert answer.status_code == 200, answer.text
    segments = answer.json()["segments"]
    assert segments, "with 20 units per node the synthetic data's country and device effects make a tree"
    for s in segments:
        assert s["ci_low"] <= s["effect"] <= s["ci_high"] and 0 <= s["p_value"] <= s["p_adjusted"] <= 1
    first = segments[0]
    posted = client.post(f"/analyses/{aid}/slices", json=first["slice"])
    assert posted.status_code == 202, posted.text
    assert posted.json()["label"] == first["label"]


def test_unknown_analysis_and_bad_settings_are_refused(finished: tuple[TestClient, str, Path]) -> None:
    client, aid, _ = finished
    assert client.get("/analyses/nope/segments").status_code == 404
    assert client.get(f"/analyses/{aid}/segments", params={"max_depth": 9}).status_code == 422


def test_the_page_shows_the_segments_with_a_live_slice_button_each(finished: tuple[TestClient, str, Path]) -> None:
    from xpcompute.pipeline.slices import SliceFilter

    client, aid, _ = finished
    section = client.get(f"/analyses/{aid}/results").json()["segments"]
    html = client.get(f"/analyses/{aid}/scorecard").text
    assert html.count('<section id="segments">') == 1
    assert f"All {section['tested']} tests are corrected together" in html

    parser = Buttons()
    parser.feed(html)
    if not section["segments"]:
        assert "The tree found no split worth testing" in html
    # one button per segment, each holding exactly the segment's slice filter (what the page's script POSTs)
    assert sorted(SliceFilter.model_validate_json(b).slice_id for b in parser.bodies) == sorted(
        SliceFilter.model_validate(s["slice"]).slice_id for s in section["segments"])


def test_the_partial_renders_every_segment_and_test_with_its_slice_body() -> None:
    from xpcompute.pipeline.slices import SliceFilter
    from xpcompute.segments.cube import build_cube
    from xpcompute.segments.discovery import discover
    from xpcompute.segments.simulate import DIMENSIONS, Planted
    from xpcompute.segments.view import render_segments

    report = discover(build_cube(Planted(users=40_000, seed=2, planted_effect=0.8).table(), "user_id", "cell",
                                 list(DIMENSIONS), {"y": ["pre"]}), "cell", ["y"])
    assert report.segments and report.discoveries >= 1
    html = render_segments(report.model_dump(mode="json"), live=True)
    parser = Buttons()
    parser.feed(html)
    assert [SliceFilter.model_validate_json(b) for b in parser.bodies] == [
        s.slice for s in sorted(report.segments, key=lambda s: (not s.discovered, s.p_value or 2.0))]
    assert parser.rows == 2 + len(report.segments) + len(report.tests)  # two header rows
    assert "<button" not in render_segments(report.model_dump(mode="json"), live=False)
    assert render_segments(None) == ""


def test_the_cli_prints_the_same_report(finished: tuple[TestClient, str, Path], monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import json

    from xpcompute.cli import main

    client, aid, home = finished
    monkeypatch.setenv("XPCOMPUTE_HOME", str(home))
    assert main(["segments", aid, "--format", "json", "--min-units", "20"]) == 0
    printed = json.loads(capsys.readouterr().out)
    served = client.get(f"/analyses/{aid}/segments", params={"min_units": 20}).json()
    assert printed == served
    assert main(["segments", aid]) == 0
    out = capsys.readouterr().out
    assert f"Segment discovery of analysis {aid}" in out and "Heterogeneity by dimension" in out
    # the offline HTML report has the section too, without the live-slice buttons (no server behind it)
    assert main(["results", aid, "--report", str(tmp_path / "report.html")]) == 0
    report = (tmp_path / "report.html").read_text()
    assert report.count('<section id="segments">') == 1 and "data-slice-body" not in report


def test_xpcompute_segments_false_leaves_the_section_out(finished: tuple[TestClient, str, Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from xpcompute.segments.service import with_segments

    client, aid, _ = finished
    coord = client.app.state.backend.coordinator  # type: ignore[attr-defined]
    card = replace(coord.results(aid), segments=None)
    analysis = coord.state.get_analysis(aid)
    assert with_segments(coord, card, analysis).segments is not None
    monkeypatch.setenv("XPCOMPUTE_SEGMENTS", "false")
    assert with_segments(coord, card, analysis).segments is None


def test_the_terminal_scorecard_lists_the_discovered_segments(finished: tuple[TestClient, str, Path]) -> None:
    """``xpcompute run``/``results`` print a summary under the scorecard: counts, the dimensions whose effect
    varies, each discovered segment's effect against the rest with its adjusted p, and where to see all."""
    from xpcompute.runner import TERMINAL_SEGMENTS, segments_summary

    client, aid, _ = finished
    section = client.get(f"/analyses/{aid}/results").json()["segments"]
    text = segments_summary(section, aid)
    assert text.startswith(f"Segment discovery: {section['tested']} tests, BH at 0.05: {section['discoveries']} "
                           "discoveries")
    found = [s for s in section["segments"] if s["discovered"]]
    listed = [line for line in text.splitlines() if line.startswith("  ") and " in " in line and "adj. p" in line]
    assert len(listed) == min(len(found), TERMINAL_SEGMENTS)
    for line, seg in zip(listed, sorted(found, key=lambda s: s["p_value"]), strict=False):
        assert line.startswith(f"  {seg['metric']} / {seg['cell']} in {seg['label']}: ")
    varies = sorted({t["dimension"] for t in section["tests"] if t["discovered"]})
    assert (f"the effect varies by {', '.join(varies)}" in text) == bool(varies)
    assert f"xpcompute segments {aid}" in text
