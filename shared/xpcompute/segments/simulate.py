"""Seeded unit-level data with planted heterogeneity, for the segment-discovery simulation and benchmark.

Four dimensions (country, device, plan, tenure), two cells at 50/50, a metric
``y = level + engagement + noise`` with a pre-period covariate ``pre`` that
shares the engagement (so CUPED helps), and a treatment effect ``base_effect``
everywhere plus ``planted_effect`` in the planted segment (by default
``country = US and device = tv``). ``planted_effect = base_effect = 0`` is an
A/A test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

DIMENSIONS: dict[str, tuple[str, ...]] = {
    "country": ("US", "GB", "DE", "BR", "IN", "JP", "MX", "CA"),
    "device": ("tv", "ios", "android", "web"),
    "plan": ("basic", "standard", "premium"),
    "tenure": ("0-1m", "1-3m", "3-12m", "1-2y", "2y+"),
}
SHARES: dict[str, tuple[float, ...]] = {
    "country": (0.35, 0.10, 0.08, 0.12, 0.15, 0.05, 0.08, 0.07),
    "device": (0.45, 0.20, 0.25, 0.10),
    "plan": (0.30, 0.50, 0.20),
    "tenure": (0.15, 0.20, 0.30, 0.20, 0.15),
}


@dataclass(frozen=True)
class Planted:
    """What the data holds: the effect everywhere, and the extra effect inside ``segment``."""

    users: int
    seed: int
    base_effect: float = 0.0
    planted_effect: float = 0.0
    segment: Mapping[str, str] = field(default_factory=lambda: {"country": "US", "device": "tv"})

    def table(self) -> pa.Table:
        """The unit-level table: user_id, cell, the four dimensions, y and pre."""
        rng = np.random.default_rng(self.seed)
        n = self.users
        codes = {d: rng.choice(len(v), size=n, p=SHARES[d]) for d, v in DIMENSIONS.items()}
        treated = rng.random(n) < 0.5
        engagement = rng.normal(0.0, 1.0, size=n)
        pre = 10.0 + 2.0 * engagement + rng.normal(0.0, 1.0, size=n)
        inside = np.ones(n, dtype=bool)
        for dim, value in self.segment.items():
            inside &= codes[dim] == DIMENSIONS[dim].index(value)
        effect = self.base_effect + self.planted_effect * inside
        y = 10.0 + 2.0 * engagement + rng.normal(0.0, 2.0, size=n) + treated * effect
        columns: dict[str, pa.Array] = {
            "user_id": pa.array(np.arange(n, dtype=np.int64) + 1_000_000 * (self.seed % 1000)),
            "cell": pa.DictionaryArray.from_arrays(pa.array(treated.astype(np.int8)), pa.array(["control", "treatment"])),
        }
        for dim, values in DIMENSIONS.items():
            columns[dim] = pa.DictionaryArray.from_arrays(pa.array(codes[dim].astype(np.int8)), pa.array(values))
        columns["y"] = pa.array(y)
        columns["pre"] = pa.array(pre)
        return pa.table(columns)

    def inside(self, table: pa.Table) -> np.ndarray:
        """Which rows of ``table`` are in the planted segment."""
        import pyarrow.compute as pc

        mask = np.ones(table.num_rows, dtype=bool)
        for dim, value in self.segment.items():
            column = table.column(dim).cast(pa.string())
            mask &= np.asarray(pc.equal(column, value).to_numpy(zero_copy_only=False), dtype=bool)
        return mask
