"""Integration tests share the coordinator tests' helpers and the infra scripts."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "coordinator"))
sys.path.insert(0, str(ROOT / "infra" / "emulators"))

from service_fixtures import free_port, moto_endpoint  # noqa: E402,F401
