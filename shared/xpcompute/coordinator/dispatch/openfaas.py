"""Fan out through an OpenFaaS gateway: ``POST /async-function/<name>`` with an ``X-Callback-Url``.

The gateway answers 202 and queues the call (NATS); when the function
finishes, the gateway POSTs its response to the callback URL, which is the
coordinator function's route, so completion reports need no extra message.
The functions are declared in ``infra/openfaas/stack.yml``. This module is the
only code that talks to the gateway.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from xpcompute.coordinator.dispatch.base import Message, function_for
from xpcompute.errors import StorageError


class OpenFaaSDispatcher:
    def __init__(
        self,
        gateway_url: str,
        function_prefix: str = "xpcompute-",
        callback_url: str | None = None,
        timeout_s: float = 10.0,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.function_prefix = function_prefix
        self.callback_url = callback_url
        self._client = httpx.Client(timeout=timeout_s, auth=auth)

    def submit(self, messages: Sequence[Message]) -> None:
        for message in messages:
            name = self.function_prefix + function_for(message)
            headers = {"Content-Type": "application/json"}
            if self.callback_url:
                headers["X-Callback-Url"] = self.callback_url
            url = f"{self.gateway_url}/async-function/{name}"
            try:
                response = self._client.post(url, content=message.model_dump_json(), headers=headers)
            except httpx.HTTPError as exc:
                raise StorageError(f"OpenFaaS gateway {self.gateway_url} unreachable: {exc}") from exc
            if response.status_code != 202:
                raise StorageError(
                    f"OpenFaaS gateway refused {url}: HTTP {response.status_code} {response.text[:200]}"
                )

    def close(self) -> None:
        self._client.close()
