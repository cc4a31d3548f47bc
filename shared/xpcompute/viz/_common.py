"""Small helpers every part of the visualisation layer shares.

They live in one place so the scorecard table, the terminal output and the
figures agree on what counts as a number, which order slices and periods come
in, and which colour a cell gets: a reader who sees cell ``a`` in orange in one
plot should see it in orange in the next.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Iterable
from typing import Any, TypeVar

from xpcompute.records import ResultRecord

T = TypeVar("T", bound=Hashable)

#: Colours of treatment cells (control never gets a line of its own in an effect plot).
CELL_PALETTE: tuple[str, ...] = (
    "#3b5bdb", "#e8590c", "#0ca678", "#ae3ec9", "#f59f00", "#1098ad", "#d6336c", "#5c940d",
)

#: Label of records that belong to no slice (a local fit, or the whole population).
ALL_USERS = "all users"

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def finite(value: float | None) -> bool:
    """True for a real number: ``None``, NaN and infinities are "not available" everywhere in the layer."""
    return value is not None and isinstance(value, int | float) and math.isfinite(value)


def clean(value: float | None) -> float | None:
    """The value, or ``None`` when it is missing or not finite (what Plotly and JSON both understand)."""
    return float(value) if value is not None and finite(value) else None


def natural_key(text: str | None) -> tuple[Any, ...]:
    """Sort key that puts ``day 2`` before ``day 10`` and ``None`` first.

    Periods arrive as strings (``"0"``, ``"2024-01-03"``); sorting them as text
    would put period 10 before period 2 on a time axis.
    """
    if text is None:
        return (0,)
    parts: list[Any] = []
    pos = 0
    for match in _NUMBER.finditer(text):
        parts.append((1, text[pos:match.start()]))
        parts.append((0, float(match.group())))
        pos = match.end()
    parts.append((1, text[pos:]))
    return (1, *parts)


def first_seen(values: Iterable[T]) -> list[T]:
    """Distinct values in the order they first appear (keeps the caller's metric and slice order)."""
    seen: dict[T, None] = {}
    for value in values:
        seen.setdefault(value, None)
    return list(seen)


def slice_label(name: str | None) -> str:
    """How a slice is named on the page: ``None`` is the whole population."""
    return ALL_USERS if name is None else name


def is_overall(record: ResultRecord) -> bool:
    """A headline record: not a per-segment (CATE) or per-period (DTE) breakdown."""
    return record.segment is None and record.time is None


def quantile_label(q: float) -> str:
    """``0.5`` -> ``p50``, ``0.999`` -> ``p99.9`` (the keys ``CellSummary.quantiles`` uses)."""
    return f"p{round(q * 100, 10):g}"


def cell_colors(records: Iterable[ResultRecord], extra_cells: Iterable[str] = ()) -> dict[str, str]:
    """A stable colour per cell: control first, then cells in first-seen order, then ``extra_cells``."""
    recs = list(records)
    cells = first_seen([r.control for r in recs] + [r.cell for r in recs] + list(extra_cells))
    return {cell: CELL_PALETTE[i % len(CELL_PALETTE)] for i, cell in enumerate(cells)}


def rgba(hex_color: str, alpha: float) -> str:
    """``#rrggbb`` with transparency, for confidence bands under a line of the same colour."""
    h = hex_color.lstrip("#")
    r, g, b = int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    return f"rgba({r},{g},{b},{alpha})"
