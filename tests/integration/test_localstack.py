"""The emulator flow with LocalStack for S3 and SQS (host mode, no Docker) and moto for DynamoDB, over real HTTP.

``infra/emulators`` starts LocalStack, moto and ``npx osls offline`` as ``./infra/emulators/start --localstack``
does. The analysis is posted to the API function over HTTP; the service fans out through the SQS jobs queue on
LocalStack (``XPCOMPUTE_DISPATCH=sqs``, as on AWS with the fit function's SQS trigger); the test plays Lambda's
event source mapping: it receives batches of up to ten from LocalStack's queue, invokes the fit function with
the SQS event through serverless-offline's Lambda endpoint, and deletes what succeeded. The compressed slices and
the records live in LocalStack's S3, the state in moto's DynamoDB. The scorecard must equal the same analysis run
on moto alone (S3, SQS and DynamoDB on moto's server, the functions' entry points draining the queue in-process).

LocalStack lives in ``build/localstack-venv`` (``infra/emulators/localstack-requirements.txt``); the first run
installs it (about a minute), later runs start it in about 1.5 s.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from emulators import (
    EmulatorError,
    Emulators,
    bootstrap,
    ensure_localstack,
    start_localstack,
    start_moto,
    start_offline,
    stop,
)
from service_fixtures import free_port
from service_helpers import analysis_table, publish

from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.events import handle_job_event
from xpcompute.coordinator.jobs import AnalysisState
from xpcompute.coordinator.runtime import FunctionRuntime
from xpcompute.storage.objects import S3ObjectStore

ROOT = Path(__file__).resolve().parents[2]
BODY = {
    "metrics": ["hours", "is_streamer"],
    "models": ["ttest", "ols"],
    "covariates": ["pre_hours"],
    "slices": [{}, {"all_of": [{"column": "country", "values": ["US"]}]}],
}
KEY = "localstack-key"
USERS = 3000

pytestmark = pytest.mark.skipif(
    not (ROOT / "node_modules" / ".bin" / "osls").exists(),
    reason="node_modules is absent: run `npm install` (or ./scripts/setup) to get osls and serverless-offline",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    try:
        ensure_localstack()
    except EmulatorError as exc:  # the package index is unreachable or a pin no longer resolves
        pytest.skip(f"LocalStack (infra/emulators/localstack-requirements.txt) could not be installed here: {exc}")
    emu = Emulators(run_dir=str(tmp_path_factory.mktemp("emulators-localstack")))
    extra = {"XPCOMPUTE_SLICE_ENGINE": "arrow", "XPCOMPUTE_API_KEYS": KEY, "XPCOMPUTE_AUTH": "on",
             "XPCOMPUTE_DISPATCH": "sqs"}
    if os.environ.get("XPCOMPUTE_NATIVE"):
        extra["XPCOMPUTE_NATIVE"] = os.environ["XPCOMPUTE_NATIVE"]
    try:
        start_moto(emu, free_port(), create=False)
        started = time.perf_counter()
        start_localstack(emu, free_port())
        print(f"\nLocalStack up in {time.perf_counter() - started:.1f} s")
        bootstrap(emu)  # bucket and queues on LocalStack, the table on moto
        emu.save()
        publish(S3ObjectStore(emu.bucket, "xp", endpoint_url=emu.localstack_url), "exp", analysis_table(USERS))
        start_offline(emu, free_port(), free_port(), extra_env=extra, timeout=60)
        yield emu
    finally:
        stop(emu)


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda's SQS trigger delivers for a received batch."""
    return {"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": m.get("Attributes", {}), "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn, "awsRegion": "us-east-1",
        "messageAttributes": {k: {"stringValue": v.get("StringValue"), "dataType": v["DataType"]}
                              for k, v in m.get("MessageAttributes", {}).items()},
    } for m in messages]}


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where two JSON documents differ; floats equal to 1e-12 relative count as equal.

    Why not ``==``: one run in about ten differed here before this helper existed, and the field was not shown;
    a float summed in another order (a threaded aggregation) differs in its last bits. 1e-12 still catches any
    real difference between the two runs.
    """
    if isinstance(a, float) and isinstance(b, float):
        return [] if math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300) else [f"{where}: {a!r} != {b!r}"]
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def moto_run(endpoint: str, tmp_path: Path) -> dict[str, Any]:
    """The same analysis on moto alone: S3, SQS and DynamoDB on moto's server, the queue drained in-process."""
    bucket = f"xp-moto-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"jobs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    settings = Settings(
        mode="serverless", state="dynamodb", dynamodb_table=f"state-{uuid.uuid4().hex[:8]}",
        dynamodb_endpoint=endpoint, dynamodb_create=True, objects=f"s3://{bucket}/xp", s3_endpoint=endpoint,
        slice_engine="arrow", dispatch="sqs", sqs_queue_url=url, sqs_endpoint=endpoint, home=tmp_path,
    )
    runtime = FunctionRuntime(settings)
    publish(runtime.coordinator.store, "exp", analysis_table(USERS))
    analysis = runtime.coordinator.submit("exp", AnalysisSpec.model_validate(BODY))
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                       MessageAttributeNames=["All"]).get("Messages", []):
        result = handle_job_event(runtime, sqs_event(batch, "arn:aws:sqs:us-east-1:123456789012:jobs"), "moto")
        assert result["batchItemFailures"] == []
        for m in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert runtime.coordinator.state.get_analysis(analysis.analysis_id).state == AnalysisState.SUCCEEDED
    return runtime.coordinator.results(analysis.analysis_id).to_json_dict()


