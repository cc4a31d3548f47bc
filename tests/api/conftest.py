"""API tests share the coordinator tests' fixtures and helpers (moto on loopback, synthetic tables)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "coordinator"))

from service_fixtures import free_port, moto_endpoint  # noqa: F401

# the functions/ handlers import as ``functions.<name>.handler`` from the repository root
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
