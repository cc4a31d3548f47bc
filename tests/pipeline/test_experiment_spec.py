"""The experiment spec: loads from YAML, resolves names, and says what to fix when it cannot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from xpcompute.errors import InputError
from xpcompute.experiment import ExperimentSpec
from xpcompute.pipeline.slices import SliceFilter

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "streaming_experiment.yaml"


def base() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_yaml_loads_and_resolves_relative_sources() -> None:
    spec = ExperimentSpec.from_yaml(EXAMPLE)
    assert spec.id == "autoplay-2026-01"
    assert spec.control == "control" and len(spec.cells) == 3
    assert spec.window.days == 10 and str(spec.window.pre_start) == "2025-12-29"
    assert Path(spec.sources["playback"].uri) == EXAMPLE.parent / "data" / "playback.parquet"
    assert len(spec.metrics) == 20
    assert spec.precompute[0] == SliceFilter.everyone()
    assert spec.precompute[2].label() == "country=US & device=tv"
    assert spec.covariates_for("streaming_hours") == ("pre_streaming_hours",)
    assert spec.compressed_covariates("rebuffer_rate") == ("rebuffer_rate__den", "rebuffer_rate__res")
    assert spec.compressed_covariates("sessions") == ("pre_sessions",)
    assert spec.compressed_covariates("revenue") == ("pre_revenue",)


def test_s3_uris_are_kept(tmp_path: Path) -> None:
    raw = base()
    raw["sources"]["playback"] = {"uri": "s3://bucket/raw/playback/"}
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert ExperimentSpec.from_yaml(path).sources["playback"].uri == "s3://bucket/raw/playback/"


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda r: r.update(control="treatment"), "control 'treatment' is not one of the cells"),
        (lambda r: r.update(cells=["control", "control"]), "repeat a name"),
        (lambda r: r.update(cells=["control"]), "at least 2"),
        (lambda r: r["metrics"].append("watch_time"), "unknown metric 'watch_time'; known metrics: active_days"),
        (lambda r: r["dimensions"].append({"name": "region", "source": "playback"}), "dimension 'region' reads source 'playback'"),
        (lambda r: r["metrics"].append({"name": "x", "source": "playback", "value": "(SELECT 1)"}), "is not allowed"),
        (lambda r: r["metrics"].append({"name": "x", "source": "playback", "value": "system('rm')"}), "is not allowed"),
        (lambda r: r["metrics"].append({"name": "x", "source": "playback", "value": "a; DROP TABLE t"}), "contains ';'"),
        (lambda r: r["metrics"].append({"name": "x", "source": "playback", "value": "t.a"}), "without a table prefix"),
        (lambda r: r["metrics"].append({"name": "x", "numerator": "sessions", "denominator": "nope"}), "unknown metric 'nope'"),
        (lambda r: r.update(shares={"control": 0.5}), "shares must give a positive planned share for each cell"),
        (lambda r: r["covariates"].append("pre_x"), "unknown covariate 'pre_x'"),
        (lambda r: r["sources"].pop("billing"), "sources 'billing' \\(used by metric revenue\\) are not declared"),
        (lambda r: r["window"].update(start="2026-02-01"), "is before start"),
        (lambda r: r.update(id="bad id; drop"), "id 'bad id; drop' must be"),
        (lambda r: r.update(colour="blue"), "colour: Extra inputs are not permitted"),
        (lambda r: r.update(precompute=[{"all_of": [{"column": "email", "values": ["x"]}]}]), "not a declared dimension"),
        (lambda r: r.update(precompute=[{"all_of": [{"column": "country", "values": ["Atlantis"]}]}]), "not a known country"),
        (lambda r: r["sources"].update(users={"uri": "u.parquet", "user_column": "User-Id"}), "lowercase identifier"),
    ],
)
def test_validation_errors_say_what_to_fix(change: Any, message: str) -> None:
    raw = base()
    change(raw)
    with pytest.raises(InputError, match=message):
        ExperimentSpec.parse(raw, origin="spec.yaml")


def test_error_names_the_file_and_field(tmp_path: Path) -> None:
    raw = base()
    raw["window"]["pre_days"] = -1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError) as info:
        ExperimentSpec.from_yaml(path)
    text = str(info.value)
    assert str(path) in text and "window.pre_days" in text and "greater than or equal to 0" in text


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        ExperimentSpec.from_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: [unclosed")
    with pytest.raises(InputError, match="not valid YAML"):
        ExperimentSpec.from_yaml(bad)
    bad.write_text("- a list\n")
    with pytest.raises(InputError, match="YAML mapping"):
        ExperimentSpec.from_yaml(bad)


def test_analysis_columns_follow_the_spec_order() -> None:
    raw = base()
    raw["metrics"] = ["sessions", "rebuffer_rate"]
    raw["covariates"] = ["pre_sessions"]
    spec = ExperimentSpec.parse(raw)
    assert spec.analysis_columns() == ["sessions", "rebuffer_rate", "rebuffer_rate__den", "pre_sessions"]
