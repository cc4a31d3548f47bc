"""Segment discovery on compressed data: heterogeneity tests per dimension and an honest causal tree.

``cube``: the segment cube (moments by cell x dimensions x a hashed half of the units);
``discovery``: the tests, the tree and the false-discovery control; ``service``: an analysis's segments.
"""

from xpcompute.segments.cube import HALF_COLUMN, HALF_RULE, build_cube, half_sql, segment_cube
from xpcompute.segments.discovery import (
    HeterogeneityTest,
    Segment,
    SegmentReport,
    SegmentSettings,
    discover,
)

__all__ = [
    "HALF_COLUMN", "HALF_RULE", "HeterogeneityTest", "Segment", "SegmentReport", "SegmentSettings", "build_cube",
    "discover", "half_sql", "segment_cube",
]
