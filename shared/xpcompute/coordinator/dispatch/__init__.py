"""Dispatchers: one module per transport, each implementing ``Dispatcher`` (see ``base``).

``open_dispatcher`` builds the one ``XPCOMPUTE_DISPATCH`` names; ``local`` is
built by the embedded runtime because it needs the coordinator's callback.
"""

from __future__ import annotations

from xpcompute.config import Settings
from xpcompute.coordinator.dispatch.base import Dispatcher, Message, function_for
from xpcompute.errors import InputError


def open_dispatcher(settings: Settings) -> Dispatcher:
    """A remote dispatcher (``lambda``, ``sqs`` or ``openfaas``) from settings."""
    if settings.dispatch == "lambda":
        from xpcompute.coordinator.dispatch.lambda_async import LambdaDispatcher

        return LambdaDispatcher(settings.function_prefix, settings.lambda_endpoint, settings.aws_region)
    if settings.dispatch == "sqs":
        from xpcompute.coordinator.dispatch.sqs import SQSDispatcher

        if not settings.sqs_queue_url:
            raise InputError("XPCOMPUTE_DISPATCH=sqs needs XPCOMPUTE_SQS_QUEUE_URL")
        return SQSDispatcher(settings.sqs_queue_url, settings.sqs_endpoint, settings.aws_region)
    if settings.dispatch == "openfaas":
        from xpcompute.coordinator.dispatch.openfaas import OpenFaaSDispatcher

        if not settings.openfaas_url:
            raise InputError("XPCOMPUTE_DISPATCH=openfaas needs XPCOMPUTE_OPENFAAS_URL")
        return OpenFaaSDispatcher(settings.openfaas_url, settings.function_prefix, settings.callback_url)
    raise InputError(
        f"dispatch {settings.dispatch!r} runs inside the embedded runtime (xpcompute.coordinator.runtime), "
        "not as a remote dispatcher"
    )


__all__ = ["Dispatcher", "Message", "function_for", "open_dispatcher"]
