"""The model-facing view of a compressed panel: one "long" row per (group, period).

A panel table has one row per group of users (cell x user-level keys) and,
per metric, per-period sums (``compression/panel.py``). Models and the base
class reason about rows that carry a count ``n``, a sum of ``y``, a cell label
and key labels; for a panel the natural such row is one (group, period) pair:
``n`` = user-period observations of the group in that period, ``sum_y`` = the
sum of the metric over them, with the period as the label of the time column.
``PanelData`` presents exactly that view (so ``make_record``, ``subgroups``,
``raw_mean`` and the cell checks of ``ModelData`` work unchanged) and adds
the group-level sums the clustered variance needs (``sums``).

Long row ``i`` is group ``i // P``, period ``i % P``. ``scale`` keeps the
``ModelData`` meaning: one multiplier per compressed row (group).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from xpcompute.compression.panel import PanelSums, panel_sums
from xpcompute.errors import InputError, MissingColumnError
from xpcompute.models.data import ModelData, label_array

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class PanelData(ModelData):
    """``ModelData`` of a panel table, with long rows = (group, period)."""

    def __post_init__(self) -> None:
        layout = self.compressed.layout
        if layout.kind != "panel":
            raise InputError(
                f"model 'dte' needs panel-compressed data (kind 'panel'), got kind {layout.kind!r}; "
                "compress the raw user-by-period rows with xpcompute.compression.panel.compress_panel"
            )
        extra = layout.extra
        for role, want in (("time", self.spec.time), ("cluster", self.spec.cluster)):
            have = extra.get(role)
            if want is not None and have != want:
                raise InputError(
                    f"the spec's {role} column is {want!r} but the panel was compressed with {have!r}; "
                    f"recompress with --{role} {want} or fit with --{role} {have}"
                )
        if layout.keys and layout.keys[0] != self.spec.treatment:
            raise InputError(
                f"the panel was compressed with treatment {layout.keys[0]!r}, the spec names {self.spec.treatment!r}; "
                "use the same treatment column for both"
            )
        if self.continuous:
            raise InputError(
                f"model 'dte' adjusts only for discrete user-level covariates; drop {', '.join(self.continuous)}"
            )

    @classmethod
    def of(cls, data: ModelData) -> PanelData:
        """The panel view of ``data`` (itself when it already is one)."""
        if isinstance(data, PanelData):
            return data
        return cls(compressed=data.compressed, spec=data.spec, discrete=data.discrete, continuous=data.continuous,
                   scale=data.scale)

    # ---- panel structure ---------------------------------------------------
    @cached_property
    def periods(self) -> tuple[str, ...]:
        """Period labels in sorted order (as stored by the compressor)."""
        return tuple(str(p) for p in self.compressed.layout.extra.get("periods", ()))

    @property
    def n_periods(self) -> int:
        return len(self.periods)

    @property
    def n_groups(self) -> int:
        return self.compressed.table.num_rows

    @cached_property
    def covariate_keys(self) -> tuple[str, ...]:
        """The user-level discrete covariates to adjust for: ``discrete``, else the spec's covariates.

        Each must be a key the panel was grouped by (keys not named are summed over, which is exact).
        """
        wanted = self.discrete or tuple(c for c in self.spec.covariates if c != self.spec.treatment)
        keys = self.compressed.layout.keys
        missing = [c for c in wanted if c not in keys]
        if missing:
            raise MissingColumnError(
                f"covariate(s) {', '.join(missing)} were not compressed into the panel (its keys: {', '.join(keys)}); "
                "recompress with them as covariates"
            )
        return tuple(wanted)

    @cached_property
    def _base_sums(self) -> PanelSums:
        try:
            return panel_sums(self.compressed, self.spec.metric)
        except InputError as exc:
            if self.spec.metric not in self.compressed.layout.metrics:
                raise MissingColumnError(str(exc)) from exc
            raise

    @property
    def sums(self) -> PanelSums:
        """Group-level sums of this metric (scaled for a bootstrap replicate)."""
        return self._base_sums.scaled(self.scale)

    @property
    def clusters(self) -> float:
        """Frequency-weighted number of users (clusters) with at least one observation."""
        return float(self.sums.users.sum())

    def group_labels(self, column: str) -> NDArray[np.object_]:
        """Labels of a key column, one per group (compressed row)."""
        if column not in self.compressed.table.column_names:
            raise MissingColumnError(
                f"column {column!r} is not a key of the compressed panel (keys: {', '.join(self.compressed.layout.keys)})"
            )
        return label_array(self.compressed.table.column(column))

    # ---- the long view that ModelData's users read -----------------------------
    @cached_property
    def _long_labels(self) -> dict[str, NDArray[np.object_]]:
        return {}

    def labels(self, column: str) -> NDArray[np.object_]:
        """Labels per long row: the period for the time column, the group's value for a key column."""
        cache = self._long_labels
        if column not in cache:
            if column == self.compressed.layout.extra.get("time"):
                cache[column] = np.tile(np.asarray(self.periods, dtype=object), self.n_groups)
            else:
                cache[column] = np.repeat(self.group_labels(column), self.n_periods)
        return cache[column]

    @cached_property
    def base_counts(self) -> F64:
        """User-period observations per long row (frequency-weighted), before any scaling."""
        return self._base_sums.p.reshape(-1)

    @property
    def n(self) -> F64:
        return self.sums.p.reshape(-1)

    @property
    def sum_z(self) -> F64:
        """Stored sums of the shifted, scaled metric per long row (what ``models/dte.py`` regresses on)."""
        return self.sums.y.reshape(-1)

    @property
    def sum_z2(self) -> F64:
        """Stored sums of squared per-user-period ``z`` (``yy[s, s]``), per long row."""
        return np.diagonal(self.sums.yy, axis1=1, axis2=2).reshape(-1)

    @property
    def sum_y(self) -> F64:
        """Sums of the metric in its own units per long row: ``shift * p + scale * z``."""
        return self.y_transform.sum_in_units(self.n, self.sum_z)

    @property
    def sum_y2(self) -> F64:
        """Sum of squared per-user-period values in the metric's units (``y_us = shift p_us + scale z_us``)."""
        if self.y_transform.is_identity:
            return self.sum_z2
        pp = np.diagonal(self.sums.pp, axis1=1, axis2=2).reshape(-1)
        yp = np.diagonal(self.sums.yp, axis1=1, axis2=2).reshape(-1)
        return self.y_transform.sum_of_squares_in_units(pp, yp, self.sum_z2)

    def moment(self, *exponents: int) -> F64:
        raise InputError(
            "a panel table stores per-period sums, not moment columns; read them with PanelData.sums "
            "(or compress with lossless moments for a non-panel model)"
        )
