"""The seeded simulation of segment discovery: power on planted heterogeneity, and discoveries on A/A data.

Each replication draws a fresh table (``simulate.Planted``, its own seed), builds the segment cube through the
same code as the service (halves by the MD5 of the unit id in DuckDB SQL) and runs ``discover`` with the
default settings. The planted segment counts as *found* when a discovered segment of the tree is mostly inside
it and covers most of it: at least ``PRECISION`` of the segment's units are in the planted segment and at least
``RECALL`` of the planted units are in the segment. ``python -m xpcompute.segments.simulation`` prints both rates.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass

import numpy as np

from xpcompute.segments.cube import build_cube
from xpcompute.segments.discovery import SegmentReport, SegmentSettings, discover
from xpcompute.segments.simulate import DIMENSIONS, Planted

PRECISION = 0.8
RECALL = 0.5


@dataclass(frozen=True)
class Replication:
    """What one replication found: discoveries (tests and leaves), whether the planted segment was found, and
    which of the per-dimension Wald tests rejected."""

    discoveries: int
    found: bool
    wald_rejected: tuple[str, ...]


def replicate(truth: Planted, settings: SegmentSettings | None = None) -> Replication:
    table = truth.table()
    cube = build_cube(table, "user_id", "cell", list(DIMENSIONS), {"y": ["pre"]})
    report = discover(cube, "cell", ["y"], settings=settings)
    return Replication(report.discoveries, found(report, table, truth),
                       tuple(t.dimension for t in report.tests if t.discovered))


def found(report: SegmentReport, table: object, truth: Planted) -> bool:
    """Whether a discovered segment matches the planted one (``PRECISION`` and ``RECALL`` on the units)."""
    import pyarrow as pa

    assert isinstance(table, pa.Table)
    planted = truth.inside(table)
    for seg in report.segments:
        if not seg.discovered or not planted.any():
            continue
        mask = np.asarray(seg.slice.to_arrow_mask(table).to_numpy(zero_copy_only=False), dtype=bool)
        both = float((mask & planted).sum())
        if mask.any() and both / mask.sum() >= PRECISION and both / planted.sum() >= RECALL:
            return True
    return False


def run(users: int, reps: int, planted_effect: float, base_effect: float, seed: int) -> list[Replication]:
    return [replicate(Planted(users=users, seed=seed + r, base_effect=base_effect, planted_effect=planted_effect))
            for r in range(reps)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--planted", type=float, default=0.25, help="extra effect inside country=US & device=tv")
    parser.add_argument("--base", type=float, default=0.1, help="effect everywhere")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    planted = run(args.users, args.reps, args.planted, args.base, args.seed)
    aa = run(args.users, args.reps, 0.0, 0.0, args.seed + 100_000)
    print(json.dumps({
        "users": args.users, "reps": args.reps, "planted_effect": args.planted, "base_effect": args.base,
        "power_tree": float(np.mean([r.found for r in planted])),
        "power_wald_country_and_device": float(np.mean([{"country", "device"} <= set(r.wald_rejected)
                                                        for r in planted])),
        "aa_runs_with_a_discovery": int(sum(r.discoveries > 0 for r in aa)),
        "aa_discoveries": int(sum(r.discoveries for r in aa)),
        "seconds": round(time.perf_counter() - start, 1),
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
