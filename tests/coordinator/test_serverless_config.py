"""serverless.yml passes every setting the deployed functions read, with ``Settings``'s defaults, and grants the
calls the configured paths make (stage 1 on EMR Serverless included); the state table's index is keys-only.

Before, ``XPCOMPUTE_STAGE1_ENGINE`` and the ``XPCOMPUTE_EMR_*`` settings could not be set by a deploy at all.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from xpcompute.config import Settings
from xpcompute.coordinator.state.dynamodb_store import INDEX, LEGACY_INDEX, table_definition

ROOT = Path(__file__).resolve().parents[2]

#: Settings the functions never read on AWS, and why. Every other field must be in provider.environment.
NOT_ON_AWS = {
    "home": "embedded: the folder of the SQLite state and the local object store",
    "sqlite_path": "embedded: SQLite state (serverless uses DynamoDB)",
    "workers": "embedded: the local worker pool",
    "worker_idle_s": "embedded: the local worker pool",
    "job_timeout_s": "embedded: the local worker pool (Lambda's own timeout bounds a function)",
    "shutdown_grace_s": "embedded: the local worker pool",
    "tick_s": "embedded: the in-process coordinator loop (AWS: the coordinator's schedule)",
    "openfaas_url": "OpenFaaS: openfaas/stack.yml",
    "callback_url": "OpenFaaS: openfaas/stack.yml",
    "aws_region": "Lambda sets AWS_REGION, which Settings.from_env reads",
}

#: deploy defaults that differ from ``Settings``'s on purpose (the embedded defaults do not suit Lambda)
DEPLOY_DEFAULTS = {
    "mode": "serverless", "state": "dynamodb", "dispatch": "lambda", "slice_engine": "duckdb", "lease_s": 300.0,
    "auth": "on",
}


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (``!Ref``, ``!GetAtt``, ``!Join``) read as plain values."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: (
    loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode)
    else loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else loader.construct_mapping(node)))


@pytest.fixture(scope="module")
def serverless() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load((ROOT / "serverless.yml").read_text(), Loader=_Loader)  # a SafeLoader
    return loaded


def _env_default(value: object, variable: str) -> str | None:
    """The fallback of ``${env:VARIABLE, 'default'}``; None when the value is not that form."""
    match = re.fullmatch(r"\$\{env:(\w+), '([^']*)'\}", str(value))
    if match is None or match.group(1) != variable:
        return None
    return match.group(2)


def test_every_setting_the_functions_read_is_passed(serverless: dict[str, Any]) -> None:
    env = serverless["provider"]["environment"]
    fields = set(Settings.model_fields)
    passed = {k.removeprefix("XPCOMPUTE_").lower() for k in env if k.startswith("XPCOMPUTE_")}
    assert passed <= fields, f"not settings: {sorted(passed - fields)}"
    assert set(NOT_ON_AWS) <= fields
    missing = fields - passed - set(NOT_ON_AWS)
    assert not missing, f"serverless.yml does not pass {sorted('XPCOMPUTE_' + m.upper() for m in missing)}"
    for name in ("stage1_engine", "stage1_lease_s", "spark_master", "emr_application_id", "emr_execution_role_arn",
                 "emr_code_uri", "emr_python_archive", "emr_log_uri", "emr_endpoint", "emr_poll_s"):
        assert name in passed


def test_deploy_defaults_are_the_settings_defaults(serverless: dict[str, Any]) -> None:
    env = serverless["provider"]["environment"]
    defaults = Settings()
    checked = 0
    for variable, value in env.items():
        name = variable.removeprefix("XPCOMPUTE_").lower()
        fallback = _env_default(value, variable)
        if fallback is None or "${" in fallback:  # a value made of the stack's own names (objects: its bucket)
            continue
        checked += 1
        got = getattr(Settings.from_env({variable: fallback}), name)
        want = DEPLOY_DEFAULTS.get(name, getattr(defaults, name))
        assert got == want, f"{variable}: serverless.yml's default {fallback!r} gives {got!r}, Settings has {want!r}"
    assert checked >= 35
    assert env["XPCOMPUTE_STAGE1_ENGINE"] == "${env:XPCOMPUTE_STAGE1_ENGINE, 'duckdb'}"


def test_emr_serverless_calls_are_granted_on_the_configured_application_and_role(
        serverless: dict[str, Any]) -> None:
    statements = serverless["provider"]["iam"]["role"]["statements"]

    def granting(action: str) -> dict[str, Any]:
        (statement,) = [s for s in statements if action in s["Action"]]
        return statement

    emr = granting("emr-serverless:StartJobRun")
    assert {"emr-serverless:GetJobRun", "emr-serverless:CancelJobRun"} <= set(emr["Action"])
    resources = [str(r) for r in emr["Resource"]]
    assert any("${self:custom.emrApplicationId}" in r and "jobruns" not in r for r in resources)
    assert any("${self:custom.emrApplicationId}/jobruns/*" in r for r in resources)
    pass_role = granting("iam:PassRole")
    assert pass_role["Resource"] == "${self:custom.emrJobRoleArn}"
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "emr-serverless.amazonaws.com"}}
    custom = serverless["custom"]
    assert custom["emrApplicationId"].startswith("${env:XPCOMPUTE_EMR_APPLICATION_ID, ")
    assert custom["emrJobRoleArn"].startswith("${env:XPCOMPUTE_EMR_EXECUTION_ROLE_ARN, ")


def test_the_state_table_matches_the_store_and_keeps_the_old_index_for_one_deploy(
        serverless: dict[str, Any]) -> None:
    table = serverless["resources"]["Resources"]["StateTable"]["Properties"]
    indexes = {g["IndexName"]: g for g in table["GlobalSecondaryIndexes"]}
    (ours,) = table_definition("t")["GlobalSecondaryIndexes"]
    assert indexes[INDEX]["Projection"] == ours["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert indexes[INDEX]["KeySchema"] == ours["KeySchema"]
    assert set(indexes) <= {INDEX, LEGACY_INDEX}  # the old one only until the deploy after by_state_keys
    dynamo = next(s for s in serverless["provider"]["iam"]["role"]["statements"] if "dynamodb:Query" in s["Action"])
    assert any(f"'{INDEX}'" in str(r) for r in dynamo["Resource"])  # the functions may query the new index
