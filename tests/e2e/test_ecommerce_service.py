"""The e-commerce example through the service, as a user drives it, equals the independent oracle to 1e-8.

Two routes, both from the raw tables:

- the command line: ``xpcompute run experiment.yaml`` (stage 1, the
  coordinator, local workers, stage 2 slices, fits, the scorecard JSON);
- HTTP: ``PUT /experiments/{id}`` with the spec, ``POST`` an analysis of
  every metric, ``GET`` its results (inline dispatch, in-process app).

Each route's "all users" records must equal ``oracle.py``'s numbers for
every declared (metric, model), and its sample-ratio check must be SciPy's
chi-square against the YAML's planned 60/40 split.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import oracle as O
import pytest
import yaml
from oracle import TREATMENT

RTOL = 1e-8


#: Slices the HTTP analysis asks for, each with its label and the oracle's units of it: a dimension of the
#: allocation source, one computed by the plugin from the window start, and two columns of the customers table.
SLICES: tuple[tuple[dict[str, Any], str, dict[str, tuple[str, ...]]], ...] = (
    ({"all_of": [{"column": "platform", "values": ["web"]}]}, "platform=web", {"platform": ("web",)}),
    ({"all_of": [{"column": "tenure", "values": ["new", "regular"]}]}, "tenure in (new, regular)",
     {"tenure": ("new", "regular")}),
    ({"all_of": [{"column": "tier", "values": ["gold"]}, {"column": "country", "values": ["US", "GB"]}]},
     "tier=gold & country in (US, GB)", {"tier": ("gold",), "country": ("US", "GB")}),
)


def _by_key(records: Iterable[Mapping[str, Any]], label: str = "all users") -> dict[tuple[str, str], dict[str, float]]:
    """The treatment cell's overall records of one slice, keyed (metric, model)."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for r in records:
        if r["model"] == "event_quantile":  # a bootstrap, not in the oracle: tests/e2e/test_event_quantile_service.py
            continue
        if r["slice"] == label and r["cell"] == TREATMENT and r.get("segment") is None:
            out[(r["metric"], r["model"])] = {f: r[f] for f in O.FIELDS}
    return out


def _check(got: dict[tuple[str, str], dict[str, float]], expected: dict[tuple[str, str], O.Estimate],
           route: str) -> None:
    assert set(got) == set(expected), (route, sorted(got), sorted(expected))
    diffs = O.relative_differences(got, expected)
    worst = max(diffs, key=diffs.__getitem__)
    per_field = {f: max(v for k, v in diffs.items() if k[2] == f) for f in O.FIELDS}
    print(f"max relative difference ({route}): {diffs[worst]:.2e} at {worst}; by field",
          {f: f"{v:.1e}" for f, v in per_field.items()})
    bad = {k: v for k, v in diffs.items() if not v <= RTOL}
    assert not bad, (route, bad)


def _check_srm(srm: list[Mapping[str, Any]], oracle: O.Oracle) -> None:
    """The sample-ratio check of the whole population: observed counts and p-value against the planned split."""
    (overall,) = [s for s in srm if s["slice"] == "all users"]
    observed, p = O.sample_ratio_p(oracle)
    assert overall["observed"] == observed
    assert overall["p_value"] == pytest.approx(p, rel=RTOL)


def test_cli_run_equals_the_oracle(
    example_yaml: Path, expected: dict[tuple[str, str], O.Estimate], oracle: O.Oracle, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``xpcompute run`` on the YAML: every headline record and the 60/40 sample-ratio check."""
    from xpcompute.cli import main

    card_path = tmp_path / "card.json"
    code = main(["run", str(example_yaml), "--home", str(tmp_path / "home"), "--workers", "1",
                 "--json", str(card_path)])
    capsys.readouterr()
    card = json.loads(card_path.read_text())
    assert code == 0 and not card["failures"], card["failures"]
    _check(_by_key(card["records"]), expected, "cli")
    _check_srm(card["srm"], oracle)


def test_http_put_post_get_equals_the_oracle(
    example_yaml: Path, expected: dict[tuple[str, str], O.Estimate], oracle: O.Oracle, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PUT the spec (JSON, absolute URIs), POST an analysis of every metric and four slices, GET the results."""
    from fastapi.testclient import TestClient

    from xpcompute.api.app import create_app
    from xpcompute.config import Settings

    monkeypatch.setenv("XPCOMPUTE_PLUGIN_PATH", str(example_yaml.parent))  # the server imports shop_metrics
    spec = yaml.safe_load(example_yaml.read_text())
    for source in spec["sources"].values():
        source["uri"] = str((example_yaml.parent / source["uri"]).resolve())
    body = json.loads(json.dumps(spec, default=str))  # dates as ISO strings, as a client sends them
    settings = Settings(home=tmp_path / "home", dispatch="inline")
    with TestClient(create_app(settings)) as client:
        put = client.put(f"/experiments/{spec['id']}", json=body)
        assert put.status_code == 201, put.text
        metrics = [m if isinstance(m, str) else m["name"] for m in spec["metrics"]]
        created = client.post(f"/experiments/{spec['id']}/analyses",
                              json={"metrics": metrics, "slices": [{}, *(body for body, _, _ in SLICES)]})
        assert created.status_code == 202, created.text
        analysis_id = created.json()["analysis_id"]
        status = client.get(f"/analyses/{analysis_id}").json()
        assert status["state"] == "SUCCEEDED", status
        card = client.get(f"/analyses/{analysis_id}/results").json()
    assert card["complete"]
    _check(_by_key(card["records"]), expected, "http")
    assert {r["quantile"] for r in card["records"]
            if r["metric"] == "order_value" and r["model"] == "event_quantile" and r["slice"] == "all users"} == {0.5, 0.9}
    _check_srm(card["srm"], oracle)
    labels = {r["slice"] for r in card["records"]}
    for _, label, where in SLICES:
        assert label in labels, (label, labels)
        _check(_by_key(card["records"], label), O.headline(O.subset(oracle, **where), TREATMENT), f"http {label}")
