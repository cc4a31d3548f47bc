"""Fan out through an SQS queue that the functions consume.

Messages go in batches of ten; each carries the target function as a message
attribute so one consumer can route them (see ``functions/*/handler.py``).
The queue's redrive policy moves a message that keeps failing to the
dead-letter queue (``serverless.yml``). This module is the only code that
touches the SQS client.
"""

from __future__ import annotations

from collections.abc import Sequence

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from xpcompute.coordinator.dispatch.base import Message, function_for
from xpcompute.errors import StorageError

BATCH = 10


class SQSDispatcher:
    def __init__(self, queue_url: str, endpoint_url: str | None = None, region: str = "us-east-1") -> None:
        self.queue_url = queue_url
        config = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=3, read_timeout=10)
        self._client = boto3.client("sqs", endpoint_url=endpoint_url, region_name=region, config=config)

    def submit(self, messages: Sequence[Message]) -> None:
        for start in range(0, len(messages), BATCH):
            chunk = messages[start : start + BATCH]
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": m.model_dump_json(),
                    "MessageAttributes": {"function": {"DataType": "String", "StringValue": function_for(m)}},
                }
                for i, m in enumerate(chunk)
            ]
            try:
                out = self._client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except (BotoCoreError, ClientError) as exc:
                raise StorageError(f"cannot send to SQS queue {self.queue_url}: {exc}") from exc
            failed = out.get("Failed") or []
            if failed:
                raise StorageError(
                    f"SQS refused {len(failed)} of {len(entries)} messages: {failed[0].get('Message', failed[0])}"
                )

    def close(self) -> None:
        self._client.close()