def test_http_analysis_with_localstack_s3_and_sqs_equals_the_moto_run(stack: Emulators, tmp_path: Path) -> None:
    started = time.perf_counter()
    sqs = boto3.client("sqs", endpoint_url=stack.localstack_url, region_name="us-east-1")
    queue_arn = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert stack.queue_url.startswith(stack.localstack_url)  # the queue is LocalStack's, not moto's
    lambda_ = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{stack.lambda_port}", region_name="us-east-1")
    delivered = 0
    with httpx.Client(base_url=stack.api_url, timeout=30, headers={"X-API-Key": KEY}) as client:
        assert client.get("/healthz").json()["mode"] == "serverless"
        created = client.post("/experiments/exp/analyses", json=BODY)
        assert created.status_code == 202, created.text
        aid = created.json()["analysis_id"]
        while True:
            batch = sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                        MessageAttributeNames=["All"], AttributeNames=["All"]).get("Messages", [])
            if batch:  # Lambda's SQS trigger: one synchronous invocation of the fit function per batch
                answer = lambda_.invoke(FunctionName="xpcompute-dev-fit", InvocationType="RequestResponse",
                                        Payload=json.dumps(sqs_event(batch, queue_arn)).encode())
                result = json.loads(answer["Payload"].read())
                assert "FunctionError" not in answer and result["batchItemFailures"] == [], result
                for m in batch:
                    sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=m["ReceiptHandle"])
                delivered += len(batch)
                continue
            got = client.get(f"/analyses/{aid}")
            assert got.status_code == 200, got.text
            status = got.json()
            if status["state"] != "RUNNING":
                break
            assert time.perf_counter() - started < 120, f"analysis still running: {status['progress']}"
        assert status["state"] == "SUCCEEDED", status["failures"]
        assert status["progress"]["succeeded"] == status["progress"]["total"] == 2 + 8
        remote = client.get(f"/analyses/{aid}/results").json()
    assert delivered == 2 + 2 + 8 + 8  # slice jobs, their reports, fit jobs, their reports: all through SQS
    # the slices were written to LocalStack's S3
    assert any(k.startswith("analyses/") for k in S3ObjectStore(stack.bucket, "xp", endpoint_url=stack.localstack_url).list())

    reference = moto_run(stack.moto_url, tmp_path)
    assert remote["complete"] and len(remote["records"]) == 8
    assert not differences(remote["records"], reference["records"])
    assert not differences(remote["srm"], reference["srm"])
    print(f"LocalStack analysis: {time.perf_counter() - started:.1f} s submit-to-done, {delivered} SQS messages")
