"""Fixtures shared by the coordinator, API and integration tests: the native backend, fake AWS credentials, moto's server on loopback."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

# The C++ module may not be built in a fresh checkout; the NumPy specifications are the same maths.
try:
    import xpcompute._core  # noqa: F401
except ImportError:
    os.environ.setdefault("XPCOMPUTE_NATIVE", "reference")

for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}.items():
    os.environ.setdefault(_name, _value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server over real HTTP on 127.0.0.1 (S3, DynamoDB, SQS), one per test session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
