"""Clustered event data with known structure, and the raw-row oracle: a Poisson bootstrap clustered by unit in NumPy."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

F64 = NDArray[np.float64]


def clustered_events(units: int, seed: int, effect: float = 0.0, mean_events: float = 3.0, unit_sd: float = 0.6,
                     event_sd: float = 0.5, digits: int | None = 2, string_ids: bool = True) -> pa.Table:
    """One row per event: unit id, cell (half each), value = exp(unit effect + event noise) (* (1 + effect) in
    the treatment). A unit's events share its effect, so they are correlated: the clustering matters."""
    rng = np.random.default_rng(seed)
    cell = np.where(rng.random(units) < 0.5, "control", "treatment")
    k = rng.poisson(mean_events - 1, units) + 1
    ids = np.array([f"u-{seed}-{i}" for i in range(units)]) if string_ids else np.arange(units)
    unit_effect = rng.normal(0.0, unit_sd, units)
    values = np.exp(3.0 + np.repeat(unit_effect, k) + rng.normal(0.0, event_sd, int(k.sum())))
    values = values * np.where(np.repeat(cell, k) == "treatment", 1.0 + effect, 1.0)
    if digits is not None:
        values = np.round(values, digits)
    return pa.table({"user_id": np.repeat(ids, k), "cell": np.repeat(cell, k), "amount": values})


def raw_cluster_bootstrap(table: pa.Table, probs: F64, reps: int, seed: int, clustered: bool = True) -> F64:
    """``[reps, 2, P]``: inverted-CDF event quantiles of control (0) and treatment (1) under Poisson(1) weights,
    one per unit (``clustered``) or one per event, on the raw rows."""
    rng = np.random.default_rng(seed)
    _, unit = np.unique(table.column("user_id").to_numpy(zero_copy_only=False), return_inverse=True)
    cell = table.column("cell").to_numpy(zero_copy_only=False)
    values = table.column("amount").to_numpy()
    out = np.empty((reps, 2, len(probs)))
    for k, name in enumerate(("control", "treatment")):
        sel = cell == name
        order = np.argsort(values[sel], kind="stable")
        v, u = values[sel][order], unit[sel][order]
        for b in range(reps):
            w = rng.poisson(1.0, unit.max() + 1)[u] if clustered else rng.poisson(1.0, len(v))
            cum = np.cumsum(w)
            idx = np.searchsorted(cum, probs * cum[-1], side="left")
            out[b, k] = v[np.minimum(idx, len(v) - 1)]
    return out
