"""Segment discovery on compressed data: heterogeneity tests per dimension and an honest causal tree.

``cube``: the segment cube (moments by cell x dimensions x a hashed half of the units);
``discovery``: the tests, the tree and the false-discovery control; ``report``: what it reports; ``service``: an analysis's segments.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xpcompute.segments.cube import HALF_COLUMN, build_cube, half_sql, segment_cube
    from xpcompute.segments.discovery import discover
    from xpcompute.segments.report import (
        HALF_RULE,
        HeterogeneityTest,
        Segment,
        SegmentReport,
        SegmentSettings,
    )

#: name -> submodule; resolved on first use, so importing ``xpcompute.segments.view`` (the page) or the
#: package does not load sqlglot and DuckDB (``cube``) for a process that never builds a cube
_WHERE = {
    "HALF_COLUMN": "cube", "HALF_RULE": "report", "build_cube": "cube", "half_sql": "cube", "segment_cube": "cube",
    "HeterogeneityTest": "report", "Segment": "report", "SegmentReport": "report",
    "SegmentSettings": "report", "discover": "discovery",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'xpcompute.segments' has no attribute {name!r}")
    return getattr(importlib.import_module(f"xpcompute.segments.{_WHERE[name]}"), name)


__all__ = [
    "HALF_COLUMN", "HALF_RULE", "HeterogeneityTest", "Segment", "SegmentReport", "SegmentSettings", "build_cube",
    "discover", "half_sql", "segment_cube",
]
