"""A team's metrics repo outside the package: found by entry point, by XPCOMPUTE_PLUGINS and by a spec's list,
in this process and in every local worker process that runs a job."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rich.console import Console

from xpcompute import plugins
from xpcompute.errors import InputError
from xpcompute.experiment import ExperimentSpec
from xpcompute.metrics import registry

PLUGIN = '''
from typing import ClassVar
from sqlglot import exp
from xpcompute.metrics import Metric, register_metric
from xpcompute.metrics.base import col


@register_metric
class {cls}(Metric):
    name = "{name}"
    source = "playback"
    aggregation: ClassVar = "sum"
    description = "Watch seconds of sessions under ten minutes."

    def value(self) -> exp.Expr:
        return col("watch_seconds")

    def condition(self) -> exp.Expr:
        return col("watch_seconds") < 600
'''


def write_plugin(folder: Path, module: str, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(PLUGIN.format(cls=name.title().replace("_", ""), name=name))


@pytest.fixture(autouse=True)
def _forget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no plugins loaded and leaves the registry as it found it."""
    monkeypatch.setattr(plugins, "_loaded", {})
    monkeypatch.setattr(registry, "_METRICS", dict(registry._METRICS))


def test_environment_variable_and_plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_plugin(tmp_path / "repo", "team_env_metrics", "short_watch_env")
    monkeypatch.setenv(plugins.PATH_VAR, str(tmp_path / "repo"))
    monkeypatch.setenv(plugins.ENV_VAR, "team_env_metrics")
    assert "team_env_metrics" in plugins.load_plugins()
    assert "short_watch_env" in registry.metric_names()
    assert plugins.loaded()["team_env_metrics"] == plugins.ENV_VAR


def test_entry_point_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package declares ``[project.entry-points."xpcompute.plugins"]``: a dist-info on sys.path."""
    site = tmp_path / "site"
    write_plugin(site, "team_ep_metrics", "short_watch_ep")
    dist = site / "team_ep-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: team-ep\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{plugins.ENTRY_POINT_GROUP}]\nteam = team_ep_metrics\n")
    monkeypatch.syspath_prepend(str(site))
    plugins.load_plugins()
    assert "short_watch_ep" in registry.metric_names()


def test_a_missing_module_says_how_to_install_it() -> None:
    with pytest.raises(InputError, match=r"plugin module 'no_such_team_repo' \(from the experiment spec\) cannot be imported"):
        plugins.load_plugins(["no_such_team_repo"])
    with pytest.raises(InputError, match="is not a Python module name"):
        plugins.load_plugins(["os; rm -rf /"])


def test_local_workers_fit_a_plugin_metric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A spec naming a module next to its YAML runs end to end on worker processes, which import it themselves."""
    from xpcompute import synthetic
    from xpcompute.runner import run_experiment

    write_plugin(tmp_path, "team_yaml_metrics", "short_watch_yaml")
    monkeypatch.delenv(plugins.PATH_VAR, raising=False)
    config = synthetic.SyntheticConfig(users=3_000)
    uris = synthetic.write_parquet(synthetic.generate(config), str(tmp_path / "raw"))
    raw = synthetic.experiment_spec(uris, config, experiment_id="plug", metrics=("sessions",), covariates=(),
                                    daily=False).model_dump(mode="json", exclude_defaults=True)
    import yaml

    raw["plugins"] = ["team_yaml_metrics"]
    raw["metrics"] = ["sessions", "short_watch_yaml"]
    (tmp_path / "plug.yaml").write_text(yaml.safe_dump(raw))
    sys.modules.pop("team_yaml_metrics", None)
    spec = ExperimentSpec.from_yaml(tmp_path / "plug.yaml")
    result = run_experiment(spec, home=tmp_path / "home", workers=1, console=Console(quiet=True))
    assert result.ok, result.scorecard.failures
    assert {r.metric for r in result.scorecard.records} == {"sessions", "short_watch_yaml"}
