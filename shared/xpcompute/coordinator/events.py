"""The events the functions receive, parsed at the edge, and the services they call.

A job function (slice or fit) receives a ``RunJob`` directly (Lambda async
invoke, OpenFaaS) or a batch of them in an SQS event. The coordinator
function receives ``JobFinished`` reports, scheduled ``Tick``s (EventBridge),
or OpenFaaS callbacks. Each handler in ``functions/`` is one call into here.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from xpcompute.coordinator.messages import JobFinished, RunJob, Tick
from xpcompute.coordinator.runtime import FunctionRuntime
from xpcompute.errors import InputError

log = logging.getLogger(__name__)
_ANY = TypeAdapter(RunJob | JobFinished | Tick)


class SQSRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    message_id: str = Field(alias="messageId")
    body: str
    event_source: str = Field(default="aws:sqs", alias="eventSource")


class SQSEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    Records: list[SQSRecord] = Field(min_length=1)


class ScheduledEvent(BaseModel):
    """An EventBridge schedule (``rate(1 minute)`` in serverless.yml): run the coordinator's housekeeping."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    source: str
    detail_type: str = Field(alias="detail-type")


def parse_message(raw: Any) -> RunJob | JobFinished | Tick:
    """One message from a dict or a JSON string; ``InputError`` names what is wrong."""
    try:
        if isinstance(raw, str | bytes):
            raw = json.loads(raw)
        return _ANY.validate_python(raw)
    except (ValidationError, json.JSONDecodeError) as exc:
        raise InputError(f"not an xpcompute message (run_job, job_finished or tick): {exc}") from exc


def _route(runtime: FunctionRuntime, message: RunJob | JobFinished | Tick, worker: str) -> dict[str, Any]:
    if isinstance(message, RunJob):
        outcome = runtime.run(message, worker)
        return {"job_id": outcome.job_id, "status": outcome.status, "error": outcome.error}
    runtime.coordinate(message)
    return {"coordinated": message.type}


def handle_job_event(runtime: FunctionRuntime, event: Any, worker: str) -> dict[str, Any]:
    """Slice/fit function: a direct ``RunJob``, or an SQS batch (reports per-item failures for redelivery)."""
    if isinstance(event, dict) and "Records" in event:
        batch = SQSEvent.model_validate(event)
        failures = []
        results = []
        for record in batch.Records:
            try:
                results.append(_route(runtime, parse_message(record.body), worker))
            except Exception as exc:
                log.exception("SQS message %s failed", record.message_id)
                failures.append({"itemIdentifier": record.message_id})
                results.append({"message_id": record.message_id, "error": str(exc)})
        return {"batchItemFailures": failures, "results": results}
    message = parse_message(event)
    if not isinstance(message, RunJob):
        raise InputError(f"a job function takes run_job messages, got {message.type}")
    return _route(runtime, message, worker)


def handle_coordinator_event(runtime: FunctionRuntime, event: Any) -> dict[str, Any]:
    """Coordinator function: a job report, a scheduled tick, or an OpenFaaS callback (the job's own reply)."""
    if isinstance(event, dict) and event.get("source") == "aws.events":
        ScheduledEvent.model_validate(event)
        runtime.coordinate(Tick())
        return {"coordinated": "tick"}
    if isinstance(event, dict) and "job_id" in event and "status" in event and "type" not in event:
        # OpenFaaS posts the finished function's response (``{"job_id", "status", ...}``) to the callback URL
        message: RunJob | JobFinished | Tick = JobFinished(
            job_id=str(event["job_id"]), analysis_id=str(event["job_id"]).split(".", 1)[0]
        )
    else:
        message = parse_message(event)
    if isinstance(message, RunJob):
        raise InputError("the coordinator function takes job_finished or tick messages, not run_job")
    runtime.coordinate(message)
    return {"coordinated": message.type}
