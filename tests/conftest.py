"""Shared fixtures."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest
from datagen import make_experiment


@pytest.fixture
def experiment() -> pa.Table:
    return make_experiment()


def slow_enabled() -> bool:
    """Larger-scale tests run only with XPCOMPUTE_SLOW=1."""
    return os.environ.get("XPCOMPUTE_SLOW") == "1"
