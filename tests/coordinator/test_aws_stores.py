"""The serverless configuration on moto's server over HTTP: DynamoDB state, S3 objects, SQS fan-out.

The functions' own entry points consume the queue here, so this is the AWS
flow minus Lambda itself; the results must equal an embedded run's.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3
from service_fixtures import free_port
from service_helpers import FakeClock, analysis_table, publish

from xpcompute.config import Settings
from xpcompute.coordinator.analysis_spec import AnalysisSpec
from xpcompute.coordinator.events import handle_coordinator_event, handle_job_event
from xpcompute.coordinator.jobs import AnalysisState, JobKind, JobState
from xpcompute.coordinator.runtime import EmbeddedRuntime, FunctionRuntime, build_coordinator
from xpcompute.coordinator.worker import run_job
from xpcompute.pipeline.slices import SliceFilter

SPEC = AnalysisSpec(metrics=("hours", "is_streamer"), models=("ttest", "ols"), covariates=("pre_hours",),
                    slices=(SliceFilter(), SliceFilter.where(country="US"), SliceFilter.either(country=["MX", "BR"])))


def _aws_settings(endpoint: str, **kw: Any) -> Settings:
    bucket = f"xp-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    base: dict[str, Any] = dict(
        mode="serverless", state="dynamodb", dynamodb_table=f"state-{uuid.uuid4().hex[:8]}",
        dynamodb_endpoint=endpoint, dynamodb_create=True, objects=f"s3://{bucket}/xp", s3_endpoint=endpoint,
        slice_engine="arrow",
    )
    base.update(kw)
    return Settings(**base)


def _drain(runtime: FunctionRuntime, sqs: Any, url: str) -> int:
    """Deliver queued messages to the functions the way the SQS trigger does, in batches of ten."""
    delivered = 0
    while True:
        out = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
        batch = out.get("Messages", [])
        if not batch:
            return delivered
        event = {"Records": [{"messageId": m["MessageId"], "body": m["Body"], "eventSource": "aws:sqs"} for m in batch]}
        result = handle_job_event(runtime, event, worker="sqs-consumer")
        assert result["batchItemFailures"] == []
        for m in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        delivered += len(batch)


def test_dynamodb_s3_sqs_flow_matches_the_embedded_run(moto_endpoint: str, tmp_path: Path) -> None:
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"jobs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    settings = _aws_settings(moto_endpoint, dispatch="sqs", sqs_queue_url=url, sqs_endpoint=moto_endpoint)
    runtime = FunctionRuntime(settings)
    table = analysis_table(3000)
    publish(runtime.coordinator.store, "exp", table)
    analysis = runtime.coordinator.submit("exp", SPEC)
    delivered = _drain(runtime, sqs, url)
    assert delivered == 3 + 3 + 12 + 12  # slice jobs, their reports, fit jobs, their reports
    assert runtime.coordinator.state.get_analysis(analysis.analysis_id).state == AnalysisState.SUCCEEDED
    remote = runtime.coordinator.results(analysis.analysis_id)

    with EmbeddedRuntime(Settings(home=tmp_path, dispatch="inline", slice_engine="arrow")) as local:
        publish(local.coordinator.store, "exp", table)
        embedded = local.coordinator.results(local.coordinator.submit("exp", SPEC).analysis_id)
    assert remote.complete and embedded.complete
    assert [r.model_dump() for r in remote.records] == [r.model_dump() for r in embedded.records]
    assert remote.srm == embedded.srm

    handle_coordinator_event(runtime, {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})
    assert runtime.coordinator.state.get_analysis(analysis.analysis_id).state == AnalysisState.SUCCEEDED


def test_unreachable_object_store_fails_jobs_after_retries_with_the_reason() -> None:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        # transient_retries=0: this test is about giving up with the reason (test_store_outage rides one out)
        settings = _aws_settings(endpoint, state="sqlite", sqlite_path=None, dispatch="inline", backoff_s=1.0,
                                 transient_retries=0)
        coord = build_coordinator(settings.model_copy(update={"sqlite_path": Path(f"/tmp/xp-{uuid.uuid4().hex}.db")}),
                                  dispatcher=None)
        clock = FakeClock()
        coord.clock = clock
        publish(coord.store, "exp", analysis_table(1000))
        analysis = coord.submit("exp", AnalysisSpec(metrics=("hours",), slices=(SliceFilter(),)))
    finally:
        server.stop()  # the object store goes away with the analysis planned but not run
    (slice_job,) = [j for j in coord.state.list_jobs(analysis.analysis_id) if j.kind == JobKind.SLICE]
    for attempt in range(1, 4):
        outcome = run_job(coord, settings, slice_job.job_id, f"w{attempt}")
        assert outcome.status == ("failed" if attempt == 3 else "retrying")
        clock.advance(60.0)
    coord.on_job_finished(slice_job.job_id)
    final = coord.state.get_analysis(analysis.analysis_id)
    assert final.state == AnalysisState.FAILED
    job = coord.state.get_job(slice_job.job_id)
    assert job.state == JobState.FAILED and job.attempts == 3
    assert "StorageError" in (job.last_error or "") and "gave up after 3 attempts" in (job.last_error or "")
    status = coord.status(analysis.analysis_id)
    assert {f.kind for f in status.failures} == {"slice", "fit"}  # nothing silently missing
    assert final.error is not None and "2 job(s) failed" in final.error
    card = coord.results(analysis.analysis_id)
    assert card.records == [] and len(card.failures) == 2


def test_registered_experiment_and_stage1_job_on_s3_and_dynamodb(moto_endpoint: str, tmp_path: Path) -> None:
    """Versions are put-if-absent objects in S3, source times come from S3's LastModified, stage 1 publishes to S3."""
    import time

    from service_helpers import raw_sources, spec_body

    from xpcompute.storage.objects import newest_modification

    settings = _aws_settings(moto_endpoint)
    coord = build_coordinator(settings, dispatcher=None)
    uris, config = raw_sources(str(tmp_path / "raw"), users=1000)
    body = spec_body(uris, config, metrics=["streaming_hours", "longest_session_hours"])
    assert coord.register_spec("autoplay", body).version == 1
    assert coord.register_spec("autoplay", body).created is False
    other = build_coordinator(settings, dispatcher=None)  # another container, same stores
    assert other.register_spec("autoplay", {**body, "description": "v2"}).version == 2
    current = coord.experiment_version("autoplay")
    assert current is not None and current.version == 2 and current.spec.description == "v2"

    before = time.time() - 5
    coord.store.put_bytes("raw/a/part-0.parquet", b"x")
    coord.store.put_bytes("raw/a/part-1.parquet", b"y")
    changed = newest_modification(coord.store.uri_for("raw/a"), endpoint_url=moto_endpoint)
    assert changed is not None and changed >= before
    assert newest_modification(coord.store.uri_for("raw/nothing"), endpoint_url=moto_endpoint) is None

    analysis = coord.submit("autoplay", AnalysisSpec(metrics=("streaming_hours",), slices=(SliceFilter(),)))
    assert analysis.experiment_version == 2
    for _ in range(20):
        due = coord.state.due_jobs(time.time() + 1e6, limit=10)
        if not due:
            break
        for job in due:
            run_job(coord, settings, job.job_id, "w")
            coord.on_job_finished(job.job_id)
    final = coord.state.get_analysis(analysis.analysis_id)
    assert final.state == AnalysisState.SUCCEEDED, final.error
    kinds = sorted(j.kind.value for j in coord.state.list_jobs(analysis.analysis_id))
    assert kinds == ["fit", "fit", "slice", "stage1"]
    assert coord.store.exists("autoplay/analysis/_MANIFEST.json")
    assert coord.stage1_reason(current.spec) is None
