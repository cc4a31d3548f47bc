"""The two-stage data pipeline: stage 1 (raw join -> analysis table) and stage 2 (slice -> compressed statistics).

Entry points are loaded lazily so that ``xpcompute.experiment`` can import
``pipeline.slices`` without pulling in the engines.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "run_stage1": "xpcompute.pipeline.stage1",
    "stage1_sql": "xpcompute.pipeline.stage1",
    "Stage1Result": "xpcompute.pipeline.stage1",
    "compute_slice": "xpcompute.pipeline.stage2",
    "compute_distribution": "xpcompute.pipeline.stage2",
    "distribution_sql": "xpcompute.pipeline.stage2",
    "live_slice": "xpcompute.pipeline.stage2",
    "precompute_slices": "xpcompute.pipeline.stage2",
    "common_slices": "xpcompute.pipeline.stage2",
    "read_slice": "xpcompute.pipeline.stage2",
    "slice_sql": "xpcompute.pipeline.stage2",
    "plan_slice": "xpcompute.pipeline.stage2",
    "StoredSlice": "xpcompute.pipeline.stage2",
    "SliceFilter": "xpcompute.pipeline.slices",
    "Condition": "xpcompute.pipeline.slices",
    "PublishedTable": "xpcompute.pipeline.tables",
    "open_table": "xpcompute.pipeline.tables",
    "publish_table": "xpcompute.pipeline.tables",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xpcompute.pipeline' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
