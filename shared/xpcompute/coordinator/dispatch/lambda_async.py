"""Fan out through AWS Lambda asynchronous invocation (``InvocationType=Event``).

Each message becomes one invocation of the function it is addressed to
(``PREFIX + slice/fit/coordinator``); Lambda queues it and retries on its own.
``endpoint_url`` points the client at serverless-offline's Lambda endpoint
(``http://127.0.0.1:3002``) locally. This module is the only code that
touches the Lambda client.
"""

from __future__ import annotations

from collections.abc import Sequence

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from xpcompute.coordinator.dispatch.base import Message, function_for
from xpcompute.errors import StorageError


class LambdaDispatcher:
    def __init__(self, function_prefix: str, endpoint_url: str | None = None, region: str = "us-east-1") -> None:
        self.function_prefix = function_prefix
        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=3, read_timeout=30,
                        max_pool_connections=32)
        self._client = boto3.client("lambda", endpoint_url=endpoint_url, region_name=region, config=config)

    def submit(self, messages: Sequence[Message]) -> None:
        for message in messages:
            name = self.function_prefix + function_for(message)
            try:
                response = self._client.invoke(
                    FunctionName=name, InvocationType="Event", Payload=message.model_dump_json().encode()
                )
            except (BotoCoreError, ClientError) as exc:
                raise StorageError(f"cannot invoke Lambda function {name}: {exc}") from exc
            status = int(response.get("StatusCode", 0))
            if status != 202:
                raise StorageError(f"Lambda function {name} refused the asynchronous invocation (HTTP {status})")

    def close(self) -> None:
        self._client.close()
