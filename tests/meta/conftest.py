"""The synthetic archive the meta-analysis tests share: 50 small experiments, built once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from xpcompute.config import Settings
from xpcompute.coordinator.runtime import build_coordinator
from xpcompute.coordinator.service import Coordinator
from xpcompute.synthetic_archive import Archive, write_archive

# The C++ module may not be built in a fresh checkout; the NumPy specifications are the same maths.
try:
    import xpcompute._core  # noqa: F401
except ImportError:
    os.environ.setdefault("XPCOMPUTE_NATIVE", "reference")

#: 50 experiments of 600 to 2,400 units (x0.5 to x2 of 1,200): about 15 s to write, register and analyse
ARCHIVE_EXPERIMENTS = 50
ARCHIVE_USERS = 1_200


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    return write_archive(tmp_path_factory.mktemp("archive"), ARCHIVE_EXPERIMENTS, ARCHIVE_USERS, pre_days=3)


@pytest.fixture(scope="session")
def archive_coordinator(archive: Archive) -> Iterator[Coordinator]:
    coordinator = build_coordinator(Settings(home=archive.home), dispatcher=None)
    yield coordinator
    coordinator.state.close()
