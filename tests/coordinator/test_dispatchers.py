"""Remote dispatchers over real loopback transports: Lambda's Invoke API, SQS on moto, an OpenFaaS gateway."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import boto3
import pytest
from service_helpers import Recorder, closed_port

from xpcompute.config import Settings
from xpcompute.coordinator.dispatch import open_dispatcher
from xpcompute.coordinator.dispatch.lambda_async import LambdaDispatcher
from xpcompute.coordinator.dispatch.openfaas import OpenFaaSDispatcher
from xpcompute.coordinator.dispatch.sqs import SQSDispatcher
from xpcompute.coordinator.events import parse_message
from xpcompute.coordinator.jobs import JobKind
from xpcompute.coordinator.messages import JobFinished, RunJob
from xpcompute.errors import InputError, StorageError

MESSAGES = [
    RunJob(job_id="a1.slice.s1", analysis_id="a1", kind=JobKind.SLICE),
    RunJob(job_id="a1.fit.s1.hours.ttest", analysis_id="a1", kind=JobKind.FIT),
    JobFinished(job_id="a1.slice.s1", analysis_id="a1"),
]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.close()


def test_lambda_dispatcher_invokes_each_function_asynchronously(recorder: Recorder) -> None:
    dispatcher = LambdaDispatcher("xpcompute-dev-", endpoint_url=recorder.url)
    dispatcher.submit(MESSAGES)
    dispatcher.close()
    paths = [r["path"] for r in recorder.requests]
    assert paths == [
        "/2015-03-31/functions/xpcompute-dev-slice/invocations",
        "/2015-03-31/functions/xpcompute-dev-fit/invocations",
        "/2015-03-31/functions/xpcompute-dev-coordinator/invocations",
    ]
    for req, message in zip(recorder.requests, MESSAGES, strict=True):
        headers = req["headers"]
        assert isinstance(headers, dict) and headers["X-Amz-Invocation-Type"] == "Event"
        assert parse_message(req["body"]) == message  # type: ignore[arg-type]


def test_lambda_dispatcher_reports_a_refusal_and_an_unreachable_endpoint() -> None:
    refusing = Recorder(status=200)  # a synchronous answer is not an accepted async invocation
    try:
        with pytest.raises(StorageError, match="refused the asynchronous invocation"):
            LambdaDispatcher("p-", endpoint_url=refusing.url).submit(MESSAGES[:1])
    finally:
        refusing.close()
    with pytest.raises(StorageError, match="cannot invoke Lambda function p-slice"):
        LambdaDispatcher("p-", endpoint_url=f"http://127.0.0.1:{closed_port()}").submit(MESSAGES[:1])


def test_sqs_dispatcher_sends_batches_with_the_target_function(moto_endpoint: str) -> None:
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"jobs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    many = [RunJob(job_id=f"a1.fit.s{i}.m.ttest", analysis_id="a1", kind=JobKind.FIT) for i in range(23)]
    dispatcher = SQSDispatcher(url, endpoint_url=moto_endpoint)
    dispatcher.submit([*many, *MESSAGES])
    received = []
    while True:
        out = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
        batch = out.get("Messages", [])
        if not batch:
            break
        for m in batch:
            received.append((m["MessageAttributes"]["function"]["StringValue"], parse_message(m["Body"])))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert len(received) == 26
    assert sorted(m.job_id for _, m in received) == sorted(m.job_id for m in [*many, *MESSAGES])
    assert {fn for fn, m in received if isinstance(m, JobFinished)} == {"coordinator"}
    assert {fn for fn, m in received if isinstance(m, RunJob) and m.kind == JobKind.SLICE} == {"slice"}


def test_sqs_dispatcher_reports_a_missing_queue(moto_endpoint: str) -> None:
    dispatcher = SQSDispatcher(f"{moto_endpoint}/123456789012/no-such-queue", endpoint_url=moto_endpoint)
    with pytest.raises(StorageError, match="no-such-queue"):
        dispatcher.submit(MESSAGES[:1])


def test_openfaas_dispatcher_posts_async_calls_with_a_callback(recorder: Recorder) -> None:
    dispatcher = OpenFaaSDispatcher(recorder.url, "xpcompute-", callback_url="http://coordinator.example/cb")
    dispatcher.submit(MESSAGES)
    dispatcher.close()
    assert [r["path"] for r in recorder.requests] == [
        "/async-function/xpcompute-slice", "/async-function/xpcompute-fit", "/async-function/xpcompute-coordinator",
    ]
    for req, message in zip(recorder.requests, MESSAGES, strict=True):
        headers = req["headers"]
        assert isinstance(headers, dict) and headers["X-Callback-Url"] == "http://coordinator.example/cb"
        assert json.loads(req["body"]) == message.model_dump(mode="json")  # type: ignore[arg-type]


def test_openfaas_dispatcher_reports_a_refusal() -> None:
    refusing = Recorder(status=404)
    try:
        with pytest.raises(StorageError, match="HTTP 404"):
            OpenFaaSDispatcher(refusing.url).submit(MESSAGES[:1])
    finally:
        refusing.close()


def test_open_dispatcher_names_missing_settings() -> None:
    with pytest.raises(InputError, match="XPCOMPUTE_SQS_QUEUE_URL"):
        open_dispatcher(Settings(dispatch="sqs"))
    with pytest.raises(InputError, match="XPCOMPUTE_OPENFAAS_URL"):
        open_dispatcher(Settings(dispatch="openfaas"))
    assert isinstance(open_dispatcher(Settings(dispatch="lambda", lambda_endpoint="http://127.0.0.1:1")),
                      LambdaDispatcher)


@pytest.mark.live
@pytest.mark.skipif(not os.environ.get("XPCOMPUTE_OPENFAAS_URL"),
                    reason="needs a real OpenFaaS gateway: set XPCOMPUTE_OPENFAAS_URL (OpenFaaS cannot run here)")
def test_openfaas_live_gateway_accepts_an_async_call() -> None:
    url = os.environ["XPCOMPUTE_OPENFAAS_URL"]
    user, password = os.environ.get("XPCOMPUTE_OPENFAAS_USER", "admin"), os.environ.get("XPCOMPUTE_OPENFAAS_PASSWORD")
    dispatcher = OpenFaaSDispatcher(url, os.environ.get("XPCOMPUTE_FUNCTION_PREFIX", "xpcompute-"),
                                    auth=(user, password) if password else None)
    dispatcher.submit([JobFinished(job_id="live-check.slice.none", analysis_id="live-check")])
    dispatcher.close()
