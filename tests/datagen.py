"""Seeded experiment data for tests: Arrow tables with known structure."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def make_experiment(
    n: int = 4000,
    seed: int = 0,
    cells: tuple[str, ...] = ("control", "a", "b"),
    shares: tuple[float, ...] = (0.5, 0.3, 0.2),
    effects: tuple[float, ...] = (0.0, 0.3, -0.1),
    weights: bool = False,
) -> pa.Table:
    """Users with a cell, two categorical covariates, a pre-period covariate and heteroskedastic outcomes."""
    rng = np.random.default_rng(seed)
    cell_idx = rng.choice(len(cells), size=n, p=np.asarray(shares) / sum(shares))
    cell = np.asarray(cells, dtype=object)[cell_idx]
    country = rng.choice(["US", "CA", "MX", "BR"], size=n, p=[0.4, 0.3, 0.2, 0.1])
    device = rng.choice(["ios", "android", "tv"], size=n)
    pre = rng.gamma(2.0, 1.0, size=n)
    noise = rng.normal(size=n) * (1.0 + 0.5 * (country == "US") + 0.3 * pre)
    y = 1.0 + np.asarray(effects)[cell_idx] + 0.6 * pre + 0.2 * (device == "tv") + 0.1 * pre**2 + noise
    sessions = rng.poisson(3.0, size=n) + 1.0
    hours = sessions * (0.5 + 0.1 * cell_idx) + rng.gamma(1.0, 0.5, size=n)
    converted = (rng.random(n) < 0.2 + 0.03 * cell_idx).astype(np.int64)
    cols: dict[str, object] = {
        "cell": pa.array(cell.tolist(), pa.string()),
        "country": pa.array(country.tolist(), pa.string()),
        "device": pa.array(device.tolist(), pa.string()),
        "pre": pre,
        "y": y,
        "sessions": sessions,
        "hours": hours,
        "converted": converted,
    }
    if weights:
        cols["w"] = rng.integers(1, 4, size=n).astype(np.float64)
    return pa.table(cols)


def expand(table: pa.Table, weight: str = "w") -> pa.Table:
    """Repeat each row by its integer frequency weight (the reference for weighted fits)."""
    reps = np.asarray(table.column(weight).to_numpy(), dtype=np.int64)
    idx = np.repeat(np.arange(table.num_rows), reps)
    return table.take(pa.array(idx)).drop_columns([weight])
