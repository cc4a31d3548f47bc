"""State stores: where analyses and jobs live between (stateless) function calls.

``StateStore`` is the protocol; ``SQLiteStateStore`` (a file, the embedded
default) and ``DynamoDBStateStore`` (AWS) implement it. ``open_state_store``
builds the one the settings name.
"""

from __future__ import annotations

from xpcompute.config import Settings
from xpcompute.coordinator.state.base import StateStore


def open_state_store(settings: Settings) -> StateStore:
    """The state store named by ``XPCOMPUTE_STATE`` (``sqlite`` or ``dynamodb``)."""
    if settings.state == "dynamodb":
        from xpcompute.coordinator.state.dynamodb_store import DynamoDBStateStore

        return DynamoDBStateStore(
            table=settings.dynamodb_table,
            endpoint_url=settings.dynamodb_endpoint,
            region=settings.aws_region,
            create=settings.dynamodb_create,
        )
    from xpcompute.coordinator.state.sqlite_store import SQLiteStateStore

    return SQLiteStateStore(settings.state_path)


__all__ = ["StateStore", "open_state_store"]
