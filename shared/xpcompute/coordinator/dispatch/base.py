"""The dispatcher protocol: how the coordinator fans work out, and how functions report back.

A ``RunJob`` goes to the function that runs the job's kind (slice or fit); a
``JobFinished`` goes to the coordinator. Delivery is at-least-once everywhere:
the state store's conditional writes make a second delivery a no-op, and the
coordinator re-dispatches a job nobody claimed, so a lost message only delays.
Only dispatchers touch their transport's client (boto3, HTTP, pipes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from xpcompute.coordinator.jobs import JobKind
from xpcompute.coordinator.messages import JobFinished, RunJob

Message = RunJob | JobFinished


@runtime_checkable
class Dispatcher(Protocol):
    def submit(self, messages: Sequence[Message]) -> None:
        """Send messages; raises ``StorageError`` when the transport refuses them (they are re-sent later)."""
        ...

    def close(self) -> None: ...


def function_for(message: Message) -> str:
    """The function (``slice``, ``fit`` or ``coordinator``) a message is addressed to.

    Stage-1 and replay jobs go to the slice function: like slices they read the
    raw or analysis tables, so that function is the one sized with more memory
    and a longer timeout (serverless.yml).
    """
    if isinstance(message, RunJob):
        return "slice" if message.kind in (JobKind.SLICE, JobKind.STAGE1, JobKind.REPLAY) else "fit"
    return "coordinator"
