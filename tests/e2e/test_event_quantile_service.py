"""An event-level quantile metric through the service: YAML -> stage 1 -> slices -> fits -> scorecard -> decision.

A small experiment of its own with string unit ids, an exposure timestamp and timestamped events
(playback starts with a latency in whole milliseconds, so the value buckets are lossless and every point
estimate must equal ``numpy.quantile(events, p, method="inverted_cdf")`` exactly). The oracle applies the
window rules of docs/experiment-yaml.md to the raw rows in pandas: a unit's analysis starts at
``max(first exposure, window start)``, units first exposed after the window or seen in two cells are left
out, and an event counts from its unit's start through the last day of the window; events without a value
do not count. Checked: the records of every quantile in two slices (all users, and a dimension), the
terminal headline and the guardrail "p90 latency must not rise more than 5%" in the decision, and typed
4xx refusals of a bad declaration and of a non-numeric value column.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

START = datetime(2026, 3, 2, tzinfo=UTC)
END_NEXT = datetime(2026, 3, 16, tzinfo=UTC)  # window end 2026-03-15, inclusive
PROBS = (0.5, 0.9)


def _write(folder: Path, seed: int = 11, users: int = 3000) -> None:
    rng = np.random.default_rng(seed)
    ids = np.array([f"viewer-{i:05d}" for i in range(users)])
    variant = np.where(rng.random(users) < 0.5, "control", "fast_start")
    exposed = START + pd.to_timedelta(rng.uniform(-3, 16, users), unit="D")  # some before, some after the window
    platform = rng.choice(["web", "tv"], users)
    alloc = pd.DataFrame({"viewer_id": ids, "variant": variant, "platform": platform, "exposed_at": exposed})
    twice = alloc.iloc[:20].assign(variant=np.where(alloc.variant.iloc[:20] == "control", "fast_start", "control"))
    alloc = pd.concat([alloc, twice])  # 20 viewers in both cells: left out
    pq.write_table(pa.Table.from_pandas(alloc, preserve_index=False), folder / "assignments.parquet")
    viewers = pd.DataFrame({"viewer_id": ids, "country": rng.choice(["US", "DE", "BR"], users)})
    pq.write_table(pa.Table.from_pandas(viewers, preserve_index=False), folder / "viewers.parquet")
    k = rng.poisson(6, users)
    unit = np.repeat(np.arange(users), k)
    t = START + pd.to_timedelta(rng.uniform(-5, 17, len(unit)), unit="D")
    speed = np.where(variant[unit] == "fast_start", 0.9, 1.0)
    latency = np.round(np.exp(4.5 + rng.normal(0, 0.3, users)[unit] + rng.normal(0, 0.4, len(unit))) * speed)
    latency = np.minimum(latency, 400.0)  # whole milliseconds up to 400: lossless buckets
    values = pd.array(latency.astype(np.int64), dtype="Int64")
    values[rng.random(len(unit)) < 0.02] = pd.NA  # starts without a measured latency do not count
    starts = pd.DataFrame({"viewer_id": ids[unit], "started_at": t, "latency_ms": values,
                           "device": rng.choice(["a", "b"], len(unit))})
    pq.write_table(pa.Table.from_pandas(starts, preserve_index=False), folder / "starts.parquet")


def _spec(folder: Path, **metric: Any) -> dict[str, Any]:
    decl = {"name": "latency", "source": "starts", "value": "latency_ms", "aggregation": "event_quantile",
            "quantiles": list(PROBS), "unit": "ms", "higher_is_better": False, **metric}
    return {
        "id": "fast-start",
        "allocation": {"source": "assignments", "cell_column": "variant", "exposure_column": "exposed_at"},
        "users_source": "viewers",
        "cells": ["control", "fast_start"], "control": "control",
        "window": {"start": "2026-03-02", "end": "2026-03-15", "pre_days": 7},
        "sources": {
            "assignments": {"uri": str(folder / "assignments.parquet"), "user_column": "viewer_id",
                            "date_column": "exposed_at"},
            "viewers": {"uri": str(folder / "viewers.parquet"), "user_column": "viewer_id"},
            "starts": {"uri": str(folder / "starts.parquet"), "user_column": "viewer_id", "date_column": "started_at"},
        },
        "dimensions": ["country", {"name": "platform", "source": "assignments", "column": "platform"}],
        "metrics": [decl, {"name": "starts", "source": "starts", "aggregation": "count"}],
        "roles": {"goal": ["starts"], "guardrails": {"latency": {"margin": 0.05, "relative": True}}},
        "daily": False,
    }


def _oracle_events(folder: Path) -> pd.DataFrame:
    """The events an analysis counts, with each unit's cell and dimensions, by the documented rules."""
    alloc = pd.read_parquet(folder / "assignments.parquet")
    cells = alloc.groupby("viewer_id").variant.nunique()
    first = alloc.groupby("viewer_id").agg(cell=("variant", "min"), exposed=("exposed_at", "min"),
                                           platform=("platform", "min"))
    first = first[(cells == 1) & (first.exposed < END_NEXT)]
    first["start"] = first.exposed.clip(lower=START)
    viewers = pd.read_parquet(folder / "viewers.parquet").set_index("viewer_id")
    ev = pd.read_parquet(folder / "starts.parquet").join(first, on="viewer_id", how="inner").join(viewers, on="viewer_id")
    ev = ev[(ev.started_at >= ev.start) & (ev.started_at < END_NEXT) & ev.latency_ms.notna()]
    return ev.assign(latency_ms=ev.latency_ms.astype(float))


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], pd.DataFrame, Any]:
    from fastapi.testclient import TestClient

    from xpcompute.api.app import create_app
    from xpcompute.config import Settings

    folder = tmp_path_factory.mktemp("event_quantile")
    _write(folder)
    settings = Settings(home=folder / "home", dispatch="inline")
    with TestClient(create_app(settings)) as client:
        put = client.put("/experiments/fast-start", json=_spec(folder))
        assert put.status_code == 201, put.text
        created = client.post("/experiments/fast-start/analyses", json={
            "metrics": ["latency", "starts"], "slices": [{}, {"all_of": [{"column": "platform", "values": ["tv"]}]}]})
        assert created.status_code == 202, created.text
        analysis_id = created.json()["analysis_id"]
        status = client.get(f"/analyses/{analysis_id}").json()
        assert status["state"] == "SUCCEEDED", status
        card = client.get(f"/analyses/{analysis_id}/results").json()
        bad_q = client.put("/experiments/fast-start-bad", json={**_spec(folder, quantiles=[0.0, 0.9]), "id": "fast-start-bad"})
        bad_type = client.put("/experiments/fast-start-bad2", json={**_spec(folder, value="device"), "id": "fast-start-bad2"})
    return card, _oracle_events(folder), (bad_q, bad_type)


