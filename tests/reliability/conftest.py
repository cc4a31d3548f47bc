"""Reliability tests share the coordinator tests' helpers (synthetic tables, publish, wait) and import the
``functions/`` handlers from the repository root, as the API tests do."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "coordinator"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
