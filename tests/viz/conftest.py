"""One real analysis (fits on seeded data) shared by the figure and report tests."""

from __future__ import annotations

import pytest
from viz_data import Analysis, build_analysis


@pytest.fixture(scope="session")
def analysis() -> Analysis:
    return build_analysis()