def test_records_equal_numpy_on_the_windowed_raw_events(analysed: tuple[dict[str, Any], pd.DataFrame, Any]) -> None:
    card, events, _ = analysed
    assert card["complete"] and not card["failures"], card["failures"]
    for label, rows in (("all users", events), ("platform=tv", events[events.platform == "tv"])):
        got = [r for r in card["records"] if r["metric"] == "latency" and r["slice"] == label]
        assert sorted(r["quantile"] for r in got) == list(PROBS), (label, got)
        for r in got:
            assert r["model"] == "event_quantile" and r["cell"] == "fast_start" and r["control"] == "control"
            for cell, field in (("fast_start", "mean_cell"), ("control", "mean_control")):
                raw = rows.latency_ms[rows.cell == cell].to_numpy()
                assert r[field] == np.quantile(raw, r["quantile"], method="inverted_cdf"), (label, r["quantile"], cell)
            assert r["n_cell"] == (rows.cell == "fast_start").sum()
            assert r["n_control"] == (rows.cell == "control").sum()
            assert r["se"] > 0 and r["ci_low"] < r["ci_high"] and 0 <= r["p_value"] <= 1
            assert r["p_value_adjusted"] is not None
            assert any("lossless" in n for n in r["notes"])


def test_decision_reads_the_latency_guardrail(analysed: tuple[dict[str, Any], pd.DataFrame, Any]) -> None:
    card, _, _ = analysed
    (decision,) = [d for d in card["decision"] if d["slice"] == "all users"]
    checks = [c for c in decision["checks"] if c["metric"] == "latency"]
    assert checks, decision
    (noninf,) = [c for c in checks if c["test"] == "non-inferiority"]
    assert noninf["model"] == "event_quantile" and noninf["relative"] is True and noninf["margin"] == 0.05
    # the treatment cuts latency by about 10%: the p50 guardrail is shown non-inferior
    assert noninf["outcome"] == "non_inferior", noninf


def test_terminal_headline_names_the_quantile(analysed: tuple[dict[str, Any], pd.DataFrame, Any]) -> None:
    from xpcompute.records import ResultRecord
    from xpcompute.viz.headline import headlines
    from xpcompute.viz.terminal import scorecard_text

    card, _, _ = analysed
    records = [ResultRecord.model_validate(r) for r in card["records"]]
    text = scorecard_text(headlines(records), width=120)
    assert "latency" in text and "p50 of events" in text, text


def test_bad_declarations_are_4xx(analysed: tuple[dict[str, Any], pd.DataFrame, Any]) -> None:
    _, _, (bad_q, bad_type) = analysed
    assert 400 <= bad_q.status_code < 500, bad_q.text
    assert "strictly between 0 and 1" in bad_q.text
    assert 400 <= bad_type.status_code < 500, bad_type.text
    assert "device" in bad_type.text and "numeric" in bad_type.text, json.loads(bad_type.text)
