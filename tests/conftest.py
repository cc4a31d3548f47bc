"""Shared fixtures."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest
from datagen import make_experiment
from hypothesis import settings

# Property tests draw the same examples on every run by default (``ci``), so a CI run on a clean clone passes or
# fails on the code, not on the luck of the draw; XPCOMPUTE_HYPOTHESIS=explore draws new ones each run (and keeps
# failures in .hypothesis/), which is how to hunt for new counterexamples.
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("XPCOMPUTE_HYPOTHESIS", "ci"))


@pytest.fixture
def experiment() -> pa.Table:
    return make_experiment()


def slow_enabled() -> bool:
    """Larger-scale tests run only with XPCOMPUTE_SLOW=1."""
    return os.environ.get("XPCOMPUTE_SLOW") == "1"
